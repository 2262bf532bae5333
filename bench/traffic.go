package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/netns"
)

const (
	iperfPort = 5201
	rrPort    = 7000
	settle    = 1500 * time.Millisecond
)

// trafficRulesets returns the policy configurations measured against the
// baseline: (a) a cluster of 10,000 policies of which a few apply to the
// pair, (b) one policy of 10,000 Allow rules (distinct net and port each)
// whose last rule admits the client.
func trafficRulesets(client, server lab.Pod, policies int) map[string]*compile.Ruleset {
	// (a): the cluster ruleset, plus the pair with 10 policies on the
	// server's ingress, the last allowing the client on every port.
	a := clusterRuleset(110, policies)
	ca := client.IPs[0]
	pair := compile.SetID("sel:role == 'client'")
	a.Sets[pair] = &compile.IPSet{ID: pair, Kind: compile.SetNets, Selector: "role == 'client'", Nets: []netip.Prefix{netip.PrefixFrom(ca, 32)}}
	var pairPols []compile.PolicyID
	for i := range 10 {
		id := compile.PolicyID(fmt.Sprintf("in:default/pair/p%d", i))
		m := compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{"sel:app == 'a1'"}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: uint16(2000 + i), Max: uint16(2000 + i)}}}}
		if i == 9 {
			m = compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{pair}}}
		}
		a.Policies[id] = &compile.Policy{ID: id, Direction: compile.Ingress, Tier: "default", Name: fmt.Sprintf("pair/p%d", i),
			Rules: []compile.Rule{{Action: compile.ActionAllow, Match: m}}}
		pairPols = append(pairPols, id)
	}
	addLabPod(a, client, nil)
	addLabPod(a, server, pairPols)

	// (b): one policy of many rules, the probe matching the last.
	b := &compile.Ruleset{Sets: map[compile.SetID]*compile.IPSet{}, Policies: map[compile.PolicyID]*compile.Policy{}, Endpoints: map[string]*compile.Endpoint{}}
	b.Policies["profile:kns"] = a.Policies["profile:kns"]
	var rules []compile.Rule
	for i := range policies {
		var n netip.Prefix
		port := uint16(10000 + i%50000)
		if i == policies-1 {
			n, port = netip.PrefixFrom(ca, 32), 0
		} else {
			n = netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(i/65536), byte(i / 256), byte(i)}), 32)
		}
		id := compile.SetID("nets:" + n.String())
		b.Sets[id] = &compile.IPSet{ID: id, Kind: compile.SetNets, Literal: true, Nets: []netip.Prefix{n}}
		m := compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{id}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: port, Max: port}}}}
		if port == 0 {
			m.Dst.Ports = []compile.PortRange{{Min: iperfPort, Max: iperfPort}, {Min: rrPort, Max: rrPort}}
		}
		rules = append(rules, compile.Rule{Action: compile.ActionAllow, Match: m, Origin: compile.Origin{Policy: "big", Index: i}})
	}
	big := compile.PolicyID("in:default/big")
	b.Policies[big] = &compile.Policy{ID: big, Direction: compile.Ingress, Tier: "default", Name: "big", Rules: rules}
	addLabPod(b, client, nil)
	addLabPod(b, server, []compile.PolicyID{big})
	return map[string]*compile.Ruleset{"a-10k-policies": a, "b-10k-rules": b}
}

func addLabPod(rs *compile.Ruleset, p lab.Pod, ingress []compile.PolicyID) {
	ep := &compile.Endpoint{Key: p.Key(), Kind: compile.WorkloadEndpoint, Interface: p.Interface(), Addrs: p.IPs}
	if len(ingress) > 0 {
		ep.Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: ingress, EndAction: compile.ActionDeny}}
	}
	ep.Ingress.Profiles = []compile.PolicyID{"profile:kns"}
	ep.Egress.Profiles = []compile.PolicyID{"profile:kns"}
	rs.Endpoints[p.Key()] = ep
}

type sample struct{ gbps, rr, crr float64 }

func benchTraffic(ctx context.Context, c *config, out io.Writer) error {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return fmt.Errorf("iperf3 not installed (scripts/deps.sh installs it): %w", err)
	}
	n := c.sizes[len(c.sizes)-1]
	client := lab.Pod{Namespace: "bench", Name: "client", IPs: []netip.Addr{netip.MustParseAddr("10.66.0.1")}}
	server := lab.Pod{Namespace: "bench", Name: "server", IPs: []netip.Addr{netip.MustParseAddr("10.66.0.2")}}
	l, err := lab.New(ctx, lab.Spec{Pods: []lab.Pod{client, server}}, lab.Options{})
	if err != nil {
		return err
	}
	defer l.Close()
	srvNS, _ := l.NS(server.Key())
	cliNS, _ := l.NS(client.Key())
	iperf := exec.Command("ip", "netns", "exec", srvNS.Name(), "iperf3", "-s", "-p", fmt.Sprint(iperfPort))
	if err := iperf.Start(); err != nil {
		return err
	}
	defer func() { _ = iperf.Process.Kill(); _ = iperf.Wait() }()
	time.Sleep(300 * time.Millisecond)

	configs := trafficRulesets(client, server, n)
	// "no-table" has no dataplane at all (and so no conntrack in the node
	// namespace); "empty" is Calyx with a Ruleset of the two pods and no
	// policy: what every policy configuration pays anyway (conntrack, the
	// dispatch). Ratios are against both. With several dataplanes, every
	// configuration of each is measured in the same interleaved loop.
	configs["empty"] = emptyRuleset(client, server)
	type run struct {
		label, config string
		plane         dataplane
	}
	runs := []run{{label: "no-table"}}
	bases := []string{"no-table"}
	for _, d := range c.planes {
		for _, cfg := range []string{"empty", "a-10k-policies", "b-10k-rules"} {
			label := cfg
			if len(c.planes) > 1 {
				label = d.name + "/" + cfg
			}
			runs = append(runs, run{label: label, config: cfg, plane: d})
			if cfg == "empty" {
				bases = append(bases, label)
			}
		}
	}
	var b backend.Backend
	var bPlane string
	closeB := func() error {
		if b == nil {
			return nil
		}
		err := b.Close(ctx)
		b, bPlane = nil, ""
		return err
	}
	defer func() { _ = closeB() }()
	results := map[string][]sample{}
	fmt.Fprintf(out, "== per-packet cost between two pods (%d reps of %v, interleaved)\n", c.reps, c.duration)
	for rep := range c.reps {
		for _, ru := range runs {
			if ru.config == "" || bPlane != ru.plane.name {
				if err := closeB(); err != nil {
					return err
				}
			}
			if ru.config != "" {
				if b == nil {
					if b, err = ru.plane.open(ctx, backend.Options{NetNS: l.NodeNS().Path(), Name: "bench"}); err != nil {
						return err
					}
					bPlane = ru.plane.name
				}
				if err := b.Apply(ctx, configs[ru.config]); err != nil {
					return fmt.Errorf("%s: %w", ru.label, err)
				}
			}
			// Let the kernel finish freeing the previous rules and the Go
			// runtime collect the render: measure the steady state.
			runtime.GC()
			time.Sleep(settle)
			var s sample
			if s.gbps, err = iperfGbps(cliNS, server.IPs[0], c.duration); err != nil {
				return fmt.Errorf("%s: iperf3: %w", ru.label, err)
			}
			if s.rr, s.crr, err = requestResponse(cliNS, srvNS, server.IPs[0], c.duration); err != nil {
				return fmt.Errorf("%s: rr: %w", ru.label, err)
			}
			results[ru.label] = append(results[ru.label], s)
			fmt.Fprintf(out, "  rep %d %-24s %6.2f Gbit/s  %8.0f RR/s  %7.0f CRR/s\n", rep+1, ru.label, s.gbps, s.rr, s.crr)
		}
	}
	var names []string
	for _, ru := range runs {
		names = append(names, ru.label)
	}
	med := func(name string, f func(sample) float64) float64 {
		var v []float64
		for _, s := range results[name] {
			v = append(v, f(s))
		}
		return medianF(v)
	}
	for _, base := range bases {
		fmt.Fprintf(out, "medians; ratios against %q\n", base)
		fmt.Fprintf(out, "%-24s %12s %12s %12s %8s %8s %8s\n", "config", "Gbit/s", "RR/s", "CRR/s", "xGbit", "xRR", "xCRR")
		bg, brr, bcrr := med(base, func(s sample) float64 { return s.gbps }), med(base, func(s sample) float64 { return s.rr }), med(base, func(s sample) float64 { return s.crr })
		for _, name := range names {
			g, rr, crr := med(name, func(s sample) float64 { return s.gbps }), med(name, func(s sample) float64 { return s.rr }), med(name, func(s sample) float64 { return s.crr })
			fmt.Fprintf(out, "%-24s %12.2f %12.0f %12.0f %8.3f %8.3f %8.3f\n", name, g, rr, crr, g/bg, rr/brr, crr/bcrr)
		}
	}
	return nil
}

func iperfGbps(cli *netns.NS, dst netip.Addr, d time.Duration) (float64, error) {
	out, err := exec.Command("ip", "netns", "exec", cli.Name(), "iperf3", "-c", dst.String(), "-p", fmt.Sprint(iperfPort),
		"-t", fmt.Sprintf("%.1f", d.Seconds()), "-J").Output()
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, err
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

// requestResponse measures one-byte transactions per second over one
// connection (RR: established flow, conntrack only) and with a new
// connection per transaction (CRR: every transaction is judged by policy).
func requestResponse(cli, srv *netns.NS, dst netip.Addr, d time.Duration) (rr, crr float64, err error) {
	var ln net.Listener
	if err := srv.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", rrPort))
		return err
	}); err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	addr := netip.AddrPortFrom(dst, rrPort).String()
	err = cli.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		buf := []byte{1}
		n := 0
		end := time.Now().Add(d / 2)
		for time.Now().Before(end) {
			if _, err := c.Write(buf); err != nil {
				return err
			}
			if _, err := c.Read(buf); err != nil {
				return err
			}
			n++
		}
		_ = c.Close()
		rr = float64(n) / (d / 2).Seconds()

		n = 0
		d2 := net.Dialer{Timeout: time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			})
		}}
		end = time.Now().Add(d / 2)
		for time.Now().Before(end) {
			c, err := d2.Dial("tcp", addr)
			if err != nil {
				return err
			}
			if _, err := c.Write(buf); err != nil {
				return err
			}
			if _, err := c.Read(buf); err != nil {
				return err
			}
			_ = c.Close()
			n++
		}
		crr = float64(n) / (d / 2).Seconds()
		return nil
	})
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return rr, crr, err
}

func emptyRuleset(client, server lab.Pod) *compile.Ruleset {
	rs := &compile.Ruleset{Sets: map[compile.SetID]*compile.IPSet{}, Policies: map[compile.PolicyID]*compile.Policy{}, Endpoints: map[string]*compile.Endpoint{}}
	rs.Policies["profile:kns"] = &compile.Policy{ID: "profile:kns", Name: "profile:kns", Rules: []compile.Rule{{Action: compile.ActionAllow}}}
	addLabPod(rs, client, nil)
	addLabPod(rs, server, nil)
	return rs
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/internal/benchset"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/netns"
)

const (
	iperfPort = benchset.IperfPort
	rrPort    = benchset.RRPort
	settle    = 1500 * time.Millisecond
)

// sample is one measurement of a configuration: throughput and
// transaction rates, and with -bpfstats, for each of the three phases
// (iperf3, RR, CRR), the mean run time of the eBPF programs on the pair's
// interfaces (ns per program run; 0 without) and the share of the phase's
// wall time spent in them. RR has one transaction in flight at a time:
// programs that cost twice as much would slow it by at most that share.
type sample struct {
	gbps, rr, crr   float64
	bpfNs, bpfShare [3]float64
}

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

	configs := benchset.Traffic(benchPod(client), benchPod(server), n)
	// "no-table" has no dataplane at all (and so no conntrack in the node
	// namespace); "empty" is Calyx with a Ruleset of the two pods and no
	// policy: what every policy configuration pays anyway (conntrack, the
	// dispatch). Ratios are against both. With several dataplanes, every
	// configuration of each is measured in the same interleaved loop; so
	// is each with flow events off (-flowevents both; eBPF only), with its
	// own "empty" as a further baseline.
	type run struct {
		label, config string
		// backend names the backend a run needs: runs of one backend
		// share it, another closes it and opens its own.
		backend string
		open    func(ctx context.Context, opts backend.Options) (backend.Backend, error)
	}
	runs := []run{{label: "no-table"}}
	bases := []string{"no-table"}
	for _, d := range c.planes {
		for _, ev := range c.flowEvents {
			open, suffix := d.open, ""
			if !ev {
				if d.withoutEvents == nil {
					continue // no flow events to turn off
				}
				open, suffix = d.withoutEvents, "/events=off"
			}
			for _, cfg := range []string{benchset.Empty, benchset.Policies, benchset.Rules} {
				label := cfg + suffix
				if len(c.planes) > 1 {
					label = d.name + "/" + label
				}
				runs = append(runs, run{label: label, config: cfg, backend: d.name + suffix, open: open})
				if cfg == benchset.Empty {
					bases = append(bases, label)
				}
			}
		}
	}
	var b backend.Backend
	var bName string
	closeB := func() error {
		if b == nil {
			return nil
		}
		err := b.Close(ctx)
		b, bName = nil, ""
		return err
	}
	defer func() { _ = closeB() }()
	if c.bpfStats {
		st, err := enableBPFStats()
		if err != nil {
			return err
		}
		defer st.Close()
	}
	results := map[string][]sample{}
	fmt.Fprintf(out, "== per-packet cost between two pods (%d reps of %v, interleaved; load %s)\n", c.reps, c.duration, loadavg())
	for rep := range c.reps {
		// Odd repetitions run the configurations in reverse: each follows
		// its neighbour on either side equally often, so what one leaves
		// behind in the kernel (objects still being freed) does not
		// always weigh on the same next one.
		order := slices.Clone(runs)
		if rep%2 == 1 {
			slices.Reverse(order)
		}
		for _, ru := range order {
			if ru.config == "" || bName != ru.backend {
				if err := closeB(); err != nil {
					return err
				}
			}
			if ru.config != "" {
				if b == nil {
					if b, err = ru.open(ctx, backend.Options{NetNS: l.NodeNS().Path(), Name: "bench"}); err != nil {
						return err
					}
					bName = ru.backend
				}
				if err := b.Apply(ctx, configs[ru.config]); err != nil {
					return fmt.Errorf("%s: %w", ru.label, err)
				}
			}
			// Let the kernel finish freeing the previous rules and the Go
			// runtime collect the render: measure the steady state.
			runtime.GC()
			time.Sleep(settle)
			var hp *hookProgs
			if c.bpfStats && ru.config != "" {
				if hp, err = attachedPrograms(l.NodeNS(), client.Interface(), server.Interface()); err != nil {
					return fmt.Errorf("%s: %w", ru.label, err)
				}
			}
			s, err := measure(cliNS, srvNS, server.IPs[0], c.duration, hp)
			hp.close()
			if err != nil {
				return fmt.Errorf("%s: %w", ru.label, err)
			}
			results[ru.label] = append(results[ru.label], s)
			fmt.Fprintf(out, "  rep %d %-30s %6.2f Gbit/s  %8.0f RR/s  %7.0f CRR/s", rep+1, ru.label, s.gbps, s.rr, s.crr)
			if c.bpfStats {
				fmt.Fprintf(out, "  | bpf ns/run %4.0f %4.0f %4.0f, time %4.1f%% %4.1f%% %4.1f%%",
					s.bpfNs[0], s.bpfNs[1], s.bpfNs[2], 100*s.bpfShare[0], 100*s.bpfShare[1], 100*s.bpfShare[2])
			}
			fmt.Fprintln(out)
		}
	}
	fmt.Fprintf(out, "load at the end: %s\n", loadavg())
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
		fmt.Fprintf(out, "%-30s %12s %12s %12s %8s %8s %8s\n", "config", "Gbit/s", "RR/s", "CRR/s", "xGbit", "xRR", "xCRR")
		bg, brr, bcrr := med(base, func(s sample) float64 { return s.gbps }), med(base, func(s sample) float64 { return s.rr }), med(base, func(s sample) float64 { return s.crr })
		for _, name := range names {
			g, rr, crr := med(name, func(s sample) float64 { return s.gbps }), med(name, func(s sample) float64 { return s.rr }), med(name, func(s sample) float64 { return s.crr })
			fmt.Fprintf(out, "%-30s %12.2f %12.0f %12.0f %8.3f %8.3f %8.3f\n", name, g, rr, crr, g/bg, rr/brr, crr/bcrr)
		}
	}
	if !c.bpfStats {
		return nil
	}
	// The programs' own cost: ratios are the baseline's time over the
	// configuration's, so that, like the rates above, 1 is as cheap and
	// less is dearer; and the share of each phase's time they took.
	phase := func(name string, i int, share bool) float64 {
		return med(name, func(s sample) float64 {
			if share {
				return 100 * s.bpfShare[i]
			}
			return s.bpfNs[i]
		})
	}
	for _, base := range bases[1:] {
		if phase(base, 1, false) == 0 {
			continue // not an eBPF configuration
		}
		fmt.Fprintf(out, "eBPF programs on the pair's hooks, ns per run and %% of the time (medians); ratios %q / config\n", base)
		fmt.Fprintf(out, "%-30s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n", "config", "iperf3", "RR", "CRR", "xiperf", "xRR", "xCRR", "%iperf", "%RR", "%CRR")
		for _, name := range names[1:] {
			if phase(name, 1, false) == 0 {
				continue
			}
			fmt.Fprintf(out, "%-30s", name)
			for i := range 3 {
				fmt.Fprintf(out, " %8.0f", phase(name, i, false))
			}
			for i := range 3 {
				fmt.Fprintf(out, " %8.3f", phase(base, i, false)/phase(name, i, false))
			}
			for i := range 3 {
				fmt.Fprintf(out, " %7.1f%%", phase(name, i, true))
			}
			fmt.Fprintln(out)
		}
	}
	return nil
}

// measure runs iperf3, then RR and CRR, reading hp's statistics around
// each (hp may be nil).
func measure(cli, srv *netns.NS, dst netip.Addr, d time.Duration, hp *hookProgs) (sample, error) {
	var s sample
	var marks [4]runStats
	var at [4]time.Time
	var errs []error
	mark := func(i int) {
		st, err := hp.read()
		marks[i], at[i] = st, time.Now()
		errs = append(errs, err)
	}
	var err error
	mark(0)
	if s.gbps, err = iperfGbps(cli, dst, d); err != nil {
		return s, fmt.Errorf("iperf3: %w", err)
	}
	mark(1)
	if s.rr, s.crr, err = requestResponse(cli, srv, dst, d, func() { mark(2) }); err != nil {
		return s, fmt.Errorf("rr: %w", err)
	}
	mark(3)
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("bpf statistics: %w", err)
	}
	for i := range 3 {
		s.bpfNs[i] = perRun(marks[i], marks[i+1])
		s.bpfShare[i] = float64(marks[i+1].runtime-marks[i].runtime) / float64(at[i+1].Sub(at[i]))
	}
	return s, nil
}

func iperfGbps(cli *netns.NS, dst netip.Addr, d time.Duration) (float64, error) {
	// A connection the dataplane drops would make iperf3 wait for TCP's
	// own connect timeout (two minutes): give up sooner.
	ctx, cancel := context.WithTimeout(context.Background(), d+15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", cli.Name(), "iperf3", "-c", dst.String(), "-p", fmt.Sprint(iperfPort),
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
// connection per transaction (CRR: every transaction is judged by policy),
// each for d/2 (see rate); between runs after RR, before CRR.
func requestResponse(cli, srv *netns.NS, dst netip.Addr, d time.Duration, between func()) (rr, crr float64, err error) {
	ln, err := serveRR(srv)
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	addr := netip.AddrPortFrom(dst, rrPort).String()
	err = cli.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		buf := []byte{1}
		if rr, err = rate(d/2, func() error {
			if _, err := c.Write(buf); err != nil {
				return err
			}
			_, err := c.Read(buf)
			return err
		}); err != nil {
			return err
		}
		_ = c.Close()
		between()

		d2 := resetDialer()
		crr, err = rate(d/2, func() error { return crrTransaction(&d2, addr, buf) })
		return err
	})
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return rr, crr, err
}

// resetDialer dials connections that close with a reset, not through
// TIME_WAIT: CRR opens thousands a second.
func resetDialer() net.Dialer {
	return net.Dialer{Timeout: time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		})
	}}
}

// crrTransaction is one CRR transaction: connect to addr, one byte there
// and back, close. It must run in the client's namespace.
func crrTransaction(d *net.Dialer, addr string, buf []byte) error {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err = c.Read(buf)
	return err
}

// serveRR starts the RR/CRR server in srv: it echoes every byte on
// rrPort until the listener is closed.
func serveRR(srv *netns.NS) (net.Listener, error) {
	var ln net.Listener
	if err := srv.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", rrPort))
		return err
	}); err != nil {
		return nil, err
	}
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
	return ln, nil
}

// loadavg is the first three fields of /proc/loadavg: how busy the
// machine was (the figures are ratios measured in one run, but a busy
// machine makes them noisy).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// rateSlices is how many parts a rate's window is cut into.
const rateSlices = 10

// rate runs op for d and returns how many times per second it completed:
// the median of the rates of rateSlices equal slices of d. On a busy
// machine a transaction loop is sometimes not scheduled for a while; the
// median leaves out the slices that happened in, the rate over the whole
// window would not.
func rate(d time.Duration, op func() error) (float64, error) {
	slice := d / rateSlices
	rates := make([]float64, 0, rateSlices)
	for range rateSlices {
		n := 0
		start := time.Now()
		end := start.Add(slice)
		for time.Now().Before(end) {
			if err := op(); err != nil {
				return 0, err
			}
			n++
		}
		rates = append(rates, float64(n)/time.Since(start).Seconds())
	}
	return medianF(rates), nil
}

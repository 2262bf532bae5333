package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/benchset"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/netns"
)

// The paired traffic figures (-paired): one Ruleset holds every
// configuration at once, each on its own pair of pods of one node, and
// the harness alternates short slices between the pairs, round after
// round. A round measures every pair twice, in an order and then its
// reverse (rotated from round to round), so that each pair's two slices
// are centred on the round's middle: drift of the machine that is slow
// against a round (another job starting, the CPU's clock) weighs on all
// pairs alike and cancels in the ratio to the baseline pair taken within
// the round. The ratios of the rounds are then summed up by their median,
// interquartile range and a bootstrap 95% interval of the median.
//
// A second pair without policy ("empty-2") is the control: its ratio to
// "empty" shows the method's own noise, since their paths are the same.

// echoPort is the lab's echo server on the paired servers: the probes
// that check each server's configuration before measuring use it.
const echoPort = 7001

// control is the name of the second pair without policy.
const control = "empty-2"

// trafficPair is one client and its server, and the configuration its
// server has in the paired Ruleset.
type trafficPair struct {
	name           string
	client, server lab.Pod
	// cli, srv are the namespaces, once the lab is built.
	cli, srv *netns.NS
	// rr is the established RR connection.
	rr net.Conn
}

// pairedPairs are the pairs: pair i's client is 10.66.0.(2i+1), its
// server 10.66.0.(2i+2). The baseline comes first.
func pairedPairs() []*trafficPair {
	names := []string{benchset.Empty, control, benchset.Policies, benchset.Rules}
	tags := []string{"e", "e2", "a", "b"}
	var out []*trafficPair
	for i, name := range names {
		cli := lab.Pod{Namespace: "bench", Name: "client-" + tags[i], IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 66, 0, byte(2*i + 1)})}}
		srv := lab.Pod{Namespace: "bench", Name: "server-" + tags[i], IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 66, 0, byte(2*i + 2)})},
			Ports: []lab.Port{{Protocol: 6, Port: echoPort}}}
		out = append(out, &trafficPair{name: name, client: cli, server: srv})
	}
	return out
}

// pairedRuleset is the one Ruleset of the pairs (pairedPairs' order) at n
// policies or rules.
func pairedRuleset(pairs []*trafficPair, n int) *compile.Ruleset {
	bp := func(p *trafficPair) benchset.Pair {
		return benchset.Pair{Client: benchPod(p.client), Server: benchPod(p.server)}
	}
	return benchset.Paired([]benchset.Pair{bp(pairs[0]), bp(pairs[1])}, bp(pairs[2]), bp(pairs[3]), n)
}

// roundOrder is the order in which round r measures k pairs: the pairs
// rotated left by r, then the same backwards. Pair p comes at positions
// i and 2k-1-i, whose mean is the round's centre for every pair.
func roundOrder(k, r int) []int {
	order := make([]int, 0, 2*k)
	for i := range k {
		order = append(order, (i+r)%k)
	}
	for i := k - 1; i >= 0; i-- {
		order = append(order, order[i])
	}
	return order
}

// roundRatios is, for each pair, its ratio to pair 0 in each round:
// rounds[r][p] is the sum of pair p's slices in round r.
func roundRatios(rounds [][]float64) [][]float64 {
	if len(rounds) == 0 {
		return nil
	}
	out := make([][]float64, len(rounds[0]))
	for _, v := range rounds {
		for p := range v {
			out[p] = append(out[p], v[p]/v[0])
		}
	}
	return out
}

// quantile is the q-quantile of sorted values, linearly interpolated
// between the two nearest ranks.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	i := int(math.Floor(pos))
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(i)
	return sorted[i] + f*(sorted[i+1]-sorted[i])
}

// spread sums up a set of per-round ratios.
type spread struct {
	median, q1, q3 float64
	// lo, hi: the bootstrap 95% interval of the median (percentiles of the
	// medians of resamples).
	lo, hi float64
}

// bootstrapResamples is how many resamples the interval is computed from.
const bootstrapResamples = 4000

// summarize computes v's median, quartiles and the bootstrap 95% interval
// of its median, from resamples drawn by a generator seeded with seed (the
// same figures give the same interval).
func summarize(v []float64, seed uint64) spread {
	s := slices.Clone(v)
	slices.Sort(s)
	out := spread{median: quantile(s, 0.5), q1: quantile(s, 0.25), q3: quantile(s, 0.75)}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	meds := make([]float64, bootstrapResamples)
	re := make([]float64, len(s))
	for b := range meds {
		for i := range re {
			re[i] = s[rng.IntN(len(s))]
		}
		slices.Sort(re)
		meds[b] = quantile(re, 0.5)
	}
	slices.Sort(meds)
	out.lo, out.hi = quantile(meds, 0.025), quantile(meds, 0.975)
	return out
}

// pairedMetric is one of the figures measured in slices.
type pairedMetric struct {
	// key names it in -metrics; name in the output.
	key, name string
	// format prints one value.
	format string
	// measure measures pair p for one slice.
	measure func(p *trafficPair) (float64, error)
}

// benchPaired runs the paired figures for every dataplane (and flow-event
// setting) of c, in one lab.
func benchPaired(ctx context.Context, c *config, out io.Writer) error {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return fmt.Errorf("iperf3 not installed (scripts/deps.sh installs it): %w", err)
	}
	if c.bpfStats {
		return errors.New("-bpfstats is not supported with -paired")
	}
	if c.rounds < 2 {
		return fmt.Errorf("-rounds %d: need at least 2", c.rounds)
	}
	n := c.sizes[len(c.sizes)-1]
	pairs := pairedPairs()
	var spec lab.Spec
	for _, p := range pairs {
		spec.Pods = append(spec.Pods, p.client, p.server)
	}
	l, err := lab.New(ctx, spec, lab.Options{})
	if err != nil {
		return err
	}
	defer l.Close()
	for _, p := range pairs {
		p.cli, _ = l.NS(p.client.Key())
		p.srv, _ = l.NS(p.server.Key())
		iperf := exec.Command("ip", "netns", "exec", p.srv.Name(), "iperf3", "-s", "-p", fmt.Sprint(iperfPort))
		if err := iperf.Start(); err != nil {
			return err
		}
		defer func() { _ = iperf.Process.Kill(); _ = iperf.Wait() }()
		ln, err := serveRR(p.srv)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		defer ln.Close()
	}
	rs := pairedRuleset(pairs, n)
	time.Sleep(300 * time.Millisecond) // iperf3 servers listening

	for _, d := range c.planes {
		for _, ev := range c.flowEvents {
			open, label := d.open, d.name
			if !ev {
				if d.withoutEvents == nil {
					continue
				}
				open, label = d.withoutEvents, d.name+", flow events off"
			}
			err := func() (err error) {
				bk, err := open(ctx, backend.Options{NetNS: l.NodeNS().Path(), Name: "bench"})
				if err != nil {
					return err
				}
				defer func() { err = errors.Join(err, bk.Close(ctx)) }()
				if err := bk.Apply(ctx, rs); err != nil {
					return err
				}
				time.Sleep(settle)
				if err := checkPairs(pairs); err != nil {
					return err
				}
				return measurePaired(c, pairs, label, n, out)
			}()
			if err != nil {
				return fmt.Errorf("%s: %w", label, err)
			}
		}
	}
	return nil
}

// pairProbe is a connection attempt the configuration decides.
type pairProbe struct {
	from, to int
	port     uint16
	open     bool
	why      string
}

// pairProbes are the probes that show each server has its own
// configuration (pairs in pairedPairs' order): the empty servers let any
// client in; case (a)'s server lets its client in on every port and no
// other client; case (b)'s lets its client in on the measured ports only.
func pairProbes() []pairProbe {
	return []pairProbe{
		{0, 0, rrPort, true, "no policy"},
		{0, 0, echoPort, true, "no policy"},
		{1, 1, echoPort, true, "no policy"},
		{3, 1, rrPort, true, "no policy: any client"},
		{2, 2, rrPort, true, "case (a): its client on every port"},
		{2, 2, echoPort, true, "case (a): its client on every port"},
		{0, 2, rrPort, false, "case (a): no other client"},
		{3, 3, rrPort, true, "case (b): its client on the measured ports"},
		{3, 3, echoPort, false, "case (b): not on other ports"},
		{0, 3, rrPort, false, "case (b): no other client"},
	}
}

// checkPairs runs pairProbes: a probe whose outcome is not the one the
// configuration gives is an error (the pairs are not what the figures
// would say they are).
func checkPairs(pairs []*trafficPair) error {
	var errs []error
	for _, pr := range pairProbes() {
		from, to := pairs[pr.from], pairs[pr.to]
		ok, err := connects(from.cli, to.server.IPs[0], pr.port, time.Second)
		if err != nil {
			return err
		}
		if ok != pr.open {
			errs = append(errs, fmt.Errorf("client of %s -> server of %s port %d: connected %v, want %v (%s)",
				from.name, to.name, pr.port, ok, pr.open, pr.why))
		}
	}
	return errors.Join(errs...)
}

// connects reports whether a TCP connection from ns to dst:port is
// established within timeout.
func connects(ns *netns.NS, dst netip.Addr, port uint16, timeout time.Duration) (bool, error) {
	var ok bool
	err := ns.Do(func() error {
		d := resetDialer()
		d.Timeout = timeout
		c, err := d.Dial("tcp", netip.AddrPortFrom(dst, port).String())
		if err != nil {
			// Refused, timed out or unreachable: a policy's drop or
			// reject (a broken lab shows as an open probe that fails).
			return nil
		}
		ok = true
		return c.Close()
	})
	return ok, err
}

// measurePaired measures the pairs' RR, CRR and iperf3 in rounds and
// prints each round and the ratios to the first pair.
func measurePaired(c *config, pairs []*trafficPair, label string, n int, out io.Writer) error {
	for _, p := range pairs {
		err := p.cli.Do(func() (err error) {
			p.rr, err = net.DialTimeout("tcp", netip.AddrPortFrom(p.server.IPs[0], rrPort).String(), time.Second)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: rr: %w", p.name, err)
		}
	}
	defer func() {
		for _, p := range pairs {
			_ = p.rr.Close()
		}
	}()
	iperfSlice := c.iperfSlice
	if iperfSlice == 0 {
		iperfSlice = max(time.Second, c.slice.Round(time.Second))
	}
	buf := []byte{1}
	all := []pairedMetric{
		{key: "rr", name: "RR/s", format: "%.0f", measure: func(p *trafficPair) (float64, error) {
			return rate(c.slice, func() error {
				if _, err := p.rr.Write(buf); err != nil {
					return err
				}
				_, err := p.rr.Read(buf)
				return err
			})
		}},
		{key: "crr", name: "CRR/s", format: "%.0f", measure: func(p *trafficPair) (float64, error) {
			var r float64
			addr := netip.AddrPortFrom(p.server.IPs[0], rrPort).String()
			err := p.cli.Do(func() (err error) {
				d := resetDialer()
				r, err = rate(c.slice, func() error { return crrTransaction(&d, addr, buf) })
				return err
			})
			return r, err
		}},
		{key: "gbit", name: "Gbit/s", format: "%.2f", measure: func(p *trafficPair) (float64, error) {
			return iperfGbps(p.cli, p.server.IPs[0], iperfSlice)
		}},
	}
	var metrics []pairedMetric
	for _, m := range all {
		if c.metrics == nil || c.metrics[m.key] {
			metrics = append(metrics, m)
		}
	}
	fmt.Fprintf(out, "== paired per-packet cost (%s, %d policies/rules): %d rounds; slices: iperf3 %v, RR and CRR %v; load %s\n",
		label, n, c.rounds, iperfSlice, c.slice, loadavg())
	fmt.Fprintf(out, "  every server has its configuration: %d probes as expected\n", len(pairProbes()))
	ratios := make([][][]float64, len(metrics))
	abs := make([][][]float64, len(metrics))
	for mi, m := range metrics {
		var rounds [][]float64
		abs[mi] = make([][]float64, len(pairs))
		for r := range c.rounds {
			sum := make([]float64, len(pairs))
			for _, p := range roundOrder(len(pairs), r) {
				v, err := m.measure(pairs[p])
				if err != nil {
					return fmt.Errorf("%s %s: %w", m.name, pairs[p].name, err)
				}
				sum[p] += v
				abs[mi][p] = append(abs[mi][p], v)
			}
			rounds = append(rounds, sum)
			var line strings.Builder
			fmt.Fprintf(&line, "  %-6s round %2d", m.name, r+1)
			for p, pr := range pairs {
				fmt.Fprintf(&line, "  %s "+m.format, pr.name, sum[p]/2)
			}
			fmt.Fprintln(out, line.String())
		}
		ratios[mi] = roundRatios(rounds)
		// Each figure's own summary as soon as it is done: a later
		// figure's failure does not lose it.
		fmt.Fprintf(out, "  %s ratios against %q (load %s):", m.name, pairs[0].name, loadavg())
		for p, pr := range pairs[1:] {
			s := summarize(ratios[mi][p+1], uint64(1000*mi+p))
			fmt.Fprintf(out, "  %s %.3f (%.3f-%.3f)", pr.name, s.median, s.lo, s.hi)
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "load at the end: %s\n", loadavg())
	fmt.Fprintf(out, "paired medians of the slices (%s)\n", label)
	fmt.Fprintf(out, "%-16s", "pair")
	for _, m := range metrics {
		fmt.Fprintf(out, " %12s", m.name)
	}
	fmt.Fprintln(out)
	for p, pr := range pairs {
		fmt.Fprintf(out, "%-16s", pr.name)
		for mi, m := range metrics {
			fmt.Fprintf(out, " %12s", fmt.Sprintf(m.format, medianF(abs[mi][p])))
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "paired ratios against %q per round (%s): median [interquartile range] (bootstrap 95%% interval of the median)\n", pairs[0].name, label)
	fmt.Fprintf(out, "%-16s", "pair")
	for _, m := range metrics {
		fmt.Fprintf(out, " %-33s", "x"+m.name)
	}
	fmt.Fprintln(out)
	for p, pr := range pairs[1:] {
		fmt.Fprintf(out, "%-16s", pr.name)
		for mi := range metrics {
			s := summarize(ratios[mi][p+1], uint64(1000*mi+p))
			fmt.Fprintf(out, " %5.3f [%5.3f %5.3f] (%5.3f %5.3f)", s.median, s.q1, s.q3, s.lo, s.hi)
		}
		fmt.Fprintln(out)
	}
	return nil
}

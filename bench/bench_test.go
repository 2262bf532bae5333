package main

import (
	"bytes"
	"context"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/internal/benchset"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// TestHarnessSmoke runs the whole harness at toy sizes, for each
// dataplane: every figure the full run prints must come out.
func TestHarnessSmoke(t *testing.T) {
	for _, d := range []string{"nftables", "iptables"} {
		t.Run(d, func(t *testing.T) { harnessSmoke(t, d) })
	}
}

func harnessSmoke(t *testing.T, dataplane string) {
	netnstest.RequireRoot(t)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-small", "-reps", "1", "-duration", "1s", "-dataplane", dataplane}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"(" + dataplane + ", medians", "10 policies from scratch", "100 policies from scratch", "+1 pod on 100 policies",
		"label change on 100", `ratios against "empty"`, "a-10k-policies", "b-10k-rules"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
}

// TestTrafficEBPF runs the traffic figures of the eBPF dataplane at toy
// sizes with flow events both ways and the programs' statistics: every
// configuration comes out both ways, and the programs on the pair's hooks
// ran (their run time per run is not 0) in each but "no-table".
func TestTrafficEBPF(t *testing.T) {
	netnstest.RequireRoot(t)
	var out bytes.Buffer
	args := []string{"-only", "traffic", "-dataplane", "ebpf", "-small", "-reps", "2", "-duration", "1s", "-flowevents", "both", "-bpfstats"}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{`ratios against "empty/events=off"`, `% of the time (medians); ratios "empty" / config`} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		// "  rep N LABEL G Gbit/s RR RR/s CRR CRR/s | bpf ns/run I R C, time I% R% C%"
		if len(f) != 19 || f[0] != "rep" || f[10] != "bpf" {
			continue
		}
		seen[f[2]] = true
		for _, v := range append(f[12:15:15], f[16:]...) {
			v = strings.TrimRight(v, ",%")
			ns, err := strconv.ParseFloat(v, 64)
			// No dataplane, no programs: nothing ran.
			if err != nil || (ns > 0) != (f[2] != "no-table") {
				t.Errorf("%s: program run time %q: %s", f[2], v, line)
			}
		}
	}
	for _, cfg := range []string{"empty", "a-10k-policies", "b-10k-rules"} {
		for _, suffix := range []string{"", "/events=off"} {
			if !seen[cfg+suffix] {
				t.Errorf("no measurement of %s%s:\n%s", cfg, suffix, text)
			}
		}
	}
	t.Log("\n" + text)
}

// TestRoundOrder: every round measures each pair twice, at positions
// centred on the round's middle (linear drift weighs on all alike), and
// over k rounds each pair opens a round once.
func TestRoundOrder(t *testing.T) {
	for _, k := range []int{1, 2, 3, 4} {
		first := map[int]int{}
		for r := range 2 * k {
			order := roundOrder(k, r)
			if len(order) != 2*k {
				t.Fatalf("k=%d round %d: %v: want %d slices", k, r, order, 2*k)
			}
			posSum, count := map[int]int{}, map[int]int{}
			for i, p := range order {
				posSum[p] += i
				count[p]++
			}
			for p := range k {
				if count[p] != 2 || posSum[p] != 2*k-1 {
					t.Errorf("k=%d round %d: %v: pair %d at %d slices, positions summing to %d (want 2, %d)", k, r, order, p, count[p], posSum[p], 2*k-1)
				}
			}
			first[order[0]]++
		}
		for p := range k {
			if first[p] != 2 {
				t.Errorf("k=%d: pair %d opens %d of %d rounds, want 2", k, p, first[p], 2*k)
			}
		}
	}
	if got, want := roundOrder(3, 1), []int{1, 2, 0, 0, 2, 1}; !slices.Equal(got, want) {
		t.Errorf("roundOrder(3, 1) = %v, want %v", got, want)
	}
}

// TestRoundRatios: each pair's ratio to pair 0 is taken within a round;
// a drift that scales a whole round cancels.
func TestRoundRatios(t *testing.T) {
	rounds := [][]float64{{10, 9.5, 8}, {20, 19, 16}, {5, 5, 5}}
	got := roundRatios(rounds)
	want := [][]float64{{1, 1, 1}, {0.95, 0.95, 1}, {0.8, 0.8, 1}}
	for p := range want {
		for r := range want[p] {
			if math.Abs(got[p][r]-want[p][r]) > 1e-12 {
				t.Errorf("pair %d round %d: ratio %v, want %v", p, r, got[p][r], want[p][r])
			}
		}
	}
	if roundRatios(nil) != nil {
		t.Error("no rounds, ratios")
	}
}

// TestSummarize checks the quartiles on known figures and that the
// bootstrap interval of the median holds it, is narrower than the
// figures' range, shrinks to a point for constant figures and is
// reproducible.
func TestSummarize(t *testing.T) {
	v := []float64{9, 1, 8, 2, 7, 3, 6, 4, 5}
	s := summarize(v, 1)
	if s.median != 5 || s.q1 != 3 || s.q3 != 7 {
		t.Errorf("median %v, quartiles %v %v: want 5, 3 7", s.median, s.q1, s.q3)
	}
	if !(s.lo <= s.median && s.median <= s.hi) || s.lo < 1 || s.hi > 9 || s.lo == s.hi {
		t.Errorf("interval [%v %v] around median %v", s.lo, s.hi, s.median)
	}
	if again := summarize(v, 1); again != s {
		t.Errorf("same figures, same seed: %+v then %+v", s, again)
	}
	if q := quantile([]float64{1, 2}, 0.5); q != 1.5 {
		t.Errorf("median of 1, 2: %v", q)
	}
	c := summarize([]float64{0.97, 0.97, 0.97, 0.97}, 2)
	if c.lo != 0.97 || c.hi != 0.97 || c.median != 0.97 {
		t.Errorf("constant figures: %+v", c)
	}
	// 36 rounds spread evenly over 0.96±0.05: the interval is narrower
	// than the spread, and holds 0.96.
	var noisy []float64
	for i := range 36 {
		noisy = append(noisy, 0.96+0.05*float64(i*4%9-4)/4)
	}
	n := summarize(noisy, 3)
	if n.lo > 0.96 || n.hi < 0.96 || n.hi-n.lo > 0.05 {
		t.Errorf("noisy figures around 0.96: %+v", n)
	}
}

// TestPairedRuleset: in the one Ruleset of the paired figures, each
// server has exactly the ingress of its configuration in the sequential
// figures (benchset.Traffic), and the probes checkPairs runs before
// measuring expect what the reference model says of that Ruleset.
func TestPairedRuleset(t *testing.T) {
	const n = 200
	pairs := pairedPairs()
	rs := pairedRuleset(pairs, n)
	for _, p := range pairs {
		cfg := p.name
		if cfg == control {
			cfg = benchset.Empty
		}
		seq := benchset.Traffic(benchPod(p.client), benchPod(p.server), n)[cfg]
		key := p.server.Key()
		got, want := rs.Endpoints[key], seq.Endpoints[key]
		if got == nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: server endpoint %+v, sequential figures have %+v", p.name, got, want)
			continue
		}
		for _, tier := range want.Ingress.Tiers {
			for _, id := range tier.Policies {
				if !reflect.DeepEqual(rs.Policies[id], seq.Policies[id]) {
					t.Errorf("%s: policy %s differs from the sequential figures'", p.name, id)
				}
			}
		}
	}
	if got := len(rs.Policies["in:default/big"].Rules); got != n {
		t.Errorf("case (b): %d rules, want %d", got, n)
	}
	idx := model.NewIndex(rs)
	for _, pr := range pairProbes() {
		from, to := pairs[pr.from], pairs[pr.to]
		pkt := model.Packet{Src: from.client.IPs[0], Dst: to.server.IPs[0], Protocol: 6, SrcPort: 40000, DstPort: pr.port}
		if got := idx.Allowed(pkt); got != pr.open {
			t.Errorf("%s -> %s port %d (%s): model allows %v, probe expects %v", from.name, to.name, pr.port, pr.why, got, pr.open)
		}
	}
	// The measured ports are open on every pair.
	for _, p := range pairs {
		for _, port := range []uint16{iperfPort, rrPort} {
			pkt := model.Packet{Src: p.client.IPs[0], Dst: p.server.IPs[0], Protocol: 6, SrcPort: 40000, DstPort: port}
			if !idx.Allowed(pkt) {
				t.Errorf("%s: port %d denied", p.name, port)
			}
		}
	}
}

// TestTrafficPaired runs the paired figures briefly at toy sizes on each
// dataplane: the probes pass (each server has its configuration), every
// round of every figure is measured, and every ratio comes out as a
// positive median inside its interval.
func TestTrafficPaired(t *testing.T) {
	netnstest.RequireRoot(t)
	var out bytes.Buffer
	args := []string{"-only", "traffic", "-dataplane", "ebpf,nftables,iptables", "-small", "-paired", "-rounds", "2", "-slice", "100ms"}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	text := out.String()
	ratios := map[string]int{}
	rounds := 0
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "round" {
			rounds++
			continue
		}
		// "PAIR M [Q1 Q3] (LO HI)" three times.
		if len(f) != 16 || (f[0] != control && f[0] != benchset.Policies && f[0] != benchset.Rules) {
			continue
		}
		for i := 0; i < 3; i++ {
			var v [5]float64
			for j := range v {
				x, err := strconv.ParseFloat(strings.Trim(f[1+5*i+j], "[]()"), 64)
				if err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				v[j] = x
			}
			if !(v[0] > 0 && v[3] <= v[0] && v[0] <= v[4] && v[1] <= v[0] && v[0] <= v[2]) {
				t.Errorf("figure %d: %q", i, line)
			}
		}
		ratios[f[0]]++
	}
	// 3 dataplanes, 3 figures, 2 rounds.
	if rounds != 18 {
		t.Errorf("%d rounds printed, want 18:\n%s", rounds, text)
	}
	for _, name := range []string{control, benchset.Policies, benchset.Rules} {
		if ratios[name] != 3 {
			t.Errorf("%s: %d ratio lines, want 3:\n%s", name, ratios[name], text)
		}
	}
	if c := strings.Count(text, "every server has its configuration"); c != 3 {
		t.Errorf("probes passed %d times, want 3", c)
	}
	t.Log("\n" + text)
}

// TestPairedFlags: -metrics picks the paired figures, -iperfslice must be
// whole seconds; a wrong value is an error naming the flag.
func TestPairedFlags(t *testing.T) {
	got, err := parseMetrics(" gbit,rr ")
	if err != nil || !reflect.DeepEqual(got, map[string]bool{"gbit": true, "rr": true}) {
		t.Errorf("parseMetrics: %v, %v", got, err)
	}
	for _, args := range [][]string{
		{"-metrics", "pps"},
		{"-metrics", "rr,"},
		{"-iperfslice", "1500ms"},
		{"-iperfslice", "500ms"},
	} {
		err := run(context.Background(), append([]string{"-only", "traffic", "-paired"}, args...), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: error %v, want one naming %s", args, err, args[0])
		}
	}
}

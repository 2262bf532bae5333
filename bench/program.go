package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns"
)

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(fs []float64) float64 {
	s := slices.Clone(fs)
	slices.Sort(s)
	return s[len(s)/2]
}

// freshBackend opens a backend of d in a new, empty namespace.
func freshBackend(ctx context.Context, d dataplane, tag string) (backend.Backend, func(), error) {
	ns, err := netns.Create(fmt.Sprintf("cxbench-%s-%d", tag, time.Now().UnixNano()%1e9))
	if err != nil {
		return nil, nil, err
	}
	b, err := d.open(ctx, backend.Options{NetNS: ns.Path()})
	if err != nil {
		_ = ns.Delete()
		return nil, nil, err
	}
	return b, func() { _ = b.Close(ctx); _ = ns.Delete() }, nil
}

func benchProgram(ctx context.Context, c *config, d dataplane, out io.Writer) error {
	fmt.Fprintf(out, "== programming a node of %d pods (%s, medians of %d)\n", c.pods, d.name, c.reps)
	fmt.Fprintf(out, "%-28s %12s %10s %12s %12s\n", "what", "median", "messages", "render", "kernel")
	var largest int
	for _, n := range c.sizes {
		var times, renders, kernels []time.Duration
		var msgs int
		for range c.reps {
			rs := clusterRuleset(c.pods, n)
			b, done, err := freshBackend(ctx, d, "p")
			if err != nil {
				return err
			}
			start := time.Now()
			err = b.Apply(ctx, rs)
			times = append(times, time.Since(start))
			st := d.stats(b)
			msgs = st.messages
			renders, kernels = append(renders, st.render), append(kernels, st.kernel)
			done()
			if err != nil {
				return fmt.Errorf("%d policies: %w", n, err)
			}
		}
		fmt.Fprintf(out, "%-28s %12v %10d %12v %12v\n", fmt.Sprintf("%d policies from scratch", n), median(times).Round(time.Microsecond), msgs,
			median(renders).Round(time.Microsecond), median(kernels).Round(time.Microsecond))
		largest = n
	}

	// On top of the largest: a new pod, and a label change (one pod joins
	// one selector's set).
	b, done, err := freshBackend(ctx, d, "i")
	if err != nil {
		return err
	}
	defer done()
	base := clusterRuleset(c.pods, largest)
	if err := b.Apply(ctx, base); err != nil {
		return err
	}
	var podTimes, labelTimes, podK, labelK []time.Duration
	var podMsgs, labelMsgs int
	for i := range c.reps {
		// The compiler shares what did not change between one Ruleset and
		// the next; so does the bench.
		withPod := shallowCopy(base)
		p := c.pods + i
		var pols []compile.PolicyID
		for _, tp := range withPod.Endpoints[fmt.Sprintf("ns%d/pod%d", p%11, p%11)].Ingress.Tiers {
			pols = append(pols, tp.Policies...)
		}
		addPod(withPod, p, pols, "profile:kns")
		start := time.Now()
		if err := b.Apply(ctx, withPod); err != nil {
			return err
		}
		podTimes = append(podTimes, time.Since(start))
		podMsgs = d.stats(b).messages
		podK = append(podK, d.stats(b).kernel)
		if err := b.Apply(ctx, base); err != nil {
			return err
		}

		relabel := shallowCopy(base)
		s := *relabel.Sets["sel:app == 'a1'"]
		s.Nets = append(slices.Clone(s.Nets), netip.PrefixFrom(podAddr(c.pods+50+i), 32))
		relabel.Sets[s.ID] = &s
		start = time.Now()
		if err := b.Apply(ctx, relabel); err != nil {
			return err
		}
		labelTimes = append(labelTimes, time.Since(start))
		labelMsgs = d.stats(b).messages
		labelK = append(labelK, d.stats(b).kernel)
		if err := b.Apply(ctx, base); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "%-28s %12v %10d %12s %12v\n", fmt.Sprintf("+1 pod on %d policies", largest), median(podTimes).Round(time.Microsecond), podMsgs, "", median(podK).Round(time.Microsecond))
	fmt.Fprintf(out, "%-28s %12v %10d %12s %12v\n", fmt.Sprintf("label change on %d", largest), median(labelTimes).Round(time.Microsecond), labelMsgs, "", median(labelK).Round(time.Microsecond))
	return nil
}

// shallowCopy returns a Ruleset sharing every set, policy and endpoint of
// rs, with maps of its own.
func shallowCopy(rs *compile.Ruleset) *compile.Ruleset {
	out := *rs
	out.Sets = maps.Clone(rs.Sets)
	out.Policies = maps.Clone(rs.Policies)
	out.Endpoints = maps.Clone(rs.Endpoints)
	return &out
}

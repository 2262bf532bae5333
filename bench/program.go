package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/podnet"
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
	// one selector's set). The node is a lab with two real pods: a client
	// the selector "app == 'a1'" picks, and a pod that joins the node
	// (its veth exists, the Ruleset does not know it yet, so its traffic
	// is dropped) with the policies of its namespace. After each timed
	// Apply that adds it, every probe between the two must come out as
	// the model says: the new pod is enforced when Apply returns. With
	// d.freshVeth the joiner's veth is removed and created again (the CNI
	// plugin's plumbing: veth, peer into the pod's namespace, addresses,
	// routes) right before each Apply that registers it.
	if err := benchNewPod(ctx, c, d, d.name, d.open, largest, out, true); err != nil {
		return err
	}
	for _, v := range d.variants {
		if err := benchNewPod(ctx, c, d, d.name+", "+v.name, v.open, largest, out, false); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
	}
	return nil
}

// benchNewPod measures "+1 pod" (and, with label, the label change) on
// top of the largest Ruleset, with backends opened by open.
func benchNewPod(ctx context.Context, c *config, d dataplane, name string, open func(context.Context, backend.Options) (backend.Backend, error),
	largest int, out io.Writer, label bool) error {
	client := lab.Pod{Namespace: "bench", Name: "client", IPs: []netip.Addr{netip.MustParseAddr("10.66.0.1")},
		Ports: []lab.Port{{Protocol: 6, Port: 1001}}}
	joiner := lab.Pod{Namespace: "ns1", Name: "joiner", IPs: []netip.Addr{netip.MustParseAddr("10.66.0.2")},
		Ports: []lab.Port{{Protocol: 6, Port: 1001}, {Protocol: 6, Port: 1003}}}
	l, err := lab.New(ctx, lab.Spec{Pods: []lab.Pod{client, joiner}}, lab.Options{})
	if err != nil {
		return err
	}
	defer l.Close()
	b, err := open(ctx, backend.Options{NetNS: l.NodeNS().Path(), Name: "bench"})
	if err != nil {
		return err
	}
	defer b.Close(ctx)
	base := clusterRuleset(c.pods, largest)
	a1 := *base.Sets["sel:app == 'a1'"]
	a1.Nets = append(slices.Clone(a1.Nets), netip.PrefixFrom(client.IPs[0], 32))
	base.Sets[a1.ID] = &a1
	addLabPod(base, client, nil)
	if err := b.Apply(ctx, base); err != nil {
		return err
	}
	joinerNS, _ := l.NS(joiner.Key())
	var podTimes, labelTimes, podK, labelK []time.Duration
	var podMsgs, labelMsgs, probes, allowed int
	for i := range c.reps {
		// The compiler shares what did not change between one Ruleset and
		// the next; so does the bench.
		withPod := shallowCopy(base)
		var pols []compile.PolicyID
		for _, tp := range withPod.Endpoints["ns1/pod1"].Ingress.Tiers {
			pols = append(pols, tp.Policies...)
		}
		addLabPod(withPod, joiner, pols)
		if d.freshVeth {
			if err := podnet.Teardown(ctx, l.NodeNS(), joiner.Interface()); err != nil {
				return err
			}
			if err := podnet.Setup(ctx, l.NodeNS(), joinerNS, podnet.Config{HostIfName: joiner.Interface(), Addrs: joiner.IPs}); err != nil {
				return err
			}
		}
		start := time.Now()
		if err := b.Apply(ctx, withPod); err != nil {
			return err
		}
		podTimes = append(podTimes, time.Since(start))
		podMsgs = d.stats(b).messages
		podK = append(podK, d.stats(b).kernel)
		n, ok, err := judged(ctx, l, withPod)
		if err != nil {
			return fmt.Errorf("+1 pod, rep %d: %w", i+1, err)
		}
		probes, allowed = n, ok
		if err := b.Apply(ctx, base); err != nil {
			return err
		}
		if !label {
			continue
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
	what := fmt.Sprintf("+1 pod on %d policies", largest)
	if d.freshVeth {
		what = fmt.Sprintf("+1 pod (new veth) on %d", largest)
	}
	if name != d.name {
		fmt.Fprintf(out, "(%s)\n", name)
	}
	fmt.Fprintf(out, "%-28s %12v %10d %12s %12v\n", what, median(podTimes).Round(time.Microsecond), podMsgs, "", median(podK).Round(time.Microsecond))
	if label {
		fmt.Fprintf(out, "%-28s %12v %10d %12s %12v\n", fmt.Sprintf("label change on %d", largest), median(labelTimes).Round(time.Microsecond), labelMsgs, "", median(labelK).Round(time.Microsecond))
	}
	fmt.Fprintf(out, "+1 pod judged as the model says right after each Apply: %d probes, %d allowed, %d denied\n", probes, allowed, probes-allowed)
	return nil
}

// judged probes every pair of the lab's pods (flushing conntrack first)
// and compares with the model's verdicts for rs. It returns how many
// probes ran and how many the model allows; both verdicts must occur
// for the check to mean anything.
func judged(ctx context.Context, l *lab.Lab, rs *compile.Ruleset) (n, allowed int, err error) {
	if err := l.FlushConntrack(ctx); err != nil {
		return 0, 0, err
	}
	probes := l.Probes()
	m, err := l.Run(ctx, probes)
	if err != nil {
		return 0, 0, err
	}
	want := lab.Expected(rs, probes)
	if m, err = l.Recheck(ctx, m, want); err != nil {
		return 0, 0, err
	}
	if diff := m.Diff(want); len(diff) > 0 {
		return 0, 0, fmt.Errorf("the kernel does not judge as the model: %s", strings.Join(diff, "; "))
	}
	for _, a := range want.Allowed {
		if a {
			allowed++
		}
	}
	if allowed == 0 || allowed == len(probes) {
		return 0, 0, fmt.Errorf("%d of %d probes allowed: the check needs both verdicts", allowed, len(probes))
	}
	return len(probes), allowed, nil
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

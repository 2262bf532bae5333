package resource

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/reach"
	"github.com/calyxnet/calyx/policy"
)

// DefaultMaxReachPods bounds the reachability comparison of Simulate: it
// probes every ordered pair of pods for every declared port, twice.
const DefaultMaxReachPods = 300

// SimulateOptions are the optional knobs of Simulate.
type SimulateOptions struct {
	// Node is the node whose Ruleset is compared; "" is the virtual node
	// holding every endpoint of the cluster.
	Node string
	// MaxReachPods skips the reachability comparison above this many
	// pods; 0 means DefaultMaxReachPods, negative skips it always.
	MaxReachPods int
}

// Effect is what a set of changes does to enforcement.
type Effect struct {
	// Node is the node Delta is for ("" for every endpoint).
	Node string
	// Delta is the difference between the node's Rulesets before and
	// after.
	Delta *compile.Delta
	// Reach lists the pod pairs and probes whose verdict changes, sorted
	// by probe, source, destination.
	Reach []ReachChange
	// ReachSkipped says why Reach was not computed ("" when it was).
	ReachSkipped string
	// Problems are objects the new state would hold that do not fit it
	// (a policy in a tier that does not exist): the dataplane would
	// refuse or ignore them.
	Problems error
}

// ReachChange is one connection whose verdict changes.
type ReachChange struct {
	From, To string // namespace/name
	Probe    reach.Probe
	// Allowed is the verdict after the change (before it was the
	// opposite).
	Allowed bool
}

// String prints "+ shop/web -> shop/db 5432/TCP" (now allowed) or "- …"
// (now denied).
func (r ReachChange) String() string {
	sign := "-"
	if r.Allowed {
		sign = "+"
	}
	return fmt.Sprintf("%s %s -> %s %s", sign, r.From, r.To, r.Probe)
}

// Simulate compiles the current objects and the objects after changes
// (refused changes left out) and compares: the Ruleset delta of the node,
// and with the reference model, which pod pairs gain or lose
// reachability on the ports the pods declare.
func Simulate(ctx context.Context, current []policy.Object, changes []Change, opts SimulateOptions) (*Effect, error) {
	before, _ := buildSet(current)
	after, _ := buildSet(current)
	for _, c := range changes {
		switch {
		case c.Err != nil:
		case c.New != nil:
			if _, err := after.Upsert(c.New); err != nil {
				return nil, err
			}
		case c.Action == Deleted:
			after.Delete(c.Key)
		}
	}
	eff := &Effect{Node: opts.Node, Problems: after.Validate()}
	oldRS, err := compile.New(before, opts.Node).Compile()
	if err != nil {
		return nil, fmt.Errorf("compile the current state: %w", err)
	}
	newRS, err := compile.New(after, opts.Node).Compile()
	if err != nil {
		return nil, fmt.Errorf("compile the new state: %w", err)
	}
	eff.Delta = compile.Diff(oldRS, newRS)

	limit := opts.MaxReachPods
	if limit == 0 {
		limit = DefaultMaxReachPods
	}
	oldPods, newPods := reach.PodsFromSet(before), reach.PodsFromSet(after)
	switch {
	case limit < 0:
		eff.ReachSkipped = "not asked for"
	case len(oldPods) > limit || len(newPods) > limit:
		eff.ReachSkipped = fmt.Sprintf("%d pods, more than %d", max(len(oldPods), len(newPods)), limit)
	default:
		if opts.Node != "" {
			// Reachability is a cluster question: every pod's policy.
			if oldRS, err = compile.New(before, "").Compile(); err != nil {
				return nil, err
			}
			if newRS, err = compile.New(after, "").Compile(); err != nil {
				return nil, err
			}
		}
		eff.Reach, err = reachChanges(ctx, oldRS, newRS, oldPods, newPods)
		if err != nil {
			return nil, err
		}
	}
	return eff, nil
}

// buildSet puts objects in a Set, leaving out those it refuses (the
// store held them, so they were valid on their own).
func buildSet(objs []policy.Object) (*policy.Set, error) {
	set := policy.NewSet()
	var first error
	for _, o := range objs {
		if _, err := set.Upsert(o); err != nil && first == nil {
			first = err
		}
	}
	return set, first
}

func reachChanges(ctx context.Context, oldRS, newRS *compile.Ruleset, oldPods, newPods []reach.Pod) ([]ReachChange, error) {
	byID := func(pods []reach.Pod) map[string]*reach.Pod {
		m := map[string]*reach.Pod{}
		for i := range pods {
			m[pods[i].ID()] = &pods[i]
		}
		return m
	}
	olds, news := byID(oldPods), byID(newPods)
	var ids []string
	var all []reach.Pod
	for _, list := range [][]reach.Pod{newPods, oldPods} {
		for _, p := range list {
			if !slices.Contains(ids, p.ID()) {
				ids = append(ids, p.ID())
				all = append(all, p)
			}
		}
	}
	slices.Sort(ids)
	probes := reach.DeclaredProbes(all)
	oldP, newP := reach.ModelProber{Index: model.NewIndex(oldRS)}, reach.ModelProber{Index: model.NewIndex(newRS)}
	verdict := func(p reach.ModelProber, pods map[string]*reach.Pod, from, to string, pr reach.Probe) (bool, error) {
		f, t := pods[from], pods[to]
		if f == nil || t == nil {
			return false, nil
		}
		return p.Probe(ctx, f, t, pr)
	}
	var out []ReachChange
	for _, pr := range probes {
		for _, from := range ids {
			for _, to := range ids {
				if from == to {
					continue
				}
				was, err := verdict(oldP, olds, from, to, pr)
				if err != nil {
					return nil, err
				}
				is, err := verdict(newP, news, from, to, pr)
				if err != nil {
					return nil, err
				}
				if was != is {
					out = append(out, ReachChange{From: from, To: to, Probe: pr, Allowed: is})
				}
			}
		}
	}
	return out, nil
}

// String prints the effect: the dataplane delta, then the reachability
// changes.
func (e *Effect) String() string {
	var b strings.Builder
	node := e.Node
	if node == "" {
		node = "all endpoints"
	}
	if e.Delta.Empty() {
		fmt.Fprintf(&b, "dataplane (%s): no change\n", node)
	} else {
		fmt.Fprintf(&b, "dataplane (%s):\n", node)
		for _, l := range strings.Split(strings.TrimSuffix(e.Delta.String(), "\n"), "\n") {
			b.WriteString("  " + l + "\n")
		}
	}
	switch {
	case e.ReachSkipped != "":
		fmt.Fprintf(&b, "reachability: not compared (%s)\n", e.ReachSkipped)
	case len(e.Reach) == 0:
		b.WriteString("reachability: no change\n")
	default:
		b.WriteString("reachability (+ now allowed, - now denied):\n")
		for _, r := range e.Reach {
			b.WriteString("  " + r.String() + "\n")
		}
	}
	return b.String()
}

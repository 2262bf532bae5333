package compile_test

import (
	"strings"
	"testing"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
	"github.com/calyxnet/calyx/policy"
	"pgregory.net/rapid"
)

// TestModelAgreesWithOracle: for random clusters (namespaces, pods, tiers,
// network sets, Calico and Kubernetes policies) and random packets, the
// compiled Ruleset judged by the model gives the verdict of the independent
// oracle that reads the policy model directly.
func TestModelAgreesWithOracle(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cluster := testgen.Cluster(6, 6).Draw(t, "cluster")
		set := testgen.LoadSet(t, cluster)
		rs, err := compile.New(set, "").Compile()
		if err != nil {
			t.Fatalf("compile: %v", err)
		}
		idx := model.NewIndex(rs)
		oracle := testgen.NewOracle(set)
		for i := range 40 {
			p := testgen.Packet(cluster).Draw(t, "packet")
			if got, want := idx.Allowed(p), oracle.Allowed(p); got != want {
				v := idx.Verdict(p)
				t.Fatalf("packet %d: model says %v, oracle says %v\n%s\nruleset:\n%s\nyaml:\n%s", i, got, want, v.String(), rs, cluster.YAML())
			}
		}
	})
}

// TestIncrementalEqualsFull: after any random sequence of upserts and
// deletes, the Ruleset the Compiler maintains incrementally is identical
// to a full compile of the same set, and the delta it reports is exactly
// the difference between the previous and the new Ruleset.
func TestIncrementalEqualsFull(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		node := rapid.SampledFrom([]string{"", "node1"}).Draw(t, "node")
		a := testgen.Cluster(5, 5).Draw(t, "cluster a")
		b := testgen.Cluster(5, 5).Draw(t, "cluster b")
		set := testgen.LoadSet(t, a)
		c := compile.New(set, node)
		prev, err := c.Compile()
		if err != nil {
			t.Fatalf("compile: %v", err)
		}
		pool := append(append([]string(nil), a.Docs...), b.Docs...)
		steps := rapid.IntRange(1, 12).Draw(t, "steps")
		for step := range steps {
			var ch policy.Change
			objs := set.Objects()
			if len(objs) > 0 && rapid.IntRange(0, 3).Draw(t, "delete?") == 0 {
				victim := rapid.SampledFrom(objs).Draw(t, "victim")
				ch = set.Delete(policy.KeyOf(victim))
			} else {
				doc := rapid.SampledFrom(pool).Draw(t, "doc")
				res, err := policy.DecodeWithOptions(strings.NewReader(doc), "step.yaml", policy.DecodeOptions{})
				if err != nil || len(res.Objects) != 1 {
					t.Fatalf("decode %q: %v", doc, err)
				}
				ch, err = set.UpsertAt(res.Objects[0], res.Origins[0])
				if err != nil {
					t.Fatalf("upsert: %v", err)
				}
			}
			got, delta, err := c.Update(ch)
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			want, err := compile.New(set, node).Compile()
			if err != nil {
				t.Fatalf("full compile: %v", err)
			}
			if got.String() != want.String() {
				t.Fatalf("step %d (%s %s): incremental differs from full compile\nincremental:\n%s\nfull:\n%s", step, ch.Op, ch.Key, got, want)
			}
			if d := compile.Diff(prev, got); d.String() != delta.String() {
				t.Fatalf("step %d: reported delta\n%s\ndiffers from the real one\n%s", step, delta, d)
			}
			prev = got
		}
	})
}

// TestOptimizationKeepsVerdicts: dropping shadowed rules never changes a
// verdict: the optimised and unoptimised Rulesets of random clusters judge
// every packet alike.
func TestOptimizationKeepsVerdicts(t *testing.T) {
	dropped := 0
	rapid.Check(t, func(t *rapid.T) {
		cluster := testgen.Cluster(5, 8).Draw(t, "cluster")
		set := testgen.LoadSet(t, cluster)
		opt, err := compile.New(set, "").Compile()
		if err != nil {
			t.Fatalf("compile: %v", err)
		}
		raw, err := compile.New(set, "", compile.WithoutOptimization()).Compile()
		if err != nil {
			t.Fatalf("compile: %v", err)
		}
		for id, p := range raw.Policies {
			dropped += len(p.Rules) - len(opt.Policies[id].Rules)
		}
		oi, ri := model.NewIndex(opt), model.NewIndex(raw)
		for range 40 {
			p := testgen.Packet(cluster).Draw(t, "packet")
			if oi.Allowed(p) != ri.Allowed(p) {
				t.Fatalf("optimisation changed the verdict of %s\noptimised:\n%s\nunoptimised:\n%s", p, opt, raw)
			}
		}
	})
	if dropped == 0 {
		t.Fatalf("no rule was ever dropped: the test proves nothing about optimisation")
	}
	t.Logf("%d shadowed rules dropped", dropped)
}

// TestDeterministic: the same objects, upserted in any order, compile to
// byte-identical Rulesets.
func TestDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cluster := testgen.Cluster(5, 5).Draw(t, "cluster")
		set := testgen.LoadSet(t, cluster)
		objs := set.Objects()
		perm := rapid.Permutation(objs).Draw(t, "order")
		other := policy.NewSet()
		for _, o := range perm {
			if _, err := other.Upsert(o); err != nil {
				t.Fatalf("upsert: %v", err)
			}
		}
		a, err := compile.New(set, "node1").Compile()
		if err != nil {
			t.Fatal(err)
		}
		b, err := compile.New(other, "node1").Compile()
		if err != nil {
			t.Fatal(err)
		}
		// Origins differ (the second set has none), so compare without them.
		if stripSources(a.String()) != stripSources(b.String()) {
			t.Fatalf("order changed the output:\n%s\n---\n%s", a, b)
		}
	})
}

func stripSources(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.LastIndex(line, " ("); i > 0 && strings.HasSuffix(line, ")") {
			line = line[:i]
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

package compile_test

import (
	"testing"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
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

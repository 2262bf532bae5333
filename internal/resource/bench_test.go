package resource_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore/memory"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/internal/resource"
	"github.com/calyxnet/calyx/internal/testgen"
	"github.com/calyxnet/calyx/policy"
)

// benchSimulate times the server dry run of one new policy: Plan, then
// Simulate against the store's objects.
func benchSimulate(b *testing.B, o testgen.ScaleOptions, node string) {
	objs := testgen.ScaleCluster(o)
	s, err := memory.New(objs...)
	require.NoError(b, err)
	change := storetest.MustDecode(b, `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: isolate-db, namespace: team-000}
spec:
  selector: tier == 'db'
  types: [Ingress]
`)
	ctx := context.Background()
	for b.Loop() {
		items, err := s.List(ctx)
		require.NoError(b, err)
		current := make([]policy.Object, len(items))
		for i, it := range items {
			current[i] = it.Object
		}
		changes, err := resource.Plan(ctx, s, resource.OpApply, change, resource.Options{})
		require.NoError(b, err)
		eff, err := resource.Simulate(ctx, current, changes, resource.SimulateOptions{Node: node})
		require.NoError(b, err)
		require.False(b, eff.Delta.Empty())
	}
}

// BenchmarkSimulateLarge: 10,000 pods and 10,000 namespaced policies; the
// dataplane delta of node0 (110 pods); reachability not compared (too
// many pods).
func BenchmarkSimulateLarge(b *testing.B) {
	benchSimulate(b, testgen.ScaleOptions{Namespaces: 100, PodsPerNamespace: 100, AppsPerNamespace: 10, PoliciesPerNamespace: 100, LocalPods: 110}, "node0")
}

// BenchmarkSimulateReach: 300 pods, 600 policies, reachability compared
// on every declared port.
func BenchmarkSimulateReach(b *testing.B) {
	benchSimulate(b, testgen.ScaleOptions{Namespaces: 3, PodsPerNamespace: 100, AppsPerNamespace: 10, PoliciesPerNamespace: 200, LocalPods: 110}, "")
}

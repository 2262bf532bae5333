package testgen

import (
	"testing"

	"github.com/calyxnet/calyx/policy"
)

// Every object of the scale cluster is distinct: the figures count what
// the options say.
func TestScaleClusterCounts(t *testing.T) {
	o := ScaleOptions{Namespaces: 3, PodsPerNamespace: 20, AppsPerNamespace: 10, PoliciesPerNamespace: 20, LocalPods: 5}
	seen := map[policy.ObjectKey]bool{}
	policies := 0
	for _, obj := range ScaleCluster(o) {
		k := policy.KeyOf(obj)
		if seen[k] {
			t.Fatalf("%s twice", k)
		}
		seen[k] = true
		switch k.Kind {
		case policy.KindNetworkPolicy, policy.KindK8sNetworkPolicy:
			policies++
		}
	}
	if want := o.Namespaces * o.PoliciesPerNamespace; policies != want {
		t.Fatalf("%d namespaced policies, want %d", policies, want)
	}
}

//go:build linux

package ebpf

import (
	"maps"
	"testing"

	"github.com/calyxnet/calyx/compile"
)

// BenchmarkPlanNewPod: the Go side of one pod more on 10,000 policies:
// generating the plan with the cache of the previous one (no kernel).
//
//	go test -run '^$' -bench PlanNewPod ./backend/ebpf
func BenchmarkPlanNewPod(b *testing.B) {
	rs := clusterRuleset(110, 10000)
	x, cache := newIDs(), newProgCache()
	cfg := config{timeouts: DefaultTimeouts()}
	if _, err := makePlan(rs, x, cfg, cache); err != nil {
		b.Fatal(err)
	}
	more := *rs
	more.Endpoints = maps.Clone(rs.Endpoints)
	more.Sets = maps.Clone(rs.Sets)
	var pols []compile.PolicyID
	for _, t := range rs.Endpoints[benchPodKey(3)].Ingress.Tiers {
		pols = append(pols, t.Policies...)
	}
	addBenchPod(&more, 110+3, pols)
	b.ResetTimer()
	for i := range b.N {
		target := rs
		if i%2 == 0 {
			target = &more
		}
		if _, err := makePlan(target, x, cfg, cache); err != nil {
			b.Fatal(err)
		}
	}
}

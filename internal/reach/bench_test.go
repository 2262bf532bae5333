package reach_test

import (
	"context"
	"testing"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/reach"
	"github.com/calyxnet/calyx/internal/testgen"
	"github.com/calyxnet/calyx/policy"
)

// BenchmarkReach1000: the matrix of 1,000 pods (10 namespaces of 100, 200
// policies) for one probe, 10^6 ordered pairs, judged by the model on the
// virtual node. Goal ≤ 10 s.
func BenchmarkReach1000(b *testing.B) {
	set := policy.NewSet()
	opts := testgen.ScaleOptions{Namespaces: 10, PodsPerNamespace: 100, AppsPerNamespace: 10, PoliciesPerNamespace: 20, LocalPods: 1000}
	for _, obj := range testgen.ScaleCluster(opts) {
		if _, err := set.Upsert(obj); err != nil {
			b.Fatal(err)
		}
	}
	rs, err := compile.New(set, "").Compile()
	if err != nil {
		b.Fatal(err)
	}
	pods := reach.PodsFromSet(set)
	probes := []reach.Probe{{Port: 8080, Protocol: 6}}
	idx := model.NewIndex(rs)
	var allowed int
	for b.Loop() {
		m, err := reach.Run(context.Background(), reach.ModelProber{Index: idx}, pods, probes, 0)
		if err != nil {
			b.Fatal(err)
		}
		allowed = 0
		for _, row := range m.Allowed[0] {
			for _, ok := range row {
				if ok {
					allowed++
				}
			}
		}
	}
	b.ReportMetric(float64(len(pods)*len(pods)), "pairs")
	b.ReportMetric(float64(allowed), "allowed")
}

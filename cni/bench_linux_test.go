//go:build linux

package cni_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend/nftables"
)

// BenchmarkAddDel drives the built plugin through libcni as a runtime
// would: one ADD (IPAM, veth, registering with the agent and waiting for
// enforcement) and one DEL per iteration, and reports the latency
// percentiles of each.
// The agent either reports enforced at once (memory) or is the real node
// agent (internal/agent), which compiles the node's policy and applies it
// with the nftables backend first.
func BenchmarkAddDel(b *testing.B) {
	b.Run("agent=memory", func(b *testing.B) { benchAddDel(b, newEnv(b)) })
	b.Run("agent=calyx-nftables", func(b *testing.B) {
		e, _, _ := newPolicedEnv(b, nftables.Open)
		benchAddDel(b, e)
	})
}

func benchAddDel(b *testing.B, e *env) {
	ctx := b.Context()
	var adds, dels []time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		p := e.newPod(fmt.Sprintf("bench-%d", i))
		i++
		b.StartTimer()
		t0 := time.Now()
		_, err := e.add(ctx, p)
		t1 := time.Now()
		require.NoError(b, err)
		require.NoError(b, e.del(ctx, p))
		adds, dels = append(adds, t1.Sub(t0)), append(dels, time.Since(t1))
	}
	report := func(name string, ds []time.Duration) {
		slices.Sort(ds)
		pct := func(q float64) float64 {
			return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))].Microseconds()) / 1000
		}
		b.ReportMetric(pct(0.50), name+"-p50-ms")
		b.ReportMetric(pct(0.99), name+"-p99-ms")
	}
	report("add", adds)
	report("del", dels)
}

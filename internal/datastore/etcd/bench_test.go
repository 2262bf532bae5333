package etcd

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/internal/etcdtest"
	"github.com/calyxnet/calyx/policy"
)

// fill stores n GlobalNetworkPolicies, 100 to a transaction.
func fill(b *testing.B, s *Store, n int) {
	b.Helper()
	var ops []clientv3.Op
	for i := range n {
		obj := storetest.MustDecode(b, fmt.Sprintf(`apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p%05d}
spec:
  selector: app == 'a%d'
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'b%d'}, destination: {ports: [%d]}}]
`, i, i%100, i%37, 1+i%1000))[0]
		obj, value, err := encode(obj)
		require.NoError(b, err)
		ops = append(ops, clientv3.OpPut(s.Key(policy.KeyOf(obj)), string(value)))
		if len(ops) == 100 || i == n-1 {
			_, err := s.c.Txn(b.Context()).Then(ops...).Commit()
			require.NoError(b, err)
			ops = ops[:0]
		}
	}
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	url := etcdtest.Start(b)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second})
	require.NoError(b, err)
	b.Cleanup(func() { c.Close() })
	s := New(c, Options{})
	fill(b, s, 10000)
	return s
}

// BenchmarkWatchSync is the time from Watch to EventSynced over 10,000
// policies.
func BenchmarkWatchSync(b *testing.B) {
	s := benchStore(b)
	for b.Loop() {
		ctx, cancel := context.WithCancel(b.Context())
		ch, err := s.Watch(ctx)
		require.NoError(b, err)
		require.Len(b, storetest.UntilSynced(b, ch, time.Minute), 10000)
		cancel()
		for range ch {
		}
	}
}

// BenchmarkApplyToEvent is the time from Apply (what calyxctl apply does)
// to the watching agent's event, with 10,000 policies stored; p50 and p99
// are reported. etcd keeps its data on disk (fsync included).
func BenchmarkApplyToEvent(b *testing.B) {
	s := benchStore(b)
	ch, err := s.Watch(b.Context())
	require.NoError(b, err)
	storetest.UntilSynced(b, ch, time.Minute)
	key := policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "p00042"}
	it, err := s.Get(b.Context(), key)
	require.NoError(b, err)
	obj := it.Object
	cpu0 := cpuTime()
	var lat []time.Duration
	for b.Loop() {
		obj.SetLabels(map[string]string{"change": fmt.Sprint(len(lat))})
		start := time.Now()
		w, err := s.Apply(b.Context(), obj)
		require.NoError(b, err)
		for {
			ev := storetest.Next(b, ch, time.Minute)
			if ev.Type == datastore.EventUpsert && ev.Item.Revision == w.Revision {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(len(lat)), "cpu-ms/op")
}

// cpuTime is the process's user and system CPU time so far: a figure the
// load of a shared machine does not inflate as it does wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// Benchmarks report allocs/s next to ns/op. Reproduce the figures with
//
//	go test -run='^$' -bench=. -benchtime=2000x ./ipam/
//
// (etcd benchmarks need /usr/bin/etcd).

// assignN runs n AutoAssigns of one address each on node, spread over
// workers goroutines, with unique handles.
func assignN(b *testing.B, a *Allocator, node string, n, workers int, prefix string) {
	b.Helper()
	ctx := context.Background()
	var next atomic.Int64
	var g errgroup.Group
	for range workers {
		g.Go(func() error {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return nil
				}
				if _, err := a.AutoAssign(ctx, AssignRequest{Handle: fmt.Sprint(prefix, i), Node: node, IPv4: 1}); err != nil {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

func reportRate(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "allocs/s")
}

func benchPool(b *testing.B, a *Allocator, cidr string, bs int) {
	b.Helper()
	if err := a.UpsertPool(context.Background(), Pool{Name: "bench", CIDR: netip.MustParsePrefix(cidr), BlockSize: bs}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAutoAssignBolt measures one node allocating on bbolt with
// fsync: one caller at a time (every allocation its own fsync), and
// concurrent callers in one process, whose commits share fsyncs (group
// commit; each caller still returns only after its fsync).
//
// open-per-op is the CNI plugin's case: the file is opened (lock, mmap)
// and closed around every operation.
func BenchmarkAutoAssignBolt(b *testing.B) {
	for _, bc := range []struct {
		name     string
		workers  int
		keepOpen bool
	}{{"callers=1", 1, true}, {"callers=1/open-per-op", 1, false}, {"callers=16", 16, true}, {"callers=64", 64, true}} {
		workers := bc.workers
		b.Run(bc.name, func(b *testing.B) {
			s, err := OpenBolt(context.Background(), filepath.Join(b.TempDir(), "ipam.db"), &BoltOptions{KeepOpen: bc.keepOpen})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			a := New(s, Config{})
			benchPool(b, a, "10.0.0.0/12", 26)
			b.ResetTimer()
			assignN(b, a, "node-1", b.N, workers, "h")
			reportRate(b, b.N)
		})
	}
}

// BenchmarkAutoAssignEtcd measures allocation against a real etcd on
// loopback: 1 and 3 nodes (one client each), 16 concurrent callers per
// node.
func BenchmarkAutoAssignEtcd(b *testing.B) {
	url := startEtcd(b)
	for _, nodes := range []int{1, 3} {
		for _, workers := range []int{1, 16} {
			b.Run(fmt.Sprintf("nodes=%d/callers=%d", nodes, workers), func(b *testing.B) {
				var allocs []*Allocator
				for range nodes {
					allocs = append(allocs, New(newEtcdStore(b, url), Config{MaxRetries: 1000}))
				}
				benchPool(b, allocs[0], "10.0.0.0/12", 26)
				b.ResetTimer()
				var wg sync.WaitGroup
				per := (b.N + nodes - 1) / nodes
				for n, a := range allocs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						assignN(b, a, fmt.Sprint("node-", n), per, workers, fmt.Sprintf("n%d-", n))
					}()
				}
				wg.Wait()
				reportRate(b, per*nodes)
			})
		}
	}
}

// BenchmarkAutoAssignFullness compares one allocation in an empty pool
// with one in a pool 99% full (4,096 addresses, 64 blocks of the node,
// all but 41 addresses held). Each iteration allocates one address and
// releases it again, so fullness stays put; ns/assign times the
// allocation alone.
func BenchmarkAutoAssignFullness(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) Store
	}{
		{"memory", func(b *testing.B) Store { return NewMemoryStore() }},
		{"bolt", func(b *testing.B) Store {
			s, err := OpenBolt(context.Background(), filepath.Join(b.TempDir(), "ipam.db"), &BoltOptions{KeepOpen: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	}
	const size = 4096
	for _, st := range stores {
		for _, fill := range []struct {
			name string
			n    int
		}{{"empty", 0}, {"99%", size * 99 / 100}} {
			b.Run(st.name+"/"+fill.name, func(b *testing.B) {
				a := New(st.open(b), Config{Cooldown: -1})
				benchPool(b, a, "10.0.0.0/20", 26)
				assignN(b, a, "node-1", fill.n, 64, "fill")
				ctx := context.Background()
				var assignTime time.Duration
				b.ResetTimer()
				for i := range b.N {
					h := fmt.Sprint("x", i)
					start := time.Now()
					if _, err := a.AutoAssign(ctx, AssignRequest{Handle: h, Node: "node-1", IPv4: 1}); err != nil {
						b.Fatal(err)
					}
					assignTime += time.Since(start)
					if _, err := a.ReleaseByHandle(ctx, h); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(assignTime.Nanoseconds())/float64(b.N), "ns/assign")
			})
		}
	}
}

//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/nftables"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/agent/agenttest"
	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	etcdstore "github.com/calyxnet/calyx/internal/datastore/etcd"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/internal/etcdtest"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/resource"
	"github.com/calyxnet/calyx/internal/testgen"
	"github.com/calyxnet/calyx/policy"
)

// benchScale is the node: 10,000 cluster pods in 100 namespaces,
// 10,000 namespaced policies (plus 4 global), 110 pods on node0.
var benchScale = testgen.ScaleOptions{Namespaces: 100, PodsPerNamespace: 100, AppsPerNamespace: 51, PoliciesPerNamespace: 100, LocalPods: 110}

// benchDebounce is the directory store's quiet period in the figures:
// fsnotify bursts of one write settle well within it.
const benchDebounce = 10 * time.Millisecond

// benchNode is an agent programming nftables in a namespace of its own,
// over a store of the benchmark cluster.
type benchNode struct {
	store  datastore.Store // the agent's
	writer datastore.Store // calyxctl's: another view of the same data
	// fresh, when set, opens a new writer for each change (a calyxctl
	// process each time) instead.
	fresh func() (datastore.Store, error)
	// exec, when set, applies each change with the calyxctl binary.
	exec    func(obj policy.Object) error
	be      *agenttest.Backend
	agent   *agent.Agent
	changes int // made so far: each change sets a port never set before
}

// newBenchNode builds the node; owner (the parent benchmark) owns its
// resources, so the N=1 probe run and the measured run share one setup.
func newBenchNode(b *testing.B, owner testing.TB, storeKind string, reconcile time.Duration) *benchNode {
	b.Helper()
	netnstest.RequireRoot(b)
	ns := netnstest.New(owner, "cxag")
	store, writer := openBenchStore(b, owner, storeKind, testgen.ScaleCluster(benchScale))
	nft, err := nftables.Open(context.Background(), backend.Options{NetNS: ns.Path(), Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	owner.Cleanup(func() { _ = nft.Close(context.Background()) })
	be := &agenttest.Backend{Inner: nft}
	a, err := agent.New(agent.Config{Node: "node0", Store: store, Backend: be, ReconcileInterval: reconcile})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	owner.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			owner.Error(err)
		}
	})
	start := time.Now()
	deadline := start.Add(15 * time.Minute)
	for !a.NodeStatus().Ready {
		if time.Now().After(deadline) {
			b.Fatalf("agent not ready: %+v", a.NodeStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := a.NodeStatus()
	b.Logf("%s store: synced and applied in %v: %d endpoints, %d policies, %d sets, %d set members; first apply %.0f ms",
		storeKind, time.Since(start).Round(time.Millisecond), st.Counts.Endpoints, st.Counts.Policies, st.Counts.Sets, st.Counts.SetMembers, st.LastApplySeconds*1000)
	n := &benchNode{store: store, writer: writer, be: be, agent: a}
	switch storeKind {
	case "dir-fresh":
		root := store.(*dir.Store).Root()
		n.fresh = func() (datastore.Store, error) { return dir.Open(context.Background(), root, dir.Options{}) }
	case "dir-exec":
		n.exec = calyxctlApply(b, owner, store.(*dir.Store).Root())
	}
	return n
}

// calyxctlApply builds calyxctl and returns a function that applies one
// object with it to the directory root, as a user does: the object in a
// file, `calyxctl apply -f file`, the command's output checked.
func calyxctlApply(b *testing.B, owner testing.TB, root string) func(policy.Object) error {
	b.Helper()
	tmp := owner.TempDir()
	bin := filepath.Join(tmp, "calyxctl")
	build := exec.Command("go", "build", "-o", bin, "github.com/calyxnet/calyx/cmd/calyxctl")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build calyxctl: %v\n%s", err, out)
	}
	file := filepath.Join(tmp, "change.yaml")
	return func(obj policy.Object) error {
		var buf bytes.Buffer
		if err := policy.Encode(&buf, []policy.Object{obj}); err != nil {
			return err
		}
		if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
			return err
		}
		cmd := exec.Command(bin, "apply", "-f", file, "--datastore-type", "dir", "--datastore-dir", root)
		// The flags choose the store, whatever the host's environment says.
		cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CALYX_") })
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("calyxctl apply: %w\n%s", err, out)
		}
		if !bytes.Contains(out, []byte(" configured")) {
			return fmt.Errorf("calyxctl apply: %s, want the object configured", out)
		}
		return nil
	}
}

// openBenchStore returns a store holding objs for the agent, and a second
// view of the same data for the writes, as calyxctl opens it: in memory
// (one store, both ways), a directory with one file per namespace (how a
// GitOps tree is laid out), or a real etcd (a client each).
func openBenchStore(b *testing.B, owner testing.TB, kind string, objs []policy.Object) (agentStore, writer datastore.Store) {
	b.Helper()
	switch kind {
	case "memory":
		s, err := agenttest.NewMemStore(objs...)
		if err != nil {
			b.Fatal(err)
		}
		return s, s
	case "dir", "dir-fresh", "dir-exec":
		root := storetest.NamespaceTree(owner, objs)
		open := func() datastore.Store {
			s, err := dir.Open(context.Background(), root, dir.Options{Debounce: benchDebounce, MaxDelay: 10 * benchDebounce})
			if err != nil {
				b.Fatal(err)
			}
			owner.Cleanup(func() { _ = s.Close() })
			return s
		}
		return open(), open()
	case "etcd":
		url := etcdtest.Start(owner)
		open := func() *etcdstore.Store {
			s, err := etcdstore.Dial(context.Background(), etcdstore.Config{Endpoints: []string{url}}, etcdstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			owner.Cleanup(func() { _ = s.Close() })
			return s
		}
		s := open()
		// Stored as the etcd store stores them (its prepared JSON), a
		// hundred to a transaction.
		var ops []clientv3.Op
		for i, o := range objs {
			o, err := datastore.Prepare(o)
			if err != nil {
				b.Fatal(err)
			}
			value, err := json.Marshal(o)
			if err != nil {
				b.Fatal(err)
			}
			ops = append(ops, clientv3.OpPut(s.Key(policy.KeyOf(o)), string(value)))
			if len(ops) == 100 || i == len(objs)-1 {
				if _, err := s.Client().Txn(context.Background()).Then(ops...).Commit(); err != nil {
					b.Fatal(err)
				}
				ops = ops[:0]
			}
		}
		return s, open()
	}
	b.Fatalf("unknown store %q", kind)
	return nil, nil
}

// BenchmarkPolicyChangeEnforced is the figure: a policy change
// applied as `calyxctl apply` applies it (resource.Do through a store of
// its own: another directory store on the same tree, another etcd client)
// → enforced in the kernel (nftables has committed the batch), on a node
// of 110 pods with 10,000 policies and 10,000 cluster pods. Each
// iteration changes the port of a Kubernetes NetworkPolicy that selects
// local pods. Run it with -benchtime=100x:
//
//	go test -run XXX -bench PolicyChangeEnforced -benchtime=100x ./internal/agent/
//
// CALYX_BENCH_STORES=dir,etcd picks the stores (memory, dir and etcd by
// default; dir-fresh is dir with a new writing store for each change, as
// a calyxctl process opens one; dir-exec runs the calyxctl binary, built
// once, for each change: `calyxctl apply -f`, process start included);
// CALYX_BENCH_CPU_PROFILE=prefix writes a
// CPU profile of each store's measured changes to prefix-<store>.prof.
func BenchmarkPolicyChangeEnforced(b *testing.B) {
	parent := b
	nodes := map[string]*benchNode{}
	kinds := []string{"memory", "dir", "etcd"}
	if env := os.Getenv("CALYX_BENCH_STORES"); env != "" {
		kinds = strings.Split(env, ",")
	}
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			n := nodes[kind]
			if n == nil {
				// No periodic repair: at this scale one holds the
				// dataplane for long (BenchmarkAgentIdle times it) and a
				// change would wait for it.
				n = newBenchNode(b, parent, kind, -1)
				nodes[kind] = n
			}
			ctx := context.Background()
			key := policy.ObjectKey{Kind: policy.KindK8sNetworkPolicy, Namespace: "team-000", Name: "app0-0"}
			it, err := n.store.Get(ctx, key)
			if err != nil {
				b.Fatal(err)
			}
			base := it.Object.(*networkingv1.NetworkPolicy)
			_, applied := n.agent.Ruleset()
			id := policyID(applied, "team-000/"+policy.K8sPolicyNamePrefix+"app0-0", compile.Ingress)
			if id == "" {
				b.Fatal("policy not compiled")
			}
			if len(applied.Endpoints) != benchScale.LocalPods {
				b.Fatalf("%d local endpoints, want %d", len(applied.Endpoints), benchScale.LocalPods)
			}
			lat := make([]time.Duration, 0, b.N)
			var kernel []time.Duration       // of which the backend's Apply
			var writes, seen []time.Duration // store write done; change compiled by the agent
			if prefix := os.Getenv("CALYX_BENCH_CPU_PROFILE"); prefix != "" && b.N > 1 {
				f, err := os.Create(prefix + "-" + kind + ".prof")
				if err != nil {
					b.Fatal(err)
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					b.Fatal(err)
				}
				defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
			}
			b.ResetTimer()
			for i := range b.N {
				n.changes++
				port := uint16(20000 + n.changes%40000)
				pol := base.DeepCopy()
				p := intstr.FromInt32(int32(port))
				pol.Spec.Ingress[0].Ports[0].Port = &p
				start := time.Now()
				if n.exec != nil {
					if err := n.exec(pol); err != nil {
						b.Fatal(err)
					}
				} else {
					w := n.writer
					if n.fresh != nil {
						var err error
						if w, err = n.fresh(); err != nil {
							b.Fatal(err)
						}
					}
					changes, err := resource.Do(ctx, w, resource.OpApply, []policy.Object{pol}, resource.Options{})
					if err == nil {
						err = resource.Failed(changes)
					}
					if n.fresh != nil {
						err = errors.Join(err, w.Close())
					}
					if err != nil {
						b.Fatal(err)
					}
					if len(changes) != 1 || changes[0].Action != resource.Configured {
						b.Fatalf("apply: %+v, want one object configured", changes)
					}
				}
				written := time.Now()
				// Poll the agent for the moment its newest Ruleset holds the
				// change (the datastore delivered it and it is compiled).
				deadline := start.Add(60 * time.Second)
				var compiled time.Time
				for {
					latest, applied := n.agent.Ruleset()
					if compiled.IsZero() && latest != nil && hasPort(latest.Policies[id], port) {
						compiled = time.Now()
					}
					if applied != nil && hasPort(applied.Policies[id], port) {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("change %d not enforced within 60 s (written after %v, compiled: %v; status %+v)",
							i, written.Sub(start), !compiled.IsZero(), n.agent.NodeStatus())
					}
					time.Sleep(200 * time.Microsecond)
				}
				if compiled.IsZero() {
					compiled = time.Now()
				}
				writes = append(writes, written.Sub(start))
				seen = append(seen, compiled.Sub(start))
				// When the kernel took it: the first apply holding the port.
				var first agenttest.Applied
				for _, ap := range slices.Backward(n.be.History()) {
					if !hasPort(ap.Ruleset.Policies[id], port) {
						break
					}
					first = ap
				}
				lat = append(lat, first.At.Sub(start))
				kernel = append(kernel, first.At.Sub(first.Start))
			}
			b.StopTimer()
			slices.Sort(lat)
			slices.Sort(kernel)
			slices.Sort(writes)
			slices.Sort(seen)
			b.ReportMetric(ms(percentile(writes, 50)), "write-p50-ms")
			b.ReportMetric(ms(percentile(seen, 50)), "compiled-p50-ms")
			b.ReportMetric(ms(percentile(kernel, 50)), "apply-p50-ms")
			b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
			st := n.agent.NodeStatus()
			b.Logf("%s store: %d changes → %d applies; p50 %v p99 %v max %v; store write done p50 %v p99 %v, compiled p50 %v p99 %v, backend Apply p50 %v p99 %v", kind, len(lat), st.Applies,
				percentile(lat, 50).Round(10*time.Microsecond), percentile(lat, 99).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond),
				percentile(writes, 50).Round(10*time.Microsecond), percentile(writes, 99).Round(10*time.Microsecond),
				percentile(seen, 50).Round(10*time.Microsecond), percentile(seen, 99).Round(10*time.Microsecond),
				percentile(kernel, 50).Round(10*time.Microsecond), percentile(kernel, 99).Round(10*time.Microsecond))
		})
	}
}

// BenchmarkAgentIdle is the other figure: the agent's memory and
// CPU at idle with 10,000 policies and 10,000 cluster pods, over the
// directory store. Memory is the Go heap in use after a GC and the
// process's resident set (the benchmark's own copy of the cluster is
// dropped first); CPU is user+system time over an idle window of 10 s
// per iteration. Run it with -benchtime=1x; CALYX_BENCH_HEAP_PROFILE=file
// writes the idle heap profile there.
func BenchmarkAgentIdle(b *testing.B) {
	// Periodic repair off: the window measures the agent between repairs,
	// and one repair is timed on its own below.
	n := newBenchNode(b, b, "dir", -1)
	runtime.GC()
	runtime.GC()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	if path := os.Getenv("CALYX_BENCH_HEAP_PROFILE"); path != "" {
		// The live heap at idle, for `go tool pprof -sample_index=inuse_space`.
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
		_ = f.Close()
	}
	rss := vmRSS(b)
	const window = 10 * time.Second
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		before := cpuTime(b)
		time.Sleep(window)
		cpu += cpuTime(b) - before
	}
	b.StopTimer()
	pct := 100 * cpu.Seconds() / (window.Seconds() * float64(b.N))
	// The window holds no periodic repair (one a minute by default): time
	// one and spread it over its interval.
	before := cpuTime(b)
	start := time.Now()
	d, err := n.be.Repair(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	repairWall, repairCPU := time.Since(start), cpuTime(b)-before
	withRepair := pct + 100*repairCPU.Seconds()/agent.DefaultReconcileInterval.Seconds()
	b.ReportMetric(float64(mem.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	b.ReportMetric(pct, "cpu-%")
	b.ReportMetric(ms(repairCPU), "repair-cpu-ms")
	b.ReportMetric(withRepair, "cpu-with-repair-%")
	b.Logf("idle: heap in use %.0f MiB, RSS %.0f MiB, CPU %.2f%% of one core between repairs; one repair (%s) takes %v wall, %v CPU: %.2f%% averaged over the %v interval (applies %d)",
		float64(mem.HeapInuse)/(1<<20), float64(rss)/(1<<20), pct, d, repairWall.Round(time.Millisecond), repairCPU.Round(time.Millisecond),
		withRepair, agent.DefaultReconcileInterval, n.agent.NodeStatus().Applies)
}

func policyID(rs *compile.Ruleset, name string, d compile.Direction) compile.PolicyID {
	for id, p := range rs.Policies {
		if p.Name == name && p.Direction == d {
			return id
		}
	}
	return ""
}

func hasPort(p *compile.Policy, port uint16) bool {
	if p == nil {
		return false
	}
	for _, r := range p.Rules {
		for _, pr := range r.Match.Dst.Ports {
			if pr.Min <= port && port <= pr.Max {
				return true
			}
		}
	}
	return false
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func vmRSS(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

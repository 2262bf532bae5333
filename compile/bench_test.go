package compile_test

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
	"github.com/calyxnet/calyx/policy"
	corev1 "k8s.io/api/core/v1"
)

// scaleSet loads the figures' cluster: 10,000 pods in 100 namespaces,
// 2,000 namespaced policies (half Kubernetes, half Calico) and a security
// tier of global policies.
func scaleSet(tb testing.TB) *policy.Set {
	tb.Helper()
	set := policy.NewSet()
	for _, obj := range testgen.ScaleCluster(testgen.DefaultScale) {
		if _, err := set.Upsert(obj); err != nil {
			tb.Fatalf("upsert %s: %v", policy.KeyOf(obj), err)
		}
	}
	return set
}

// BenchmarkLoadSet is the baseline of the compile figures: validating and
// normalising the same objects into a policy.Set.
func BenchmarkLoadSet(b *testing.B) {
	objs := testgen.ScaleCluster(testgen.DefaultScale)
	for b.Loop() {
		set := policy.NewSet()
		for _, obj := range objs {
			if _, err := set.Upsert(obj); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCompileFull: full compile of the cluster for node0 (110 local
// pods). Goal ≤ 1 s and ≤ 1 GiB heap.
func BenchmarkCompileFull(b *testing.B) {
	set := scaleSet(b)
	var rs *compile.Ruleset
	for b.Loop() {
		var err error
		rs, err = compile.New(set, "node0").Compile()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(len(rs.Endpoints)), "endpoints")
	b.ReportMetric(float64(len(rs.Policies)), "policies")
	b.ReportMetric(float64(len(rs.Sets)), "sets")
}

// BenchmarkUpdatePodLabels: one pod's labels change (a local pod moving
// between apps), delta ready. Goal: median ≤ 1 ms; ≥ 10,000 updates/s.
func BenchmarkUpdatePodLabels(b *testing.B) {
	set := scaleSet(b)
	c := compile.New(set, "node0")
	if _, err := c.Compile(); err != nil {
		b.Fatal(err)
	}
	pods := localPods(set)
	var durations []time.Duration
	i := 0
	start := time.Now()
	for b.Loop() {
		pod := pods[i%len(pods)].DeepCopy()
		if i/len(pods)%2 == 0 {
			pod.Labels["app"] = "app-moved"
		}
		t0 := time.Now()
		ch, err := set.Upsert(pod)
		if err != nil {
			b.Fatal(err)
		}
		if _, d, err := c.Update(ch); err != nil || d.Empty() {
			b.Fatalf("update: %v (delta empty: %v)", err, d.Empty())
		}
		durations = append(durations, time.Since(t0))
		i++
	}
	elapsed := time.Since(start)
	slices.Sort(durations)
	b.ReportMetric(float64(durations[len(durations)/2].Nanoseconds())/1e3, "median-µs")
	b.ReportMetric(float64(len(durations))/elapsed.Seconds(), "updates/s")
}

func localPods(set *policy.Set) []*corev1.Pod {
	var out []*corev1.Pod
	for _, obj := range set.Objects() {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName == "node0" {
			out = append(out, p)
		}
	}
	return out
}

// BenchmarkUpdateSustained: a stream of pod label changes (every pod of the
// cluster, local or not, in turn) applied in bursts of 100, as an agent
// coalesces a watch burst. Goal ≥ 10,000 endpoint updates per second.
func BenchmarkUpdateSustained(b *testing.B) {
	const burst = 100
	set := scaleSet(b)
	c := compile.New(set, "node0")
	if _, err := c.Compile(); err != nil {
		b.Fatal(err)
	}
	var pods []*corev1.Pod
	for _, obj := range set.Objects() {
		if p, ok := obj.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	n := 0
	start := time.Now()
	for b.Loop() {
		changes := make([]policy.Change, 0, burst)
		for range burst {
			pod := pods[n%len(pods)].DeepCopy()
			if n/len(pods)%2 == 0 {
				pod.Labels["version"] = "v9"
			}
			ch, err := set.Upsert(pod)
			if err != nil {
				b.Fatal(err)
			}
			changes = append(changes, ch)
			n++
		}
		if _, _, err := c.Update(changes...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "updates/s")
}

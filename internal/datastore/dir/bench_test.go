package dir_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/internal/resource"
	"github.com/calyxnet/calyx/internal/testgen"
	"github.com/calyxnet/calyx/policy"
)

// policyTree writes n GlobalNetworkPolicies, one file each, as calyxctl
// apply lays them out.
func policyTree(b *testing.B, n int) string {
	b.Helper()
	root := b.TempDir()
	for i := range n {
		doc := fmt.Sprintf(`apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p%05d}
spec:
  selector: app == 'a%d'
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'b%d'}, destination: {ports: [%d]}}]
`, i, i%100, i%37, 1+i%1000)
		require.NoError(b, os.WriteFile(filepath.Join(root, fmt.Sprintf("globalnetworkpolicy.p%05d.yaml", i)), []byte(doc), 0o644))
	}
	return root
}

// BenchmarkWatchSync is the time from Watch to EventSynced over 10,000
// policies: what an agent start costs the datastore.
func BenchmarkWatchSync(b *testing.B) {
	root := policyTree(b, 10000)
	for b.Loop() {
		s, err := dir.Open(b.Context(), root, dir.Options{})
		require.NoError(b, err)
		ch, err := s.Watch(b.Context())
		require.NoError(b, err)
		require.Len(b, storetest.UntilSynced(b, ch, time.Minute), 10000)
		s.Close()
	}
}

// BenchmarkApplyToEvent is the time from a write through the store (what
// calyxctl apply does) to the watching agent's event, in a directory of
// 10,000 policies, with the default debounce; p50 and p99 are reported.
func BenchmarkApplyToEvent(b *testing.B) {
	root := policyTree(b, 10000)
	writer, err := dir.Open(b.Context(), root, dir.Options{})
	require.NoError(b, err)
	watcher, err := dir.Open(b.Context(), root, dir.Options{})
	require.NoError(b, err)
	defer writer.Close()
	defer watcher.Close()
	ch, err := watcher.Watch(b.Context())
	require.NoError(b, err)
	storetest.UntilSynced(b, ch, time.Minute)
	key := policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "p00042"}
	it, err := writer.Get(b.Context(), key)
	require.NoError(b, err)
	obj := it.Object
	cpu0 := cpuTime()
	var lat, writes []time.Duration
	i := 0
	for b.Loop() {
		i++
		obj.SetLabels(map[string]string{"change": fmt.Sprint(i)})
		start := time.Now()
		_, err := writer.Apply(b.Context(), obj)
		require.NoError(b, err)
		writes = append(writes, time.Since(start))
		awaitChange(b, ch, key, i)
		lat = append(lat, time.Since(start))
	}
	reportPercentiles(b, lat, "")
	reportPercentiles(b, writes, "write-")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(len(lat)), "cpu-ms/op")
}

func reportPercentiles(b *testing.B, lat []time.Duration, prefix string) {
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.5), prefix+"p50-ms")
	b.ReportMetric(at(0.99), prefix+"p99-ms")
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

// BenchmarkFreshApplyToEvent is `calyxctl apply` of one changed policy as
// a process does it: a new store over the directory, resource.Do (a Get
// and an Apply), Close; then the event at a watching store (the
// agent's). p50 and p99 are reported, of the whole and of the new
// store's part. Two layouts: 10,000 policies one file each (as calyxctl
// creates them), and the agent benchmark's cluster of 20,000 objects
// with one file per namespace (200 objects a file, a GitOps tree).
func BenchmarkFreshApplyToEvent(b *testing.B) {
	b.Run("layout=file-per-policy", func(b *testing.B) {
		root := policyTree(b, 10000)
		key := policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "p00042"}
		benchFreshApply(b, root, key, func(obj policy.Object, i int) {
			obj.SetLabels(map[string]string{"change": fmt.Sprint(i)})
		})
	})
	b.Run("layout=file-per-namespace", func(b *testing.B) {
		root := storetest.NamespaceTree(b, testgen.ScaleCluster(testgen.ScaleOptions{Namespaces: 100, PodsPerNamespace: 100, AppsPerNamespace: 51, PoliciesPerNamespace: 100, LocalPods: 110}))
		key := policy.ObjectKey{Kind: policy.KindK8sNetworkPolicy, Namespace: "team-042", Name: "app0-0"}
		benchFreshApply(b, root, key, func(obj policy.Object, i int) {
			obj.SetLabels(map[string]string{"change": fmt.Sprint(i)})
		})
	})
}

func benchFreshApply(b *testing.B, root string, key policy.ObjectKey, change func(policy.Object, int)) {
	watcher, err := dir.Open(b.Context(), root, dir.Options{})
	require.NoError(b, err)
	defer watcher.Close()
	ch, err := watcher.Watch(b.Context())
	require.NoError(b, err)
	storetest.UntilSynced(b, ch, time.Minute)
	it, err := watcher.Get(b.Context(), key)
	require.NoError(b, err)
	obj := it.Object
	var lat, writes []time.Duration
	i := 0
	for b.Loop() {
		i++
		change(obj, i)
		start := time.Now()
		s, err := dir.Open(b.Context(), root, dir.Options{})
		require.NoError(b, err)
		changes, err := resource.Do(b.Context(), s, resource.OpApply, []policy.Object{obj}, resource.Options{})
		require.NoError(b, err)
		require.NoError(b, resource.Failed(changes))
		require.NoError(b, s.Close())
		writes = append(writes, time.Since(start))
		awaitChange(b, ch, key, i)
		lat = append(lat, time.Since(start))
	}
	reportPercentiles(b, lat, "")
	reportPercentiles(b, writes, "calyxctl-")
}

// awaitChange waits for the watch event of change i to key (its "change"
// label set to i).
func awaitChange(b *testing.B, ch <-chan datastore.Event, key policy.ObjectKey, i int) {
	b.Helper()
	for {
		ev := storetest.Next(b, ch, time.Minute)
		if ev.Type == datastore.EventUpsert && ev.Key == key && ev.Item.Object.GetLabels()["change"] == fmt.Sprint(i) {
			return
		}
	}
}

// BenchmarkFreshGet is `calyxctl get` of one object as a process does it,
// in the agent benchmark's tree of one file per namespace: a new store
// (its persisted index read, the tree's stats checked), a Get, Close.
func BenchmarkFreshGet(b *testing.B) {
	root := storetest.NamespaceTree(b, testgen.ScaleCluster(testgen.ScaleOptions{Namespaces: 100, PodsPerNamespace: 100, AppsPerNamespace: 51, PoliciesPerNamespace: 100, LocalPods: 110}))
	first, err := dir.Open(b.Context(), root, dir.Options{})
	require.NoError(b, err)
	_, err = first.List(b.Context()) // writes the index
	require.NoError(b, err)
	require.NoError(b, first.Close())
	key := policy.ObjectKey{Kind: policy.KindK8sNetworkPolicy, Namespace: "team-042", Name: "app0-0"}
	for b.Loop() {
		s, err := dir.Open(b.Context(), root, dir.Options{})
		require.NoError(b, err)
		_, err = s.Get(b.Context(), key)
		require.NoError(b, err)
		require.NoError(b, s.Close())
	}
}

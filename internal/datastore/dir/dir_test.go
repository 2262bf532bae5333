package dir_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/policy"
)

var fast = dir.Options{Debounce: 5 * time.Millisecond, MaxDelay: 100 * time.Millisecond}

func open(t *testing.T, root string) *dir.Store {
	t.Helper()
	s, err := dir.Open(t.Context(), root, fast)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) datastore.Store { return open(t, t.TempDir()) },
		Reopen: func(t *testing.T, s datastore.Store) datastore.Store {
			return open(t, s.(*dir.Store).Root())
		},
		Break: func(t *testing.T, s datastore.Store, key policy.ObjectKey) {
			it, err := s.Get(t.Context(), key)
			require.NoError(t, err)
			f, err := os.OpenFile(it.Origin.Source, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteString("  typo: [\n")
			require.NoError(t, err)
			require.NoError(t, f.Close())
		},
		Fix: func(t *testing.T, s datastore.Store, key policy.ObjectKey) {
			// Back to the last good content (the origin of the last
			// good object names the file).
			it, err := s.Get(t.Context(), key)
			require.NoError(t, err)
			data, err := os.ReadFile(it.Origin.Source)
			require.NoError(t, err)
			fixed, ok := strings.CutSuffix(string(data), "  typo: [\n")
			require.True(t, ok, "the file Break made")
			require.NoError(t, os.WriteFile(it.Origin.Source, []byte(fixed), 0o644))
		},
		Coalesces: true,
	})
}

const twoDocs = `# Shop policies, kept by hand.
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-all   # the baseline
spec:
  selector: all()
  types: [Ingress]
---
# The web tier.
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  selector: app == 'web'
  ingress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: pools}
spec: {nets: [192.0.2.0/24]}
`

var (
	keyGNP = policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "deny-all"}
	keyNP  = policy.ObjectKey{Kind: policy.KindNetworkPolicy, Namespace: "shop", Name: "allow-web"}
	keyGNS = policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "pools"}
)

func write(t *testing.T, p, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

func TestRewriteInPlace(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "shop.yaml")
	write(t, p, twoDocs)
	s := open(t, root)
	ctx := t.Context()

	it, err := s.Get(ctx, keyNP)
	require.NoError(t, err)
	obj := it.Object
	obj.SetLabels(map[string]string{"team": "web"})
	_, err = s.Replace(ctx, obj, it.Revision)
	require.NoError(t, err)

	got := read(t, p)
	docs := strings.Split(got, "\n---\n")
	require.Len(t, docs, 3)
	orig := strings.Split(twoDocs, "\n---\n")
	assert.Equal(t, orig[0], docs[0], "other documents are kept byte for byte, comments included")
	assert.Equal(t, orig[2], docs[2])
	assert.Contains(t, docs[1], "team: web")
	assert.NotContains(t, got, "resourceVersion", "revisions are the store's, never written")

	// Deleting one object drops its document only.
	require.NoError(t, s.Delete(ctx, keyGNP, ""))
	got = read(t, p)
	assert.NotContains(t, got, "deny-all")
	assert.Contains(t, got, "allow-web")
	assert.Contains(t, got, orig[2])
	items, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, items, 2)

	// Deleting the last objects removes the file.
	require.NoError(t, s.Delete(ctx, keyNP, ""))
	require.NoError(t, s.Delete(ctx, keyGNS, ""))
	_, err = os.Stat(p)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestRewriteList(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "list.yaml")
	write(t, p, `apiVersion: v1
kind: List
items:
- {apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: a}, spec: {nets: [192.0.2.0/24]}}
- {apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: b}, spec: {nets: [198.51.100.0/24]}}
`)
	s := open(t, root)
	ka := policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "a"}
	require.NoError(t, s.Delete(t.Context(), ka, ""))
	items, err := s.List(t.Context())
	require.NoError(t, err)
	require.Len(t, items, 1)
	assert.Equal(t, "b", items[0].Object.GetName())
	assert.Equal(t, p, items[0].Origin.Source, "the list's other items stay in its file")
}

func TestRewriteJSON(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "gns.json")
	write(t, p, `{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkSet","metadata":{"name":"a"},"spec":{"nets":["192.0.2.0/24"]}}`)
	s := open(t, root)
	it, err := s.Get(t.Context(), policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "a"})
	require.NoError(t, err)
	it.Object.SetLabels(map[string]string{"x": "y"})
	_, err = s.Replace(t.Context(), it.Object, it.Revision)
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(read(t, p)), &v), "a JSON file stays JSON")
	assert.Equal(t, "GlobalNetworkSet", v["kind"])
}

func TestNewObjectPath(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	objs := storetest.Objects(t)
	for _, o := range objs[:3] {
		_, err := s.Create(t.Context(), o)
		require.NoError(t, err)
	}
	// A file already named like the next object's holds something else.
	write(t, filepath.Join(root, "globalnetworkset.pools.yaml"), "# notes, no objects\n")
	_, err := s.Create(t.Context(), storetest.MustDecode(t, `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: pools}, spec: {nets: [192.0.2.0/24]}}`)[0])
	require.NoError(t, err)
	var names []string
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{
		".calyx.journal",
		".calyx.lock",
		"globalnetworkpolicy.security.deny-all.yaml",
		"globalnetworkset.pools-2.yaml",
		"globalnetworkset.pools.yaml",
		"networkpolicy.shop.allow-web.yaml",
		"tier.security.yaml",
	}, names)
}

func TestBrokenFile(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "shop.yaml")
	write(t, p, twoDocs)
	s := open(t, root)
	ctx := t.Context()
	ch, err := s.Watch(ctx)
	require.NoError(t, err)
	state := storetest.UntilSynced(t, ch, 5*time.Second)
	require.Len(t, state, 3)

	// A typo: port out of range. The whole file is refused, its objects
	// stay, and the event names the file and the field.
	write(t, p, strings.Replace(twoDocs, "ingress: [{action: Allow}]", "ingress: [{action: Allow, protocol: TCP, destination: {ports: [70000]}}]", 1))
	ev := storetest.Next(t, ch, 5*time.Second)
	require.Equal(t, datastore.EventError, ev.Type, "%+v", ev)
	assert.Equal(t, p, ev.Source)
	var se *dir.SourceError
	require.ErrorAs(t, ev.Err, &se)
	assert.Equal(t, p, se.Path)
	var verrs policy.ValidationErrors
	require.ErrorAs(t, ev.Err, &verrs)
	assert.Equal(t, "spec.ingress[0].destination.ports[0]", verrs[0].Field)
	assert.Equal(t, 16, verrs[0].Line)

	items, err := s.List(ctx)
	require.NoError(t, err)
	assert.Len(t, items, 3, "the last good objects stay in force")
	problems, err := s.Problems(ctx)
	require.NoError(t, err)
	require.Len(t, problems, 1)

	// New objects are refused while a file is broken; changes to the
	// others are not.
	_, err = s.Create(ctx, storetest.Objects(t)[0])
	require.ErrorAs(t, err, &se)
	_, err = s.Apply(ctx, relabeled(t, state[keyGNS].Object))
	require.ErrorAs(t, err, &se, "the object lives in the broken file")
	require.ErrorIs(t, s.Delete(ctx, keyGNS, ""), se)
	assert.Equal(t, twoDocs[:20], read(t, p)[:20], "the broken file is left alone")

	// The fix: the objects as now written, and no more problems.
	fixed := strings.Replace(twoDocs, "types: [Ingress]", "types: [Ingress, Egress]", 1)
	write(t, p, fixed)
	ev = storetest.Next(t, ch, 5*time.Second)
	require.Equal(t, datastore.EventUpsert, ev.Type, "%+v", ev)
	assert.Equal(t, keyGNP, ev.Key)
	assert.Equal(t, p, ev.Source)
	ev = storetest.Next(t, ch, 5*time.Second)
	require.Equal(t, datastore.EventRecovered, ev.Type, "%+v", ev)
	assert.Equal(t, p, ev.Source)
	problems, err = s.Problems(ctx)
	require.NoError(t, err)
	assert.Empty(t, problems)

	// A file emptied on purpose (valid, no objects) removes its objects.
	write(t, p, "# nothing here any more\n")
	got := map[policy.ObjectKey]datastore.EventType{}
	for len(got) < 3 {
		ev := storetest.Next(t, ch, 5*time.Second)
		got[ev.Key] = ev.Type
	}
	assert.Equal(t, map[policy.ObjectKey]datastore.EventType{keyGNP: datastore.EventDelete, keyNP: datastore.EventDelete, keyGNS: datastore.EventDelete}, got)
}

func relabeled(t *testing.T, o policy.Object) policy.Object {
	t.Helper()
	cp, err := datastore.Copy(o)
	require.NoError(t, err)
	cp.SetLabels(map[string]string{"changed": "yes"})
	return cp
}

func TestDuplicateKey(t *testing.T) {
	root := t.TempDir()
	gns := func(net string) string {
		return `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: pools}, spec: {nets: [` + net + `]}}`
	}
	write(t, filepath.Join(root, "a.yaml"), gns("192.0.2.0/24"))
	write(t, filepath.Join(root, "b", "b.yaml"), gns("198.51.100.0/24"))
	s := open(t, root)
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	var dup *dir.DuplicateError
	var first datastore.Item
	for {
		ev := storetest.Next(t, ch, 5*time.Second)
		if ev.Type == datastore.EventSynced {
			break
		}
		switch ev.Type {
		case datastore.EventUpsert:
			first = ev.Item
		case datastore.EventError:
			require.ErrorAs(t, ev.Err, &dup)
		}
	}
	require.NotNil(t, dup, "a clear error event for the duplicate")
	assert.Equal(t, keyGNS, dup.Key)
	assert.Equal(t, filepath.Join(root, "a.yaml"), dup.Used.Source)
	assert.Equal(t, filepath.Join(root, "b", "b.yaml"), dup.Ignored.Source)
	assert.Contains(t, dup.Error(), "already defined")
	assert.Contains(t, first.Object.(*policy.GlobalNetworkSet).Spec.Nets, "192.0.2.0/24", "the first file in path order wins")

	// The first definition goes: the second takes over.
	require.NoError(t, os.Remove(filepath.Join(root, "a.yaml")))
	ev := storetest.Next(t, ch, 5*time.Second)
	require.Equal(t, datastore.EventUpsert, ev.Type)
	assert.Contains(t, ev.Item.Object.(*policy.GlobalNetworkSet).Spec.Nets, "198.51.100.0/24")
}

func TestEditorBurstAndNewDirectories(t *testing.T) {
	root := t.TempDir()
	s, err := dir.Open(t.Context(), root, dir.Options{Debounce: 150 * time.Millisecond, MaxDelay: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	storetest.UntilSynced(t, ch, 5*time.Second)

	// A directory made after the watch started, a file written in
	// pieces as editors do: truncate, half, whole.
	p := filepath.Join(root, "teams", "web", "np.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	half := twoDocs[:len(twoDocs)/2]
	f, err := os.Create(p)
	require.NoError(t, err)
	_, err = f.WriteString(half)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	time.Sleep(20 * time.Millisecond)
	_, err = f.WriteString(twoDocs[len(half):])
	require.NoError(t, err)
	require.NoError(t, f.Close())
	// Hidden directories are not policy.
	write(t, filepath.Join(root, ".git", "objects.yaml"), "not: [policy")

	got := map[policy.ObjectKey]bool{}
	for len(got) < 3 {
		ev := storetest.Next(t, ch, 5*time.Second)
		require.Equal(t, datastore.EventUpsert, ev.Type, "the half-written file is never reported: %+v", ev)
		got[ev.Key] = true
	}
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(400 * time.Millisecond):
	}

	// A rename that keeps the content changes nothing.
	require.NoError(t, os.Rename(p, filepath.Join(root, "moved.yaml")))
	select {
	case ev := <-ch:
		t.Fatalf("a move is no change: %+v", ev)
	case <-time.After(400 * time.Millisecond):
	}
	items, err := s.List(t.Context())
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(root, "moved.yaml"), items[0].Origin.Source)
}

func TestTwoWritersOneKey(t *testing.T) {
	root := t.TempDir()
	a, b := open(t, root), open(t, root)
	obj := storetest.Objects(t)[1]
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*dir.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Create(t.Context(), obj)
		}()
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		if err == nil {
			created++
		} else {
			require.ErrorIs(t, err, datastore.ErrExists)
		}
	}
	assert.Equal(t, 1, created, "the lock lets one writer through at a time")
}

// TestTruncatedFileKeepsObjects: a file truncated by a writer that has not
// written yet is not a file emptied on purpose.
func TestTruncatedFileKeepsObjects(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "shop.yaml")
	write(t, p, twoDocs)
	s := open(t, root)
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	require.Len(t, storetest.UntilSynced(t, ch, 5*time.Second), 3)
	require.NoError(t, os.Truncate(p, 0))
	select {
	case ev := <-ch:
		t.Fatalf("a truncated file changes nothing: %+v", ev)
	case <-time.After(300 * time.Millisecond):
	}
	items, err := s.List(t.Context())
	require.NoError(t, err)
	assert.Len(t, items, 3)
	// Removing it does remove its objects.
	require.NoError(t, os.Remove(p))
	for range 3 {
		ev := storetest.Next(t, ch, 5*time.Second)
		assert.Equal(t, datastore.EventDelete, ev.Type)
	}
}

// TestConfigMapMount: a ConfigMap mounted as a volume is files that are
// symlinks through a hidden ..data link, swapped atomically on update.
func TestConfigMapMount(t *testing.T) {
	root := t.TempDir()
	gns := func(net string) string {
		return `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: pools}, spec: {nets: [` + net + `]}}`
	}
	write(t, filepath.Join(root, "..v1", "pools.yaml"), gns("192.0.2.0/24"))
	require.NoError(t, os.Symlink("..v1", filepath.Join(root, "..data")))
	require.NoError(t, os.Symlink(filepath.Join("..data", "pools.yaml"), filepath.Join(root, "pools.yaml")))
	s := open(t, root)
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	state := storetest.UntilSynced(t, ch, 5*time.Second)
	require.Len(t, state, 1, "the hidden ..v1 directory is not read twice")

	// The kubelet's update: a new directory, a new link renamed over
	// ..data, the old directory removed.
	write(t, filepath.Join(root, "..v2", "pools.yaml"), gns("198.51.100.0/24"))
	require.NoError(t, os.Symlink("..v2", filepath.Join(root, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(root, "..data_tmp"), filepath.Join(root, "..data")))
	require.NoError(t, os.RemoveAll(filepath.Join(root, "..v1")))
	ev := storetest.Next(t, ch, 5*time.Second)
	require.Equal(t, datastore.EventUpsert, ev.Type, "%+v", ev)
	assert.Equal(t, []string{"198.51.100.0/24"}, ev.Item.Object.(*policy.GlobalNetworkSet).Spec.Nets)
}

// TestLastGoodAcrossRestart: with a state directory, a process that
// starts while a file is broken still has the file's last good objects.
func TestLastGoodAcrossRestart(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	p := filepath.Join(root, "shop.yaml")
	write(t, p, twoDocs)
	gone := filepath.Join(root, "gone.yaml")
	write(t, gone, `{apiVersion: v1, kind: Namespace, metadata: {name: gone}}`)
	opts := fast
	opts.StateDir = state

	first, err := dir.Open(t.Context(), root, opts)
	require.NoError(t, err)
	items, err := first.List(t.Context())
	require.NoError(t, err)
	require.Len(t, items, 4)
	require.NoError(t, first.Close())

	// While no process runs: a typo, and a file removed.
	write(t, p, strings.Replace(twoDocs, "all()", "all(", 1))
	require.NoError(t, os.Remove(gone))

	second, err := dir.Open(t.Context(), root, opts)
	require.NoError(t, err)
	t.Cleanup(func() { second.Close() })
	ch, err := second.Watch(t.Context())
	require.NoError(t, err)
	var errs int
	state0 := map[policy.ObjectKey]bool{}
	for {
		ev := storetest.Next(t, ch, 5*time.Second)
		if ev.Type == datastore.EventSynced {
			break
		}
		switch ev.Type {
		case datastore.EventUpsert:
			state0[ev.Key] = true
		case datastore.EventError:
			errs++
		}
	}
	assert.Equal(t, map[policy.ObjectKey]bool{keyGNP: true, keyNP: true, keyGNS: true}, state0, "the broken file's last good objects, from the state directory")
	assert.Equal(t, 1, errs, "and its problem reported")
	copies, err := os.ReadDir(state)
	require.NoError(t, err)
	assert.Len(t, copies, 1, "the removed file's copy is swept")

	// The fix replaces the kept copy.
	write(t, p, strings.Replace(twoDocs, "types: [Ingress]", "types: [Egress]", 1))
	ev := storetest.Next(t, ch, 5*time.Second)
	require.Equal(t, datastore.EventUpsert, ev.Type)
	assert.Equal(t, keyGNP, ev.Key)
	copies, err = os.ReadDir(state)
	require.NoError(t, err)
	assert.Len(t, copies, 1)
}

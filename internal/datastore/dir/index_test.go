package dir_test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/policy"
)

// setsTree writes n GlobalNetworkSets, one file each.
func setsTree(t *testing.T, n int) string {
	t.Helper()
	root := t.TempDir()
	for i := range n {
		write(t, filepath.Join(root, fmt.Sprintf("set%03d.yaml", i)),
			fmt.Sprintf("{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: s%03d}, spec: {nets: [192.0.2.%d/32]}}\n", i, i))
	}
	return root
}

func setKey(i int) policy.ObjectKey {
	return policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: fmt.Sprintf("s%03d", i)}
}

func relabel(t *testing.T, s *dir.Store, key policy.ObjectKey, v string) datastore.Item {
	t.Helper()
	it, err := s.Get(t.Context(), key)
	require.NoError(t, err)
	it.Object.SetLabels(map[string]string{"v": v})
	it, err = s.Apply(t.Context(), it.Object)
	require.NoError(t, err)
	return it
}

// TestWritesDoNotWalk: once a store has read the tree, its writes, its
// reads and its watch's flushes read only the files that changed; the
// tree is walked once, however many changes follow.
func TestWritesDoNotWalk(t *testing.T) {
	root := setsTree(t, 50)
	s := open(t, root)
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	require.Len(t, storetest.UntilSynced(t, ch, 5*time.Second), 50)
	walks := dir.Walks(s)
	require.Equal(t, 1, walks)
	for i := range 20 {
		it := relabel(t, s, setKey(i), strconv.Itoa(i))
		ev := storetest.Next(t, ch, 5*time.Second)
		require.Equal(t, datastore.EventUpsert, ev.Type, "%+v", ev)
		require.Equal(t, setKey(i), ev.Key)
		require.Equal(t, it.Revision, ev.Item.Revision)
	}
	_, err = s.Create(t.Context(), storetest.Objects(t)[1])
	require.NoError(t, err)
	require.Equal(t, datastore.EventUpsert, storetest.Next(t, ch, 5*time.Second).Type)
	require.NoError(t, s.Delete(t.Context(), setKey(0), ""))
	ev := storetest.Next(t, ch, 5*time.Second)
	require.Equal(t, datastore.EventDelete, ev.Type)
	require.Equal(t, setKey(0), ev.Key)
	items, err := s.List(t.Context())
	require.NoError(t, err)
	assert.Len(t, items, 50)
	assert.Equal(t, walks, dir.Walks(s), "no walk after the first read")
}

// TestOtherStoreWrites: a write through another store (another calyxctl)
// is seen by this store's next read at once, through the journal, and
// its watch reports it without waiting for the quiet period.
func TestOtherStoreWrites(t *testing.T) {
	root := setsTree(t, 20)
	slow := dir.Options{Debounce: time.Minute, MaxDelay: time.Minute, Resync: -1}
	reader, err := dir.Open(t.Context(), root, slow)
	require.NoError(t, err)
	t.Cleanup(func() { reader.Close() })
	ch, err := reader.Watch(t.Context())
	require.NoError(t, err)
	storetest.UntilSynced(t, ch, 5*time.Second)
	writer := open(t, root)

	for i := range 5 {
		it := relabel(t, writer, setKey(i), "w")
		got, err := reader.Get(t.Context(), setKey(i))
		require.NoError(t, err)
		assert.Equal(t, it.Revision, got.Revision, "read right after the other store's write")
		ev := storetest.Next(t, ch, 10*time.Second)
		require.Equal(t, datastore.EventUpsert, ev.Type, "%+v", ev)
		assert.Equal(t, it.Revision, ev.Item.Revision)
	}
	walks := dir.Walks(reader)

	// More writes than the journal remembers: the reader cannot tell
	// which files changed and walks the tree, once.
	for i := range dir.JournalKeep + 10 {
		relabel(t, writer, setKey(i%20), "n"+strconv.Itoa(i))
	}
	items, err := reader.List(t.Context())
	require.NoError(t, err)
	for _, it := range items {
		var i int
		_, err := fmt.Sscanf(it.Object.GetName(), "s%03d", &i)
		require.NoError(t, err)
		last := dir.JournalKeep + 9 - (dir.JournalKeep+9-i)%20
		assert.Equal(t, "n"+strconv.Itoa(last), it.Object.GetLabels()["v"], it.Object.GetName())
	}
	assert.Equal(t, walks+1, dir.Walks(reader))
}

// TestOutsideEdits: a file changed outside the store's writers (an
// editor, git) is followed with fsnotify, without walking the tree.
func TestOutsideEdits(t *testing.T) {
	root := setsTree(t, 20)
	s := open(t, root)
	_, err := s.List(t.Context())
	require.NoError(t, err)
	walks := dir.Walks(s)
	write(t, filepath.Join(root, "set003.yaml"), "{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: s003}, spec: {nets: [198.51.100.0/24]}}\n")
	require.Eventually(t, func() bool {
		it, err := s.Get(t.Context(), setKey(3))
		require.NoError(t, err)
		return len(it.Object.(*policy.GlobalNetworkSet).Spec.Nets) == 1 && it.Object.(*policy.GlobalNetworkSet).Spec.Nets[0] == "198.51.100.0/24"
	}, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, walks, dir.Walks(s), "one file changed: no walk")
	write(t, filepath.Join(root, "sub", "new.yaml"), "{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: new}, spec: {nets: [203.0.113.0/24]}}\n")
	require.Eventually(t, func() bool {
		_, err := s.Get(t.Context(), policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "new"})
		return err == nil
	}, 5*time.Second, 5*time.Millisecond)
	// The new directory made the store walk (a directory is not one
	// file); editing a file in it does not.
	walks = dir.Walks(s)
	write(t, filepath.Join(root, "sub", "new.yaml"), "{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: new}, spec: {nets: [203.0.113.1/32]}}\n")
	require.Eventually(t, func() bool {
		it, err := s.Get(t.Context(), policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "new"})
		require.NoError(t, err)
		return it.Object.(*policy.GlobalNetworkSet).Spec.Nets[0] == "203.0.113.1/32"
	}, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, walks, dir.Walks(s))
}

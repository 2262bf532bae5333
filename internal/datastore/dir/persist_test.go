package dir_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/policy"
)

// listed is what List says, by key: revision and file.
func listed(t *testing.T, s *dir.Store) map[policy.ObjectKey][2]string {
	t.Helper()
	items, err := s.List(t.Context())
	require.NoError(t, err)
	out := map[policy.ObjectKey][2]string{}
	for _, it := range items {
		out[it.Key()] = [2]string{it.Revision, it.Origin.Source}
	}
	return out
}

// TestPersistedIndex: a store starting over a tree another store has
// read decodes only the files that changed since (and those whose objects
// it is asked for), and sees the same tree as one that decodes all.
func TestPersistedIndex(t *testing.T) {
	root := setsTree(t, 100)
	first := open(t, root)
	relabel(t, first, setKey(1), "by-first")
	require.FileExists(t, filepath.Join(root, ".calyx.index"))

	// Outside changes while no store runs: an edit, a removal, a new
	// file, and a broken one.
	write(t, filepath.Join(root, "set002.yaml"), "{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: s002}, spec: {nets: [198.51.100.0/24, 203.0.113.0/24]}}\n")
	require.NoError(t, os.Remove(filepath.Join(root, "set003.yaml")))
	write(t, filepath.Join(root, "extra.yaml"), "{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: extra}, spec: {nets: [192.0.2.0/24]}}\n")
	write(t, filepath.Join(root, "set004.yaml"), "{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: s004}, spec: {nets: [not-a-net]}}\n")

	// calyxctl apply: a Get and an Apply.
	s := open(t, root)
	it, err := s.Get(t.Context(), setKey(1))
	require.NoError(t, err)
	assert.Equal(t, "by-first", it.Object.GetLabels()["v"], "the first store's write")
	_, err = s.Get(t.Context(), setKey(3))
	require.ErrorIs(t, err, datastore.ErrNotFound)
	_, err = s.Get(t.Context(), setKey(4))
	require.ErrorIs(t, err, datastore.ErrNotFound, "broken since the index was written: no last good objects in a new process")
	docs := dir.DocDecodes(s)
	relabel(t, s, setKey(50), "by-second")
	// At start set001 (the first store's write came after its index),
	// set002 and extra; set050's document alone when asked for, and its
	// new content once written.
	assert.Equal(t, 4, dir.Decodes(s), "files decoded at start and for one apply")
	assert.Equal(t, docs+2, dir.DocDecodes(s), "documents decoded for one apply")

	// The same tree as a store that decodes everything.
	require.NoError(t, os.Remove(filepath.Join(root, ".calyx.index")))
	full := open(t, root)
	want := listed(t, full)
	require.Len(t, want, 99) // 100 - set003 - set004 + extra
	assert.Equal(t, want, listed(t, s))
	problems, err := s.Problems(t.Context())
	require.NoError(t, err)
	require.Len(t, problems, 1)
	assert.Contains(t, problems[0].Error(), "set004.yaml")
}

// TestPersistedIndexMalformed: an index that cannot be parsed is ignored.
func TestPersistedIndexMalformed(t *testing.T) {
	root := setsTree(t, 20)
	write(t, filepath.Join(root, ".calyx.index"), "calyx-index-v1\nF\tnonsense\n")
	s := open(t, root)
	assert.Len(t, listed(t, s), 20)
	assert.Equal(t, 20, dir.Decodes(s))
}

package dir

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

const (
	gns = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n"
	ns  = "apiVersion: v1\nkind: Namespace\n"
)

// spliceFiles are files as people write them: comments everywhere,
// separators with comments or content after them, an explicit document
// end, a List, CRLF line ends, a first document without "---".
var spliceFiles = map[string]string{
	"comments":   "# The shop's sets. Keep sorted!\n" + gns + "metadata: {name: a}  # first\nspec:\n  nets: [192.0.2.0/24]\n---\n# b is the partners'\n" + gns + "metadata:\n  name: b\nspec:\n  # two nets\n  nets:\n  - 198.51.100.0/24\n  - 203.0.113.0/24\n---\n" + gns + "metadata: {name: c}\nspec: {nets: [10.0.0.0/8]}\n# trailing comment\n",
	"separators": "--- # lead\n" + gns + "metadata: {name: a}\n---\t\n" + gns + "metadata: {name: b}\n--- {apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: c}}\n---\n" + gns + "metadata: {name: d}\n...\n",
	"list":       ns + "metadata: {name: x}\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: a}}\n- {apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: b}}\n---\n" + gns + "metadata: {name: c}\n",
	"crlf":       strings.ReplaceAll("# windows\r\n"+gns+"metadata: {name: a}\n---\n"+gns+"metadata: {name: b}\n---\n"+gns+"metadata: {name: c}\n", "\n", "\r\n"),
	"only":       gns + "metadata: {name: a}\nspec: {nets: [192.0.2.0/24]}\n",
	"no-newline": gns + "metadata: {name: a}\n---\n" + gns + "metadata: {name: b}\n---\n" + gns + "metadata: {name: c}",
	"blank-docs": "# only a comment\n---\n---\n" + gns + "metadata: {name: a}\n---\n# nothing\n---\n" + gns + "metadata: {name: b}\n---\n",
}

// TestSpliceMatchesFullRewrite: a new store that knows the file from the
// persisted index replaces or deletes each object of each file, touching
// only the document that holds it (decoding it and the new content of
// that document, nothing else): the file it writes is byte for byte the
// one the full rewrite (every document decoded, found by its objects'
// lines) gives, and a store decoding everything from scratch reads it as
// the writer's store holds it.
func TestSpliceMatchesFullRewrite(t *testing.T) {
	ctx := t.Context()
	for name, content := range spliceFiles {
		entries, docs, _, err := decodeFile([]byte(content), "f.yaml", nil)
		require.NoError(t, err, name)
		held := map[policy.ObjectKey]int{}
		for _, d := range docs {
			for _, e := range d.entries {
				held[e.key] = len(d.entries)
			}
		}
		for _, target := range entries {
			for _, del := range []bool{false, true} {
				op := "replace"
				if del {
					op = "delete"
				}
				t.Run(name+"/"+target.key.Name+"/"+op, func(t *testing.T) {
					root := t.TempDir()
					p := filepath.Join(root, "f.yaml")
					require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
					indexed(t, root)

					var repl policy.Object
					if !del {
						repl, err = datastore.Copy(target.obj)
						require.NoError(t, err)
						// Lines added: the documents after it move.
						repl.SetLabels(map[string]string{"changed": "yes", "by": "test"})
						repl.SetResourceVersion("")
					}
					want, err := rewriteYAML([]byte(content), entries, target.key, repl)
					require.NoError(t, err)
					remaining := 0
					for _, e := range entries {
						if e.key != target.key {
							remaining++
						}
					}

					s, err := Open(ctx, root, Options{})
					require.NoError(t, err)
					defer s.Close()
					if del {
						require.NoError(t, s.Delete(ctx, target.key, ""))
					} else {
						_, err = s.Apply(ctx, repl)
						require.NoError(t, err)
					}
					got, err := os.ReadFile(p)
					if del && remaining == 0 {
						require.ErrorIs(t, err, fs.ErrNotExist, "the last object's file is removed")
					} else {
						require.NoError(t, err)
						assert.Equal(t, string(want), string(got))
					}
					// A List's items are written back as documents of
					// their own.
					assert.LessOrEqual(t, s.docDecodes, 1+held[target.key], "the object's document, and its new content")

					fresh, err := Open(ctx, root, Options{})
					require.NoError(t, err)
					defer fresh.Close()
					require.NoError(t, os.Remove(filepath.Join(root, indexName)))
					// CRLF files: the decoder counts lines of a whole
					// stream and of one document alone differently
					// (as it did before the index knew documents);
					// objects and revisions must agree.
					assert.Equal(t, listing(t, fresh, name != "crlf"), listing(t, s, name != "crlf"))
				})
			}
		}
	}
}

// indexed has a store read the tree and write its persisted index.
func indexed(t *testing.T, root string) {
	t.Helper()
	s, err := Open(t.Context(), root, Options{})
	require.NoError(t, err)
	_, err = s.List(t.Context())
	require.NoError(t, err)
	s.mu.Lock()
	s.decoded = 1
	s.maybeSaveIndexLocked(1)
	s.mu.Unlock()
	require.NoError(t, s.Close())
	require.FileExists(t, filepath.Join(root, indexName))
}

// listing is what List says: each object's canonical encoding and
// position.
func listing(t *testing.T, s *Store, positions bool) map[policy.ObjectKey]string {
	t.Helper()
	items, err := s.List(context.Background())
	require.NoError(t, err)
	out := map[policy.ObjectKey]string{}
	for _, it := range items {
		b, err := datastore.Encoding(it.Object)
		require.NoError(t, err)
		out[it.Key()] = it.Revision + "\n" + string(b)
		if positions {
			out[it.Key()] += it.Origin.Position.String()
		}
	}
	return out
}

// TestSpliceKeepsOtherDocuments: a GitOps user's comments and layout in
// the other documents survive a write by a new store, byte for byte, and
// the other documents of the file are not decoded.
func TestSpliceKeepsOtherDocuments(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	p := filepath.Join(root, "shop.yaml")
	var docs []string
	for i := range 50 {
		docs = append(docs, "# set "+string(rune('A'+i%26))+", owned by team "+string(rune('a'+i%26))+"\n"+gns+"metadata:\n  name: s"+strings.Repeat("x", i)+"  # keep me\nspec:\n    nets:   [192.0.2.0/24]   # odd indent\n")
	}
	content := strings.Join(docs, "---\n")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	indexed(t, root)

	s, err := Open(ctx, root, Options{})
	require.NoError(t, err)
	defer s.Close()
	key := policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "s" + strings.Repeat("x", 20)}
	it, err := s.Get(ctx, key)
	require.NoError(t, err)
	obj := it.Object
	obj.SetLabels(map[string]string{"team": "u"})
	_, err = s.Replace(ctx, obj, it.Revision)
	require.NoError(t, err)
	assert.Equal(t, 2, s.docDecodes, "the object's document when read, then its new content")
	assert.Equal(t, 0, s.decodes-1, "one file content decoded: the new one, of which one document")

	got := strings.Split(read(t, p), "---\n")
	require.Len(t, got, 50)
	for i := range docs {
		if i == 20 {
			assert.Contains(t, got[i], "team: u")
			continue
		}
		assert.Equal(t, docs[i], got[i], "document %d kept byte for byte", i)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

// TestSpliceFileChangedUnderneath: a file changed since the persisted
// index (an editor, git) is not spliced from the index's ranges: the
// store reads what the file holds now.
func TestSpliceFileChangedUnderneath(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	p := filepath.Join(root, "f.yaml")
	content := spliceFiles["comments"]
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	indexed(t, root)
	s, err := Open(ctx, root, Options{})
	require.NoError(t, err)
	defer s.Close()
	key := policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "c"}
	it, err := s.Get(ctx, key)
	require.NoError(t, err)

	// Same size, new content: a document before c's changes, so c's
	// range in the index is no longer where the store thinks.
	edited := strings.Replace(content, "name: a}", "name: z}", 1)
	require.Len(t, edited, len(content))
	require.NoError(t, os.WriteFile(p, []byte(edited), 0o644))
	obj := it.Object
	obj.SetLabels(map[string]string{"x": "y"})
	_, err = s.Apply(ctx, obj)
	if err != nil {
		// The store may see the change at its sync (fsnotify) or at
		// the write's content check: then it refuses, never writes.
		require.ErrorIs(t, err, datastore.ErrConflict)
		assert.Equal(t, edited, read(t, p))
		return
	}
	got := read(t, p)
	assert.Contains(t, got, "name: z}", "the edit is kept")
	assert.Contains(t, got, "x: \"y\"")
	entries, err := decode([]byte(got), "f.yaml")
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.key.Name)
	}
	assert.Equal(t, []string{"z", "b", "c"}, names)
}

// TestIndexRoundTrip: the index a store writes reads back as the files,
// documents and entries it holds; one cut short or with any byte changed
// is refused, as is one of the previous version.
func TestIndexRoundTrip(t *testing.T) {
	root := t.TempDir()
	for name, content := range spliceFiles {
		require.NoError(t, os.WriteFile(filepath.Join(root, name+".yaml"), []byte(content), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "j.json"), []byte(`{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "j"}}`), 0o644))
	s, err := Open(t.Context(), root, Options{})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.List(t.Context())
	require.NoError(t, err)
	s.mu.Lock()
	data := s.encodeIndexLocked()
	s.mu.Unlock()
	checkIndex(t, s, data, root)

	// A write changes its file's block; the others are reused as they
	// were encoded.
	it, err := s.Get(t.Context(), policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "b"})
	require.NoError(t, err)
	obj := it.Object
	obj.SetLabels(map[string]string{"more": "lines", "than": "before"})
	_, err = s.Apply(t.Context(), obj)
	require.NoError(t, err)
	s.mu.Lock()
	again := s.encodeIndexLocked()
	s.mu.Unlock()
	assert.NotEqual(t, string(data), string(again))
	checkIndex(t, s, again, root)

	for cut := range len(data) {
		_, _, err := parseIndex(data[:cut], root)
		require.Error(t, err, "cut at %d", cut)
	}
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x01
		_, _, err := parseIndex(bad, root)
		require.Error(t, err, "byte %d changed", i)
	}
	v1 := strings.Replace(string(data), indexMagic, "calyx-index-v1", 1)
	_, _, err = parseIndex([]byte(v1), root)
	require.Error(t, err)
}

// checkIndex checks the index data lists s's files as s holds them.
func checkIndex(t *testing.T, s *Store, data []byte, root string) {
	t.Helper()
	files, _, err := parseIndex(data, root)
	require.NoError(t, err)
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Len(t, files, len(s.files))
	total, n := 0, 0
	for _, lf := range files {
		require.NoError(t, lf.parseBlock())
		n += len(lf.entries)
		f := s.files[lf.path]
		require.NotNil(t, f, lf.path)
		assert.Equal(t, f.stat, lf.stat)
		assert.Equal(t, f.sum, lf.sum)
		require.Len(t, lf.entries, len(f.entries))
		for i, e := range lf.entries {
			assert.Equal(t, f.entries[i].key, e.key)
			assert.Equal(t, f.entries[i].rev, e.rev)
		}
		if strings.HasSuffix(lf.path, ".json") {
			assert.Empty(t, lf.docs)
		} else {
			require.Len(t, lf.docs, len(f.docs), lf.path)
			for i, d := range lf.docs {
				assert.Equal(t, f.docs[i].key, d.key)
				assert.Equal(t, [2]int{f.docs[i].off, f.docs[i].n}, [2]int{d.off, d.n})
				assert.Len(t, d.entries, len(f.docs[i].entries))
			}
		}
		total += len(f.entries)
	}
	assert.Equal(t, total, n)
}

// TestIndexRangesNotTrusted: an index whose checksum holds but whose
// ranges are wrong (a bug, or a file of the same stat and hash written
// by hand) is not used to decode or splice: the store decodes the file.
func TestIndexRangesNotTrusted(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	p := filepath.Join(root, "f.yaml")
	require.NoError(t, os.WriteFile(p, []byte(spliceFiles["comments"]), 0o644))
	indexed(t, root)
	s, err := Open(ctx, root, Options{})
	require.NoError(t, err)
	defer s.Close()
	key := policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "b"}
	_, err = s.Get(ctx, policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "nope"})
	require.True(t, errors.Is(err, datastore.ErrNotFound))
	// Shift b's document by a byte, as a wrong index would say.
	s.mu.Lock()
	f := s.files[p]
	unparsed := f.block != ""
	s.materializeLocked(p, f)
	lazy := f.lazy
	if lazy {
		f.docs[1].off++
	}
	s.mu.Unlock()
	require.True(t, unparsed, "a Get of another key leaves the file's index block unparsed")
	require.True(t, lazy)
	it, err := s.Get(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, []string{"198.51.100.0/24", "203.0.113.0/24"}, it.Object.(*policy.GlobalNetworkSet).Spec.Nets)
	assert.Equal(t, 1, s.decodes, "decoded whole instead")
}

// TestIndexParsedOnDemand: a new store parses the persisted index's
// entries only for the files that hold the key it is asked about (all of
// them: a key defined twice is resolved as from scratch) and those that
// changed; creates, deletes and replaces through it leave the tree as a
// store decoding everything sees it.
func TestIndexParsedOnDemand(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	set := func(name, net string) string {
		return gns + "metadata: {name: " + name + "}\nspec: {nets: [" + net + "]}\n"
	}
	for i := range 20 {
		name := string(rune('a' + i))
		require.NoError(t, os.WriteFile(filepath.Join(root, name+".yaml"), []byte(set(name+"1", "192.0.2.0/24")+"---\n"+set(name+"2", "192.0.2.0/24")), 0o644))
	}
	// dup is defined in b.yaml (in force: first in path order) and t.yaml.
	require.NoError(t, os.WriteFile(filepath.Join(root, "b.yaml"), []byte(set("b1", "192.0.2.0/24")+"---\n"+set("dup", "198.51.100.1/32")), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "t.yaml"), []byte(set("dup", "203.0.113.1/32")+"---\n"+set("t2", "192.0.2.0/24")), 0o644))
	indexed(t, root)
	require.NoError(t, os.WriteFile(filepath.Join(root, "c.yaml"), []byte(set("c1", "10.0.0.1/32")+"---\n"+set("c2", "192.0.2.0/24")), 0o644))

	s, err := Open(ctx, root, Options{})
	require.NoError(t, err)
	defer s.Close()
	it, err := s.Get(ctx, policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "dup"})
	require.NoError(t, err)
	assert.Equal(t, []string{"198.51.100.1/32"}, it.Object.(*policy.GlobalNetworkSet).Spec.Nets)
	it, err = s.Get(ctx, policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "c1"})
	require.NoError(t, err)
	assert.Equal(t, []string{"10.0.0.1/32"}, it.Object.(*policy.GlobalNetworkSet).Spec.Nets, "changed since the index")
	s.mu.Lock()
	unparsed := s.unparsed
	s.mu.Unlock()
	assert.Equal(t, 20-3, unparsed, "parsed: b and t (they hold dup) and c (changed)")

	// Writes through a store that parsed little.
	w, err := Open(ctx, root, Options{})
	require.NoError(t, err)
	defer w.Close()
	obj, err := datastore.Copy(it.Object)
	require.NoError(t, err)
	obj.SetResourceVersion("")
	obj.SetName("new")
	_, err = w.Create(ctx, obj)
	require.NoError(t, err)
	require.NoError(t, w.Delete(ctx, policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "dup"}, ""))
	it, err = w.Get(ctx, policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "q2"})
	require.NoError(t, err)
	q2 := it.Object
	q2.SetLabels(map[string]string{"x": "1"})
	_, err = w.Replace(ctx, q2, it.Revision)
	require.NoError(t, err)

	require.NoError(t, os.Remove(filepath.Join(root, indexName)))
	scratch, err := Open(ctx, root, Options{})
	require.NoError(t, err)
	defer scratch.Close()
	want := listing(t, scratch, true)
	assert.Len(t, want, 39) // 40 - b2 - t1 + dup, then + new - dup
	assert.Equal(t, want, listing(t, w, true))
	assert.Equal(t, want, listing(t, s, true), "the first store follows the others' writes")
}

// TestIndexStaleStat: files whose stat changed but not their content (a
// copy of the tree, a restore, a touch) are not decoded, and make the
// index be written again, so the next store trusts it.
func TestIndexStaleStat(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	for i := range 20 {
		name := string(rune('a' + i))
		require.NoError(t, os.WriteFile(filepath.Join(root, name+".yaml"), []byte(gns+"metadata: {name: "+name+"}\n"), 0o644))
	}
	indexed(t, root)
	later := time.Now().Add(time.Hour)
	for i := range 20 {
		require.NoError(t, os.Chtimes(filepath.Join(root, string(rune('a'+i))+".yaml"), later, later))
	}
	key := policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: "c"}
	s, err := Open(ctx, root, Options{})
	require.NoError(t, err)
	_, err = s.Get(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, 0, s.decodes, "the same content: nothing decoded")
	require.NoError(t, s.Close())

	next, err := Open(ctx, root, Options{})
	require.NoError(t, err)
	defer next.Close()
	_, err = next.Get(ctx, key)
	require.NoError(t, err)
	next.mu.Lock()
	defer next.mu.Unlock()
	assert.Equal(t, 19, next.unparsed, "the index was written again with the new stats")
}

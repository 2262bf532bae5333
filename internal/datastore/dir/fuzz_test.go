package dir

import (
	"strings"
	"testing"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// FuzzRewriteYAML: for any file that decodes, rewriting one of its
// objects (replaced by a relabelled copy, or deleted) gives a file that
// decodes to exactly the expected objects, in order.
func FuzzRewriteYAML(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: a}\nspec: {nets: [192.0.2.0/24]}\n",
		"# lead comment\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: a}\n---\n# b\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: b}\n",
		"--- {apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: t}}\n--- {apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: u}}",
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n",
		"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n...\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {dup: x}}\n",
	} {
		f.Add([]byte(seed), uint8(0), false)
		f.Add([]byte(seed), uint8(1), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, pick uint8, del bool) {
		entries, err := decode(data, "fuzz.yaml")
		if err != nil || len(entries) == 0 {
			return
		}
		key := policy.KeyOf(entries[int(pick)%len(entries)].obj)
		var repl policy.Object
		if !del {
			repl, err = datastore.Copy(entries[int(pick)%len(entries)].obj)
			if err != nil {
				t.Fatal(err)
			}
			repl.SetLabels(map[string]string{"fuzz": "replaced"})
			repl.SetResourceVersion("")
		}
		var want []string
		for _, e := range entries {
			o := e.obj
			if policy.KeyOf(o) == key {
				if del {
					continue
				}
				o = repl
			}
			b, err := datastore.Encoding(o)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, string(b))
		}
		if len(want) == 0 {
			return // the store removes the file instead
		}
		out, err := rewriteYAML(data, entries, key, repl)
		if err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		// The spliced write (only the document holding the object
		// re-encoded, its bytes found from the documents' ranges) gives
		// the same bytes, when one document holds the object.
		if fileEntries, docs, _, err := decodeFile(data, "fuzz.yaml", nil); err == nil && docs != nil {
			f := &file{entries: fileEntries, docs: docs, stat: fileStat{size: int64(len(data))}}
			if d := holdingDoc(f, key); d >= 0 {
				spliced, err := spliceYAML(data, docs[d], key, repl)
				if err != nil {
					t.Fatalf("splice: %v", err)
				}
				if string(spliced) != string(out) {
					t.Fatalf("spliced:\n%s\nfull rewrite:\n%s\n--- in:\n%s", spliced, out, data)
				}
			}
		}
		got, err := decode(out, "fuzz.yaml")
		if err != nil {
			t.Fatalf("rewritten file does not decode: %v\n--- in:\n%s\n--- out:\n%s", err, data, out)
		}
		if len(got) != len(want) {
			t.Fatalf("%d objects, want %d\n--- in:\n%s\n--- out:\n%s", len(got), len(want), data, out)
		}
		for i, e := range got {
			b, err := datastore.Encoding(e.obj)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != want[i] {
				t.Fatalf("object %d:\n%s\nwant\n%s\n--- in:\n%s\n--- out:\n%s", i, b, want[i], data, out)
			}
		}
	})
}

// FuzzDecodeFileReuse: reading a file again with the documents of its
// previous content (edited anywhere: a value changed, lines added or
// removed, documents added, removed or broken) gives what decoding the new
// content from scratch gives: the same objects, revisions and positions,
// or an error when that gives one.
func FuzzDecodeFileReuse(f *testing.F) {
	base := "# lead comment\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: a}\nspec: {nets: [192.0.2.0/24]}\n---\n# b\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: b}\nspec:\n  nets: [198.51.100.0/24]\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: c}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: d}\n"
	f.Add([]byte(base), []byte(strings.Replace(base, "198.51.100.0/24", "203.0.113.0/24", 1)), false)
	f.Add([]byte(base), []byte(strings.Replace(base, "198.51.100.0/24", "203.0.113.0/24", 1)), true)
	f.Add([]byte(base), []byte(strings.Replace(base, "  nets: [198.51.100.0/24]\n", "  nets:\n  - 198.51.100.0/24\n", 1)), false)
	f.Add([]byte(base), []byte(strings.Replace(base, "  nets: [198.51.100.0/24]\n", "  nets:\n  - 198.51.100.0/24\n", 1)), true)
	f.Add([]byte(base), []byte(strings.Replace(base, "{name: a}", "{name: a, labels: {x: y}}", 1)), false)
	f.Add([]byte(base), []byte(strings.Replace(base, "{name: a}", "{name: a, labels: {x: y}}", 1)), true)
	f.Add([]byte(base), []byte(strings.Replace(base, "192.0.2.0/24", "not-a-net", 1)), false)
	f.Add([]byte(base), []byte(strings.Replace(base, "192.0.2.0/24", "not-a-net", 1)), true)
	f.Add([]byte(base), []byte(strings.Replace(base, "# lead comment\n", "", 1)), false)
	f.Add([]byte(base), []byte(strings.Replace(base, "# lead comment\n", "", 1)), true)
	f.Add([]byte(base), []byte(base+"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: e}\n"), false)
	f.Add([]byte(base), []byte(base+"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: e}\n"), true)
	f.Add([]byte(base), []byte(strings.Replace(base, "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n", "", 1)), false)
	f.Add([]byte(base), []byte(strings.Replace(base, "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n", "", 1)), true)
	f.Add([]byte(base), []byte(strings.Replace(base, "kind: Service", "kind: Namespace", 1)), false)
	f.Add([]byte(base), []byte(strings.Replace(base, "kind: Service", "kind: Namespace", 1)), true)
	f.Add([]byte(base), []byte(strings.Replace(base, "spec:\n  nets", "spec:\n nets", 1)), false)
	f.Add([]byte(base), []byte(strings.Replace(base, "spec:\n  nets", "spec:\n nets", 1)), true)
	f.Fuzz(func(t *testing.T, old, cur []byte, lazy bool) {
		_, docs, _, err := decodeFile(old, "fuzz.yaml", nil)
		if err != nil {
			return
		}
		if lazy {
			// As the persisted index gives them: keys and revisions.
			docs = lazyDocs(docs)
		}
		want, wantErr := decode(cur, "fuzz.yaml")
		got, _, _, gotErr := decodeFile(cur, "fuzz.yaml", docs)
		if (wantErr != nil) != (gotErr != nil) {
			t.Fatalf("error %v, from scratch %v", gotErr, wantErr)
		}
		if wantErr != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%d objects, from scratch %d", len(got), len(want))
		}
		for i := range want {
			if got[i].key != want[i].key || got[i].rev != want[i].rev {
				t.Fatalf("object %d: %s@%s, from scratch %s@%s", i, got[i].key, got[i].rev, want[i].key, want[i].rev)
			}
			if got[i].origin == nil && lazy {
				continue // reused from the index: no position yet
			}
			if got[i].origin.Position != want[i].origin.Position {
				t.Fatalf("%s at %+v, from scratch %+v", got[i].key, got[i].origin.Position, want[i].origin.Position)
			}
		}
	})
}

// lazyDocs strips docs of their objects and positions, as a store that
// read them from the persisted index holds them.
func lazyDocs(docs []docCache) []docCache {
	out := make([]docCache, len(docs))
	for i, d := range docs {
		out[i] = d
		out[i].entries = nil
		for _, e := range d.entries {
			out[i].entries = append(out[i].entries, entry{key: e.key, rev: e.rev})
		}
	}
	return out
}

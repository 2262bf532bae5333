package dir

import (
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

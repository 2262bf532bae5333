package policy_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/calyxnet/calyx/policy"
)

// FuzzDecode checks Decode's contract on arbitrary input:
//
//   - it never panics;
//   - err == nil exactly when it returns at least one object;
//   - an error is either ErrNoObjects (valid input with nothing to read)
//     or a ValidationErrors, every element of which names its source;
//   - decoded objects survive Encode → Decode unchanged, and normalise
//     into a Set without error.
func FuzzDecode(f *testing.F) {
	// Seed with the golden inputs one document at a time: big seeds make
	// the fuzzer spend its time minimising instead of exploring.
	for _, name := range goldenInputs {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		for _, doc := range bytes.Split(b, []byte("\n---\n")) {
			if len(doc) <= 1500 {
				f.Add(doc)
			}
		}
	}
	for _, s := range []string{
		"", "---", "[]", "a: b", "apiVersion: v1\nkind: List\nitems: [1]",
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: y}",
		npHead + "  egress: [{action: Allow, protocol: TCP, destination: {ports: [\"1:2\", x]}}]",
		knpHead + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/9]}}], ports: [{port: 1, endPort: 2}]}]",
		"a: &a [*a]", "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"p\"}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		objs, err := policy.Decode(bytes.NewReader(in), "fuzz.yaml")
		if (err == nil) != (len(objs) > 0) {
			t.Fatalf("err=%v with %d objects", err, len(objs))
		}
		if err != nil {
			var list policy.ValidationErrors
			if !errors.Is(err, policy.ErrNoObjects) && !errors.As(err, &list) {
				t.Fatalf("error of unexpected type %T: %v", err, err)
			}
			for _, e := range list {
				if e.Source != "fuzz.yaml" {
					t.Fatalf("error without source: %v", e)
				}
			}
			return
		}
		var enc bytes.Buffer
		if err := policy.Encode(&enc, objs); err != nil {
			t.Fatalf("encode: %v", err)
		}
		again, err := policy.Decode(bytes.NewReader(enc.Bytes()), "encoded")
		if err != nil {
			t.Fatalf("re-decode: %v\n%s", err, enc.String())
		}
		var enc2 bytes.Buffer
		if err := policy.Encode(&enc2, again); err != nil {
			t.Fatalf("encode again: %v", err)
		}
		if enc.String() != enc2.String() {
			t.Fatalf("encoding not stable:\n%s\n---\n%s", enc.String(), enc2.String())
		}
		set := policy.NewSet()
		for _, o := range objs {
			if _, err := set.Upsert(o); err != nil {
				t.Fatalf("upsert of a decoded object: %v", err)
			}
		}
		_ = set.Policies()
		for _, ep := range set.Endpoints() {
			_ = set.EndpointLabels(ep)
		}
	})
}

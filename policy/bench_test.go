package policy_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/policy"
)

// BenchmarkDecode decodes all golden inputs (about 30 documents).
func BenchmarkDecode(b *testing.B) {
	var all [][]byte
	size := 0
	for _, name := range goldenInputs {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, data)
		size += len(data)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for _, data := range all {
			if _, err := policy.Decode(bytes.NewReader(data), "bench.yaml"); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkSetUpsert decodes 1000 namespaced policies, each with three
// rules, once, then measures upserting them into a fresh Set and reading
// the policies in evaluation order.
func BenchmarkSetUpsert(b *testing.B) {
	var sb strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&sb, `---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p%d, namespace: ns%d}
spec:
  order: %d
  selector: app == 'a%d'
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: role == 'client', namespaceSelector: team == 't%d'}, destination: {ports: [80, "8000:8100"]}}
  - {action: Deny, source: {nets: [10.%d.0.0/16]}}
  egress:
  - {action: Allow, protocol: UDP, destination: {selector: k8s-app == 'kube-dns', ports: [53]}}
`, i, i%50, i%7, i, i%10, i%256)
	}
	objs, err := policy.Decode(strings.NewReader(sb.String()), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		set := policy.NewSet()
		for _, o := range objs {
			if _, err := set.Upsert(o); err != nil {
				b.Fatal(err)
			}
		}
		if len(set.Policies()) != 1000 {
			b.Fatal("missing policies")
		}
	}
}

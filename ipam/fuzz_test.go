package ipam

import (
	"net/netip"
	"reflect"
	"testing"
)

// FuzzParseStoreSpec: parsing never panics, an error comes with a zero
// spec, and String round-trips.
func FuzzParseStoreSpec(f *testing.F) {
	for _, s := range []string{"bolt:/var/lib/calyx/ipam.db", "etcd:http://127.0.0.1:2379", "etcd:http://a:1,https://b:2", "redis:x", "", "bolt:", "etcd:http://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseStoreSpec(s)
		if err != nil {
			if spec.Kind != "" {
				t.Fatalf("error %v with a spec %+v", err, spec)
			}
			return
		}
		again, err := ParseStoreSpec(spec.String())
		if err != nil || again.String() != spec.String() {
			t.Fatalf("round trip %q → %q: %v", s, spec.String(), err)
		}
	})
}

// FuzzDecodeRecords: stored records from a damaged or hostile store never
// panic the decoder, and a block that decodes is safe to use: its slots
// match its size and its addresses map to ordinals and back.
func FuzzDecodeRecords(f *testing.F) {
	b := newBlock(netip.MustParsePrefix("10.0.0.0/30"), "p", "n")
	b.Handles[1] = "h"
	f.Add(b.encode())
	b6 := newBlock(netip.MustParsePrefix("fd00::/126"), "p", "")
	b6.Freed[3] = 1
	f.Add(b6.encode())
	f.Add([]byte("CXB1\x0a10.0.0.0/8\x00\x00\x00"))
	f.Add((&nodeRecord{Blocks: map[netip.Prefix]bool{netip.MustParsePrefix("10.0.0.0/26"): true}}).encode())
	f.Add([]byte(`{"node":"n","addrs":["10.0.0.1"]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if n, err := decodeNode(raw); err == nil {
			if again, err := decodeNode(n.encode()); err != nil || !reflect.DeepEqual(again, n) {
				t.Fatalf("node re-encode: %v", err)
			}
		}
		_, _ = decodeHandle(raw)
		_, _ = decodePool(raw)
		b, err := decodeBlock(raw)
		if err != nil {
			if b != nil {
				t.Fatal("error with a block")
			}
			return
		}
		if again, err := decodeBlock(b.encode()); err != nil || !reflect.DeepEqual(again, b) {
			t.Fatalf("re-encode: %v", err)
		}
		for i := range b.Handles {
			if o, ok := b.ordinal(b.addr(i)); !ok || o != i {
				t.Fatalf("ordinal(addr(%d)) = %d, %v", i, o, ok)
			}
		}
		_ = b.allocated()
		_, _ = b.pick(1, 0)
		_ = b.cooled(1, 0)
	})
}

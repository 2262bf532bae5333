package ebpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
)

// FuzzDecodeEvent: any bytes decode without panicking; an error exactly
// when the record is too short; the packet fields round-trip.
func FuzzDecodeEvent(f *testing.F) {
	ev := make([]byte, eventSize)
	binary.NativeEndian.PutUint64(ev, 43)
	ev[13], ev[14] = 4, 6
	copy(ev[20:], []byte{10, 0, 0, 1})
	f.Add(ev)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, raw []byte) {
		refs := map[string]map[uint64]stepRef{"fp": {43: {reason: ReasonRule, rule: RuleRef{Policy: "p", Index: 3}}}}
		e, err := decodeEvent(raw, resolver{refs: []map[string]map[uint64]stepRef{refs}})
		if (err != nil) != (len(raw) < 52) {
			t.Fatalf("len %d: err %v", len(raw), err)
		}
		if err != nil {
			return
		}
		if e.RuleID == 43 && (e.Rule.Policy != "p" || e.Reason != ReasonRule) {
			t.Fatalf("rule 43 not named")
		}
		if got := binary.BigEndian.Uint16(raw[16:]); (raw[13] == 4 || raw[13] == 6) && e.Src.Port() != got {
			t.Fatalf("source port %d, want %d", e.Src.Port(), got)
		}
		if raw[13] == 4 && e.Src.Addr() != netip.AddrFrom4([4]byte(raw[20:24])) {
			t.Fatalf("source %s", e.Src.Addr())
		}
		_ = e.String()
	})
}

// TestRenderIsDeterministic: random Rulesets render byte for byte the
// same every time (map order never leaks into programs or listings).
func TestRenderIsDeterministic(t *testing.T) {
	w := &testgen.IRWorld{SrcPortMin: 20000, SrcPortMax: 50000, Ports: []uint16{53, 80, 443},
		External: []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")}}
	for i := range 4 {
		w.Pods = append(w.Pods, testgen.IRPod{Key: fmt.Sprintf("ns/p%d", i), Interface: fmt.Sprintf("calyxp%d", i),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), netip.MustParseAddr(fmt.Sprintf("fd00::%d", i+1))},
			Ports: []compile.PortMember{{Protocol: 6, Port: 80}, {Protocol: 17, Port: 53}}})
	}
	rapid.Check(t, func(rt *rapid.T) {
		rs := testgen.IRRuleset(w).Draw(rt, "ruleset")
		first, err := Render(rs)
		if err != nil {
			rt.Fatal(err)
		}
		again, err := Render(rs)
		if err != nil {
			rt.Fatal(err)
		}
		if string(again) != string(first) {
			rt.Fatalf("render differs between runs:\n%s\n---\n%s", first, again)
		}
	})
}

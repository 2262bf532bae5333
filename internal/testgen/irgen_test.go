package testgen_test

import (
	"fmt"
	"net/netip"
	"testing"

	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
)

func world() *testgen.IRWorld {
	w := &testgen.IRWorld{Ports: []uint16{53, 80, 443}, SrcPortMin: 20000, SrcPortMax: 50000,
		External: []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8:77::7")}}
	for i := range 4 {
		w.Pods = append(w.Pods, testgen.IRPod{
			Key:       fmt.Sprintf("ns/pod%d", i),
			Interface: compile.WorkloadInterface("ns", fmt.Sprintf("pod%d", i)),
			Addrs:     []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), netip.MustParseAddr(fmt.Sprintf("fd00::%d", i+1))},
			Ports:     []compile.PortMember{{Protocol: 6, Port: 80}, {Protocol: 17, Port: 53}},
		})
	}
	return w
}

func TestIRRulesetIsConsistent(t *testing.T) {
	w := world()
	rapid.Check(t, func(t *rapid.T) {
		rs := testgen.IRRuleset(w).Draw(t, "rs")
		if err := model.Validate(rs); err != nil {
			t.Fatalf("generated an inconsistent ruleset: %v\n%s", err, rs)
		}
		if len(rs.Endpoints) != len(w.Pods) {
			t.Fatalf("want %d endpoints, got %d", len(w.Pods), len(rs.Endpoints))
		}
		for _, s := range rs.Sets {
			for _, n := range s.Nets {
				if n != n.Masked() {
					t.Fatalf("set %s: non-canonical net %s", s.ID, n)
				}
			}
		}
	})
}

// The generators must reach the interesting corners, or the property
// tests built on them prove little.
func TestIRRulesetCoversTheIR(t *testing.T) {
	w := world()
	seen := map[string]bool{}
	rapid.Check(t, func(t *rapid.T) {
		rs := testgen.IRRuleset(w).Draw(t, "rs")
		for _, p := range rs.Policies {
			for _, r := range p.Rules {
				seen[r.Action.String()] = true
				m := r.Match
				flags := map[string]bool{"icmp": m.ICMP != nil, "notIcmp": m.NotICMP != nil, "notProto": m.NotProtocol != 0,
					"ipv": m.IPVersion != 0, "notSets": len(m.Dst.NotSets)+len(m.Src.NotSets) > 0,
					"namedPorts": len(m.Dst.NamedPorts) > 0, "notNamedPorts": len(m.Dst.NotNamedPorts) > 0,
					"srcPorts": len(m.Src.Ports) > 0, "notPorts": len(m.Dst.NotPorts) > 0}
				for k, v := range flags {
					if v {
						seen[k] = true
					}
				}
			}
		}
		for _, ep := range rs.Endpoints {
			for _, tier := range ep.Ingress.Tiers {
				seen["end"+tier.EndAction.String()] = true
			}
		}
	})
	for _, want := range []string{"Allow", "Deny", "Pass", "Log", "icmp", "notIcmp", "notProto", "ipv", "notSets",
		"namedPorts", "notNamedPorts", "srcPorts", "notPorts", "endDeny", "endPass"} {
		if !seen[want] {
			t.Errorf("generator never produced %s", want)
		}
	}
}

func TestIRPacketStaysInTheWorld(t *testing.T) {
	w := world()
	rapid.Check(t, func(t *rapid.T) {
		p := testgen.IRPacket(w).Draw(t, "p")
		if p.Src.Is4() != p.Dst.Is4() {
			t.Fatalf("mixed families: %v", p)
		}
		if (p.Protocol == 6 || p.Protocol == 17) && (p.SrcPort < w.SrcPortMin || p.SrcPort > w.SrcPortMax) {
			t.Fatalf("source port out of range: %v", p)
		}
		_ = model.Evaluate(&compile.Ruleset{}, model.Packet{Src: p.Src, Dst: p.Dst, Protocol: p.Protocol})
	})
}

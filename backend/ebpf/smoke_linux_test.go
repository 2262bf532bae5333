//go:build linux

package ebpf

import (
	"testing"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
)

// TestSmokeVerdicts: one hand-written Ruleset, a few packets, each
// verdict of the real programs equals the model's.
func TestSmokeVerdicts(t *testing.T) {
	h := newHarness(t)
	b := testgen.NewIR()
	a0, a1 := mustAddr("10.77.0.1"), mustAddr("10.77.0.2")
	b.Endpoint("ns0/pod0", "calyxaaaa0", a0, mustAddr("fd77::1"))
	b.Endpoint("ns1/pod1", "calyxaaaa1", a1, mustAddr("fd77::2"))
	prof := b.AllowAllProfile()
	p0 := b.Selected("a", "ns0/pod0")
	in := b.Policy(compile.Ingress, "default", "web", testgen.Rule(compile.ActionAllow,
		compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{p0}}, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}))
	for _, ep := range b.RS.Endpoints {
		ep.Ingress.Profiles = []compile.PolicyID{prof}
		ep.Egress.Profiles = []compile.PolicyID{prof}
	}
	b.RS.Endpoints["ns1/pod1"].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{in}, EndAction: compile.ActionDeny}}
	h.apply(b.RS)
	for _, p := range []model.Packet{
		{Src: a0, Dst: a1, Protocol: 6, SrcPort: 40000, DstPort: 80},
		{Src: a0, Dst: a1, Protocol: 6, SrcPort: 40000, DstPort: 81},
		{Src: a1, Dst: a0, Protocol: 6, SrcPort: 40000, DstPort: 80},
		{Src: a0, Dst: a1, Protocol: 17, SrcPort: 40000, DstPort: 80},
		{Src: a0, Dst: a1, Protocol: 1, ICMPType: 8},
	} {
		h.flush()
		want := h.idx.Allowed(p)
		got := h.verdict(&pkt{Packet: p, tcpFlags: tcpSYN})
		if got != want {
			t.Errorf("%s: ebpf allowed=%v, model %v", p, got, want)
		}
	}
}

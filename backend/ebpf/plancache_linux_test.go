//go:build linux

package ebpf

import (
	"maps"
	"testing"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
)

// TestPlanCacheSeesPolicyChange: a Ruleset that shares the last one's
// endpoints (same tier lists) but replaces a policy's value under the same
// ID gets a new program, not the cached one; sharing everything reuses
// it.
func TestPlanCacheSeesPolicyChange(t *testing.T) {
	h := newHarness(t)
	b := testgen.NewIR()
	b.Endpoint(podA, "calyxa000000001", a4)
	b.Endpoint(podB, "calyxb000000002", b4)
	web := b.Policy(compile.Ingress, "default", "web",
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}))
	b.RS.Endpoints[podB].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{web}, EndAction: compile.ActionDeny}}
	b.RS.Endpoints[podA].Egress.Profiles = []compile.PolicyID{b.AllowAllProfile()}
	h.apply(b.RS)
	key := attachKey{"calyxb000000002", hookEgress}
	first := h.plan.attach[key]
	syn := func(port uint16) *pkt {
		return &pkt{Packet: model.Packet{Src: a4, Dst: b4, Protocol: 6, SrcPort: 40000 + port, DstPort: port}, tcpFlags: tcpSYN}
	}
	if !h.verdict(syn(80)) || h.verdict(syn(81)) {
		t.Fatal("first policy not enforced")
	}
	same := *b.RS
	same.Policies = maps.Clone(b.RS.Policies)
	h.apply(&same)
	if got := h.plan.attach[key]; got != first {
		t.Errorf("an unchanged Ruleset got program %s, want %s", got, first)
	}
	changed := *b.RS
	changed.Policies = maps.Clone(b.RS.Policies)
	pol := *b.RS.Policies[web]
	pol.Rules = []compile.Rule{testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(81)}})}
	changed.Policies[web] = &pol
	h.apply(&changed)
	if got := h.plan.attach[key]; got == first {
		t.Fatalf("a changed policy kept program %s", got)
	}
	h.flush()
	if h.verdict(syn(80)) || !h.verdict(syn(81)) {
		t.Error("changed policy not enforced")
	}
}

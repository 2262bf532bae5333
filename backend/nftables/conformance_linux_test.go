//go:build linux

package nftables

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/testgen"
)

// Pods of the conformance lab: ns0/pod0 10.77.0.1 fd77::1, ns1/pod1
// 10.77.0.2 fd77::2, ns0/pod2 10.77.0.3 fd77::3, ns1/pod3 10.77.0.4 fd77::4;
// external 198.51.100.7 and 2001:db8:77::7. The scenarios live in
// internal/lab/conformance, shared with the other dataplanes.
const (
	pod0, pod1, pod2, pod3 = "ns0/pod0", "ns1/pod1", "ns0/pod2", "ns1/pod3"
)

type scenario struct {
	name  string
	build func(b *testgen.IR)
}

func tiers(ts ...compile.TierPolicies) []compile.TierPolicies { return ts }

func tier(name string, end compile.Action, ids ...compile.PolicyID) compile.TierPolicies {
	return compile.TierPolicies{Tier: name, Policies: ids, EndAction: end}
}

func sets(ids ...compile.SetID) []compile.SetID { return ids }

var allow, deny = compile.ActionAllow, compile.ActionDeny

func conformanceScenarios() []scenario {
	var out []scenario
	for _, sc := range conformance.Scenarios() {
		out = append(out, scenario{name: sc.Name, build: sc.Build})
	}
	return out
}

// hostScenarios are the host endpoint cases, run on the same lab.
func hostScenarios() []scenario {
	var out []scenario
	for _, sc := range conformance.HostScenarios() {
		out = append(out, scenario{name: sc.Name, build: sc.Build})
	}
	return out
}

func conformanceSpec() lab.Spec { return conformance.Spec() }

// TestConformance runs the hand-written Calico semantics cases one after
// another on one lab (each Apply is a diff of the previous one).
func TestConformance(t *testing.T) {
	r := newRig(t, conformanceSpec())
	for _, sc := range conformanceScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			b := r.ir()
			prof := b.AllowAllProfile()
			for _, ep := range b.RS.Endpoints {
				ep.Ingress.Profiles = []compile.PolicyID{prof}
				ep.Egress.Profiles = []compile.PolicyID{prof}
			}
			sc.build(b)
			m := r.conform(t, b.RS)
			denied := 0
			for _, ok := range m.Allowed {
				if !ok {
					denied++
				}
			}
			t.Logf("%d probes, %d denied", len(m.Probes), denied)
		})
	}
}

// TestStateful: replies of an allowed flow pass although the reverse
// direction is denied, and an allowed flow is no hole the other way.
func TestStateful(t *testing.T) {
	r := newRig(t, conformanceSpec())
	b := r.ir()
	p0, p1 := b.Selected("a", pod0), b.Selected("b", pod1)
	out := b.Policy(compile.Egress, "default", "to-pod1", r0(allow, compile.Match{Dst: compile.PeerMatch{Sets: sets(p1)}}))
	in := b.Policy(compile.Ingress, "default", "from-pod0", r0(allow, compile.Match{Src: compile.PeerMatch{Sets: sets(p0)}}))
	b.RS.Endpoints[pod0].Egress.Tiers = tiers(tier("default", deny, out))
	b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("default", deny))
	b.RS.Endpoints[pod1].Ingress.Tiers = tiers(tier("default", deny, in))
	b.RS.Endpoints[pod1].Egress.Tiers = tiers(tier("default", deny))
	ctx := context.Background()
	if err := r.b.Apply(ctx, b.RS); err != nil {
		t.Fatal(err)
	}
	a0, a1 := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")
	probes := []lab.Probe{
		{From: pod0, To: pod1, Src: a0, Dst: a1, Protocol: 6, SrcPort: 41000, DstPort: 80},
		{From: pod0, To: pod1, Src: a0, Dst: a1, Protocol: 17, SrcPort: 41001, DstPort: 53},
		{From: pod1, To: pod0, Src: a1, Dst: a0, Protocol: 6, SrcPort: 41002, DstPort: 80},
		{From: pod1, To: pod0, Src: a1, Dst: a0, Protocol: 17, SrcPort: 41003, DstPort: 53},
	}
	m, err := r.lab.Run(ctx, probes)
	if err != nil {
		t.Fatal(err)
	}
	if m, err = r.lab.Recheck(ctx, m, lab.Expected(b.RS, probes)); err != nil {
		t.Fatal(err)
	}
	want := []bool{true, true, false, false}
	for i := range probes {
		if m.Allowed[i] != want[i] {
			t.Errorf("%s: got allowed=%v, want %v", probes[i].String(), m.Allowed[i], want[i])
		}
	}
	if diff := m.Diff(lab.Expected(b.RS, probes)); len(diff) > 0 {
		t.Errorf("model disagrees: %v", diff)
	}
}

func r0(a compile.Action, m compile.Match) compile.Rule { return testgen.Rule(a, m) }

// TestBigMergedRun: a run longer than one netlink message of elements
// becomes a named set filled in chunks; the last rule must still match.
func TestBigMergedRun(t *testing.T) {
	r := newRig(t, conformanceSpec())
	b := r.ir()
	prof := b.AllowAllProfile()
	for _, ep := range b.RS.Endpoints {
		ep.Ingress.Profiles = []compile.PolicyID{prof}
		ep.Egress.Profiles = []compile.PolicyID{prof}
	}
	var rules []compile.Rule
	for i := range 2000 {
		n := b.Nets(fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256))
		rules = append(rules, r0(allow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: sets(n)}, Dst: compile.PeerMatch{Ports: testgen.Ports(uint16(1000 + i))}}))
	}
	last := b.Nets("10.77.0.2/32", "fd77::2/128") // pod1
	rules = append(rules, r0(allow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: sets(last)}, Dst: compile.PeerMatch{Ports: testgen.Ports(443)}}))
	p := b.Policy(compile.Ingress, "default", "huge", rules...)
	b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("default", deny, p))
	r.conform(t, b.RS)
	dump, err := r.b.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dump), "th dport @c-") {
		t.Fatalf("expected a named content set for the long run")
	}
	dr, err := r.b.Reconcile(context.Background())
	if err != nil || !dr.Empty() {
		t.Fatalf("reconcile after apply: %v %v", dr, err)
	}
}

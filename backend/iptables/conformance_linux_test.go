//go:build linux

package iptables

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

// TestConformance runs the shared Calico semantics scenarios one after
// another on one lab (each Apply is a diff of the previous one).
func TestConformance(t *testing.T) {
	r := newRig(t, conformance.Spec())
	for _, sc := range conformance.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			b := r.ir()
			conformance.WithAllowAllProfiles(b)
			sc.Build(b)
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

// TestHostEndpointConformance runs the shared host endpoint scenarios one
// after another on one lab: the node's traffic with the external
// namespace meets the host endpoint's fail-safe ports and policy, pod
// traffic does not. The first runs on a cold lab (no neighbour cache
// warm: IPv6 neighbour discovery on the host endpoint must pass); a
// scenario without host endpoint after it and at the end makes adding
// and removing the host endpoint chains diffs too.
func TestHostEndpointConformance(t *testing.T) {
	r := newRig(t, conformance.Spec())
	none := conformance.Scenario{Name: "no host endpoint", Build: func(*testgen.IR) {}}
	hs := conformance.HostScenarios()
	scs := append([]conformance.Scenario{hs[0], none}, hs[1:]...)
	for _, sc := range append(scs, none) {
		t.Run(sc.Name, func(t *testing.T) {
			b := r.ir()
			conformance.WithAllowAllProfiles(b)
			sc.Build(b)
			m := r.conform(t, b.RS)
			var node, nodeDenied int
			for i, p := range m.Probes {
				if p.From == lab.Node || p.To == lab.Node {
					node++
					if !m.Allowed[i] {
						nodeDenied++
					}
				}
			}
			if node == 0 {
				t.Fatal("no probe of the node's own traffic")
			}
			t.Logf("%d probes, %d of the node's, %d of those denied", len(m.Probes), node, nodeDenied)
		})
	}
}

// TestStateful: replies of an allowed flow pass although the reverse
// direction is denied, and an allowed flow is no hole the other way.
func TestStateful(t *testing.T) {
	r := newRig(t, conformance.Spec())
	b := r.ir()
	const pod0, pod1 = "ns0/pod0", "ns1/pod1"
	p0, p1 := b.Selected("a", pod0), b.Selected("b", pod1)
	allow, deny := compile.ActionAllow, compile.ActionDeny
	out := b.Policy(compile.Egress, "default", "to-pod1", testgen.Rule(allow, compile.Match{Dst: compile.PeerMatch{Sets: []compile.SetID{p1}}}))
	in := b.Policy(compile.Ingress, "default", "from-pod0", testgen.Rule(allow, compile.Match{Src: compile.PeerMatch{Sets: []compile.SetID{p0}}}))
	b.RS.Endpoints[pod0].Egress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{out}, EndAction: deny}}
	b.RS.Endpoints[pod0].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: deny}}
	b.RS.Endpoints[pod1].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{in}, EndAction: deny}}
	b.RS.Endpoints[pod1].Egress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: deny}}
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
}

// TestManyPortsAndNets: more ports than one multiport match holds, many
// CIDR rules, and a /0, all observed as the model says.
func TestManyPortsAndNets(t *testing.T) {
	r := newRig(t, conformance.Spec())
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	var ports []compile.PortRange
	for i := range 20 {
		ports = append(ports, compile.PortRange{Min: uint16(1000 + 10*i), Max: uint16(1000 + 10*i + 1)})
	}
	ports = append(ports, compile.PortRange{Min: 443, Max: 443}) // the last chunk
	var rules []compile.Rule
	for i := range 30 {
		n := b.Nets(fmt.Sprintf("10.99.%d.0/24", i), fmt.Sprintf("fd99:%x::/64", i))
		rules = append(rules, testgen.Rule(compile.ActionAllow, compile.Match{Src: compile.PeerMatch{Sets: []compile.SetID{n}}}))
	}
	all := b.Nets("0.0.0.0/0", "10.0.0.0/8", "::/0", "fd00::/8") // two nets: an ipset, with /0 as two halves
	rules = append(rules, testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{all}}, Dst: compile.PeerMatch{Ports: ports}}))
	p := b.Policy(compile.Ingress, "default", "wide", rules...)
	b.RS.Endpoints["ns0/pod0"].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{p}, EndAction: compile.ActionDeny}}
	r.conform(t, b.RS)
	dump, err := r.b.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dump), "0.0.0.0/1") || !strings.Contains(string(dump), "--dports 443") {
		t.Fatalf("expected /0 as two halves and a second multiport chunk:\n%s", dump)
	}
}

//go:build linux

package iptables

import (
	"testing"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/testgen"
)

// TestSmoke: one policy admitting one pod on one port, observed in a lab.
func TestSmoke(t *testing.T) {
	r := newRig(t, lab.Spec{Pods: labtest.Pods(3, tcp80, tcp443, udp53), External: labtest.ExternalAddrs, ExternalPorts: []lab.Port{tcp80}})
	b := r.ir()
	prof := b.AllowAllProfile()
	for _, ep := range b.RS.Endpoints {
		ep.Ingress.Profiles = []compile.PolicyID{prof}
		ep.Egress.Profiles = []compile.PolicyID{prof}
	}
	pod1 := b.Selected("name == 'pod1'", "ns1/pod1")
	pol := b.Policy(compile.Ingress, "default", "web", testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6,
		Src: compile.PeerMatch{Sets: []compile.SetID{pod1}}, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}))
	b.RS.Endpoints["ns0/pod0"].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{pol}, EndAction: compile.ActionDeny}}
	m := r.conform(t, b.RS)
	t.Logf("\n%s", m)
}

//go:build linux

package ebpf

import (
	"context"
	"net/netip"
	"testing"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
)

// TestStatefulInTheLab: in real namespaces, replies of an allowed flow pass
// although every other direction is denied, and an allowed flow is no
// hole the other way (TCP handshake and data, UDP request and reply).
func TestStatefulInTheLab(t *testing.T) {
	r := newRig(t, conformance.Spec())
	b := r.ir()
	pods := r.lab.Spec().Pods
	pod0, pod1 := pods[0].Key(), pods[1].Key()
	p0, p1 := b.Selected("a", pod0), b.Selected("b", pod1)
	out := b.Policy(compile.Egress, "default", "to-pod1", r0(compile.ActionAllow, compile.Match{Dst: compile.PeerMatch{Sets: []compile.SetID{p1}}}))
	in := b.Policy(compile.Ingress, "default", "from-pod0", r0(compile.ActionAllow, compile.Match{Src: compile.PeerMatch{Sets: []compile.SetID{p0}}}))
	deny := []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny}}
	b.RS.Endpoints[pod0].Egress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{out}, EndAction: compile.ActionDeny}}
	b.RS.Endpoints[pod0].Ingress.Tiers = deny
	b.RS.Endpoints[pod1].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{in}, EndAction: compile.ActionDeny}}
	b.RS.Endpoints[pod1].Egress.Tiers = deny
	ctx := context.Background()
	if err := r.b.Apply(ctx, b.RS); err != nil {
		t.Fatal(err)
	}
	a0, a1 := pods[0].IPs[0], pods[1].IPs[0]
	v0, v1 := netip.MustParseAddr("fd77::1"), netip.MustParseAddr("fd77::2")
	probes := []lab.Probe{
		{From: pod0, To: pod1, Src: a0, Dst: a1, Protocol: 6, SrcPort: 41000, DstPort: 80},
		{From: pod0, To: pod1, Src: a0, Dst: a1, Protocol: 17, SrcPort: 41001, DstPort: 53},
		{From: pod0, To: pod1, Src: v0, Dst: v1, Protocol: 6, SrcPort: 41004, DstPort: 443},
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
	want := []bool{true, true, true, false, false}
	for i := range probes {
		if m.Allowed[i] != want[i] {
			t.Errorf("%s: got allowed=%v, want %v", probes[i].String(), m.Allowed[i], want[i])
		}
	}
	if diff := m.Diff(lab.Expected(b.RS, probes)); len(diff) > 0 {
		t.Errorf("model disagrees: %v", diff)
	}
}

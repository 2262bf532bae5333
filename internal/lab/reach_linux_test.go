//go:build linux

package lab_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend/nftables"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/testgen"
)

func TestReachWithNftables(t *testing.T) {
	netnstest.RequireRoot(t)
	spec := lab.Spec{Pods: labtest.Pods(3, tcp80, udp53)}
	b := testgen.NewIR()
	for i := range spec.Pods {
		p := &spec.Pods[i]
		b.Endpoint(p.Key(), p.Interface(), p.IPs...)
	}
	// Every pod admits only TCP from pod1 (and itself).
	one := b.Selected("name == 'pod1'", "ns1/pod1")
	in := b.Policy(compile.Ingress, "default", "from-pod1", testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{one}}}))
	out := b.Policy(compile.Egress, "default", "all-out", testgen.Rule(compile.ActionAllow, compile.Match{}))
	for _, ep := range b.RS.Endpoints {
		ep.Ingress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny, Policies: []compile.PolicyID{in}}}
		ep.Egress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny, Policies: []compile.PolicyID{out}}}
	}
	pods, err := lab.PodsFromRuleset(b.RS, []lab.Port{tcp80, udp53})
	require.NoError(t, err)
	require.ElementsMatch(t, spec.Pods, pods)

	m, err := lab.Reach(context.Background(), lab.Spec{Pods: pods}, b.RS, nftables.Open, lab.Options{ProbeTimeout: 300e6})
	require.NoError(t, err)
	require.Empty(t, m.Diff(lab.Expected(b.RS, m.Probes)))
	allowed := 0
	for i, ok := range m.Allowed {
		if ok {
			allowed++
			p := m.Probes[i]
			require.True(t, p.From == p.To || (p.From == "ns1/pod1" && p.Protocol == 6), "unexpected %s", p.String())
		}
	}
	require.Equal(t, 2*2+3*2*2, allowed, "pod1 to pod0 and pod2 on TCP in two families, plus every pod to itself")
	t.Logf("\n%s", m)
}

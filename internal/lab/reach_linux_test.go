//go:build linux

package lab_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/backend/nftables"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/reach"
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

// TestProberHostScenarios: for the shared host endpoint scenarios (an
// endpoint on a named interface, "*" or known by its addresses, fail-safe
// ports, tiers, profiles), the prober `calyxctl reach --dataplane` uses
// answers every question between the host endpoint and the external
// addresses as the model does, IPv4 and IPv6.
func TestProberHostScenarios(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	spec := conformance.Spec()
	probes := []reach.Probe{{Port: 22, Protocol: 6}, {Port: 8080, Protocol: 6}, {Port: 80, Protocol: 6}, {Port: 53, Protocol: 17}}
	outcomes := map[bool]int{}
	for _, sc := range conformance.HostScenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			b := testgen.NewIR()
			for i := range spec.Pods {
				p := &spec.Pods[i]
				b.Endpoint(p.Key(), p.Interface(), p.IPs...)
			}
			conformance.WithAllowAllProfiles(b)
			sc.Build(b)
			ep := b.RS.Endpoints[conformance.HostEndpointKey]
			host := reach.Pod{Kind: reach.KindHost, Name: strings.TrimPrefix(ep.Key, reach.HostPrefix), Node: ep.Node, Interface: ep.Interface, Addrs: ep.Addrs}
			parties := []reach.Pod{host}
			for _, a := range labtest.ExternalAddrs {
				parties = append(parties, reach.ExternalParty(a))
			}
			p, err := lab.NewProber(ctx, b.RS, parties, probes, nftables.Open, lab.Options{})
			require.NoError(t, err)
			got, err := reach.Run(ctx, p, parties, probes, 1)
			require.NoError(t, err)
			want, err := reach.Run(ctx, reach.ModelProber{Index: model.NewIndex(b.RS)}, parties, probes, 1)
			require.NoError(t, err)
			compared := 0
			for pi, pr := range want.Probes {
				for fi := range want.Pods {
					for ti := range want.Pods {
						from, to := &want.Pods[fi], &want.Pods[ti]
						if (from.Kind == reach.KindHost) == (to.Kind == reach.KindHost) {
							continue // between external addresses: not the lab's question
						}
						if _, ok := reach.FirstPacket(from, to, pr); !ok {
							continue
						}
						compared++
						outcomes[want.Allowed[pi][fi][ti]]++
						assert.Equal(t, want.Allowed[pi][fi][ti], got.Allowed[pi][fi][ti], "%s -> %s %s", from.ID(), to.ID(), pr)
					}
				}
			}
			require.Equal(t, 4*len(probes), compared, "both external addresses to the node, the node to both")
		})
	}
	require.Positive(t, outcomes[true], "some probes allowed")
	require.Positive(t, outcomes[false], "some probes denied")
}

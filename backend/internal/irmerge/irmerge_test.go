package irmerge

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
)

func rules(pol *compile.Policy) []Rule {
	out := make([]Rule, len(pol.Rules))
	for i := range pol.Rules {
		out[i] = Rule{Policy: pol, Index: i, Rule: &pol.Rules[i], N: 1}
	}
	return out
}

func port(p uint16) []compile.PortRange { return []compile.PortRange{{Min: p, Max: p}} }

func TestPortsMergesRulesEqualButForPorts(t *testing.T) {
	pol := &compile.Policy{Rules: []compile.Rule{
		{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: port(80)}}},
		{Action: compile.ActionAllow, Match: compile.Match{Protocol: 17, Dst: compile.PeerMatch{Ports: port(53)}}},
		{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: port(443)}}},
		{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6}},
	}}
	out := Ports(rules(pol), nil)
	require.Len(t, out, 3, "the two TCP port rules become one")
	require.Equal(t, []compile.PortRange{{Min: 80, Max: 80}, {Min: 443, Max: 443}}, out[0].Rule.Match.Dst.Ports)
	require.Equal(t, 2, out[0].N)
	require.Equal(t, 0, out[0].Index, "a merged rule keeps the first rule's origin")
	require.Equal(t, port(80), pol.Rules[0].Match.Dst.Ports, "the policy's own rules are not changed")
	require.Equal(t, uint8(17), out[1].Rule.Match.Protocol)
	require.Equal(t, 1, out[2].N, "a rule without ports stays alone")

	joined := Ports(rules(pol), func(p []compile.PortRange) []compile.PortRange { return p[:1] })
	require.Equal(t, port(80), joined[0].Rule.Match.Dst.Ports, "union joins the merged ports")
}

func TestNetsMergesLiteralSets(t *testing.T) {
	a, b := compile.SetID("nets:a"), compile.SetID("nets:b")
	sel := compile.SetID("sel:x")
	rs := &compile.Ruleset{Sets: map[compile.SetID]*compile.IPSet{
		a:   {ID: a, Kind: compile.SetNets, Literal: true, Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		b:   {ID: b, Kind: compile.SetNets, Literal: true, Nets: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("10.0.0.0/8")}},
		sel: {ID: sel, Kind: compile.SetNets, Selector: "x == 'y'"},
	}}
	pol := &compile.Policy{Rules: []compile.Rule{
		{Action: compile.ActionDeny, Match: compile.Match{Src: compile.PeerMatch{Sets: []compile.SetID{a}}}},
		{Action: compile.ActionDeny, Match: compile.Match{Src: compile.PeerMatch{Sets: []compile.SetID{sel}}}},
		{Action: compile.ActionDeny, Match: compile.Match{Src: compile.PeerMatch{Sets: []compile.SetID{b}}}},
		{Action: compile.ActionDeny, Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{b}}}},
	}}
	s := &Sets{RS: rs}
	out := s.Nets(rules(pol))
	require.Len(t, out, 3, "rules 0 and 2 read one literal set each and are otherwise equal")
	id := out[0].Rule.Match.Src.Sets[0]
	merged := s.Set(id)
	require.NotNil(t, merged)
	require.True(t, merged.Literal)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")}, merged.Nets, "sorted, without duplicates")
	require.Equal(t, sel, out[1].Rule.Match.Src.Sets[0], "a selector's set is not literal: not merged")
	require.Equal(t, uint8(6), out[2].Rule.Match.Protocol, "a rule with another protocol stays apart")

	again := (&Sets{RS: rs}).Nets(rules(pol))
	require.Equal(t, id, again[0].Rule.Match.Src.Sets[0], "the merged set is named by its content")
}

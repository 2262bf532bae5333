package compile

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testRuleset() *Ruleset {
	code := uint8(0)
	return &Ruleset{
		Node: "node1",
		Sets: map[SetID]*IPSet{
			"s:web": {ID: "s:web", Kind: SetNets, Selector: `app == "web"`,
				Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("10.0.0.2/32")}},
			"s:http": {ID: "s:http", Kind: SetNamedPorts, Selector: "all()", PortName: "http", Protocol: 6,
				Ports: []PortMember{{Addr: netip.MustParseAddr("10.0.0.1"), Protocol: 6, Port: 8080}}},
		},
		Policies: map[PolicyID]*Policy{
			"in:default/shop/allow": {ID: "in:default/shop/allow", Direction: Ingress, Tier: "default", Name: "shop/allow",
				Rules: []Rule{{
					Action: ActionAllow,
					Match: Match{Protocol: 6, ICMP: nil, Src: PeerMatch{Sets: []SetID{"s:web"}},
						Dst: PeerMatch{Ports: []PortRange{{80, 80}, {8000, 8100}}, NamedPorts: []SetID{"s:http"}}},
					Origin: Origin{Tier: "default", Policy: "shop/allow", Kind: "NetworkPolicy", Index: 0, Path: "spec.ingress[0]", Source: "p.yaml:3"},
				}, {
					Action: ActionDeny,
					Match:  Match{Protocol: 1, ICMP: &ICMPMatch{Type: 8, Code: &code}},
					Origin: Origin{Tier: "default", Policy: "shop/allow", Index: 1},
				}}},
		},
		Endpoints: map[string]*Endpoint{
			"shop/db": {Key: "shop/db", Kind: WorkloadEndpoint, Node: "node1", Interface: "calyx0123456789",
				Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.3")},
				Ingress: DirectionPolicy{Tiers: []TierPolicies{{Tier: "default", Policies: []PolicyID{"in:default/shop/allow"}, EndAction: ActionDeny}},
					Profiles: []PolicyID{"in:profile/kns.shop"}},
			},
		},
	}
}

func TestDiffIdentical(t *testing.T) {
	d := Diff(testRuleset(), testRuleset())
	assert.True(t, d.Empty(), "delta of identical rulesets: %s", d)
	assert.Equal(t, testRuleset().String(), testRuleset().String())
}

func TestDiffChanges(t *testing.T) {
	old, upd := testRuleset(), testRuleset()
	upd.Sets["s:web"].Nets = []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32"), netip.MustParsePrefix("10.0.0.9/32")}
	delete(upd.Sets, "s:http")
	upd.Sets["s:new"] = &IPSet{ID: "s:new", Kind: SetNets, Literal: true}
	upd.Policies["in:default/shop/allow"].Rules[1].Action = ActionAllow
	upd.Endpoints["shop/db"].Addrs = append(upd.Endpoints["shop/db"].Addrs, netip.MustParseAddr("fd00::3"))
	upd.Endpoints["shop/web"] = &Endpoint{Key: "shop/web", Kind: WorkloadEndpoint}
	upd.Settings.LogPrefix = "calyx"

	d := Diff(old, upd)
	assert.Equal(t, []SetID{"s:new"}, d.SetsAdded)
	assert.Equal(t, []SetID{"s:http"}, d.SetsRemoved)
	require.Len(t, d.SetMembers, 1)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.9/32")}, d.SetMembers[0].AddedNets)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}, d.SetMembers[0].RemovedNets)
	assert.Equal(t, []PolicyID{"in:default/shop/allow"}, d.PoliciesChanged)
	assert.Equal(t, []string{"shop/web"}, d.EndpointsAdded)
	assert.Equal(t, []string{"shop/db"}, d.EndpointsChanged)
	assert.True(t, d.SettingsChanged)
	assert.False(t, d.Empty())

	back := Diff(upd, old)
	assert.Equal(t, []SetID{"s:http"}, back.SetsAdded)
	assert.Equal(t, []string{"shop/web"}, back.EndpointsRemoved)
}

func TestDiffICMPCode(t *testing.T) {
	a, b := testRuleset(), testRuleset()
	other := uint8(3)
	b.Policies["in:default/shop/allow"].Rules[1].Match.ICMP.Code = &other
	assert.Equal(t, []PolicyID{"in:default/shop/allow"}, Diff(a, b).PoliciesChanged)
	b.Policies["in:default/shop/allow"].Rules[1].Match.ICMP.Code = nil
	assert.Equal(t, []PolicyID{"in:default/shop/allow"}, Diff(a, b).PoliciesChanged)
}

func TestRulesetString(t *testing.T) {
	s := testRuleset().String()
	for _, want := range []string{
		`ruleset node="node1"`,
		`set s:http named-ports selector="all()" port=http/TCP members={10.0.0.1/TCP:8080}`,
		`set s:web nets selector="app == \"web\"" members={10.0.0.1/32,10.0.0.2/32}`,
		`  0: Allow proto=TCP src.sets=s:web dst.ports=80,8000:8100 dst.named-ports=s:http # default/shop/allow spec.ingress[0] (p.yaml:3)`,
		`  1: Deny proto=ICMP icmp=8/0 # default/shop/allow rule 1`,
		`endpoint shop/db workload node="node1" iface="calyx0123456789" addrs=10.0.0.3`,
		`  ingress tier "default" end=Deny: in:default/shop/allow`,
		`  ingress profiles: in:profile/kns.shop`,
	} {
		assert.Contains(t, s, want+"\n")
	}
	// Sets print before policies, policies before endpoints.
	assert.Less(t, strings.Index(s, "set s:web"), strings.Index(s, "policy "))
	assert.Less(t, strings.Index(s, "policy "), strings.Index(s, "endpoint "))
}

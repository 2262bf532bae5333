package model

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	webIP = netip.MustParseAddr("10.0.0.1")
	dbIP  = netip.MustParseAddr("10.0.0.2")
	apiIP = netip.MustParseAddr("10.0.0.3")
	extIP = netip.MustParseAddr("192.0.2.7")
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func origin(tier, pol string, i int) compile.Origin {
	return compile.Origin{Tier: tier, Policy: pol, Kind: "NetworkPolicy", Index: i, Path: "spec.ingress[" + string(rune('0'+i)) + "]"}
}

// scenario: web, api and db in one namespace.
//   - tier "security" (first): policy sec-pass passes everything egress from
//     web; policy sec-deny-ext denies db's egress to the 192.0.2.0/24 net.
//   - tier "default": db ingress allows web on TCP 5432 (named "pg") and
//     logs first; api has a Log-only policy (so end-of-tier deny hits).
//   - profiles allow everything.
func scenario() *compile.Ruleset {
	allow := func(id compile.PolicyID, dir compile.Direction) *compile.Policy {
		return &compile.Policy{ID: id, Direction: dir, Name: "profile:kns.shop", Rules: []compile.Rule{{Action: compile.ActionAllow, Origin: compile.Origin{Policy: "profile:kns.shop", Index: -1}}}}
	}
	return &compile.Ruleset{
		Sets: map[compile.SetID]*compile.IPSet{
			"s:web": {ID: "s:web", Kind: compile.SetNets, Selector: `app == "web"`, Nets: []netip.Prefix{pfx("10.0.0.1/32")}},
			"s:ext": {ID: "s:ext", Kind: compile.SetNets, Literal: true, Nets: []netip.Prefix{pfx("192.0.2.0/24")}},
			"s:pg":  {ID: "s:pg", Kind: compile.SetNamedPorts, Selector: "all()", PortName: "pg", Protocol: 6, Ports: []compile.PortMember{{Addr: dbIP, Protocol: 6, Port: 5432}}},
		},
		Policies: map[compile.PolicyID]*compile.Policy{
			"out:security/sec-pass": {ID: "out:security/sec-pass", Direction: compile.Egress, Tier: "security", Name: "sec-pass",
				Rules: []compile.Rule{{Action: compile.ActionPass, Origin: origin("security", "sec-pass", 0)}}},
			"out:security/sec-deny-ext": {ID: "out:security/sec-deny-ext", Direction: compile.Egress, Tier: "security", Name: "sec-deny-ext",
				Rules: []compile.Rule{{Action: compile.ActionDeny, Match: compile.Match{Dst: compile.PeerMatch{Sets: []compile.SetID{"s:ext"}}}, Origin: origin("security", "sec-deny-ext", 0)}}},
			"in:default/shop/db": {ID: "in:default/shop/db", Direction: compile.Ingress, Tier: "default", Name: "shop/db",
				Rules: []compile.Rule{
					{Action: compile.ActionLog, Origin: origin("default", "shop/db", 0)},
					{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{"s:web"}}, Dst: compile.PeerMatch{NamedPorts: []compile.SetID{"s:pg"}}}, Origin: origin("default", "shop/db", 1)},
				}},
			"in:default/shop/api-log": {ID: "in:default/shop/api-log", Direction: compile.Ingress, Tier: "default", Name: "shop/api-log",
				Rules: []compile.Rule{{Action: compile.ActionLog, Origin: origin("default", "shop/api-log", 0)}}},
			"in:profile/kns.shop":  allow("in:profile/kns.shop", compile.Ingress),
			"out:profile/kns.shop": allow("out:profile/kns.shop", compile.Egress),
		},
		Endpoints: map[string]*compile.Endpoint{
			"shop/web": {Key: "shop/web", Kind: compile.WorkloadEndpoint, Addrs: []netip.Addr{webIP},
				Egress:  compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "security", Policies: []compile.PolicyID{"out:security/sec-pass"}, EndAction: compile.ActionDeny}}, Profiles: []compile.PolicyID{"out:profile/kns.shop"}},
				Ingress: compile.DirectionPolicy{Profiles: []compile.PolicyID{"in:profile/kns.shop"}}},
			"shop/db": {Key: "shop/db", Kind: compile.WorkloadEndpoint, Addrs: []netip.Addr{dbIP},
				Ingress: compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{"in:default/shop/db"}, EndAction: compile.ActionDeny}}, Profiles: []compile.PolicyID{"in:profile/kns.shop"}},
				Egress:  compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "security", Policies: []compile.PolicyID{"out:security/sec-deny-ext"}, EndAction: compile.ActionPass}}, Profiles: []compile.PolicyID{"out:profile/kns.shop"}}},
			"shop/api": {Key: "shop/api", Kind: compile.WorkloadEndpoint, Addrs: []netip.Addr{apiIP},
				Ingress: compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{"in:default/shop/api-log"}, EndAction: compile.ActionDeny}}, Profiles: []compile.PolicyID{"in:profile/kns.shop"}},
				Egress:  compile.DirectionPolicy{Profiles: []compile.PolicyID{"out:profile/kns.shop"}}},
		},
	}
}

func tcp(src, dst netip.Addr, port uint16) Packet {
	return Packet{Src: src, Dst: dst, Protocol: 6, SrcPort: 40000, DstPort: port}
}

func TestVerdicts(t *testing.T) {
	idx := NewIndex(scenario())
	for _, tc := range []struct {
		name    string
		p       Packet
		allowed bool
		decider string
	}{
		{"web to db on the named port: pass from security, allow in default", tcp(webIP, dbIP, 5432), true, "shop/db ingress: default/shop/db spec.ingress[1]: MATCH → Allow"},
		{"web to db on another port: end of tier deny", tcp(webIP, dbIP, 5433), false, `shop/db ingress: end of tier "default": deny`},
		{"web to db over UDP on the port number: the named port is TCP", Packet{Src: webIP, Dst: dbIP, Protocol: 17, DstPort: 5432}, false, `shop/db ingress: end of tier "default": deny`},
		{"api to db: not web", tcp(apiIP, dbIP, 5432), false, `shop/db ingress: end of tier "default": deny`},
		{"db to api: Log-only policy makes its tier apply, end-of-tier deny", tcp(dbIP, apiIP, 80), false, `shop/api ingress: end of tier "default": deny`},
		{"db to outside: denied by the security tier", tcp(dbIP, extIP, 443), false, "shop/db egress: security/sec-deny-ext spec.ingress[0]: MATCH → Deny"},
		{"api to outside: no policy, profile allows", tcp(apiIP, extIP, 443), true, "shop/api egress: profile profile:kns.shop: MATCH → Allow"},
		{"db to web: security tier ends in pass, profiles allow", tcp(dbIP, webIP, 80), true, "shop/web ingress: profile profile:kns.shop: MATCH → Allow"},
		{"outside to db: ingress only", tcp(extIP, dbIP, 5432), false, `shop/db ingress: end of tier "default": deny`},
		{"self", tcp(dbIP, dbIP, 1), true, "shop/db: traffic to itself: allow"},
		{"no endpoint", tcp(extIP, extIP, 1), true, "neither address is an endpoint: no policy: allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := idx.Verdict(tc.p)
			assert.Equal(t, tc.allowed, v.Allowed, "%s", v.String())
			assert.Equal(t, tc.allowed, idx.Allowed(tc.p), "Allowed must agree with Verdict")
			d, ok := v.Decider()
			require.True(t, ok, "%s", v.String())
			assert.Equal(t, tc.decider, d.String())
		})
	}
}

func TestTraceShowsEveryRuleConsulted(t *testing.T) {
	v := Evaluate(scenario(), tcp(webIP, dbIP, 5432))
	want := []string{
		"shop/web egress: security/sec-pass spec.ingress[0]: MATCH → Pass",
		"shop/web egress: profile profile:kns.shop: MATCH → Allow",
		"shop/db ingress: default/shop/db spec.ingress[0]: MATCH → Log",
		"shop/db ingress: default/shop/db spec.ingress[1]: MATCH → Allow",
	}
	var got []string
	for _, s := range v.Steps {
		got = append(got, s.String())
	}
	assert.Equal(t, want, got)
	assert.True(t, strings.HasSuffix(v.String(), "ALLOWED\n"))
}

func TestMatchFields(t *testing.T) {
	code := uint8(0)
	rs := scenario()
	rs.Policies["in:default/shop/api-log"].Rules = []compile.Rule{
		{Action: compile.ActionDeny, Match: compile.Match{Protocol: 1, ICMP: &compile.ICMPMatch{Type: 8, Code: &code}}},
		{Action: compile.ActionAllow, Match: compile.Match{Protocol: 1}},
		{Action: compile.ActionAllow, Match: compile.Match{IPVersion: 4, Protocol: 17, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: 53, Max: 53}, {Min: 8000, Max: 8100}}}}},
		{Action: compile.ActionAllow, Match: compile.Match{NotProtocol: 17, Src: compile.PeerMatch{NotSets: []compile.SetID{"s:web"}}, Dst: compile.PeerMatch{NotPorts: []compile.PortRange{{Min: 1, Max: 1023}}}}},
		{Action: compile.ActionAllow, Match: compile.Match{Protocol: 132, Src: compile.PeerMatch{Ports: []compile.PortRange{{Min: 7, Max: 7}}}}},
	}
	idx := NewIndex(rs)
	for _, tc := range []struct {
		name    string
		p       Packet
		allowed bool
	}{
		{"icmp echo denied", Packet{Src: extIP, Dst: apiIP, Protocol: 1, ICMPType: 8}, false},
		{"icmp echo code 1 allowed", Packet{Src: extIP, Dst: apiIP, Protocol: 1, ICMPType: 8, ICMPCode: 1}, true},
		{"icmp unreachable allowed", Packet{Src: extIP, Dst: apiIP, Protocol: 1, ICMPType: 3}, true},
		{"udp 53", Packet{Src: extIP, Dst: apiIP, Protocol: 17, DstPort: 53}, true},
		{"udp 8100 in range", Packet{Src: extIP, Dst: apiIP, Protocol: 17, DstPort: 8100}, true},
		{"udp 8101 out of range", Packet{Src: extIP, Dst: apiIP, Protocol: 17, DstPort: 8101}, false},
		{"tcp high port from outside", tcp(extIP, apiIP, 8080), true},
		{"tcp low port from outside: notPorts", tcp(extIP, apiIP, 80), false},
		{"tcp high port from web: notSets", tcp(webIP, apiIP, 8080), false},
		{"sctp from source port 7", Packet{Src: extIP, Dst: apiIP, Protocol: 132, SrcPort: 7, DstPort: 9}, true},
		{"sctp from source port 8 high dst", Packet{Src: extIP, Dst: apiIP, Protocol: 132, SrcPort: 8, DstPort: 80}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := idx.Verdict(tc.p)
			assert.Equal(t, tc.allowed, v.Allowed, "%s", v.String())
		})
	}
}

func TestHostEndpointFailsafe(t *testing.T) {
	hostIP := netip.MustParseAddr("10.1.0.1")
	rs := scenario()
	rs.Endpoints["host:node1/eth0"] = &compile.Endpoint{Key: "host:node1/eth0", Kind: compile.HostEndpoint, Addrs: []netip.Addr{hostIP}}
	rs.Settings.FailsafeInbound = []compile.ProtoPort{{Protocol: 6, Port: 22}, {Protocol: 6, Port: 179, Net: pfx("10.1.0.0/16")}}
	idx := NewIndex(rs)
	assert.True(t, idx.Allowed(tcp(extIP, hostIP, 22)), "ssh is fail-safe")
	assert.False(t, idx.Allowed(tcp(extIP, hostIP, 80)), "no profile: deny")
	assert.False(t, idx.Allowed(tcp(extIP, hostIP, 179)), "bgp fail-safe only from 10.1/16")
	assert.True(t, idx.Allowed(tcp(netip.MustParseAddr("10.1.2.3"), hostIP, 179)))
}

// Host endpoint policy judges the node's traffic with the outside, not
// traffic between the node and its own workloads; a workload of another
// node reaches the host endpoint like any outside peer.
func TestHostEndpointSkipsOwnWorkloads(t *testing.T) {
	hostIP := netip.MustParseAddr("10.1.0.1")
	rs := scenario()
	for _, ep := range rs.Endpoints {
		ep.Node = "node1"
	}
	rs.Endpoints["host:node1/eth0"] = &compile.Endpoint{Key: "host:node1/eth0", Kind: compile.HostEndpoint, Node: "node1",
		Interface: "eth0", Addrs: []netip.Addr{hostIP}}
	idx := NewIndex(rs)
	assert.False(t, idx.Allowed(tcp(extIP, hostIP, 80)), "outside to the host: the host endpoint (no policy) denies")
	assert.False(t, idx.Allowed(tcp(hostIP, extIP, 80)), "host to outside: the host endpoint denies")
	v := idx.Verdict(tcp(apiIP, hostIP, 80))
	assert.True(t, v.Allowed, "own workload to the host: only the workload's egress decides: %s", v)
	v = idx.Verdict(tcp(hostIP, apiIP, 80))
	assert.False(t, v.Allowed, "host to own workload: only the workload's ingress (end of tier) decides: %s", v)
	for _, st := range v.Steps {
		assert.Equal(t, "shop/api", st.Endpoint, "no host endpoint step: %s", v)
	}
	v = idx.Verdict(tcp(hostIP, webIP, 80))
	assert.True(t, v.Allowed, "host to web: web's ingress (profile) allows: %s", v)

	rs.Endpoints["shop/api"].Node = "node2"
	idx = NewIndex(rs)
	assert.False(t, idx.Allowed(tcp(apiIP, hostIP, 80)), "another node's workload meets the host endpoint's policy")
}

func TestBackend(t *testing.T) {
	ctx := context.Background()
	var reg backend.Registry
	reg.Register(Name, Open)
	b, err := reg.Open(ctx, Name, backend.Options{})
	require.NoError(t, err)
	m := b.(*Model)
	assert.True(t, m.Verdict(tcp(webIP, dbIP, 1)).Allowed, "empty model allows")

	require.NoError(t, m.Apply(ctx, scenario()))
	assert.False(t, m.Verdict(tcp(webIP, dbIP, 1)).Allowed)
	dump, err := m.Dump(ctx)
	require.NoError(t, err)
	assert.Equal(t, scenario().String(), string(dump))

	broken := scenario()
	broken.Endpoints["shop/web"].Egress.Tiers[0].Policies = []compile.PolicyID{"out:nope"}
	broken.Policies["in:default/shop/db"].Rules[1].Match.Src.Sets = []compile.SetID{"s:missing"}
	err = m.Apply(ctx, broken)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown policy out:nope")
	assert.Contains(t, err.Error(), "unknown set s:missing")
	assert.False(t, m.Verdict(tcp(webIP, dbIP, 1)).Allowed, "failed apply keeps the previous ruleset")

	require.NoError(t, m.Close(ctx))
	_, err = m.Dump(ctx)
	assert.ErrorIs(t, err, backend.ErrClosed)
	assert.ErrorIs(t, m.Apply(ctx, scenario()), backend.ErrClosed)
}

func TestIPv4MappedAddresses(t *testing.T) {
	idx := NewIndex(scenario())
	mapped := netip.AddrFrom16(webIP.As16())
	assert.Equal(t, idx.Allowed(tcp(webIP, dbIP, 5432)), idx.Allowed(tcp(mapped, dbIP, 5432)))
	ep, ok := idx.Endpoint(mapped)
	require.True(t, ok)
	assert.Equal(t, "shop/web", ep.Key)
}

package lab

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/reach"
)

func hostRuleset(eps ...*compile.Endpoint) *compile.Ruleset {
	rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{
		"a/web": {Key: "a/web", Kind: compile.WorkloadEndpoint, Node: "node1", Interface: compile.WorkloadInterface("a", "web")},
	}}
	for _, ep := range eps {
		ep.Kind = compile.HostEndpoint
		rs.Endpoints[ep.Key] = ep
	}
	return rs
}

// hostNode keeps the node's own host endpoints (and every pod), hangs the
// outside off the endpoint's interface, and refuses a node on which
// another endpoint would take the probed one's traffic.
func TestHostNode(t *testing.T) {
	eth0 := &compile.Endpoint{Key: "host:n1-eth0", Node: "node1", Interface: "eth0"}
	star := &compile.Endpoint{Key: "host:n1-all", Node: "node1", Interface: "*"}
	byIP := &compile.Endpoint{Key: "host:n1-ips", Node: "node1"}
	other := &compile.Endpoint{Key: "host:n2-eth0", Node: "node2", Interface: "eth0"}
	rs := hostRuleset(eth0, star, byIP, other)

	got, link, err := hostNode(rs, &reach.Pod{Kind: reach.KindHost, Name: "n1-eth0"})
	require.NoError(t, err)
	assert.Equal(t, "eth0", link)
	assert.ElementsMatch(t, []string{"a/web", "host:n1-eth0", "host:n1-all", "host:n1-ips"}, keys(got))
	assert.Len(t, rs.Endpoints, 5, "the Ruleset given is left alone")

	for _, name := range []string{"n1-all", "n1-ips"} {
		_, link, err = hostNode(rs, &reach.Pod{Kind: reach.KindHost, Name: name})
		require.NoError(t, err, name)
		assert.Equal(t, ExternalInterface, link, name)
	}

	for name, rs := range map[string]*compile.Ruleset{
		"n1-eth0": hostRuleset(&compile.Endpoint{Key: "host:n1-a", Node: "node1", Interface: "eth0"}, &compile.Endpoint{Key: "host:n1-eth0", Node: "node1", Interface: "eth0"}),
		"n1-all":  hostRuleset(&compile.Endpoint{Key: "host:n1-a", Node: "node1", Interface: "*"}, &compile.Endpoint{Key: "host:n1-all", Node: "node1", Interface: "*"}),
		"n1-ips":  hostRuleset(&compile.Endpoint{Key: "host:n1-x", Node: "node1", Interface: ExternalInterface}, &compile.Endpoint{Key: "host:n1-ips", Node: "node1"}),
		"n1-lo":   hostRuleset(&compile.Endpoint{Key: "host:n1-lo", Node: "node1", Interface: "lo"}),
		"nope":    hostRuleset(),
	} {
		_, _, err := hostNode(rs, &reach.Pod{Kind: reach.KindHost, Name: name})
		assert.ErrorIs(t, err, ErrInvalidSpec, name)
	}
	// Another node's endpoint on the same interface is not the lab node's.
	_, link, err = hostNode(hostRuleset(&compile.Endpoint{Key: "host:a", Node: "node2", Interface: "eth0"}, &compile.Endpoint{Key: "host:b", Node: "node1", Interface: "eth0"}),
		&reach.Pod{Kind: reach.KindHost, Name: "b"})
	require.NoError(t, err)
	assert.Equal(t, "eth0", link)
}

func keys(rs *compile.Ruleset) []string {
	var out []string
	for k := range rs.Endpoints {
		out = append(out, k)
	}
	return out
}

func TestFirstNamedHostInterface(t *testing.T) {
	assert.Equal(t, "", firstNamedHostInterface(hostRuleset()))
	assert.Equal(t, "", firstNamedHostInterface(hostRuleset(&compile.Endpoint{Key: "host:a", Interface: "*"}, &compile.Endpoint{Key: "host:b"})))
	assert.Equal(t, "bond0", firstNamedHostInterface(hostRuleset(
		&compile.Endpoint{Key: "host:c", Interface: "eth1"}, &compile.Endpoint{Key: "host:b", Interface: "bond0"},
		&compile.Endpoint{Key: "host:a", Interface: "lo"})), "the first by key the lab can build")
}

func TestExternalLinkValidation(t *testing.T) {
	ext := []netip.Addr{netip.MustParseAddr("203.0.113.9")}
	for _, ok := range []string{"", "eth0", "bond0.100", "enp0s31f6"} {
		s := Spec{External: ext, ExternalLink: ok}
		assert.NoError(t, s.Validate(), ok)
	}
	for _, bad := range []string{"lo", "cxuplink", "cxuplink-p", "cxnl3", "calyx0123456789", "a-name-too-long-for-linux", "eth/0", "*"} {
		s := Spec{External: ext, ExternalLink: bad}
		assert.ErrorIs(t, s.Validate(), ErrInvalidSpec, bad)
	}
	s := Spec{ExternalLink: "eth0"}
	assert.Equal(t, "eth0", s.ExternalIf())
	assert.Equal(t, ExternalInterface, (&Spec{}).ExternalIf())
}

func TestOtherHostInterfaces(t *testing.T) {
	rs := hostRuleset(&compile.Endpoint{Key: "host:a", Interface: "eth1"}, &compile.Endpoint{Key: "host:b", Interface: "eth0"},
		&compile.Endpoint{Key: "host:c", Interface: "*"}, &compile.Endpoint{Key: "host:d"}, &compile.Endpoint{Key: "host:e", Interface: "lo"},
		&compile.Endpoint{Key: "host:f", Interface: "bond0"}, &compile.Endpoint{Key: "host:g", Interface: "eth1"})
	assert.Equal(t, []string{"bond0", "eth1"}, otherHostInterfaces(rs, "eth0"))
}

func TestNodeLinksValidation(t *testing.T) {
	ext := []netip.Addr{netip.MustParseAddr("203.0.113.9")}
	assert.NoError(t, (&Spec{External: ext, ExternalLink: "eth0", NodeLinks: []string{"eth1", "bond0"}}).Validate())
	for _, bad := range [][]string{{"eth0"}, {"eth1", "eth1"}, {"cxnl0"}, {"lo"}, {"calyxabc"}} {
		err := (&Spec{External: ext, ExternalLink: "eth0", NodeLinks: bad}).Validate()
		assert.ErrorIs(t, err, ErrInvalidSpec, "%v", bad)
	}
}

func TestNodeAddrsAvoiding(t *testing.T) {
	assert.Nil(t, nodeAddrsAvoiding([]netip.Addr{netip.MustParseAddr("203.0.113.9")}), "the defaults")
	got := nodeAddrsAvoiding([]netip.Addr{netip.MustParseAddr("192.0.2.254"), netip.MustParseAddr("192.0.2.253")})
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("192.0.2.252"), defaultNodeAddrs[1]}, got)
}

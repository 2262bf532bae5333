package iptables

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
)

// hostRules returns the bodies of a chain of family i of p: its rules
// without "-A name" and the comment.
func hostRules(t *testing.T, p *plan, i int, name string) []string {
	t.Helper()
	c, ok := p.fams[i].chains[name]
	require.True(t, ok, "no chain %s", name)
	var out []string
	for _, l := range c.rules {
		l = strings.TrimPrefix(l, "-A "+name+" ")
		j := strings.Index(l, `-m comment --comment "cx:`)
		out = append(out, strings.TrimSpace(l[:j]+l[j+len(`-m comment --comment "cx:123456789abc"`)+1:]))
	}
	return out
}

// TestHostDispatchOrder: named interfaces first (one per interface, the
// first by key), loopback left alone, then the endpoints known by their
// addresses (in their families only), then "*"; egress mirrors it with
// -o and -s.
func TestHostDispatchOrder(t *testing.T) {
	b := testgen.NewIR()
	b.Endpoint("ns/pod", "calyxpod", netip.MustParseAddr("10.0.0.9"))
	add := func(key, iface string, addrs ...string) {
		ep := &compile.Endpoint{Key: key, Kind: compile.HostEndpoint, Interface: iface}
		for _, a := range addrs {
			ep.Addrs = append(ep.Addrs, netip.MustParseAddr(a))
		}
		b.RS.Endpoints[key] = ep
	}
	add("host:n/a-star", "*")
	add("host:n/b-star", "*")
	add("host:n/eth1", "eth1")
	add("host:n/eth0", "eth0", "192.0.2.1")
	add("host:n/eth0-again", "eth0")
	add("host:n/ips", "", "192.0.2.5", "2001:db8::5")
	add("host:n/v4", "", "192.0.2.6")
	add("host:n/on-a-pod", "calyxpod")
	p, err := render(b.RS, newNaming(""), nil)
	require.NoError(t, err)

	shape := func(rules []string) []string {
		var out []string
		for _, r := range rules {
			f := strings.Fields(r)
			out = append(out, strings.Join(f[:len(f)-1], " ")) // drop the h- chain's name
		}
		return out
	}
	require.Equal(t, []string{"-i eth0 -g", "-i eth1 -g", "-i lo -j", "-d 192.0.2.5/32 -g", "-d 192.0.2.6/32 -g", "-g"},
		shape(hostRules(t, p, 0, "calyx-hi")))
	require.Equal(t, []string{"-o eth0 -g", "-o eth1 -g", "-o lo -j", "-s 192.0.2.5/32 -g", "-s 192.0.2.6/32 -g", "-g"},
		shape(hostRules(t, p, 0, "calyx-ho")))
	require.Equal(t, []string{"-i eth0 -g", "-i eth1 -g", "-i lo -j", "-d 2001:db8::5/128 -g", "-g"},
		shape(hostRules(t, p, 1, "calyx-hi")))
	require.Equal(t, "! -i calyx+ -g calyx-hi", hostRules(t, p, 0, "calyx-in")[0])
	require.Equal(t, "! -o calyx+ -g calyx-ho", hostRules(t, p, 1, "calyx-out")[0])
	// The workload keeps its dispatch; the host endpoint on its
	// interface has none.
	require.Len(t, p.fams[0].sets, 2)
	for _, r := range hostRules(t, p, 0, "calyx-hi") {
		require.NotContains(t, r, "calyxpod")
	}

	// An endpoint known by IPv6 addresses only: no host rule in IPv4.
	b2 := testgen.NewIR()
	b2.Endpoint("ns/pod", "calyxpod", netip.MustParseAddr("10.0.0.9"))
	v6 := &compile.Endpoint{Key: "host:n/v6only", Kind: compile.HostEndpoint, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::7")}}
	b2.RS.Endpoints[v6.Key] = v6
	p, err = render(b2.RS, newNaming(""), nil)
	require.NoError(t, err)
	require.Equal(t, "! -i calyx+ -j RETURN", hostRules(t, p, 0, "calyx-in")[0], "an IPv6-only endpoint has no IPv4 rule")
	require.NotContains(t, p.fams[0].chains, "calyx-hi")
	require.Equal(t, []string{"-i lo -j", "-d 2001:db8::7/128 -g"}, shape(hostRules(t, p, 1, "calyx-hi")))
}

// TestHostFailsafe: fail-safe ports per protocol and net in multiport
// chunks, nets inline on the peer's side, nets of the other family and
// portless protocols left out, an IPv4-mapped net taken as IPv4.
func TestHostFailsafe(t *testing.T) {
	p, err := render(failsafeRuleset(), newNaming(""), nil)
	require.NoError(t, err)
	in4 := hostRules(t, p, 0, target(p.fams[0].chains["calyx-hi"].rules[0]))
	require.Equal(t, []string{
		"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		"-m conntrack --ctstate INVALID -j DROP",
		"-p tcp -m multiport --dports 22,5473 -j ACCEPT",
		"-s 10.0.0.0/16 -p tcp -m multiport --dports 179,2379:2380 -j ACCEPT",
		"-p udp -m multiport --dports 68 -j ACCEPT",
		"-p sctp -m multiport --dports 9899 -j ACCEPT",
	}, in4[:6])
	require.Equal(t, "-m mark --mark 0x1000000/0x1000000 -j ACCEPT", in4[len(in4)-2])
	require.Equal(t, "-j DROP", in4[len(in4)-1])
	in6 := hostRules(t, p, 1, target(p.fams[1].chains["calyx-hi"].rules[0]))
	require.Equal(t, []string{
		"-p tcp -m multiport --dports 22 -j ACCEPT",
		"-s fd00::/8 -p tcp -m multiport --dports 6443 -j ACCEPT",
		"-p udp -m multiport --dports 68 -j ACCEPT",
		"-p sctp -m multiport --dports 9899 -j ACCEPT",
	}, in6[6:10], "after neighbour discovery and conntrack")
	out4 := hostRules(t, p, 0, target(p.fams[0].chains["calyx-ho"].rules[0]))
	require.Equal(t, []string{"-d 192.0.2.0/24 -p tcp -m multiport --dports 443 -j ACCEPT", "-p udp -m multiport --dports 53 -j ACCEPT"}, out4[2:4])
}

// failsafeRuleset is a host endpoint on eth0 without policy, and
// fail-safe ports of every kind: with and without nets, of both families,
// IPv4-mapped, /0, SCTP, and ICMP (which has no ports).
func failsafeRuleset() *compile.Ruleset {
	rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{}, Policies: map[compile.PolicyID]*compile.Policy{}}
	rs.Endpoints["host:n/eth0"] = &compile.Endpoint{Key: "host:n/eth0", Kind: compile.HostEndpoint, Interface: "eth0"}
	pp := func(proto uint8, port uint16, net string) compile.ProtoPort {
		p := compile.ProtoPort{Protocol: proto, Port: port}
		if net != "" {
			p.Net = netip.MustParsePrefix(net)
		}
		return p
	}
	rs.Settings.FailsafeInbound = []compile.ProtoPort{pp(6, 22, ""), pp(17, 68, ""), pp(6, 179, "10.0.0.0/16"),
		pp(6, 2379, "10.0.0.0/16"), pp(6, 2380, "::ffff:10.0.0.0/112"), pp(6, 6443, "fd00::/8"), pp(1, 8, ""), pp(132, 9899, ""), pp(6, 5473, "0.0.0.0/0")}
	rs.Settings.FailsafeOutbound = []compile.ProtoPort{pp(17, 53, ""), pp(6, 443, "192.0.2.0/24")}
	return rs
}

func TestHostInvalidInterface(t *testing.T) {
	rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{}}
	rs.Endpoints["host:n/bad"] = &compile.Endpoint{Key: "host:n/bad", Kind: compile.HostEndpoint, Interface: "eth+"}
	_, err := render(rs, newNaming(""), nil)
	require.True(t, errors.Is(err, ErrInvalidRuleset), "got %v", err)
	require.Equal(t, 1, strings.Count(err.Error(), "eth+"), "reported once: %v", err)
}

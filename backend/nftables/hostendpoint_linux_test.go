//go:build linux

package nftables

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
)

// TestHostEndpointConformance runs the host endpoint scenarios one after
// the other on the conformance lab, whose node serves ports and talks
// with the external namespace: the matrix (pods, and the node with the
// outside world) must be the model's after each Apply, and Reconcile must
// find the kernel as planned. Last, the host endpoint goes away and the
// node's traffic is open again.
func TestHostEndpointConformance(t *testing.T) {
	r := newRig(t, conformanceSpec())
	open := conformance.ByName("no policy: profiles allow everything")
	for _, sc := range append(hostScenarios(), scenario{name: open.Name, build: open.Build}) {
		t.Run(sc.name, func(t *testing.T) {
			b := r.ir()
			conformance.WithAllowAllProfiles(b)
			sc.build(b)
			m := r.conform(t, b.RS)
			_, hasHost := b.RS.Endpoints[conformance.HostEndpointKey]
			nodeProbes, nodeDenied := 0, 0
			for i, p := range m.Probes {
				if p.From != lab.Node && p.To != lab.Node {
					continue
				}
				nodeProbes++
				if !m.Allowed[i] {
					nodeDenied++
				}
			}
			if nodeProbes == 0 {
				t.Fatal("the lab ran no probe between the node and the external namespace")
			}
			if !hasHost && nodeDenied > 0 {
				t.Fatalf("no host endpoint, yet %d of the node's probes were denied", nodeDenied)
			}
			if hasHost && nodeDenied == 0 {
				t.Fatalf("a host endpoint denied none of the node's %d probes", nodeProbes)
			}
			t.Logf("%d probes; the node's: %d, %d denied", len(m.Probes), nodeProbes, nodeDenied)
		})
	}
}

// TestHostEndpointModelEqualsKernel: random Rulesets with a host endpoint
// (named, "*" or by address) and random fail-safe ports, one after the
// other, agree with the model in the lab.
func TestHostEndpointModelEqualsKernel(t *testing.T) {
	r := newRig(t, conformanceSpec())
	conformance.HostModelEqualsKernel(t, conformanceSpec(), r.lab, r.b, r.noDrift, 40)
}

// hostRuleset is the scenario of the given name of conformance.HostScenarios
// on r's lab, after the allow-all profiles.
func hostRuleset(r *rig, name string) *compile.Ruleset {
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	for _, sc := range hostScenarios() {
		if sc.name == name {
			sc.build(b)
			return b.RS
		}
	}
	panic("no host scenario " + name)
}

const hostTiers = "host endpoint tiers: ingress 8080 from the external net only, fail-safe limited to a net"

// TestHostEndpointChangesAreDiffs: a change of a host endpoint's policy,
// then of the fail-safe ports, is applied as a diff touching the host
// endpoint chains only (never the pods' chains or the table), drift in any
// host endpoint chain is found and repaired by Repair, a restarted backend
// adopts the chains as they are, Dump shows them and Close removes them.
func TestHostEndpointChangesAreDiffs(t *testing.T) {
	r := newRig(t, conformanceSpec())
	ctx := context.Background()
	r.conform(t, hostRuleset(r, hostTiers))

	// The host endpoint's ingress policy now admits TCP 22 as well as
	// 8080 from the external net (the fail-safe 22 is limited to another
	// net).
	policyChange := func() *compile.Ruleset {
		rs := hostRuleset(r, hostTiers)
		id := rs.Endpoints[conformance.HostEndpointKey].Ingress.Tiers[0].Policies[0]
		pol := *rs.Policies[id]
		pol.Rules = slices.Clone(pol.Rules)
		pol.Rules[0].Match.Dst.Ports = []compile.PortRange{{Min: 22, Max: 22}, {Min: 8080, Max: 8080}}
		rs.Policies[id] = &pol
		return rs
	}
	setsBefore := slices.Collect(maps.Keys(r.b.cur.sets))
	rs := policyChange()
	require.NoError(t, r.b.Apply(ctx, rs))
	st := r.b.LastApply()
	t.Logf("policy change: %+v", st)
	require.Equal(t, []string{"~chain " + chainHostInput}, st.Changed, "only the ingress dispatch is rewritten")
	require.Equal(t, 3, st.ChainsAdded, "a tier, an ep and a hep chain: %+v", st)
	require.Equal(t, 3, st.ChainsDeleted, "the old ones: %+v", st)
	require.Zero(t, st.SetsDeleted+st.SetsRewritten+st.ElementsDeleted, "%+v", st)
	for name := range r.b.cur.sets {
		if !slices.Contains(setsBefore, name) {
			require.True(t, strings.HasPrefix(name, "c-"), "only the content set of the new ports is new, not %s", name)
		}
	}
	m := r.conform(t, rs)
	require.True(t, allowedTo(m, lab.Node, 22, "198.51.100.7"), "the new policy admits TCP 22 from the external net")

	// The fail-safe ports change: one chain rewritten, nothing else.
	rs = policyChange()
	rs.Settings.FailsafeInbound = []compile.ProtoPort{{Protocol: 17, Port: 53}, {Protocol: 6, Port: 8080}}
	require.NoError(t, r.b.Apply(ctx, rs))
	st = r.b.LastApply()
	t.Logf("fail-safe change: %+v", st)
	require.Equal(t, []string{"~chain " + chainFailsafeIn}, st.Changed)
	require.Zero(t, st.ChainsAdded+st.ChainsDeleted+st.SetsAdded+st.SetsDeleted+st.SetsRewritten+st.ElementsAdded+st.ElementsDeleted, "%+v", st)
	m = r.conform(t, rs)
	require.True(t, allowedTo(m, lab.Node, 53, "2001:db8:77::7"), "UDP 53 to the node is fail-safe now")

	ns, table := r.lab.NodeNS().Name(), r.b.Table()
	// The chains of the host endpoint's ingress: its hep- chain and the
	// ep- chain that one goes to.
	var hepIn, epIn string
	for name, c := range r.b.cur.chains {
		if strings.HasPrefix(name, "hep-") && strings.Contains(c.rules[1].text, chainFailsafeIn) {
			hepIn = name
			epIn = strings.TrimPrefix(c.rules[2].text, "goto ")
		}
	}
	require.NotEmpty(t, hepIn)
	cases := []struct {
		name  string
		drift func()
	}{
		{"dispatch rule deleted", func() {
			nft(t, ns, "delete", "rule", "inet", table, chainHostInput, "handle", ruleHandle(t, ns, table, chainHostInput, "goto "+hepIn))
		}},
		{"input hands the node's traffic to nobody", func() {
			nft(t, ns, "replace", "rule", "inet", table, chainInput, "handle", ruleHandle(t, ns, table, chainInput, "goto "+chainHostInput),
				`iifname != "calyx*" accept comment "not pod traffic: host endpoints"`)
		}},
		{"fail-safe rule replaced", func() {
			nft(t, ns, "replace", "rule", "inet", table, chainFailsafeIn, "handle", ruleHandle(t, ns, table, chainFailsafeIn, "dport 53"),
				`meta l4proto udp th dport 53 drop comment "fail-safe udp 53"`)
		}},
		{"fail-safe rule added", func() { nft(t, ns, "add", "rule", "inet", table, chainFailsafeOut, "accept") }},
		{"host endpoint chain flushed", func() { nft(t, ns, "flush", "chain", "inet", table, hepIn) }},
		{"host endpoint policy opened", func() { nft(t, ns, "insert", "rule", "inet", table, epIn, "accept") }},
		{"output dispatch flushed", func() { nft(t, ns, "flush", "chain", "inet", table, chainHostOutput) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.drift()
			dr, err := r.b.Repair(ctx)
			require.NoError(t, err)
			require.False(t, dr.Empty(), "drift not detected")
			t.Logf("repaired: %s", dr)
			again, err := r.b.Repair(ctx)
			require.NoError(t, err)
			require.True(t, again.Empty(), "second repair found %s", again)
			got, err := r.lab.Observe(ctx)
			require.NoError(t, err)
			want := lab.Expected(rs, got.Probes)
			got, err = r.lab.Recheck(ctx, got, want)
			require.NoError(t, err)
			require.Empty(t, got.Diff(want))
		})
	}

	// A restarted backend finds the host endpoint chains as it would
	// write them: nothing to send.
	again, err := New(ctx, backend.Options{NetNS: r.lab.NodeNS().Path(), Name: r.lab.ID()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = again.Close(ctx) })
	require.NoError(t, again.Apply(ctx, rs))
	st = again.LastApply()
	require.Zero(t, st.ChainsAdded+st.ChainsRewritten+st.ChainsDeleted+st.SetsAdded+st.SetsRewritten+st.SetsDeleted+st.ElementsAdded+st.ElementsDeleted, "%+v", st)

	dump, err := r.b.Dump(ctx)
	require.NoError(t, err)
	for _, want := range []string{"chain " + chainHostInput + " {", "chain " + chainFailsafeOut + " {", "chain " + hepIn + " {", "goto " + hepIn} {
		require.Contains(t, string(dump), want)
	}
	require.NoError(t, r.b.Close(ctx))
	require.NotContains(t, nft(t, ns, "list", "tables"), table, "Close removes the table, host endpoint chains and all")
}

// allowedTo reports whether m holds an allowed probe from the external
// address src to the port of to.
func allowedTo(m *lab.Matrix, to string, port uint16, src string) bool {
	for i, p := range m.Probes {
		if p.To == to && p.DstPort == port && p.Src.String() == src && m.Allowed[i] {
			return true
		}
	}
	return false
}

// ruleHandle returns the handle of the first rule of chain whose text
// holds substr.
func ruleHandle(t *testing.T, ns, table, chain, substr string) string {
	t.Helper()
	out := nft(t, ns, "-a", "list", "chain", "inet", table, chain)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, substr) {
			i := strings.LastIndex(line, "# handle ")
			return strings.TrimSpace(line[i+len("# handle "):])
		}
	}
	t.Fatalf("no rule with %q in %s:\n%s", substr, chain, out)
	return ""
}

// TestHostEndpointPrecedence: which host endpoint judges the node's
// traffic with the external namespace (on cxext0) when several could. A
// named interface wins over the node's addresses, which win over "*".
// The model knows endpoints by address only, so the expectations are
// written here: the node's probes are allowed by the open endpoint and,
// under the closed one, only on the fail-safe ports; pods are the model's.
// Loopback is judged only by an endpoint that names it.
func TestHostEndpointPrecedence(t *testing.T) {
	r := newRig(t, conformanceSpec())
	ctx := context.Background()
	nodes := conformanceSpec()
	cases := []struct {
		name string
		// closed has no policy (denies); open allows everything.
		closed, open compile.Endpoint
		// allowed says the node's traffic on cxext0 is allowed: the open
		// endpoint judges it, or none does.
		allowed bool
	}{
		{"named interface over all interfaces",
			compile.Endpoint{Interface: lab.ExternalInterface}, compile.Endpoint{Interface: "*"}, false},
		{"all interfaces when no name matches",
			compile.Endpoint{Interface: "eth9"}, compile.Endpoint{Interface: "*"}, true},
		{"addresses over all interfaces",
			compile.Endpoint{Addrs: nodes.Nodes()}, compile.Endpoint{Interface: "*"}, false},
		{"named interface over addresses",
			compile.Endpoint{Addrs: nodes.Nodes()}, compile.Endpoint{Interface: lab.ExternalInterface}, true},
		{"loopback is only a named endpoint's, workload interfaces no one's",
			compile.Endpoint{Interface: "lo"}, compile.Endpoint{Interface: compile.InterfacePrefix + "0"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := r.ir()
			conformance.WithAllowAllProfiles(b)
			b.RS.Settings.FailsafeInbound = []compile.ProtoPort{{Protocol: 6, Port: 22}}
			b.RS.Settings.FailsafeOutbound = []compile.ProtoPort{{Protocol: 17, Port: 53}}
			closed, open := tc.closed, tc.open
			closed.Key, closed.Kind = "host:node/closed", compile.HostEndpoint
			open.Key, open.Kind = "host:node/open", compile.HostEndpoint
			open.Ingress.Profiles = []compile.PolicyID{b.AllowAllProfile()}
			open.Egress.Profiles = []compile.PolicyID{b.AllowAllProfile()}
			b.RS.Endpoints[closed.Key], b.RS.Endpoints[open.Key] = &closed, &open
			require.NoError(t, r.b.Apply(ctx, b.RS))
			require.NoError(t, r.noDrift(ctx))
			got, err := r.lab.Observe(ctx)
			require.NoError(t, err)
			// The model without host endpoints decides the pods' probes.
			plain := *b.RS
			plain.Endpoints = maps.Clone(b.RS.Endpoints)
			delete(plain.Endpoints, closed.Key)
			delete(plain.Endpoints, open.Key)
			want := lab.Expected(&plain, got.Probes)
			for i, p := range got.Probes {
				switch {
				case p.To == lab.Node:
					want.Allowed[i] = tc.allowed || p.Protocol == 6 && p.DstPort == 22
				case p.From == lab.Node:
					want.Allowed[i] = tc.allowed || p.Protocol == 17 && p.DstPort == 53
				}
			}
			got, err = r.lab.Recheck(ctx, got, want)
			require.NoError(t, err)
			require.Empty(t, got.Diff(want))
			// The node's server on 8080, over loopback.
			require.Equal(t, closed.Interface != "lo", dialFrom(r.lab.NodeNS(), "127.0.0.1:8080"), "loopback")
		})
	}
}

// TestHostEndpointRender: host endpoints cost pod traffic nothing (the
// forward chains and the pods' maps are the same with and without them,
// and the input and output chains differ only in where the node's own
// traffic goes), and fail-safe ports merge like policy rules.
func TestHostEndpointRender(t *testing.T) {
	open := conformance.ByName("no policy: profiles allow everything")
	plain, err := render(scenarioRuleset(scenario{name: open.Name, build: open.Build}))
	require.NoError(t, err)
	for _, sc := range hostScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			d, err := render(scenarioRuleset(sc))
			require.NoError(t, err)
			for _, name := range []string{chainFwdEgress, chainFwdIngress} {
				require.Equal(t, chainText(plain.chains[name]), chainText(d.chains[name]), name)
			}
			for _, name := range []string{mapEgress, mapIngress} {
				require.Equal(t, plain.sets[name].elemText, d.sets[name].elemText, name)
			}
			for name, to := range map[string]string{chainInput: chainHostInput, chainOutput: chainHostOutput} {
				a, b := chainText(plain.chains[name]), chainText(d.chains[name])
				require.Equal(t, a[1:], b[1:], "%s: only the first rule differs", name)
				require.Contains(t, b[0], "goto "+to)
			}
		})
	}
	t.Run("which endpoint claims what", func(t *testing.T) {
		addr := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
		var hosts []*compile.Endpoint
		for i, ifc := range []string{"eth0", "eth0", "*", "*", "", "", "lo", "calyxabc", "a-name-too-long0", "eth1"} {
			ep := &compile.Endpoint{Key: "host:n/" + strconv.Itoa(i), Kind: compile.HostEndpoint, Interface: ifc}
			if i != 5 {
				ep.Addrs = addr
			}
			hosts = append(hosts, ep)
		}
		named, byAddr, star := sortHosts(hosts)
		require.Equal(t, []*compile.Endpoint{hosts[0], hosts[6], hosts[9]}, named, "the first of eth0, lo, eth1")
		require.Equal(t, []*compile.Endpoint{hosts[4]}, byAddr, "an endpoint without interface or address claims nothing")
		require.Same(t, hosts[2], star)
	})
	t.Run("fail-safe ports of one protocol are one rule", func(t *testing.T) {
		rs := scenarioRuleset(hostScenarios()[0])
		rs.Settings.FailsafeInbound = []compile.ProtoPort{{Protocol: 6, Port: 22}, {Protocol: 17, Port: 68},
			{Protocol: 6, Port: 179}, {Protocol: 6, Port: 6443}, {Protocol: 1, Port: 8}}
		d, err := render(rs)
		require.NoError(t, err)
		c := d.chains[chainFailsafeIn]
		require.Len(t, c.rules, 2, "TCP and UDP; ICMP has no ports: %s", chainText(c))
		require.Regexp(t, `^meta l4proto tcp th dport @c-[0-9a-f]+ accept$`, c.rules[0].text)
	})
}

func chainText(c *nchain) []string {
	var out []string
	for _, ru := range c.rules {
		out = append(out, ru.text+" # "+ru.comment)
	}
	return out
}

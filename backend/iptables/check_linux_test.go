//go:build linux

package iptables

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// checkRuleset is one pod whose ingress admits TCP 80 from a selector,
// on interface iface.
func checkRuleset(iface string) *compile.Ruleset {
	sel := compile.SetID("sel:app == 'web'")
	pol := compile.PolicyID("in:default/web")
	allow := compile.PolicyID("profile:kns")
	return &compile.Ruleset{
		Sets: map[compile.SetID]*compile.IPSet{sel: {ID: sel, Kind: compile.SetNets, Selector: "app == 'web'",
			Nets: []netip.Prefix{netip.MustParsePrefix("10.65.0.2/32")}}},
		Policies: map[compile.PolicyID]*compile.Policy{
			pol: {ID: pol, Direction: compile.Ingress, Tier: "default", Name: "web", Rules: []compile.Rule{{Action: compile.ActionAllow,
				Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{sel}},
					Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: 80, Max: 80}}}}}}},
			allow: {ID: allow, Name: "profile:kns", Rules: []compile.Rule{{Action: compile.ActionAllow}}},
		},
		Endpoints: map[string]*compile.Endpoint{"ns/web": {Key: "ns/web", Kind: compile.WorkloadEndpoint, Interface: iface,
			Addrs: []netip.Addr{netip.MustParseAddr("10.65.0.1")},
			Ingress: compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{pol},
				EndAction: compile.ActionDeny}}, Profiles: []compile.PolicyID{allow}},
			Egress: compile.DirectionPolicy{Profiles: []compile.PolicyID{allow}}}},
	}
}

// TestCheckAsksTheKernel: Check accepts what Apply accepts, and rejects
// what the kernel rejects although it renders fine (an interface name
// longer than the kernel's 15 bytes, refused by ipset), without changing
// anything in the backend's namespace.
func TestCheckAsksTheKernel(t *testing.T) {
	ns := netnstest.New(t, "cxck-")
	ctx := context.Background()
	b, err := New(ctx, backend.Options{NetNS: ns.Path()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = b.Close(ctx) })
	ours := func() int {
		t.Helper()
		out, err := b.r.run(ctx, nil, "iptables-save", "-t", "filter")
		require.NoError(t, err)
		sets, err := b.r.run(ctx, nil, "ipset", "list", "-n")
		require.NoError(t, err)
		return strings.Count(string(out), ":calyx-") + strings.Count(string(sets), "calyx-")
	}

	good := checkRuleset(compile.WorkloadInterface("ns", "web"))
	bad := checkRuleset(compile.InterfacePrefix + "0123456789abcdef")
	_, err = render(bad, b.n, nil)
	require.NoError(t, err, "the bad Ruleset renders: only the kernel can refuse it")

	t.Run("accepts what Apply accepts, changing nothing", func(t *testing.T) {
		require.NoError(t, b.Check(ctx, good))
		require.Zero(t, ours(), "Check left something in the backend's namespace")
		require.NoError(t, b.Apply(ctx, good))
		require.NotZero(t, ours())
	})
	t.Run("rejects what the kernel rejects", func(t *testing.T) {
		err := b.Check(ctx, bad)
		require.Error(t, err)
		require.True(t, errors.Is(err, ErrRestoreFailed), "%v", err)
		require.Contains(t, err.Error(), "longer than 15")
		before, err := b.Dump(ctx)
		require.NoError(t, err)
		aerr := b.Apply(ctx, bad)
		require.True(t, errors.Is(aerr, ErrRestoreFailed), "Apply must fail as Check said: %v", aerr)
		require.NoError(t, b.Apply(ctx, good))
		after, err := b.Dump(ctx)
		require.NoError(t, err)
		require.Equal(t, string(before), string(after))
	})
	t.Run("an inconsistent Ruleset never reaches a kernel", func(t *testing.T) {
		rs := checkRuleset(compile.WorkloadInterface("ns", "web"))
		rs.Endpoints["ns/web"].Ingress.Profiles = []compile.PolicyID{"missing"}
		require.ErrorIs(t, b.Check(ctx, rs), ErrInvalidRuleset)
	})
}

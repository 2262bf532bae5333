//go:build linux

package iptables

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

func TestParseMember(t *testing.T) {
	tests := []struct {
		typ, member string
		ok          bool
		ip          string
		cidr        uint8
		iface       string
	}{
		{"hash:net", "10.0.0.1", true, "10.0.0.1", 0, ""},
		{"hash:net", "10.0.0.0/24", true, "10.0.0.0", 24, ""},
		{"hash:net", "fd00::/64", true, "fd00::", 64, ""},
		{"hash:net,iface", "10.65.0.2,calyx0123456789", true, "10.65.0.2", 0, "calyx0123456789"},
		{"hash:net,iface", "fd77::2/128,calyxab", true, "fd77::2", 128, "calyxab"},
		{"hash:net,iface", "10.65.0.2", false, "", 0, ""},
		{"hash:ip,port", "10.0.0.1,tcp:80", false, "", 0, ""},
		{"hash:net", "not-an-address", false, "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.typ+" "+tt.member, func(t *testing.T) {
			e, ok := parseMember(tt.typ, tt.member)
			require.Equal(t, tt.ok, ok)
			if !ok {
				return
			}
			require.Equal(t, tt.ip, e.IP.String())
			require.Equal(t, tt.cidr, e.CIDR)
			require.Equal(t, tt.iface, e.IFace)
			require.True(t, e.Replace, "like ipset restore -exist")
		})
	}
}

// TestMemberChangesOverNetlink: a pod like its neighbours joins and
// leaves; only dispatch members change, sent over netlink, and the kernel
// then holds exactly the plan.
func TestMemberChangesOverNetlink(t *testing.T) {
	ns := netnstest.New(t, "cxmem-")
	ctx := context.Background()
	b, err := New(ctx, backend.Options{NetNS: ns.Path()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close(ctx) })

	rs := checkRuleset(compile.WorkloadInterface("ns", "web"))
	require.NoError(t, b.Apply(ctx, rs))
	more := *rs
	more.Endpoints = map[string]*compile.Endpoint{}
	for k, v := range rs.Endpoints {
		more.Endpoints[k] = v
	}
	twin := *rs.Endpoints["ns/web"]
	twin.Key, twin.Interface = "ns/web2", compile.WorkloadInterface("ns", "web2")
	twin.Addrs = []netip.Addr{netip.MustParseAddr("10.65.0.9")}
	more.Endpoints[twin.Key] = &twin

	member := "10.65.0.9," + twin.Interface
	sets := func() string {
		t.Helper()
		out, err := b.r.run(ctx, nil, "ipset", "save")
		require.NoError(t, err)
		return string(out)
	}
	require.NoError(t, b.Apply(ctx, &more))
	require.NotNil(t, b.nlh, "a member-only change goes over netlink")
	require.Equal(t, 1, b.LastApply().Commands)
	require.Contains(t, sets(), member)
	dr, err := b.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, dr.Empty(), "%s", dr)

	require.NoError(t, b.Apply(ctx, rs))
	require.NotContains(t, sets(), member)
	require.Contains(t, sets(), "10.65.0.1,"+rs.Endpoints["ns/web"].Interface, "the first pod stays")
	dr, err = b.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, dr.Empty(), "%s", dr)
}

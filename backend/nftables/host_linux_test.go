//go:build linux

package nftables

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns"
)

func dialFrom(ns *netns.NS, addr string) bool {
	ok := false
	_ = ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 700*time.Millisecond)
		if err == nil {
			ok = true
			_ = c.Close()
		}
		return nil
	})
	return ok
}

// TestNodeTraffic: pod-to-node traffic passes the pod's egress policy and
// then DefaultEndpointToHostAction; node-to-pod traffic passes the pod's
// ingress policy.
func TestNodeTraffic(t *testing.T) {
	r := newRig(t, conformanceSpec())
	ctx := context.Background()
	// The lab's node serves TCP 8080 (conformance.Spec's NodePorts).
	node := r.lab.NodeNS()
	pod0NS, _ := r.lab.NS(pod0)
	const nodeAddr, pod0Addr = "192.0.2.254:8080", "10.77.0.1:80"

	rs := baseline(r) // pod0 admits only pod1 on TCP 80; egress open
	require.NoError(t, r.b.Apply(ctx, rs))
	require.True(t, dialFrom(pod0NS, nodeAddr), "pod egress allows, endpoint-to-host unset: allowed")
	require.False(t, dialFrom(node, pod0Addr), "pod0's ingress admits only pod1")

	rs = baseline(r)
	rs.Settings.DefaultEndpointToHostAction = compile.ActionDeny
	rs.Endpoints[pod0].Ingress.Tiers = nil
	require.NoError(t, r.b.Apply(ctx, rs))
	require.False(t, dialFrom(pod0NS, nodeAddr), "endpoint-to-host Deny")
	require.True(t, dialFrom(node, pod0Addr), "pod0's ingress profile allows the node; replies pass")

	rs = baseline(r)
	rs.Endpoints[pod0].Egress.Profiles = nil
	require.NoError(t, r.b.Apply(ctx, rs))
	require.False(t, dialFrom(pod0NS, nodeAddr), "pod0's egress denies everything")

	// A host endpoint that denies everything judges neither pod → node
	// nor node → pod: both cross the pod's veth, not a host interface.
	spec := conformanceSpec()
	for _, iface := range []string{"*", ""} {
		rs = baseline(r)
		rs.Endpoints[pod0].Ingress.Tiers = nil
		rs.Endpoints["host:node/all"] = &compile.Endpoint{Key: "host:node/all", Kind: compile.HostEndpoint,
			Interface: iface, Addrs: spec.Nodes()}
		require.NoError(t, r.b.Apply(ctx, rs))
		require.True(t, dialFrom(pod0NS, nodeAddr), "interface %q: pod0 → node is pod0's egress's business", iface)
		require.True(t, dialFrom(node, pod0Addr), "interface %q: node → pod0 is pod0's ingress's business", iface)
	}
}

//go:build linux

package ebpf

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
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
// then DefaultEndpointToHostAction (a FIB lookup tells the node's own
// addresses); node-to-pod traffic passes the pod's ingress policy; IPv6
// neighbour discovery keeps working under endpoint-to-host Deny.
func TestNodeTraffic(t *testing.T) {
	r := newRig(t, conformance.Spec())
	ctx := context.Background()
	node := r.lab.NodeNS()
	// The lab serves TCP 8080 on the node (conformance.Spec's NodePorts).
	require.True(t, slices.Contains(r.lab.Spec().NodePorts, lab.Port{Protocol: 6, Port: 8080}), "the node serves no TCP 8080")
	pod0 := r.lab.Spec().Pods[0]
	pod0NS, _ := r.lab.NS(pod0.Key())
	const nodeAddr, nodeAddr6, pod0Addr = "192.0.2.254:8080", "[2001:db8:ffff::fe]:8080", "10.77.0.1:80"
	base := func() *compile.Ruleset {
		b := r.ir()
		conformance.WithAllowAllProfiles(b)
		return b.RS
	}

	rs := base()
	require.NoError(t, r.b.Apply(ctx, rs))
	require.True(t, dialFrom(pod0NS, nodeAddr), "pod egress allows, endpoint-to-host unset: allowed")
	require.True(t, dialFrom(pod0NS, nodeAddr6), "the same over IPv6")
	require.True(t, dialFrom(node, pod0Addr), "pod0's ingress profile admits the node")

	rs = base()
	rs.Settings.DefaultEndpointToHostAction = compile.ActionDeny
	require.NoError(t, r.b.Apply(ctx, rs))
	require.False(t, dialFrom(pod0NS, nodeAddr), "endpoint-to-host Deny")
	require.False(t, dialFrom(pod0NS, nodeAddr6), "endpoint-to-host Deny, IPv6 (neighbour discovery passed, the connection did not)")
	require.True(t, dialFrom(node, pod0Addr), "the node may still open flows to the pod; replies pass")
	r.conform(t, rs)

	rs = base()
	rs.Endpoints[pod0.Key()].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny}}
	rs.Endpoints[pod0.Key()].Egress.Profiles = nil
	require.NoError(t, r.b.Apply(ctx, rs))
	require.False(t, dialFrom(pod0NS, nodeAddr), "pod0's egress denies everything")
	require.False(t, dialFrom(node, pod0Addr), "pod0's ingress denies the node")
}

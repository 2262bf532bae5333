package agent_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/endpointapi"
)

func cniEndpoint(id, ns, pod string, addrs ...string) endpointapi.Endpoint {
	ep := endpointapi.Endpoint{ID: id, Namespace: ns, Pod: pod, ContainerID: id, IfName: "eth0", HostIf: compile.WorkloadInterface(ns, pod)}
	for _, a := range addrs {
		ep.Addrs = append(ep.Addrs, netip.MustParseAddr(a))
	}
	return ep
}

// The agent behind the CNI plugin's socket: register, wait until enforced,
// with the datastore's labels and the plugin's addresses merged.
func TestEndpointRegisterEnforced(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "endpoint.sock")
	// The datastore knows shop/api (labels, no addresses yet, no node) and
	// a policy for app=api.
	objs := decode(t, `apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {containers: [{name: c, image: i}]}
---
`+allowPort("shop", "api-http", "api", 80))
	r := newRig(t, objs, func(c *agent.Config) { c.EndpointSocket = sock })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := endpointapi.NewClient(sock)
	eventually(t, "socket serving and synced", func() bool { return client.Status(ctx) == nil })

	ep := cniEndpoint("k8s.c1", "shop", "api", "10.0.0.5", "fd00::5")
	require.NoError(t, client.Register(ctx, ep))
	require.NoError(t, client.WaitEnforced(ctx, ep.ID))
	rs := r.be.Last()
	got := rs.Endpoints["shop/api"]
	require.NotNil(t, got, "the registered pod is an endpoint of this node")
	assert.Equal(t, ep.HostIf, got.Interface)
	assert.Equal(t, []netip.Addr{addr("10.0.0.5"), addr("fd00::5")}, got.Addrs, "addresses from the plugin")
	assert.Equal(t, []string{"shop/api-http"}, ingressPolicies(rs, "shop/api"), "labels from the datastore")

	t.Run("unknown to the datastore, then labelled by it", func(t *testing.T) {
		ep := cniEndpoint("k8s.c2", "shop", "new", "10.0.0.6")
		require.NoError(t, client.Register(ctx, ep))
		require.NoError(t, client.WaitEnforced(ctx, ep.ID))
		assert.Empty(t, ingressPolicies(r.be.Last(), "shop/new"), "no labels yet")
		mustApply(t, r.store, decode(t, podYAML("shop", "new", "node-b", "10.9.9.9", "app: api"))...)
		rs := r.waitRS(t, "labels merged", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/new")) == 1 })
		assert.Equal(t, []netip.Addr{addr("10.0.0.6")}, rs.Endpoints["shop/new"].Addrs, "the plugin's addresses win")
		assert.Equal(t, "node-a", rs.Endpoints["shop/new"].Node, "the plugin put it here")

		require.NoError(t, client.Unregister(ctx, ep.ID))
		r.waitRS(t, "gone with the attachment", func(rs *compile.Ruleset) bool { return rs.Endpoints["shop/new"] == nil })
		_, err := client.Enforced(ctx, ep.ID)
		require.ErrorIs(t, err, endpointapi.ErrUnknownEndpoint)
	})

	t.Run("a retried ADD replaces the attachment", func(t *testing.T) {
		old := cniEndpoint("k8s.c3", "shop", "retry", "10.0.0.7")
		require.NoError(t, client.Register(ctx, old))
		require.NoError(t, client.WaitEnforced(ctx, old.ID))
		cur := cniEndpoint("k8s.c4", "shop", "retry", "10.0.0.8")
		require.NoError(t, client.Register(ctx, cur))
		require.NoError(t, client.WaitEnforced(ctx, cur.ID))
		// The late DEL of the old sandbox leaves the new one alone.
		require.NoError(t, client.Unregister(ctx, old.ID))
		time.Sleep(20 * time.Millisecond)
		r.waitRS(t, "new attachment kept", func(rs *compile.Ruleset) bool {
			e := rs.Endpoints["shop/retry"]
			return e != nil && e.Addrs[0] == addr("10.0.0.8")
		})
		require.NoError(t, client.Unregister(ctx, cur.ID))
	})

	t.Run("refused when the compiler cannot name its interface", func(t *testing.T) {
		for _, bad := range []endpointapi.Endpoint{
			{ID: "x1", ContainerID: "c", HostIf: compile.WorkloadInterface("", "c"), Addrs: []netip.Addr{addr("10.0.0.9")}},
			{ID: "x2", Namespace: "shop", Pod: "p", HostIf: "calyxdeadbeef00", Addrs: []netip.Addr{addr("10.0.0.9")}},
		} {
			require.ErrorIs(t, r.agent.Register(ctx, bad), agent.ErrUnpoliceable)
			err := client.Register(ctx, bad)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "cannot be policed")
		}
	})

	t.Run("not enforced while the dataplane fails", func(t *testing.T) {
		r.be.FailNext(2, errBoom)
		ep := cniEndpoint("k8s.c5", "shop", "late", "10.0.0.10")
		require.NoError(t, client.Register(ctx, ep))
		eventually(t, "failing", func() bool { return r.agent.NodeStatus().Failing })
		ok, err := client.Enforced(ctx, ep.ID)
		require.NoError(t, err)
		assert.False(t, ok)
		require.NoError(t, client.WaitEnforced(ctx, ep.ID), "enforced once the retry succeeds")
	})
	assert.Equal(t, 2, r.agent.NodeStatus().Registered)
}

// Registered before the datastore is in sync: accepted, not enforced, and
// the node says it cannot program yet.
func TestEndpointBeforeSync(t *testing.T) {
	store := mustStore(t)
	blocked := &blockingStore{MemStore: store, release: make(chan struct{})}
	r := startRigStore(t, blocked)
	ctx := context.Background()
	ep := cniEndpoint("k8s.c1", "shop", "api", "10.0.0.5")
	require.NoError(t, r.agent.Register(ctx, ep))
	ok, err := r.agent.Enforced(ctx, ep.ID)
	require.NoError(t, err)
	assert.False(t, ok)
	require.ErrorIs(t, r.agent.Status(ctx), endpointapi.ErrCannotProgram)
	require.ErrorIs(t, r.agent.Status(ctx), agent.ErrNotSynced)
	close(blocked.release)
	eventually(t, "enforced after sync", func() bool { ok, _ := r.agent.Enforced(ctx, ep.ID); return ok })
}

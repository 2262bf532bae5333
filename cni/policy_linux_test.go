//go:build linux

package cni_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/iptables"
	"github.com/calyxnet/calyx/backend/nftables"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/datastore/memory"
	"github.com/calyxnet/calyx/policy"
)

// Pods added through the plugin get their policy from a real dataplane
// before ADD returns: api admits only frontend.
func TestPolicyEnforced(t *testing.T) {
	for _, dp := range []struct {
		name string
		open backend.Factory
	}{{"nftables", nftables.Open}, {"iptables", iptables.Open}} {
		t.Run(dp.name, func(t *testing.T) { testPolicyEnforced(t, dp.open) })
	}
}

// policedObjects is what the cluster's datastore holds for the policed
// node: the pods' labels (the plugin gives their addresses) and a
// Kubernetes NetworkPolicy under which api admits only frontend.
const policedObjects = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: shop, labels: {app: frontend}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: intruder, namespace: shop, labels: {app: intruder}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: frontend}}
`

// newPolicedEnv returns a node whose plugin talks to the real node agent
// (internal/agent), which watches a datastore holding policedObjects and
// programs a real dataplane in the node namespace.
func newPolicedEnv(tb testing.TB, open backend.Factory) (*env, *agent.Agent, backend.Backend) {
	tb.Helper()
	objs, err := policy.Decode(strings.NewReader(policedObjects), "policed.yaml")
	require.NoError(tb, err)
	store, err := memory.New(objs...)
	require.NoError(tb, err)
	e := newEnv(tb, withoutAgentServer())
	be, err := open(tb.Context(), backend.Options{NetNS: e.node.Path(), Name: "cnitest"})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = be.Close(context.Background()) })
	ag, err := agent.New(agent.Config{Node: "node-a", Store: store, Backend: be, EndpointSocket: e.socket})
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	tb.Cleanup(func() { cancel(); require.NoError(tb, <-done) })
	// The plugin's first ADD must not race the agent's socket.
	require.Eventually(tb, func() bool {
		_, err := os.Stat(e.socket)
		return err == nil
	}, 5*time.Second, 5*time.Millisecond)
	return e, ag, be
}

func testPolicyEnforced(t *testing.T, open backend.Factory) {
	ctx := t.Context()
	e, ag, be := newPolicedEnv(t, open)

	pods := map[string]*pod{}
	addrs := map[string][]netip.Addr{}
	for _, name := range []string{"frontend", "api", "intruder"} {
		p := e.newPod(name)
		r, err := e.add(ctx, p)
		require.NoError(t, err)
		pods[name], addrs[name] = p, addrsOf(r)
	}
	tests := []struct {
		from, to string
		allowed  bool
	}{
		{"frontend", "api", true},
		{"intruder", "api", false},
		{"api", "frontend", true},
		{"intruder", "frontend", true},
	}
	for _, tt := range tests {
		for _, dst := range addrs[tt.to] {
			t.Run(fmt.Sprintf("%s→%s %s", tt.from, tt.to, dst), func(t *testing.T) {
				err := tcpReachWithin(t, pods[tt.from].ns, pods[tt.to].ns, dst, 500*time.Millisecond)
				if tt.allowed {
					require.NoError(t, err)
				} else {
					require.Error(t, err)
				}
			})
		}
	}
	if t.Failed() {
		d, _ := be.Dump(ctx)
		t.Logf("dataplane:\n%s", d)
	}
	for _, p := range pods {
		require.NoError(t, e.del(ctx, p))
	}
	require.Zero(t, ag.NodeStatus().Registered, "every endpoint unregistered")
}

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/agent/agenttest"
	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// decode parses YAML documents into objects.
func decode(t testing.TB, docs string) []policy.Object {
	t.Helper()
	objs, err := policy.Decode(strings.NewReader(docs), "test")
	require.NoError(t, err)
	return objs
}

func podYAML(ns, name, node, ip string, labels string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {%s}}
spec: {nodeName: %s, containers: [{name: c, image: i, ports: [{name: http, containerPort: 80}]}]}
status: {podIP: %q, podIPs: [{ip: %q}]}
`, name, ns, labels, node, ip, ip)
}

// denyIngress isolates pods labelled app=<app> on ingress, allowing only
// TCP port.
func allowPort(ns, name, app string, port int) string {
	return fmt.Sprintf(`apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: %s, namespace: %s}
spec:
  selector: app == '%s'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [%d]}
`, name, ns, app, port)
}

// rig is an agent running on a MemStore and an agenttest.Backend.
type rig struct {
	store *agenttest.MemStore
	be    *agenttest.Backend
	agent *agent.Agent
	stop  func()
}

type rigOpt func(*agent.Config)

func newRig(t *testing.T, objs []policy.Object, opts ...rigOpt) *rig {
	t.Helper()
	store, err := agenttest.NewMemStore(objs...)
	require.NoError(t, err)
	return startRig(t, store, store, &agenttest.Backend{}, opts...)
}

// startRigStore runs an agent on a blockingStore.
func startRigStore(t *testing.T, s *blockingStore, opts ...rigOpt) *rig {
	t.Helper()
	return startRig(t, s, s.MemStore, &agenttest.Backend{}, opts...)
}

func startRig(t *testing.T, ds datastore.Store, store *agenttest.MemStore, be *agenttest.Backend, opts ...rigOpt) *rig {
	t.Helper()
	cfg := agent.Config{Node: "node-a", Store: ds, Backend: be, Coalesce: 5 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := agent.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once bool
	stop := func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("agent did not stop")
		}
	}
	t.Cleanup(stop)
	return &rig{store: store, be: be, agent: a, stop: stop}
}

// waitRS waits until the backend's last Ruleset satisfies ok.
func (r *rig) waitRS(t *testing.T, what string, ok func(*compile.Ruleset) bool) *compile.Ruleset {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.be.WaitFor(ctx, func(rs *compile.Ruleset) bool { return rs != nil && ok(rs) }); err != nil {
		t.Fatalf("waiting for %s: %v (status %+v)", what, err, r.agent.NodeStatus())
	}
	return r.be.Last()
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func hasEndpoint(key string) func(*compile.Ruleset) bool {
	return func(rs *compile.Ruleset) bool { _, ok := rs.Endpoints[key]; return ok }
}

// ingressPolicies lists the policy names applying to an endpoint's ingress.
func ingressPolicies(rs *compile.Ruleset, key string) []string {
	ep := rs.Endpoints[key]
	if ep == nil {
		return nil
	}
	var out []string
	for _, t := range ep.Ingress.Tiers {
		for _, id := range t.Policies {
			out = append(out, rs.Policies[id].Name)
		}
	}
	return out
}

func mustApply(t *testing.T, s datastore.Store, objs ...policy.Object) {
	t.Helper()
	for _, o := range objs {
		_, err := s.Apply(context.Background(), o)
		require.NoError(t, err)
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

var errBoom = errors.New("boom")

type agentEvent = datastore.Event

const eventSynced = datastore.EventSynced

// allowedIn asks the model whether TCP from peer to a host address on port
// passes.
func allowedIn(rs *compile.Ruleset, peer, host netip.Addr, port uint16) bool {
	return model.NewIndex(rs).Allowed(model.Packet{Src: peer, Dst: host, Protocol: 6, SrcPort: 40000, DstPort: port})
}

// allowedOutUDP53 asks the model whether the host endpoint 192.0.2.10 may
// query DNS outside.
func allowedOutUDP53(rs *compile.Ruleset) bool {
	return model.NewIndex(rs).Allowed(model.Packet{Src: addr("192.0.2.10"), Dst: addr("198.51.100.53"), Protocol: 17, SrcPort: 40000, DstPort: 53})
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

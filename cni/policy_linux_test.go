//go:build linux

package cni_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/iptables"
	"github.com/calyxnet/calyx/backend/nftables"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/policy"
)

// nftAgent stands in for the node agent: each registered endpoint becomes
// a Pod in the policy set, the set is compiled and a dataplane backend
// applies the Ruleset in the node namespace before the endpoint counts as
// enforced.
type nftAgent struct {
	be       backend.Backend
	labels   map[string]string // pod name → "k: v" YAML labels
	policies string

	mu   sync.Mutex
	pods map[string]endpointapi.Endpoint
}

func (a *nftAgent) apply(ctx context.Context) error {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
	for _, ep := range a.pods {
		var ips []string
		for _, ad := range ep.Addrs {
			ips = append(ips, fmt.Sprintf("{ip: %q}", ad))
		}
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s, labels: {%s}}\nspec: {nodeName: node-a, containers: [{name: c, image: i}]}\nstatus: {podIP: %q, podIPs: [%s]}\n",
			ep.Pod, ep.Namespace, a.labels[ep.Pod], ep.Addrs[0], strings.Join(ips, ", "))
	}
	b.WriteString("---\n" + a.policies)
	objs, err := policy.Decode(strings.NewReader(b.String()), "agent")
	if err != nil {
		return err
	}
	set := policy.NewSet()
	for _, o := range objs {
		if _, err := set.Upsert(o); err != nil {
			return err
		}
	}
	rs, err := compile.New(set, "").Compile()
	if err != nil {
		return err
	}
	return a.be.Apply(ctx, rs)
}

func (a *nftAgent) program(ctx context.Context, ep endpointapi.Endpoint) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pods[ep.ID] = ep
	return a.apply(ctx)
}

func (a *nftAgent) unprogram(ctx context.Context, ep endpointapi.Endpoint) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.pods, ep.ID)
	return a.apply(ctx)
}

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

// newPolicedEnv returns a node whose agent programs a real dataplane.
func newPolicedEnv(tb testing.TB, open backend.Factory) (*env, *nftAgent) {
	tb.Helper()
	ctx := tb.Context()
	agent := &nftAgent{
		labels: map[string]string{"frontend": "app: frontend", "api": "app: api", "intruder": "app: intruder"},
		// Accept to host: with Calico's default (Drop) the nftables
		// backend's input-host chain drops the pods' IPv6 neighbour
		// solicitations for their gateway, which the input chain had
		// accepted; reported to the backend's owner.
		policies: `apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: frontend}}
`,
		pods: map[string]endpointapi.Endpoint{},
	}
	mem := &endpointapi.Memory{Program: agent.program, Unprogram: agent.unprogram}
	e := newEnv(tb, withAgent(mem))
	be, err := open(ctx, backend.Options{NetNS: e.node.Path(), Name: "cnitest"})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = be.Close(context.Background()) })
	agent.be = be
	agent.mu.Lock()
	defer agent.mu.Unlock()
	require.NoError(tb, agent.apply(ctx), "empty node: unknown calyx interfaces are dropped")
	return e, agent
}

func testPolicyEnforced(t *testing.T, open backend.Factory) {
	ctx := t.Context()
	e, agent := newPolicedEnv(t, open)
	be := agent.be

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
	require.Empty(t, agent.pods)
}

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/agent/agenttest"
	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/policy"
)

func TestNewRejectsIncompleteConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  agent.Config
	}{
		{"no store", agent.Config{Backend: &agenttest.Backend{}}},
		{"no backend", agent.Config{Store: mustStore(t)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := agent.New(tt.cfg)
			require.ErrorIs(t, err, agent.ErrConfig)
		})
	}
}

func mustStore(t *testing.T) *agenttest.MemStore {
	s, err := agenttest.NewMemStore()
	require.NoError(t, err)
	return s
}

// Nothing reaches the dataplane before the store's EventSynced: a store
// that never syncs leaves the kernel alone.
func TestNoApplyBeforeSync(t *testing.T) {
	store := mustStore(t)
	mustApply(t, store, decode(t, podYAML("shop", "a", "node-a", "10.0.0.1", "app: a"))...)
	blocked := &blockingStore{MemStore: store, release: make(chan struct{})}
	be := &agenttest.Backend{}
	cfg := agent.Config{Node: "node-a", Store: blocked, Backend: be, Coalesce: time.Millisecond}
	a, err := agent.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The listing's upserts arrive, the sync does not.
	eventually(t, "objects seen", func() bool { return a.NodeStatus().Datastore.Objects == 1 })
	time.Sleep(50 * time.Millisecond)
	applies, _, repairs := be.Counts()
	assert.Zero(t, applies, "applied before sync")
	assert.Zero(t, repairs, "repaired before sync")
	st := a.NodeStatus()
	assert.False(t, st.Ready)
	assert.False(t, st.Datastore.Synced)
	require.ErrorIs(t, a.Status(ctx), endpointapi.ErrCannotProgram)

	close(blocked.release)
	ctx2, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	require.NoError(t, be.WaitFor(ctx2, func(rs *compile.Ruleset) bool { return rs != nil && rs.Endpoints["shop/a"] != nil }))
	eventually(t, "ready", func() bool { return a.NodeStatus().Ready })
	require.NoError(t, a.Status(ctx))
	applies, _, _ = be.Counts()
	assert.Equal(t, 1, applies, "the initial state is applied once, whole")
}

// blockingStore holds back EventSynced until release is closed.
type blockingStore struct {
	*agenttest.MemStore
	release chan struct{}
}

func (s *blockingStore) Watch(ctx context.Context) (<-chan agentEvent, error) {
	in, err := s.MemStore.Watch(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan agentEvent)
	go func() {
		defer close(out)
		for ev := range in {
			if ev.Type == eventSynced {
				select {
				case <-s.release:
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// A policy change made in the store reaches the dataplane.
func TestPolicyChangeApplied(t *testing.T) {
	r := newRig(t, decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")+"---\n"+podYAML("shop", "other", "node-b", "10.0.0.9", "app: api")))
	rs := r.waitRS(t, "pod", hasEndpoint("shop/api"))
	assert.NotContains(t, rs.Endpoints, "shop/other", "a pod of another node is not an endpoint here")
	assert.Empty(t, ingressPolicies(rs, "shop/api"))

	mustApply(t, r.store, decode(t, allowPort("shop", "api-http", "api", 80))...)
	r.waitRS(t, "policy applies", func(rs *compile.Ruleset) bool {
		return assert.ObjectsAreEqual([]string{"shop/api-http"}, ingressPolicies(rs, "shop/api"))
	})

	require.NoError(t, r.store.Delete(context.Background(), policy.ObjectKey{Kind: policy.KindNetworkPolicy, Namespace: "shop", Name: "api-http"}, ""))
	r.waitRS(t, "policy gone", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == 0 })
}

// A burst of 100 changes costs a few applies, and the last one holds the
// final state.
func TestCoalescesBursts(t *testing.T) {
	var objs []policy.Object
	for i := range 100 {
		objs = append(objs, decode(t, allowPort("shop", fmt.Sprintf("p%03d", i), "api", 1000+i))...)
	}
	all := func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == 100 }
	t.Run("window", func(t *testing.T) {
		r := newRig(t, decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")),
			func(c *agent.Config) { c.Coalesce = 20 * time.Millisecond })
		r.waitRS(t, "pod", hasEndpoint("shop/api"))
		before, _, _ := r.be.Counts()
		mustApply(t, r.store, objs...)
		r.waitRS(t, "all 100", all)
		time.Sleep(50 * time.Millisecond)
		after, _, _ := r.be.Counts()
		t.Logf("100 changes → %d applies", after-before)
		assert.Less(t, after-before, 20, "a burst must coalesce")
	})
	t.Run("busy kernel", func(t *testing.T) {
		// While the kernel is busy with the burst's first change, the rest
		// piles up and goes in one apply: two in all, whatever the timing.
		r := newRig(t, decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")))
		r.waitRS(t, "pod", hasEndpoint("shop/api"))
		before, _, _ := r.be.Counts()
		release := r.be.Block()
		mustApply(t, r.store, objs...)
		eventually(t, "compiled", func() bool { latest, _ := r.agent.Ruleset(); return all(latest) })
		release()
		r.waitRS(t, "all 100", all)
		time.Sleep(50 * time.Millisecond)
		after, _, _ := r.be.Counts()
		assert.LessOrEqual(t, after-before, 2)
	})
}

// A bad source is reported and its last good objects stay in force.
func TestStoreErrorKeepsLastGood(t *testing.T) {
	objs := decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")+"---\n"+allowPort("shop", "api-http", "api", 80))
	r := newRig(t, objs)
	r.waitRS(t, "policy", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == 1 })

	r.store.ReportError("policies/api.yaml", errors.New("line 3: mapping values are not allowed here"))
	eventually(t, "error in status", func() bool { return len(r.agent.NodeStatus().Datastore.Errors) == 1 })
	st := r.agent.NodeStatus()
	assert.Equal(t, "policies/api.yaml", st.Datastore.Errors[0].Source)
	assert.Contains(t, st.LastError, "mapping values")
	assert.True(t, st.Ready, "a bad file does not make the node unready: the last good policy is enforced")
	assert.Equal(t, []string{"shop/api-http"}, ingressPolicies(r.be.Last(), "shop/api"))
	assert.Contains(t, scrape(t, r.agent), `calyx_datastore_errors_total{kind="source"} 1`)
	assert.Contains(t, scrape(t, r.agent), `calyx_datastore_error_sources 1`)

	// The source is fixed: its next object clears the error.
	r.store.Source = "policies/api.yaml"
	mustApply(t, r.store, decode(t, allowPort("shop", "api-http", "api", 8080))...)
	eventually(t, "error cleared", func() bool { return len(r.agent.NodeStatus().Datastore.Errors) == 0 })
}

// An apply error is retried with backoff (after a repair) until it
// succeeds; meanwhile the node reports it cannot program policy.
func TestApplyErrorRetried(t *testing.T) {
	r := newRig(t, decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")))
	r.waitRS(t, "pod", hasEndpoint("shop/api"))
	_, _, repairsBefore := r.be.Counts()

	r.be.FailNext(3, errBoom)
	mustApply(t, r.store, decode(t, allowPort("shop", "api-http", "api", 80))...)
	eventually(t, "failing", func() bool { return r.agent.NodeStatus().Failing })
	require.ErrorIs(t, r.agent.Status(context.Background()), endpointapi.ErrCannotProgram)
	assert.False(t, r.agent.NodeStatus().Ready)

	r.waitRS(t, "retried", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == 1 })
	eventually(t, "recovered", func() bool { return r.agent.NodeStatus().Ready })
	_, errs, repairs := r.be.Counts()
	assert.Equal(t, 3, errs)
	assert.GreaterOrEqual(t, repairs-repairsBefore, 3, "a repair precedes every retry")
	st := r.agent.NodeStatus()
	assert.EqualValues(t, 3, st.ApplyErrors)
	assert.Contains(t, st.LastError, "boom")
	assert.Contains(t, scrape(t, r.agent), "calyx_apply_errors_total 3")
	require.NoError(t, r.agent.Status(context.Background()))
}

// The periodic repair counts the repairs that found drift.
func TestPeriodicRepairCountsDrift(t *testing.T) {
	r := newRig(t, decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")),
		func(c *agent.Config) { c.ReconcileInterval = 10 * time.Millisecond })
	r.waitRS(t, "pod", hasEndpoint("shop/api"))
	r.be.Drift(2)
	eventually(t, "drift repaired", func() bool { return r.agent.NodeStatus().DriftRepairs == 1 })
	_, _, repairs := r.be.Counts()
	eventually(t, "more repairs", func() bool { _, _, n := r.be.Counts(); return n > repairs+2 })
	assert.EqualValues(t, 1, r.agent.NodeStatus().DriftRepairs, "a repair that found nothing is not counted")
	assert.Contains(t, scrape(t, r.agent), "calyx_drift_repairs_total 1")
}

// A slow repair is not repeated back to back: periodic repairs may hold
// the dataplane for a bounded share of the time.
func TestSlowRepairSpacedOut(t *testing.T) {
	be := &agenttest.Backend{}
	be.SlowRepair(20 * time.Millisecond)
	store := mustStore(t)
	r := startRig(t, store, store, be, func(c *agent.Config) { c.ReconcileInterval = time.Millisecond })
	eventually(t, "first repair", func() bool { _, _, n := be.Counts(); return n >= 1 })
	time.Sleep(300 * time.Millisecond)
	_, _, n := be.Counts()
	// 20 ms of repair buys 400 ms of rest: at most two in 300 ms.
	assert.LessOrEqual(t, n, 2, "repairs must be spaced out")
	r.stop()
}

// A stuck kernel never blocks the watch: changes keep being compiled, and
// the newest Ruleset is applied once the kernel answers.
func TestWatchNotBlockedByKernel(t *testing.T) {
	r := newRig(t, decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")))
	r.waitRS(t, "pod", hasEndpoint("shop/api"))
	release := r.be.Block()
	mustApply(t, r.store, decode(t, allowPort("shop", "p0", "api", 80))...)
	gen0 := r.agent.NodeStatus().Generation
	for i := 1; i <= 20; i++ {
		mustApply(t, r.store, decode(t, allowPort("shop", fmt.Sprintf("p%d", i), "api", 80+i))...)
	}
	eventually(t, "compiled while the kernel is stuck", func() bool {
		latest, _ := r.agent.Ruleset()
		return len(ingressPolicies(latest, "shop/api")) == 21
	})
	assert.Greater(t, r.agent.NodeStatus().Generation, gen0)
	release()
	r.waitRS(t, "newest applied", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == 21 })
}

// When the watch ends, the agent watches again, keeps enforcing meanwhile
// and deletes what disappeared while it was not watching.
func TestRewatchSweepsDeleted(t *testing.T) {
	r := newRig(t, decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")+"---\n"+allowPort("shop", "api-http", "api", 80)))
	r.waitRS(t, "policy", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == 1 })
	eventually(t, "watching", func() bool { return r.store.Watchers() == 1 })
	// Delete behind the agent's back: end the watch first, then change.
	r.store.Disconnect()
	require.NoError(t, r.store.Delete(context.Background(), policy.ObjectKey{Kind: policy.KindNetworkPolicy, Namespace: "shop", Name: "api-http"}, ""))
	r.waitRS(t, "swept", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == 0 })
	assert.True(t, r.agent.NodeStatus().Datastore.Synced)
}

// Stopping the agent leaves the dataplane alone; UninstallOnExit removes
// it.
func TestShutdownLeavesEnforcement(t *testing.T) {
	for _, tt := range []struct {
		name      string
		uninstall bool
	}{{"graceful", false}, {"uninstall", true}} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")),
				func(c *agent.Config) { c.UninstallOnExit = tt.uninstall })
			r.waitRS(t, "pod", hasEndpoint("shop/api"))
			r.stop()
			assert.Equal(t, tt.uninstall, r.be.Closed())
		})
	}
}

// The agent's Ruleset keeps Calico's fail-safe ports, the ones
// FelixConfiguration sets, and the agent's own; host endpoint policy that
// denies everything still lets them through (per the model).
func TestFailsafePortsKept(t *testing.T) {
	hep := `apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node-a-eth0, labels: {role: node}}
spec: {node: node-a, interfaceName: eth0, expectedIPs: [192.0.2.10]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-host}
spec:
  selector: role == 'node'
  types: [Ingress, Egress]
  ingress: [{action: Deny}]
  egress: [{action: Deny}]
`
	agentPort := compile.ProtoPort{Protocol: 6, Port: 9099}
	tests := []struct {
		name    string
		felix   string
		inbound []uint16 // TCP ports that must pass inbound
		denied  []uint16 // TCP ports that must not
	}{
		{"calico defaults", "", []uint16{22, 2379, 6443, 9099}, []uint16{80, 8080}},
		{"felix configuration", `---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  failsafeInboundHostPorts: [{protocol: TCP, port: 2222}]
  failsafeOutboundHostPorts: [{protocol: UDP, port: 53}]
`, []uint16{2222, 9099}, []uint16{22, 80}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, decode(t, hep+tt.felix), func(c *agent.Config) {
				c.FailsafeInbound = []compile.ProtoPort{agentPort}
			})
			rs := r.waitRS(t, "host endpoint", hasEndpoint("host:node-a-eth0"))
			assert.Contains(t, rs.Settings.FailsafeInbound, agentPort)
			peer := addr("198.51.100.1")
			for _, port := range tt.inbound {
				assert.True(t, allowedIn(rs, peer, addr("192.0.2.10"), port), "inbound TCP %d must pass", port)
			}
			for _, port := range tt.denied {
				assert.False(t, allowedIn(rs, peer, addr("192.0.2.10"), port), "inbound TCP %d is denied by policy", port)
			}
			assert.True(t, allowedOutUDP53(rs), "outbound DNS is fail-safe in both cases")
		})
	}
}

// Metrics and /status describe the Ruleset in force; /livez and /readyz
// follow the agent's state.
func TestHTTPEndpoints(t *testing.T) {
	store := mustStore(t)
	mustApply(t, store, decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")+"---\n"+
		podYAML("shop", "web", "node-b", "10.0.0.3", "app: web")+"---\n"+allowPort("shop", "api-http", "api", 80)+`---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: from-web}
spec:
  selector: app == 'api'
  types: [Ingress, Egress]
  ingress: [{action: Allow, source: {selector: app == 'web'}}, {action: Allow, protocol: UDP}]
  egress: [{action: Allow}]
`)...)
	blocked := &blockingStore{MemStore: store, release: make(chan struct{})}
	be := &agenttest.Backend{}
	a, err := agent.New(agent.Config{Node: "node-a", Store: blocked, Backend: be, Coalesce: time.Millisecond})
	require.NoError(t, err)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)

	code, _ := get(t, srv.URL+"/livez")
	assert.Equal(t, http.StatusServiceUnavailable, code, "not running")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "live", func() bool { c, _ := get(t, srv.URL+"/livez"); return c == http.StatusOK })
	code, body := get(t, srv.URL+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "datastore not in sync")
	_, body = get(t, srv.URL+"/metrics")
	assert.Contains(t, body, "calyx_datastore_synced 0")

	close(blocked.release)
	eventually(t, "ready", func() bool { c, _ := get(t, srv.URL+"/readyz"); return c == http.StatusOK })
	_, body = get(t, srv.URL+"/metrics")
	for _, want := range []string{
		"calyx_datastore_synced 1",
		"calyx_applies_total 1",
		"calyx_apply_errors_total 0",
		"calyx_apply_duration_seconds_count 1",
		"calyx_endpoints 1",
		"calyx_policies 2",
		`calyx_policy_rules{policy="shop/api-http"} 1`,
		`calyx_policy_rules{policy="from-web"} 3`,
		"calyx_sets 1",
		"calyx_set_members 1", // web's address, selected cluster-wide
	} {
		assert.Contains(t, body, want+"\n")
	}
	st := a.NodeStatus()
	assert.Equal(t, agent.Counts{Endpoints: 1, Policies: 2, Rules: 4, Sets: 1, SetMembers: 1}, st.Counts)

	// The policy changes: per-policy figures follow, the deleted one goes.
	require.NoError(t, store.Delete(ctx, policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "from-web"}, ""))
	eventually(t, "metrics follow", func() bool {
		_, body := get(t, srv.URL+"/metrics")
		return strings.Contains(body, "calyx_policies 1\n") && !strings.Contains(body, `policy="from-web"`) &&
			strings.Contains(body, "calyx_set_members 0\n")
	})

	_, body = get(t, srv.URL+"/status")
	assert.Contains(t, body, `"dataplane": "model"`)
	assert.Contains(t, body, `"synced": true`)
	assert.Contains(t, body, `"ready": true`)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func scrape(t *testing.T, a *agent.Agent) string {
	t.Helper()
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

func TestRunTwice(t *testing.T) {
	r := newRig(t, nil)
	eventually(t, "running", func() bool { return r.agent.NodeStatus().Live })
	require.ErrorIs(t, r.agent.Run(context.Background()), agent.ErrRunning)
}

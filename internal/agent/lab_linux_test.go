//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/ebpf"
	"github.com/calyxnet/calyx/backend/iptables"
	"github.com/calyxnet/calyx/backend/nftables"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/policy"
)

// dataplane is one kernel backend and how to break it from outside.
type dataplane struct {
	name string
	open backend.Factory
	// sabotage changes the dataplane behind the agent's back so that
	// policy is no longer enforced.
	sabotage func(t *testing.T, l *lab.Lab)
}

func dataplanes() []dataplane {
	return []dataplane{
		{"nftables", nftables.Open, func(t *testing.T, l *lab.Lab) {
			sh(t, l, "nft", "delete", "table", "inet", nftables.TableName(l.ID()))
		}},
		{"iptables", iptables.Open, func(t *testing.T, l *lab.Lab) {
			// Our jump is FORWARD's first rule; without it every pod
			// flow is accepted.
			sh(t, l, "iptables", "-D", "FORWARD", "1")
			sh(t, l, "ip6tables", "-D", "FORWARD", "1")
		}},
		{"ebpf", ebpf.Open, func(t *testing.T, l *lab.Lab) {
			// Detach every pod's egress program (the host veth's ingress
			// hook) through its pinned link.
			dir, err := ebpf.PinDir(l.ID(), l.NodeNS().Path())
			require.NoError(t, err)
			paths, err := filepath.Glob(filepath.Join(dir, "link_*_in"))
			require.NoError(t, err)
			require.NotEmpty(t, paths, "no pinned links in %s", dir)
			for _, p := range paths {
				lk, err := link.LoadPinnedLink(p, nil)
				require.NoError(t, err)
				require.NoError(t, lk.Detach(), p)
				require.NoError(t, lk.Close())
			}
		}},
	}
}

// sh runs a command in the lab's node namespace.
func sh(t *testing.T, l *lab.Lab, name string, args ...string) {
	t.Helper()
	labtest.InNode(t, l, name, args...)
}

var tcp80 = lab.Port{Protocol: 6, Port: 80}

// labRig is a lab whose node is programmed by agents on a shared
// directory datastore.
type labRig struct {
	lab   *lab.Lab
	store datastore.Store
	dp    dataplane
}

func newLabRig(t *testing.T, dp dataplane, extra ...policy.Object) *labRig {
	t.Helper()
	l := labtest.New(t, lab.Spec{Pods: labtest.Pods(4, tcp80)}, lab.Options{ProbeTimeout: 300 * time.Millisecond})
	// Stopped agents leave enforcement in place, as they must: once the
	// test is over, remove what they programmed (BPF pins outlive the
	// lab's namespaces) before the lab goes. Cleanups run last-in first.
	t.Cleanup(func() {
		ctx := context.Background()
		be, err := dp.open(ctx, backend.Options{NetNS: l.NodeNS().Path(), Name: l.ID()})
		require.NoError(t, err)
		require.NoError(t, be.Close(ctx))
	})
	// Pods reach their node freely: the lab probes pod to pod.
	objs := decode(t, `apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept}
`)
	for _, p := range l.Spec().Pods {
		var ips []string
		for _, a := range p.IPs {
			ips = append(ips, fmt.Sprintf("{ip: %q}", a))
		}
		objs = append(objs, decode(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {app: %s}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {podIP: %q, podIPs: [%s]}
`, p.Name, p.Namespace, p.Name, p.IPs[0], strings.Join(ips, ", ")))...)
	}
	return &labRig{lab: l, store: dirStore(t, append(objs, extra...)), dp: dp}
}

// start runs an agent with a fresh backend instance on the lab's node (as
// a restarted agent process would open one) and returns its stop function.
func (r *labRig) start(t *testing.T, store datastore.Store) (*agent.Agent, func()) {
	t.Helper()
	ctx := context.Background()
	be, err := r.dp.open(ctx, backend.Options{NetNS: r.lab.NodeNS().Path(), Name: r.lab.ID()})
	require.NoError(t, err)
	a, err := agent.New(agent.Config{Node: "node-a", Store: store, Backend: be,
		ReconcileInterval: 300 * time.Millisecond, RetryMax: time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
			// As the agent process's death would: enforcement stays,
			// and the next agent's backend may adopt it.
			if rel, ok := be.(backend.Releaser); ok {
				require.NoError(t, rel.Release(context.Background()))
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

// awaitMatrix waits until the agent has applied a Ruleset that satisfies
// want and the lab observes exactly what the model says for it; it returns
// how long that took.
func (r *labRig) awaitMatrix(t *testing.T, a *agent.Agent, what string, want func(*compile.Ruleset) bool) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last []string
	for ctx.Err() == nil {
		_, applied := a.Ruleset()
		if applied == nil || !want(applied) {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		m, err := r.lab.Observe(ctx)
		require.NoError(t, err)
		exp := lab.Expected(applied, m.Probes)
		m, err = r.lab.Recheck(ctx, m, exp)
		require.NoError(t, err)
		if last = m.Diff(exp); len(last) == 0 {
			return time.Since(start)
		}
	}
	t.Fatalf("%s: the lab never matched the model: %s (status %+v)", what, strings.Join(last, "; "), a.NodeStatus())
	return 0
}

func hasPolicy(name string) func(*compile.Ruleset) bool {
	return func(rs *compile.Ruleset) bool {
		for _, p := range rs.Policies {
			if p.Name == name {
				return true
			}
		}
		return false
	}
}

func not(f func(*compile.Ruleset) bool) func(*compile.Ruleset) bool {
	return func(rs *compile.Ruleset) bool { return !f(rs) }
}

// isolate1 lets only pod0 reach pod1.
func isolate1(t *testing.T) []policy.Object {
	return decode(t, `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pod1-from-pod0}
spec:
  selector: app == 'pod1'
  types: [Ingress]
  ingress: [{action: Allow, source: {selector: app == 'pod0'}}]
`)
}

// A policy written to the store changes what the lab observes; a broken
// dataplane is repaired; deleting the policy restores the open matrix.
func TestLabPolicyChangeAndRepair(t *testing.T) {
	for _, dp := range dataplanes() {
		t.Run(dp.name, func(t *testing.T) {
			r := newLabRig(t, dp)
			a, _ := r.start(t, r.store)
			r.awaitMatrix(t, a, "no policy", func(*compile.Ruleset) bool { return true })

			mustApply(t, r.store, isolate1(t)...)
			d := r.awaitMatrix(t, a, "policy applied", hasPolicy("pod1-from-pod0"))
			t.Logf("%s: policy in the store → observed in the lab within %v (one probe round included)", dp.name, d)

			before := a.NodeStatus().DriftRepairs
			dp.sabotage(t, r.lab)
			eventually10s(t, "drift repaired", func() bool { return a.NodeStatus().DriftRepairs > before })
			r.awaitMatrix(t, a, "repaired", hasPolicy("pod1-from-pod0"))
			assert.True(t, a.NodeStatus().Ready)

			require.NoError(t, r.store.Delete(context.Background(), policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "pod1-from-pod0"}, ""))
			r.awaitMatrix(t, a, "policy deleted", not(hasPolicy("pod1-from-pod0")))
		})
	}
}

func eventually10s(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// slowSync delays a store's EventSynced: a restarted agent whose datastore
// takes its time to list.
type slowSync struct {
	datastore.Store
	delay time.Duration
}

func (s slowSync) Watch(ctx context.Context) (<-chan datastore.Event, error) {
	in, err := s.Store.Watch(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan datastore.Event)
	go func() {
		defer close(out)
		for ev := range in {
			if ev.Type == datastore.EventSynced && !sleepCtx(ctx, s.delay) {
				return
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

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// An agent restarted under continuous probing: while it is down, and while
// its successor lists a slow datastore, the kernel keeps enforcing; a
// policy changed while it was down is patched in. No probe ever sees a
// flow that neither the old nor the new policy allows, nor a flow denied
// that both allow.
func TestLabRestartNoGap(t *testing.T) {
	for _, dp := range dataplanes() {
		t.Run(dp.name, func(t *testing.T) {
			r := newLabRig(t, dp, isolate1(t)...)
			a1, stop1 := r.start(t, r.store)
			r.awaitMatrix(t, a1, "first agent", hasPolicy("pod1-from-pod0"))
			_, rs1 := a1.Ruleset()

			var rs2 *compile.Ruleset
			var rsMu sync.Mutex
			p := newProber(r.lab, func() []*compile.Ruleset {
				rsMu.Lock()
				defer rsMu.Unlock()
				if rs2 == nil {
					return []*compile.Ruleset{rs1}
				}
				return []*compile.Ruleset{rs1, rs2}
			})
			p.start(t)
			p.waitRounds(t, 2)

			stop1()
			closed2 := decode(t, `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pod2-closed}
spec:
  selector: app == 'pod2'
  types: [Ingress]
`)
			// What the kernel may hold from now on: rs1 until the new agent
			// patched it, then rs2.
			want2 := compileStore(t, r.store, closed2...)
			rsMu.Lock()
			rs2 = want2
			rsMu.Unlock()
			mustApply(t, r.store, closed2...)
			p.waitRounds(t, 2) // down: the kernel holds rs1

			a2, _ := r.start(t, slowSync{Store: r.store, delay: time.Second})
			eventually10s(t, "second agent applied", func() bool { _, rs := a2.Ruleset(); return rs != nil })
			_, applied2 := a2.Ruleset()
			require.True(t, compile.Diff(want2, applied2).Empty(), "the new agent enforces the store: %s", compile.Diff(want2, applied2))
			p.waitRounds(t, 2)
			rounds, bad := p.stop()
			t.Logf("%s: %d probe rounds across the restart", dp.name, rounds)
			if len(bad) > 10 {
				bad = append(bad[:10], fmt.Sprintf("… %d more", len(bad)-10))
			}
			assert.Empty(t, bad, "probes outside every policy in force")
			r.awaitMatrix(t, a2, "after restart", hasPolicy("pod2-closed"))
			assert.EqualValues(t, 0, a2.NodeStatus().ApplyErrors)
		})
	}
}

// prober probes the lab in rounds until stopped and records every probe
// whose outcome no acceptable Ruleset explains.
type prober struct {
	lab        *lab.Lab
	acceptable func() []*compile.Ruleset

	mu     sync.Mutex
	rounds int
	bad    []string
	errs   []error
	cancel context.CancelFunc
	done   chan struct{}
}

func newProber(l *lab.Lab, acceptable func() []*compile.Ruleset) *prober {
	return &prober{lab: l, acceptable: acceptable, done: make(chan struct{})}
}

func (p *prober) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	t.Cleanup(func() { cancel(); <-p.done })
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			// The acceptable Rulesets are read before the round: the test
			// adds a state before it can be reached.
			rss := p.acceptable()
			m, err := p.lab.Run(ctx, p.lab.Probes())
			if ctx.Err() != nil {
				return
			}
			var bad []string
			if err == nil {
				bad = p.judge(ctx, m, rss)
			}
			p.mu.Lock()
			p.rounds++
			p.bad = append(p.bad, bad...)
			if err != nil {
				p.errs = append(p.errs, err)
			}
			p.mu.Unlock()
		}
	}()
}

// judge returns the probes whose outcome no Ruleset of rss predicts;
// probes denied that some Ruleset allows are tried again with a longer
// timeout first (a slow answer on a loaded machine is not a denial).
func (p *prober) judge(ctx context.Context, m *lab.Matrix, rss []*compile.Ruleset) []string {
	exps := make([]*lab.Matrix, len(rss))
	for i, rs := range rss {
		exps[i] = lab.Expected(rs, m.Probes)
	}
	anyAllows := &lab.Matrix{Probes: m.Probes, Allowed: make([]bool, len(m.Probes))}
	for i := range m.Probes {
		for _, e := range exps {
			anyAllows.Allowed[i] = anyAllows.Allowed[i] || e.Allowed[i]
		}
	}
	if again, err := p.lab.Recheck(ctx, m, anyAllows); err == nil {
		m = again
	}
	var bad []string
	for i, pr := range m.Probes {
		ok := false
		for _, e := range exps {
			ok = ok || e.Allowed[i] == m.Allowed[i]
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("%s: allowed=%v", pr.String(), m.Allowed[i]))
		}
	}
	return bad
}

func (p *prober) waitRounds(t *testing.T, n int) {
	t.Helper()
	p.mu.Lock()
	target := p.rounds + n
	p.mu.Unlock()
	eventually10s(t, fmt.Sprintf("%d probe rounds", n), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.rounds >= target
	})
}

func (p *prober) stop() (int, []string) {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		p.bad = append(p.bad, fmt.Sprintf("lab errors: %v", p.errs))
	}
	return p.rounds, p.bad
}

// compileStore compiles what the store will hold once objs are applied,
// for node-a.
func compileStore(t *testing.T, s datastore.Store, objs ...policy.Object) *compile.Ruleset {
	t.Helper()
	items, err := s.List(context.Background())
	require.NoError(t, err)
	set := policy.NewSet()
	for _, it := range items {
		_, err := set.UpsertAt(it.Object, it.Origin)
		require.NoError(t, err)
	}
	for _, o := range objs {
		_, err := set.Upsert(o)
		require.NoError(t, err)
	}
	rs, err := compile.New(set, "node-a").Compile()
	require.NoError(t, err)
	return rs
}

// dirStore returns a directory datastore holding objs in one file, quick
// to notice changes.
func dirStore(t *testing.T, objs []policy.Object) datastore.Store {
	t.Helper()
	root := t.TempDir()
	var buf bytes.Buffer
	require.NoError(t, policy.Encode(&buf, objs))
	require.NoError(t, os.WriteFile(filepath.Join(root, "lab.yaml"), buf.Bytes(), 0o644))
	s, err := dir.Open(context.Background(), root, dir.Options{Debounce: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

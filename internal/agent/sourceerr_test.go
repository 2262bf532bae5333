package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/agent/agenttest"
	"github.com/calyxnet/calyx/internal/datastore/dir"
)

// requireSourceErrors waits until the agent reports exactly the sources
// named (by their file's base name), in /status and in
// calyx_datastore_error_sources.
func requireSourceErrors(t *testing.T, a *agent.Agent, files ...string) {
	t.Helper()
	eventually(t, "source errors "+strings.Join(files, ","), func() bool {
		errs := a.NodeStatus().Datastore.Errors
		if len(errs) != len(files) {
			return false
		}
		for i, e := range errs {
			if filepath.Base(e.Source) != files[i] {
				return false
			}
		}
		return true
	})
	assert.Contains(t, scrape(t, a), "calyx_datastore_error_sources "+strconv.Itoa(len(files))+"\n")
}

// A policy file with a typo is reported while its last good objects stay
// in force; each way of fixing it clears the report.
func TestDirSourceErrorCleared(t *testing.T) {
	const pol = "policy.yaml"
	policies := allowPort("shop", "api-http", "api", 80) + "---\n" + allowPort("shop", "api-alt", "api", 8080)
	for _, tt := range []struct {
		name string
		fix  func(t *testing.T, p string)
		// n: the policies of shop/api once fixed.
		n int
	}{
		{"revert", func(t *testing.T, p string) { writeFile(t, p, policies) }, 2},
		{"remove the broken object", func(t *testing.T, p string) { writeFile(t, p, allowPort("shop", "api-http", "api", 80)) }, 1},
		{"delete the file", func(t *testing.T, p string) { require.NoError(t, os.Remove(p)) }, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeFile(t, filepath.Join(root, "pods.yaml"), podYAML("shop", "api", "node-a", "10.0.0.2", "app: api"))
			p := filepath.Join(root, pol)
			writeFile(t, p, policies)
			ds, err := dir.Open(t.Context(), root, dir.Options{Debounce: 5 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
			require.NoError(t, err)
			t.Cleanup(func() { ds.Close() })
			r := startRig(t, ds, nil, &agenttest.Backend{})
			r.waitRS(t, "policies", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == 2 })

			// The typo, in the second policy's document.
			writeFile(t, p, strings.Replace(policies, "ports: [8080]", "ports: [8080", 1))
			requireSourceErrors(t, r.agent, pol)
			assert.True(t, r.agent.NodeStatus().Ready)
			assert.Len(t, ingressPolicies(r.be.Last(), "shop/api"), 2, "the last good version stays in force")

			tt.fix(t, p)
			requireSourceErrors(t, r.agent)
			r.waitRS(t, "fixed", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == tt.n })
			assert.Empty(t, r.agent.NodeStatus().Datastore.Errors)
		})
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	// By rename, as git does: never a half-written file.
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, p))
}

// A store's EventRecovered clears the source's error, though no object
// of it changed.
func TestSourceRecoveredClearsError(t *testing.T) {
	r := newRig(t, decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api")+"---\n"+allowPort("shop", "api-http", "api", 80)))
	r.waitRS(t, "policy", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == 1 })
	r.store.ReportError("policies/a.yaml", errors.New("line 3: mapping values are not allowed here"))
	r.store.ReportError("policies/b.yaml", errors.New("line 4: did not find expected key"))
	requireSourceErrors(t, r.agent, "a.yaml", "b.yaml")
	r.store.ReportRecovered("policies/a.yaml")
	requireSourceErrors(t, r.agent, "b.yaml")
	r.store.ReportRecovered("policies/b.yaml")
	requireSourceErrors(t, r.agent)
}

// gatedStore holds new watches back while closed, so a test can change
// the store while the agent is not watching.
type gatedStore struct {
	*agenttest.MemStore
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (s *gatedStore) Watch(ctx context.Context) (<-chan agentEvent, error) {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.MemStore.Watch(ctx)
}

// A source fixed while the agent was not watching is not reported by the
// new watch: its error is cleared at the new EventSynced; one still
// broken stays.
func TestRewatchClearsFixedSources(t *testing.T) {
	mem, err := agenttest.NewMemStore(decode(t, podYAML("shop", "api", "node-a", "10.0.0.2", "app: api"))...)
	require.NoError(t, err)
	gs := &gatedStore{MemStore: mem}
	r := startRig(t, gs, mem, &agenttest.Backend{})
	r.waitRS(t, "pod", hasEndpoint("shop/api"))
	mem.ReportError("policies/a.yaml", errors.New("line 3: mapping values are not allowed here"))
	mem.ReportError("policies/b.yaml", errors.New("line 4: did not find expected key"))
	requireSourceErrors(t, r.agent, "a.yaml", "b.yaml")

	gs.mu.Lock()
	gs.gate = make(chan struct{})
	gs.mu.Unlock()
	mem.Disconnect()
	mem.ReportRecovered("policies/a.yaml") // no watch: no event
	require.Zero(t, mem.Watchers())
	gs.mu.Lock()
	close(gs.gate)
	gs.gate = nil
	gs.mu.Unlock()
	requireSourceErrors(t, r.agent, "b.yaml")
	eventually(t, "watching again", func() bool { return mem.Watchers() == 1 })
}

// An object defined in two files is reported on the file whose definition
// is ignored; a change of that file's other objects does not clear it.
func TestDirDuplicateStaysReported(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "pods.yaml"), podYAML("shop", "api", "node-a", "10.0.0.2", "app: api"))
	writeFile(t, filepath.Join(root, "a.yaml"), allowPort("shop", "api-http", "api", 80))
	b := filepath.Join(root, "b.yaml")
	writeFile(t, b, allowPort("shop", "api-http", "api", 80)+"---\n"+allowPort("shop", "api-alt", "api", 8080))
	ds, err := dir.Open(t.Context(), root, dir.Options{Debounce: 5 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { ds.Close() })
	r := startRig(t, ds, nil, &agenttest.Backend{})
	r.waitRS(t, "policies", func(rs *compile.Ruleset) bool { return len(ingressPolicies(rs, "shop/api")) == 2 })
	requireSourceErrors(t, r.agent, "b.yaml")

	// api-alt, in b.yaml, changes: applied, and b.yaml still reported.
	writeFile(t, b, allowPort("shop", "api-http", "api", 80)+"---\n"+allowPort("shop", "api-alt", "api", 8081))
	r.waitRS(t, "api-alt on 8081", func(rs *compile.Ruleset) bool {
		return allowedIn(rs, addr("10.0.0.9"), addr("10.0.0.2"), 8081)
	})
	requireSourceErrors(t, r.agent, "b.yaml")

	// a.yaml goes: b.yaml's definition is in force and nothing is wrong.
	require.NoError(t, os.Remove(filepath.Join(root, "a.yaml")))
	requireSourceErrors(t, r.agent)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/agent/agenttest"
	"github.com/calyxnet/calyx/policy"
)

// nodeAgent runs an agent over an in-memory store and model dataplane and
// serves its HTTP endpoints.
func nodeAgent(t *testing.T, yaml string) (*agent.Agent, *agenttest.MemStore, string) {
	t.Helper()
	objs, err := policy.Decode(strings.NewReader(yaml), "test")
	require.NoError(t, err)
	store, err := agenttest.NewMemStore(objs...)
	require.NoError(t, err)
	a, err := agent.New(agent.Config{Node: "node-a", Store: store, Backend: &agenttest.Backend{}, Coalesce: time.Millisecond})
	require.NoError(t, err)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for !a.NodeStatus().Ready {
		require.True(t, time.Now().Before(deadline), "agent not ready")
		time.Sleep(2 * time.Millisecond)
	}
	return a, store, srv.URL
}

const nodePod = `apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.2}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  selector: app == 'api'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
`

func TestNodeStatus(t *testing.T) {
	_, store, url := nodeAgent(t, nodePod)

	t.Run("text", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "", "node", "status", "--agent", url)
		require.Equal(t, exitOK, code, stderr)
		for _, want := range []string{
			"Node:           node-a",
			"Agent:          live, ready",
			"Datastore:      in sync (2 objects)",
			"Dataplane:      model",
			"Endpoints:      1 (0 registered by CNI)",
			"Policies:       1 (1 rules)",
			"Applies:        1 ok, 0 failed",
			"Last error:     none",
		} {
			assert.Contains(t, stdout, want+"\n")
		}
		assert.Regexp(t, `Last apply: +\d{4}-\d\d-\d\dT[^,]+, took `, stdout)
	})
	t.Run("json", func(t *testing.T) {
		code, stdout, _ := runCLI(t, "", "node", "status", "--agent", strings.TrimPrefix(url, "http://"), "-o", "json")
		require.Equal(t, exitOK, code)
		var st agent.Status
		require.NoError(t, json.Unmarshal([]byte(stdout), &st))
		assert.True(t, st.Ready)
		assert.Equal(t, 1, st.Counts.Endpoints)
	})
	t.Run("yaml", func(t *testing.T) {
		code, stdout, _ := runCLI(t, "", "node", "status", "--agent", url, "-o", "yaml")
		require.Equal(t, exitOK, code)
		assert.Contains(t, stdout, "dataplane: model\n")
	})
	t.Run("a broken source is shown", func(t *testing.T) {
		store.ReportError("policies/api.yaml", errors.New("line 3: bad indentation"))
		var stdout string
		require.Eventually(t, func() bool {
			_, stdout, _ = runCLI(t, "", "node", "status", "--agent", url)
			return strings.Contains(stdout, "policies/api.yaml: line 3: bad indentation")
		}, 5*time.Second, 5*time.Millisecond)
		assert.Contains(t, stdout, "Agent:          live, ready\n", "a broken file keeps the last good policy: still ready")
	})
}

func TestNodeStatusNotReady(t *testing.T) {
	a, err := agent.New(agent.Config{Node: "node-a", Store: mustMemStore(t), Backend: &agenttest.Backend{}})
	require.NoError(t, err)
	srv := httptest.NewServer(a.Handler()) // never Run: not live, not ready
	t.Cleanup(srv.Close)
	code, stdout, _ := runCLI(t, "", "node", "status", "--agent", srv.URL)
	assert.Equal(t, exitFindings, code)
	assert.Contains(t, stdout, "Agent:          NOT LIVE, NOT READY\n")
	assert.Contains(t, stdout, "Datastore:      NOT IN SYNC")
}

func TestNodeStatusErrors(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unreachable", []string{"--agent", "http://127.0.0.1:1"}, exitFindings, "agent unreachable"},
		{"bad output", []string{"-o", "xml"}, exitUsage, "unknown output format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", append([]string{"node", "status"}, tt.args...)...)
			assert.Equal(t, tt.code, code)
			assert.Contains(t, stderr, tt.stderr)
		})
	}
}

func mustMemStore(t *testing.T) *agenttest.MemStore {
	t.Helper()
	s, err := agenttest.NewMemStore()
	require.NoError(t, err)
	return s
}

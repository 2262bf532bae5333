//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend/nftables"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/internal/datastore/dsconfig"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/policy"
)

// binaries are calyx-agent and calyxctl, built once per test run.
type binaries struct{ agent, ctl string }

var built struct {
	once sync.Once
	dir  string
	bins binaries
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildBinaries builds calyx-agent and calyxctl on first use.
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "calyx-agent-test-"); built.err != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", built.dir+string(filepath.Separator), ".", "../calyxctl").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		built.bins = binaries{agent: filepath.Join(built.dir, "calyx-agent"), ctl: filepath.Join(built.dir, "calyxctl")}
	})
	require.NoError(t, built.err)
	return built.bins
}

// buildAgent returns the calyx-agent binary.
func buildAgent(t *testing.T) string {
	t.Helper()
	return buildBinaries(t).agent
}

// agentProc is a running calyx-agent process.
type agentProc struct {
	cmd  *exec.Cmd
	url  string
	logs *logBuf
	done chan error
}

func startAgent(t *testing.T, bin string, args ...string) *agentProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	p := &agentProc{url: "http://" + addr, logs: &logBuf{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"--listen", addr, "--config", emptyFile(t)}, args...)...)
	p.cmd.Stderr = p.logs
	p.cmd.Env = append(os.Environ(), "CALYX_NODE_NAME=node-a")
	// Never outlive a test binary that dies without its cleanups.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, p.cmd.Start())
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", p.logs.Bytes())
		}
	})
	return p
}

func (p *agentProc) status(t *testing.T) (agent.Status, bool) {
	resp, err := http.Get(p.url + "/status")
	if err != nil {
		return agent.Status{}, false
	}
	defer resp.Body.Close()
	var st agent.Status
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st, true
}

func (p *agentProc) waitReady(t *testing.T) agent.Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, ok := p.status(t); ok && st.Ready {
			return st
		}
		require.True(t, time.Now().Before(deadline), "agent not ready:\n%s", p.logs.Bytes())
		time.Sleep(20 * time.Millisecond)
	}
}

// term stops the process with SIGTERM and returns its exit error.
func (p *agentProc) term(t *testing.T) error {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
		return nil
	}
}

// The proof, as a process: calyx-agent on a lab node with the
// directory datastore; a policy applied to the store (as calyxctl apply
// writes it) changes the observed matrix; SIGTERM leaves enforcement in
// place; a new process adopts it; --uninstall removes it.
func TestAgentProcess(t *testing.T) {
	l := labtest.New(t, lab.Spec{Pods: labtest.Pods(3, lab.Port{Protocol: 6, Port: 80})}, lab.Options{ProbeTimeout: 300 * time.Millisecond})
	bin := buildAgent(t)
	root := t.TempDir()
	var docs bytes.Buffer
	docs.WriteString("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {defaultEndpointToHostAction: Accept}\n")
	for _, p := range l.Spec().Pods {
		fmt.Fprintf(&docs, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s, labels: {app: %s}}\nspec: {nodeName: node-a, containers: [{name: c, image: i}]}\nstatus: {podIPs: [{ip: %q}, {ip: %q}]}\n",
			p.Name, p.Namespace, p.Name, p.IPs[0], p.IPs[1])
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "pods.yaml"), docs.Bytes(), 0o644))
	args := []string{"--datastore-dir", root, "--netns", l.NodeNS().Path(), "--dataplane", "nftables", "--dataplane-name", l.ID(),
		"--reconcile-interval", "500ms", "--endpoint-socket", filepath.Join(t.TempDir(), "ep.sock"), "--dir-state-dir", filepath.Join(t.TempDir(), "dirstate"), "--log-level", "debug"}

	a1 := startAgent(t, bin, args...)
	st := a1.waitReady(t)
	require.Equal(t, 3, st.Counts.Endpoints)
	requireMatrix(t, l, root)

	store, err := dir.Open(context.Background(), root, dir.Options{})
	require.NoError(t, err)
	defer store.Close()
	objs, err := policy.Decode(strings.NewReader(`apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pod1-closed}
spec: {selector: app == 'pod1', types: [Ingress]}
`), "test")
	require.NoError(t, err)
	_, err = store.Apply(context.Background(), objs[0])
	require.NoError(t, err)
	require.Eventually(t, func() bool { st, _ := a1.status(t); return st.Counts.Policies == 1 && st.Ready }, 10*time.Second, 20*time.Millisecond)
	requireMatrix(t, l, root)

	require.NoError(t, a1.term(t), "SIGTERM is a clean stop")
	require.Contains(t, string(a1.logs.Bytes()), "enforcement left in place")
	nftList(t, l) // the table is still there
	requireMatrix(t, l, root)

	a2 := startAgent(t, bin, args...)
	a2.waitReady(t)
	requireMatrix(t, l, root)
	require.NoError(t, a2.term(t))

	out, err := exec.Command(bin, append(args, "--uninstall", "--config", emptyFile(t))...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	err = l.NodeNS().Do(func() error {
		return exec.Command("nft", "list", "table", "inet", nftables.TableName(l.ID())).Run()
	})
	require.Error(t, err, "--uninstall removes the table")
}

func nftList(t *testing.T, l *lab.Lab) {
	t.Helper()
	require.NoError(t, l.NodeNS().Do(func() error {
		return exec.Command("nft", "list", "table", "inet", nftables.TableName(l.ID())).Run()
	}))
}

// requireMatrix compiles the directory for node-a and requires the lab to
// behave as the model says.
func requireMatrix(t *testing.T, l *lab.Lab, root string) {
	t.Helper()
	awaitMatrix(t, l, storeRuleset(t, dsconfig.Config{Type: dsconfig.TypeDir, Dir: root}), time.Now(), "directory")
}

// storeRuleset compiles what the datastore holds for node-a.
func storeRuleset(t *testing.T, cfg dsconfig.Config) *compile.Ruleset {
	t.Helper()
	ctx := context.Background()
	s, err := dsconfig.Open(ctx, cfg, dsconfig.Options{})
	require.NoError(t, err)
	defer s.Close()
	items, err := s.List(ctx)
	require.NoError(t, err)
	set := policy.NewSet()
	for _, it := range items {
		_, err := set.UpsertAt(it.Object, it.Origin)
		require.NoError(t, err)
	}
	rs, err := compile.New(set, "node-a").Compile()
	require.NoError(t, err)
	return rs
}

// awaitMatrix probes the lab until it behaves as the model says under rs,
// for at most 20 s, and returns the time from since to the end of the
// first probe round that matched. A mismatch seen twice in a row has its
// probes denied but expected allowed rerun with a longer timeout (a loaded
// machine can miss a short one; a real denial stays denied).
func awaitMatrix(t *testing.T, l *lab.Lab, rs *compile.Ruleset, since time.Time, what string) time.Duration {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	var diff, prev []string
	for time.Now().Before(deadline) {
		m, err := l.Observe(ctx)
		require.NoError(t, err)
		want := lab.Expected(rs, m.Probes)
		if diff = m.Diff(want); len(diff) == 0 {
			return time.Since(since)
		}
		if slices.Equal(diff, prev) {
			m, err = l.Recheck(ctx, m, want)
			require.NoError(t, err)
			if diff = m.Diff(want); len(diff) == 0 {
				return time.Since(since)
			}
		}
		prev = diff
	}
	t.Fatalf("%s: the lab differs from the model: %s", what, strings.Join(diff, "; "))
	return 0
}

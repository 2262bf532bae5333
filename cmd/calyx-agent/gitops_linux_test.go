//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/datastore/dsconfig"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// The GitOps way, as processes: policy is a file in the directory
// datastore. A typo in it is reported (/metrics, /status) while its last
// good version stays enforced in the kernel, also by an agent restarted
// while the file is still broken (--dir-state-dir); a fix that changes
// the broken object is enforced and clears the error.
func TestAgentGitOpsTypo(t *testing.T) {
	netnstest.RequireRoot(t)
	bins := buildBinaries(t)
	tcp80 := lab.Port{Protocol: 6, Port: 80}
	l := labtest.New(t, lab.Spec{Pods: labtest.Pods(3, tcp80), External: labtest.ExternalAddrs[:1], ExternalPorts: []lab.Port{tcp80}},
		lab.Options{ProbeTimeout: 250 * time.Millisecond})
	dpArgs := []string{"--netns", l.NodeNS().Path(), "--dataplane", "nftables", "--dataplane-name", l.ID()}
	t.Cleanup(func() {
		out, err := exec.Command(bins.agent, append([]string{"--uninstall", "--config", emptyFile(t)}, dpArgs...)...).CombinedOutput()
		if err != nil {
			t.Errorf("calyx-agent --uninstall: %v\n%s", err, out)
		}
	})
	root, work := t.TempDir(), t.TempDir()
	cfg := dsconfig.Config{Type: dsconfig.TypeDir, Dir: root}
	require.NoError(t, os.WriteFile(filepath.Join(root, "base.yaml"), []byte(e2eBase(l)), 0o644))
	policyFile := filepath.Join(root, "policy.yaml")
	require.NoError(t, os.WriteFile(policyFile, []byte(e2ePolicy), 0o644))
	args := append(dpArgs, "--datastore-type", "dir", "--datastore-dir", root, "--dir-state-dir", filepath.Join(work, "state"),
		"--reconcile-interval", "1s", "--coalesce", "10ms", "--endpoint-socket", filepath.Join(work, "ep.sock"))

	a1 := startAgent(t, bins.agent, args...)
	a1.waitReady(t)
	good := storeRuleset(t, cfg)
	awaitMatrix(t, l, good, time.Now(), "good file")

	// A typo: the file no longer parses.
	typo := strings.Replace(e2ePolicy, "selector: app == 'pod2'", "selector: app == 'pod2", 1)
	require.NotEqual(t, e2ePolicy, typo)
	writeAtomically(t, policyFile, typo)
	requireSourceError(t, a1, "policy.yaml")
	awaitMatrix(t, l, good, time.Now(), "typo: the last good version stays in force")

	// Restarted while the file is broken: the last good version, kept in
	// the state directory, is what the new agent enforces.
	require.NoError(t, a1.term(t))
	a2 := startAgent(t, bins.agent, args...)
	a2.waitReady(t)
	requireSourceError(t, a2, "policy.yaml")
	awaitMatrix(t, l, good, time.Now(), "restarted on a typo: the last good version stays in force")

	// The usual fix, git revert: exactly the last good content again. No
	// object changes, yet the error clears.
	writeAtomically(t, policyFile, e2ePolicy)
	requireNoSourceError(t, a2, "the revert did not clear the error")
	awaitMatrix(t, l, good, time.Now(), "reverted")

	// Broken again, then a fix which also opens pod2's egress to any pod
	// or outside address on TCP 80: enforced, and the error clears.
	writeAtomically(t, policyFile, typo)
	requireSourceError(t, a2, "policy.yaml")
	fixed := strings.Replace(e2ePolicy, "egress: [{action: Allow, destination: {selector: app == 'pod0'}}]",
		"egress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]", 1)
	require.NotEqual(t, e2ePolicy, fixed)
	writeAtomically(t, policyFile, fixed)
	requireNoSourceError(t, a2, "the fix did not clear the error")
	after := storeRuleset(t, cfg)
	requireDiffers(t, l, good, after)
	awaitMatrix(t, l, after, time.Now(), "fixed")
}

// requireSourceError waits until the agent reports one unreadable source,
// named like file, and stays ready: the last good policy is enforced.
func requireSourceError(t *testing.T, a *agentProc, file string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for a.metric(t, "calyx_datastore_error_sources") != 1 {
		require.True(t, time.Now().Before(deadline), "the typo was not reported in /metrics")
		time.Sleep(10 * time.Millisecond)
	}
	var st agent.Status
	for {
		var ok bool
		st, ok = a.status(t)
		if ok && st.Ready && len(st.Datastore.Errors) == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "status: %+v", st)
		time.Sleep(10 * time.Millisecond)
	}
	require.Contains(t, st.Datastore.Errors[0].Source, file)
	require.NotEmpty(t, st.Datastore.Errors[0].Error)
}

// requireNoSourceError waits until the agent reports no unreadable
// source, in /metrics and /status.
func requireNoSourceError(t *testing.T, a *agentProc, msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for a.metric(t, "calyx_datastore_error_sources") != 0 {
		require.True(t, time.Now().Before(deadline), msg)
		time.Sleep(10 * time.Millisecond)
	}
	for {
		st, ok := a.status(t)
		if ok && len(st.Datastore.Errors) == 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "%s: status %+v", msg, st)
		time.Sleep(10 * time.Millisecond)
	}
}

// writeAtomically replaces a file by rename, as git checkout does.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

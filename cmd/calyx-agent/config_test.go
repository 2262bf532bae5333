package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore/dsconfig"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// Flags win over the environment, which wins over the file, which wins
// over the defaults.
func TestOptionsPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	dsFile := filepath.Join(dir, "calyxctl.yaml")
	require.NoError(t, os.WriteFile(dsFile, []byte("apiVersion: calyx/v1\nkind: CalyxConfig\nspec: {datastoreType: etcd, etcdEndpoints: 'http://a:2379'}\n"), 0o644))
	require.NoError(t, os.WriteFile(file, []byte(`nodeName: from-file
dataplane: iptables
datastoreConfig: `+dsFile+`
reconcileInterval: 30s
coalesce: 0.05
uninstallOnExit: true
`), 0o644))
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, o options)
	}{
		{"defaults", []string{"--config", emptyFile(t)}, map[string]string{"CALYX_NODE_NAME": "n"}, nil},
		{"file", []string{"--config", file}, nil, func(t *testing.T, o options) {
			assert.Equal(t, "from-file", o.NodeName)
			assert.Equal(t, "iptables", o.Dataplane)
			assert.Equal(t, 30*time.Second, time.Duration(o.ReconcileInterval))
			assert.Equal(t, 50*time.Millisecond, time.Duration(o.Coalesce))
			assert.Equal(t, dsconfig.Config{Type: "etcd", EtcdEndpoints: []string{"http://a:2379"}, NodeName: "from-file"}, o.Store,
				"the datastore file the agent's file names")
			assert.True(t, o.UninstallOnExit)
			assert.Equal(t, "nftables", defaults().Dataplane, "defaults are not changed")
			assert.Equal(t, file, o.ConfigFile)
		}},
		{"env over file", []string{}, map[string]string{"CALYX_AGENT_CONFIG": file, "CALYX_NODE_NAME": "from-env",
			"CALYX_RECONCILE_INTERVAL": "5s", "CALYX_UNINSTALL_ON_EXIT": "false", "CALYX_ETCD_ENDPOINTS": "http://b:2379, http://c:2379"},
			func(t *testing.T, o options) {
				assert.Equal(t, "from-env", o.NodeName)
				assert.Equal(t, "iptables", o.Dataplane, "the file still counts")
				assert.Equal(t, 5*time.Second, time.Duration(o.ReconcileInterval))
				assert.False(t, o.UninstallOnExit)
				assert.Equal(t, []string{"http://b:2379", "http://c:2379"}, o.Store.EtcdEndpoints)
				assert.Equal(t, "from-env", o.Store.NodeName)
			}},
		{"flags over env", []string{"--config", file, "--node-name", "from-flag", "--dataplane", "ebpf", "--uninstall-on-exit=false", "--uninstall",
			"--datastore-type", "dir", "--datastore-dir", "/srv/policy"},
			map[string]string{"CALYX_NODE_NAME": "from-env", "CALYX_DATAPLANE": "nftables", "CALYX_DATASTORE_TYPE": "kubernetes"},
			func(t *testing.T, o options) {
				assert.Equal(t, "from-flag", o.NodeName)
				assert.Equal(t, "dir", o.Store.Type)
				assert.Equal(t, "/srv/policy", o.Store.Dir)
				assert.Equal(t, "ebpf", o.Dataplane)
				assert.False(t, o.UninstallOnExit)
				assert.True(t, o.Uninstall)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := loadOptions(tt.args, envOf(tt.env), &bytes.Buffer{})
			require.NoError(t, err)
			if tt.check != nil {
				tt.check(t, o)
				return
			}
			want := defaults()
			want.NodeName = "n"
			want.ConfigFile = tt.args[1]
			want.Store = dsconfig.Config{Type: dsconfig.TypeDir, Dir: dsconfig.DefaultDir, NodeName: "n"}
			assert.Equal(t, want, o)
		})
	}
}

func TestOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	require.NoError(t, os.WriteFile(typo, []byte("dataplain: nftables\n"), 0o644))
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"missing explicit file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "no such file"},
		{"unknown key in file", []string{"--config", typo}, nil, "dataplain"},
		{"bad duration", []string{"--coalesce", "soon"}, nil, "--coalesce"},
		{"bad env", nil, map[string]string{"CALYX_RECONCILE_INTERVAL": "often"}, "CALYX_RECONCILE_INTERVAL"},
		{"unknown datastore", []string{"--datastore-type", "zookeeper"}, nil, "zookeeper"},
		{"etcd without endpoints", []string{"--datastore-type", "etcd"}, nil, "no endpoints"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "log level"},
		{"stray argument", []string{"run"}, nil, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"CALYX_NODE_NAME": "n", "CALYX_AGENT_CONFIG": emptyFile(t)}
			for k, v := range tt.env {
				env[k] = v
			}
			_, err := loadOptions(tt.args, envOf(env), &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestExposedPort(t *testing.T) {
	for _, tt := range []struct {
		listen string
		port   uint16
		ok     bool
	}{
		{"127.0.0.1:9099", 0, false},
		{"localhost:9099", 0, false},
		{"[::1]:9099", 0, false},
		{":9099", 9099, true},
		{"0.0.0.0:9100", 9100, true},
		{"10.0.0.1:9101", 9101, true},
		{"bogus", 0, false},
	} {
		t.Run(tt.listen, func(t *testing.T) {
			p, ok := exposedPort(tt.listen)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.port, p)
		})
	}
}

// The agent runs end to end on a directory datastore with the model
// dataplane, serves /status, and stops cleanly on cancellation.
func TestRunWithModel(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pod.yaml"), []byte(`apiVersion: v1
kind: Pod
metadata: {name: a, namespace: shop}
spec: {nodeName: n, containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.1}
`), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	var logs logBuf
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--dataplane", "model", "--datastore-dir", dir, "--listen", "127.0.0.1:0",
			"--endpoint-socket", filepath.Join(dir, "ep.sock"), "--log-level", "debug"}, envOf(map[string]string{"CALYX_NODE_NAME": "n",
			"CALYX_AGENT_CONFIG": emptyFile(t)}), &logs)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.Contains(logs.Bytes(), []byte("dataplane applied")) {
		if time.Now().After(deadline) {
			t.Fatalf("no apply logged:\n%s", logs.Bytes())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	assert.Equal(t, 0, <-done)
	assert.Contains(t, string(logs.Bytes()), "enforcement left in place")
}

// logBuf is a buffer safe to write from the agent while the test reads.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// emptyFile is a config file that sets nothing.
func emptyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "empty.yaml")
	require.NoError(t, os.WriteFile(p, nil, 0o644))
	return p
}

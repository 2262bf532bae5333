package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/internal/etcdtest"
)

const clusterYAML = storetest.ShopCluster

const isolateDB = `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-isolated, namespace: shop}
spec:
  selector: app == 'db'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'web'}
    destination: {ports: [5432]}
`

// storeArgs are the flags of each datastore the commands are tested on.
func storeArgs(t *testing.T) map[string][]string {
	t.Helper()
	t.Setenv("CALYX_CONFIG", filepath.Join(t.TempDir(), "none.yaml"))
	os.WriteFile(os.Getenv("CALYX_CONFIG"), []byte("kind: CalyxConfig\nspec: {}\n"), 0o644)
	url := etcdtest.Start(t)
	return map[string][]string{
		"dir":  {"--datastore-type", "dir", "--datastore-dir", filepath.Join(t.TempDir(), "policy")},
		"etcd": {"--datastore-type", "etcd", "--etcd-endpoints", url, "--etcd-prefix", "/test/" + t.Name() + "/"},
	}
}

func TestResourceCommands(t *testing.T) {
	for name, ds := range storeArgs(t) {
		t.Run(name, func(t *testing.T) {
			cli := func(stdin string, args ...string) (int, string, string) {
				t.Helper()
				return runCLI(t, stdin, append(args, ds...)...)
			}
			cluster := writeInput(t, "cluster.yaml", clusterYAML)
			policy := writeInput(t, "policy.yaml", isolateDB)

			code, out, errOut := cli("", "apply", "-f", cluster)
			require.Equal(t, 0, code, errOut)
			assert.Equal(t, "namespace/shop created\npod/web created\npod/db created\n", out)
			code, out, _ = cli("", "apply", "-f", cluster)
			require.Equal(t, 0, code)
			assert.Equal(t, "namespace/shop unchanged\npod/web unchanged\npod/db unchanged\n", out)

			// get in every format.
			code, out, _ = cli("", "get", "pods", "-n", "shop")
			require.Equal(t, 0, code)
			assert.Equal(t, "NAME\ndb\nweb\n", out)
			code, out, _ = cli("", "get", "po", "-A", "-o", "wide")
			require.Equal(t, 0, code)
			assert.Equal(t, "NAMESPACE  NAME  NODE    IP        LABELS\nshop       db    node-b  10.0.0.2  app=db\nshop       web   node-a  10.0.0.1  app=web\n", out)
			code, out, _ = cli("", "get", "pod", "web", "db", "-n", "shop", "-o", "name")
			require.Equal(t, 0, code)
			assert.Equal(t, "pod/web\npod/db\n", out, "named objects in the order asked")
			code, out, errOut = cli("", "get", "pods")
			require.Equal(t, 0, code)
			assert.Empty(t, out)
			assert.Equal(t, "No Pod found in namespace default.\n", errOut)
			code, _, errOut = cli("", "get", "gnp", "nope")
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, "not found")
			code, _, _ = cli("", "get", "services")
			assert.Equal(t, 2, code)

			// Client dry run: validation only.
			code, out, _ = cli("", "apply", "--dry-run=client", "-f", policy)
			require.Equal(t, 0, code)
			assert.Equal(t, "networkpolicy.projectcalico.org/db-isolated valid (client dry run)\n", out)
			bad := writeInput(t, "bad.yaml", strings.Replace(isolateDB, "[5432]", "[70000]", 1))
			code, _, errOut = cli("", "apply", "--dry-run=client", "-f", bad)
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, "bad.yaml:11: error: NetworkPolicy \"shop/db-isolated\": spec.ingress[0].destination.ports[0]")

			// Server dry run: what would change, nothing written.
			code, out, errOut = cli("", "apply", "--dry-run=server", "-f", policy)
			require.Equal(t, 0, code, errOut)
			assert.Contains(t, out, "networkpolicy.projectcalico.org/db-isolated created (server dry run)\n")
			assert.Contains(t, out, "dataplane (all endpoints):\n")
			assert.Contains(t, out, "+policy")
			assert.Contains(t, out, "reachability (+ now allowed, - now denied):\n  - shop/web -> shop/db 80/TCP\n")
			assert.NotContains(t, out, "5432/TCP", "web keeps reaching db on 5432")
			code, _, _ = cli("", "get", "np", "-n", "shop", "db-isolated")
			assert.Equal(t, 1, code, "a dry run writes nothing")

			// diff: 1 with changes, 0 without, 2 on error.
			code, out, _ = cli("", "diff", "-f", policy)
			assert.Equal(t, 1, code)
			assert.Contains(t, out, "--- live/shop/networkpolicy.projectcalico.org/db-isolated\n+++ new/shop/networkpolicy.projectcalico.org/db-isolated\n")
			assert.Contains(t, out, "+kind: NetworkPolicy\n")
			code, out, errOut = cli("", "apply", "-f", policy)
			require.Equal(t, 0, code, errOut)
			assert.Equal(t, "networkpolicy.projectcalico.org/db-isolated created\n", out)
			code, out, _ = cli("", "diff", "-f", policy)
			assert.Equal(t, 0, code)
			assert.Empty(t, out)
			code, _, _ = cli("", "diff", "-f", bad)
			assert.Equal(t, 2, code)
			code, _, _ = cli("", "diff", "-f", filepath.Join(t.TempDir(), "missing.yaml"))
			assert.Equal(t, 2, code)

			code, _, errOut = cli("", "create", "-f", policy)
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, "already exists")

			// get -o yaml, edit, replace; a stale copy is refused.
			code, got, _ := cli("", "get", "np", "db-isolated", "-n", "shop", "-o", "yaml")
			require.Equal(t, 0, code)
			assert.Contains(t, got, "resourceVersion:")
			edited := writeInput(t, "edited.yaml", strings.Replace(got, "    - Ingress", "    - Ingress\n    - Egress", 1))
			code, out, errOut = cli("", "replace", "-f", edited)
			require.Equal(t, 0, code, errOut)
			assert.Equal(t, "networkpolicy.projectcalico.org/db-isolated replaced\n", out)
			code, _, errOut = cli("", "replace", "-f", edited)
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, "revision conflict")
			code, out, _ = cli("", "get", "np", "db-isolated", "-n", "shop", "-o", "json")
			require.Equal(t, 0, code)
			var obj map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &obj))
			assert.Equal(t, "NetworkPolicy", obj["kind"])
			assert.Equal(t, []any{"Ingress", "Egress"}, obj["spec"].(map[string]any)["types"])

			// -n must match the objects' namespace.
			code, _, errOut = cli("", "apply", "-n", "other", "-f", policy)
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, `in namespace "shop", not "other"`)

			// label.
			code, out, _ = cli("", "label", "np", "db-isolated", "-n", "shop", "team=db")
			require.Equal(t, 0, code)
			assert.Equal(t, "networkpolicy.projectcalico.org/db-isolated labeled\n", out)
			code, out, _ = cli("", "label", "np", "db-isolated", "-n", "shop", "team=db")
			require.Equal(t, 0, code)
			assert.Equal(t, "networkpolicy.projectcalico.org/db-isolated not labeled\n", out)
			code, _, errOut = cli("", "label", "np", "db-isolated", "-n", "shop", "team=ops")
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, "--overwrite")
			code, _, _ = cli("", "label", "np", "db-isolated", "-n", "shop", "team=ops", "--overwrite")
			require.Equal(t, 0, code)
			code, out, _ = cli("", "get", "np", "-n", "shop", "-o", "yaml")
			require.Equal(t, 0, code)
			assert.Contains(t, out, "team: ops")

			// delete: server dry run shows the effect, then for real.
			code, out, _ = cli("", "delete", "np", "db-isolated", "-n", "shop", "--dry-run=server")
			require.Equal(t, 0, code)
			assert.Contains(t, out, "deleted (server dry run)")
			assert.Contains(t, out, "  + shop/web -> shop/db 80/TCP\n")
			code, out, _ = cli("", "delete", "np", "db-isolated", "-n", "shop")
			require.Equal(t, 0, code)
			assert.Equal(t, "networkpolicy.projectcalico.org/db-isolated deleted\n", out)
			code, _, errOut = cli("", "delete", "np", "db-isolated", "-n", "shop")
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, "not found")
			code, _, _ = cli("", "delete", "np", "db-isolated", "-n", "shop", "--ignore-not-found")
			assert.Equal(t, 0, code)
			code, out, _ = cli("", "delete", "-f", cluster)
			require.Equal(t, 0, code)
			assert.Equal(t, "namespace/shop deleted\npod/web deleted\npod/db deleted\n", out)
		})
	}
}

func TestResourceCommandUsage(t *testing.T) {
	t.Setenv("CALYX_CONFIG", "")
	dir := []string{"--datastore-type", "dir", "--datastore-dir", t.TempDir()}
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"no input", append([]string{"apply"}, dir...), 2, "no input"},
		{"bad dry run", append([]string{"apply", "-f", "x", "--dry-run=yes"}, dir...), 2, "--dry-run"},
		{"delete both", append([]string{"delete", "gnp", "a", "-f", "x"}, dir...), 2, "either"},
		{"delete no name", append([]string{"delete", "gnp"}, dir...), 2, "NAME"},
		{"label bad", append([]string{"label", "gnp", "a", "nolabel"}, dir...), 2, "key=value"},
		{"bad output", append([]string{"get", "gnp", "-o", "table"}, dir...), 2, "-o"},
		{"unknown datastore", []string{"get", "gnp", "--datastore-type", "consul"}, 2, "consul"},
		{"etcd without endpoints", []string{"get", "gnp", "--datastore-type", "etcd"}, 2, "no endpoints"},
		{"etcd unreachable", []string{"get", "gnp", "--etcd-endpoints", "http://127.0.0.1:1", "--request-timeout", "300ms"}, 2, "etcd"},
		{"explicit config missing", []string{"get", "gnp", "--config", "/nonexistent/calyxctl.yaml"}, 2, "config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, "", tt.args...)
			assert.Equal(t, tt.code, code, errOut)
			assert.Contains(t, errOut, tt.err)
		})
	}
}

// TestDirStoreBrokenFileWarns: get shows a broken file's problem and
// still lists the other files' objects; create refuses new objects.
func TestDirStoreBrokenFileWarns(t *testing.T) {
	t.Setenv("CALYX_CONFIG", "")
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "good.yaml"), []byte(isolateDB), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "typo.yaml"), []byte("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec: {selector: 'app =='}\n"), 0o644))
	ds := []string{"--datastore-dir", root}
	code, out, errOut := runCLI(t, "", append([]string{"get", "np", "-n", "shop"}, ds...)...)
	require.Equal(t, 0, code)
	assert.Equal(t, "NAME\ndb-isolated\n", out)
	assert.Contains(t, errOut, "warning: "+filepath.Join(root, "typo.yaml"))
	code, _, errOut = runCLI(t, "", append([]string{"create", "-f", writeInput(t, "c.yaml", clusterYAML)}, ds...)...)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "fix them first")
}

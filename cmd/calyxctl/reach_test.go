package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/reach"
	"github.com/calyxnet/calyx/internal/testgen"
)

// smallCluster: a/x and a/y in namespace a, b/z in namespace b (labelled
// team: blue); only a/x may reach a/y, and only on 80/TCP.
func smallCluster(t *testing.T) string {
	t.Helper()
	return writeInput(t, "cluster.yaml", docs(
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: b, labels: {team: blue}}\n",
		testPod("a", "x", "10.0.0.1", "app: x", "80/TCP"),
		testPod("a", "y", "10.0.0.2", "app: y", "80/TCP", "53/UDP"),
		testPod("b", "z", "10.0.0.3", "app: z", "80/TCP"),
		`apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: y, namespace: a}
spec:
  selector: app == 'y'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'x'}
    destination: {ports: [80]}
`))
}

func TestReachTable(t *testing.T) {
	code, stdout, stderr := runCLI(t, "", "reach", "-f", smallCluster(t))
	require.Equal(t, exitOK, code, stderr)
	assert.Equal(t, `80/TCP
-	a/x	a/y	b/z
a/x	.	.	.
a/y	.	.	.
b/z	.	X	.

53/UDP
-	a/x	a/y	b/z
a/x	.	X	.
a/y	.	.	.
b/z	.	X	.
`, stdout)
	assert.Empty(t, stderr)
}

func TestReachJSON(t *testing.T) {
	code, stdout, stderr := runCLI(t, "", "reach", "-f", smallCluster(t), "--probe", "80/TCP", "--from", "app == 'z'", "-o", "json")
	require.Equal(t, exitOK, code, stderr)
	assert.Equal(t, `{"results":[`+
		`{"from":"b/z","to":"a/x","port":80,"protocol":"TCP","allowed":true},`+
		`{"from":"b/z","to":"a/y","port":80,"protocol":"TCP","allowed":false},`+
		`{"from":"b/z","to":"b/z","port":80,"protocol":"TCP","allowed":true}]}`+"\n", stdout)
}

func TestReachFilters(t *testing.T) {
	cluster := smallCluster(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"--to over the implicit namespace label", []string{"--probe", "80/TCP", "--to", "projectcalico.org/namespace == 'a'"}, `80/TCP
-	a/x	a/y
a/x	.	.
a/y	.	.
b/z	.	X
`},
		{"--from over the namespace's labels", []string{"--probe", "80/TCP", "--from", "pcns.team == 'blue'", "--to", "app == 'y'"}, `80/TCP
-	a/y
b/z	X
`},
		{"--to picks the destinations' declared ports", []string{"--to", "app == 'x'"}, `80/TCP
-	a/x
a/x	.
a/y	.
b/z	.
`},
		{"probes in the order given, each once", []string{"--probe", "80/TCP", "--probe", "53/udp,80/TCP", "--from", "app == 'x'", "--to", "app == 'y'"}, `80/TCP
-	a/y
a/x	.

53/UDP
-	a/y
a/x	X
`},
		{"a port no pod declares", []string{"--probe", "9999", "--from", "app == 'z'"}, `9999/TCP
-	a/x	a/y	b/z
b/z	.	X	.
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", append([]string{"reach", "-f", cluster}, tt.args...)...)
			require.Equal(t, exitOK, code, stderr)
			assert.Equal(t, tt.want, stdout)
		})
	}
}

func TestReachErrors(t *testing.T) {
	cluster := smallCluster(t)
	noPorts := writeInput(t, "noports.yaml", testPod("a", "x", "10.0.0.1", "app: x"))
	noPods := writeInput(t, "nopods.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
	invalid := writeInput(t, "bad.yaml", portWithoutProtocol)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown dataplane", []string{"-f", cluster, "--dataplane", "vpp"}, exitUsage, `unknown dataplane "vpp": supported: model, nftables, iptables`},
		{"bad output", []string{"-f", cluster, "-o", "yaml"}, exitUsage, `-o "yaml": want table or json`},
		{"bad probe", []string{"-f", cluster, "--probe", "80/ICMP"}, exitUsage, "--probe: probe \"80/ICMP\""},
		{"bad selector", []string{"-f", cluster, "--from", "app =="}, exitUsage, "--from:"},
		{"selector matching no pod", []string{"-f", cluster, "--to", "app == 'nope'"}, exitUsage, `no pod matches --to "app == 'nope'"`},
		{"no pods", []string{"-f", noPods}, exitUsage, "no pods in the input"},
		{"no ports and no --probe", []string{"-f", noPorts}, exitUsage, "pass --probe PORT/PROTO"},
		{"invalid policy", []string{"-f", invalid}, exitFindings, "bad.yaml:13: error: NetworkPolicy \"shop/allow-payment-access\": spec.egress[0].destination.ports:"},
		{"unreadable", []string{"-f", filepath.Join(t.TempDir(), "missing")}, exitUsage, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", append([]string{"reach"}, tt.args...)...)
			assert.Equal(t, tt.code, code, stderr)
			assert.Contains(t, stderr, tt.stderr)
			assert.Empty(t, stdout)
		})
	}
}

// TestReachExamples: `calyxctl reach -f examples/<scenario>` prints the
// matrix the scenario's README promises (the README's main command).
func TestReachExamples(t *testing.T) {
	for _, name := range []string{"ecommerce", "default-deny", "pci", "tiers"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "..", "examples", name)
			code, stdout, stderr := runCLI(t, "", "reach", "-f", dir)
			require.Equal(t, exitOK, code, stderr)
			assert.Equal(t, testgen.ExpectedMatrix(t, dir), stdout)
		})
	}
}

// TestReachJSONMatchesLibrary: the JSON the command prints for the full
// square is what reach.Matrix writes, entry for entry.
func TestReachJSONMatchesLibrary(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "ecommerce")
	code, stdout, stderr := runCLI(t, "", "reach", "-f", dir, "-o", "json")
	require.Equal(t, exitOK, code, stderr)

	ctx := context.Background()
	set := testgen.LoadPaths(t, dir)
	rs, err := compile.New(set, "").Compile()
	require.NoError(t, err)
	pods := reach.PodsFromSet(set)
	m, err := reach.Run(ctx, reach.ModelProber{Index: model.NewIndex(rs)}, pods, reach.DeclaredProbes(pods), 1)
	require.NoError(t, err)
	var want strings.Builder
	require.NoError(t, m.WriteJSON(&want))
	assert.Equal(t, want.String(), stdout)

	var parsed struct {
		Results []map[string]any `json:"results"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &parsed))
	require.Len(t, parsed.Results, 4*5*5)
	assert.Equal(t, map[string]any{"from": "shop/api-gateway", "to": "shop/api-gateway", "port": 80.0, "protocol": "TCP", "allowed": true}, parsed.Results[0])
}

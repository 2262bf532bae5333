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

// hostCluster is a cluster with host protection. node1 has three host
// endpoints: eth0 by name (192.0.2.10), every interface "*" (192.0.2.20)
// and one known only by its expected IP (192.0.2.30); node5's eth0 is
// dual-stack (192.0.2.50, 2001:db8:5::10) and node4's eth0 has no expected
// IPs. A
// GlobalNetworkPolicy selecting them all denies SSH outright, lets 443/TCP
// in from anywhere and 8080/TCP only from 198.51.100.0/24, and lets the
// nodes out only to 198.51.100.0/24 and 2001:db8:77::/48 on TCP; another,
// first by name, lets the "*" endpoint alone take 80/TCP, so an answer
// from the wrong endpoint shows. Fail-safe ports: 22/TCP in, 53/UDP out.
// Pod a/web (10.0.0.1, on node1) has no policy and serves 80/TCP.
func hostCluster(t *testing.T) string {
	t.Helper()
	hep := func(name, labels, spec string) string {
		return "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: " + name + ", labels: {" + labels + "}}\nspec: {" + spec + "}\n"
	}
	return writeInput(t, "hosts.yaml", docs(
		testPod("a", "web", "10.0.0.1", "app: web", "80/TCP"),
		`apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  failsafeInboundHostPorts: [{protocol: TCP, port: 22}]
  failsafeOutboundHostPorts: [{protocol: UDP, port: 53}]
`,
		hep("node1-eth0", "host: protected", "node: node1, interfaceName: eth0, expectedIPs: [192.0.2.10], ports: [{name: ssh, port: 22, protocol: TCP}, {name: https, port: 443, protocol: TCP}]"),
		hep("node1-all", "host: protected, iface: all", "node: node1, interfaceName: '*', expectedIPs: [192.0.2.20]"),
		hep("node1-ips", "host: protected", "node: node1, expectedIPs: [192.0.2.30]"),
		hep("node4-eth0", "host: protected", "node: node4, interfaceName: eth0"),
		hep("node5-dual", "host: protected", "node: node5, interfaceName: eth0, expectedIPs: ['2001:db8:5::10', 192.0.2.50]"),
		`apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-protection}
spec:
  selector: host == 'protected'
  types: [Ingress, Egress]
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [22]}}
  - {action: Allow, protocol: TCP, destination: {ports: [443]}}
  - {action: Allow, protocol: TCP, source: {nets: [198.51.100.0/24]}, destination: {ports: [8080]}}
  egress:
  - {action: Allow, protocol: TCP, destination: {nets: [198.51.100.0/24]}}
  - {action: Allow, protocol: TCP, destination: {nets: ['2001:db8:77::/48']}}
`,
		`apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: all-interfaces-web}
spec:
  selector: iface == 'all'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [80]}}
`))
}

// hostReachCases are the host endpoint questions, each with the model's
// answer; the lab test asks every dataplane the same.
var hostReachCases = []struct {
	name string
	args []string
	want string
}{
	{"named interface: fail-safe SSH despite the deny, 443 from anywhere, 8080 not from this net, not the * endpoint's 80",
		[]string{"--from", "203.0.113.9", "--to", "host:node1/eth0", "--probe", "22/TCP,443/TCP,8080/TCP,80/TCP,53/UDP"}, `22/TCP
-	host:node1-eth0
203.0.113.9	.

443/TCP
-	host:node1-eth0
203.0.113.9	.

8080/TCP
-	host:node1-eth0
203.0.113.9	X

80/TCP
-	host:node1-eth0
203.0.113.9	X

53/UDP
-	host:node1-eth0
203.0.113.9	X
`},
	{"all interfaces: 8080 from the allowed net, its own 80",
		[]string{"--from", "198.51.100.7", "--to", "host:node1/*", "--probe", "22/TCP,8080/TCP,80/TCP,53/UDP"}, `22/TCP
-	host:node1-all
198.51.100.7	.

8080/TCP
-	host:node1-all
198.51.100.7	.

80/TCP
-	host:node1-all
198.51.100.7	.

53/UDP
-	host:node1-all
198.51.100.7	X
`},
	{"expected IPs only: its address is its own, not the * endpoint's",
		[]string{"--from", "198.51.100.7", "--to", "host:node1-ips", "--probe", "22/TCP,8080/TCP,80/TCP"}, `22/TCP
-	host:node1-ips
198.51.100.7	.

8080/TCP
-	host:node1-ips
198.51.100.7	.

80/TCP
-	host:node1-ips
198.51.100.7	X
`},
	{"IPv6 client to a dual-stack endpoint: its IPv6 address; 8080 only from an IPv4 net",
		[]string{"--from", "2001:db8:77::7", "--to", "host:node5-dual", "--probe", "22/TCP,443/TCP,8080/TCP"}, `22/TCP
-	host:node5-dual
2001:db8:77::7	.

443/TCP
-	host:node5-dual
2001:db8:77::7	.

8080/TCP
-	host:node5-dual
2001:db8:77::7	X
`},
	{"node to an allowed net: TCP out, UDP 53 by fail-safe, other UDP denied",
		[]string{"--from", "host:node1-eth0", "--to", "198.51.100.7", "--probe", "443/TCP,53/UDP,123/UDP"}, `443/TCP
-	198.51.100.7
host:node1-eth0	.

53/UDP
-	198.51.100.7
host:node1-eth0	.

123/UDP
-	198.51.100.7
host:node1-eth0	X
`},
	{"node to elsewhere: denied but the fail-safe DNS",
		[]string{"--from", "host:node1-all", "--to", "203.0.113.9", "--probe", "443/TCP,53/UDP"}, `443/TCP
-	203.0.113.9
host:node1-all	X

53/UDP
-	203.0.113.9
host:node1-all	.
`},
	{"node over IPv6 to an allowed net, the node named by its only host endpoint",
		[]string{"--from", "host:node5", "--to", "2001:db8:77::7", "--probe", "443/TCP,123/UDP"}, `443/TCP
-	2001:db8:77::7
host:node5-dual	.

123/UDP
-	2001:db8:77::7
host:node5-dual	X
`},
	{"forwarded to a pod: the host endpoints do not judge it",
		[]string{"--from", "203.0.113.9", "--to", "app == 'web'", "--probe", "80/TCP,8080/TCP"}, `80/TCP
-	a/web
203.0.113.9	.

8080/TCP
-	a/web
203.0.113.9	.
`},
	{"forwarded from an address the lab's node would otherwise hold",
		[]string{"--from", "192.0.2.254", "--to", "app == 'web'", "--probe", "80/TCP"}, `80/TCP
-	a/web
192.0.2.254	.
`},
	{"forwarded from a pod",
		[]string{"--from", "app == 'web'", "--to", "203.0.113.9", "--probe", "443/TCP,123/UDP"}, `443/TCP
-	203.0.113.9
a/web	.

123/UDP
-	203.0.113.9
a/web	.
`},
}

func TestReachHostEndpoints(t *testing.T) {
	cluster := hostCluster(t)
	for _, tt := range hostReachCases {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", append([]string{"reach", "-f", cluster}, tt.args...)...)
			require.Equal(t, exitOK, code, stderr)
			assert.Equal(t, tt.want, stdout)
		})
	}
}

func TestReachHostEndpointJSON(t *testing.T) {
	code, stdout, stderr := runCLI(t, "", "reach", "-f", hostCluster(t), "--from", "203.0.113.9", "--to", "host:node1-eth0", "-o", "json")
	require.Equal(t, exitOK, code, stderr)
	assert.Equal(t, `{"results":[`+
		`{"from":"203.0.113.9","to":"host:node1-eth0","port":22,"protocol":"TCP","allowed":true},`+
		`{"from":"203.0.113.9","to":"host:node1-eth0","port":443,"protocol":"TCP","allowed":true}]}`+"\n", stdout,
		"without --probe, the host endpoint's spec.ports")
}

func TestReachHostEndpointErrors(t *testing.T) {
	cluster := hostCluster(t)
	shared := writeInput(t, "shared.yaml", docs(
		"apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: n1-eth0}\nspec: {node: n1, interfaceName: eth0, expectedIPs: [192.0.2.1]}\n",
		"apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: n1-all}\nspec: {node: n1, interfaceName: '*', expectedIPs: [192.0.2.1]}\n"))
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"host with pods", []string{"--from", "host:node1-eth0", "--to", "app == 'web'"}, "a host endpoint with pods"},
		{"pods with host", []string{"--to", "host:node1-eth0"}, "a host endpoint with pods"},
		{"two hosts", []string{"--from", "host:node1-eth0", "--to", "host:node1-all"}, "two host endpoints"},
		{"two externals", []string{"--from", "203.0.113.9", "--to", "198.51.100.7"}, "two external addresses"},
		{"empty host", []string{"--from", "203.0.113.9", "--to", "host:"}, `--to "host:": want host:NAME, host:NODE/INTERFACE or host:NODE`},
		{"unknown host", []string{"--from", "203.0.113.9", "--to", "host:nope"}, `--to: host endpoint "nope": no HostEndpoint of that name or node`},
		{"unknown node interface", []string{"--from", "203.0.113.9", "--to", "host:node1/eth1"}, `no HostEndpoint in the input has node "node1" and interfaceName "eth1"`},
		{"host without expected IPs", []string{"--from", "203.0.113.9", "--to", "host:node4-eth0", "--probe", "22"}, "the host endpoint has no expectedIPs"},
		{"external address of a pod", []string{"--from", "10.0.0.1", "--to", "host:node1-eth0"}, "--from 10.0.0.1: the address of endpoint a/web"},
		{"loopback", []string{"--from", "127.0.0.1", "--to", "host:node1-eth0"}, "must be a unicast address"},
		{"external destination without --probe", []string{"--from", "host:node1-eth0", "--to", "198.51.100.7"}, "--to 198.51.100.7 declares no ports: pass --probe"},
		{"address shared by two host endpoints", []string{"-f", shared, "--from", "198.51.100.7", "--to", "host:n1/eth0", "--probe", "22"}, "its address 192.0.2.1 is also endpoint host:n1-all's"},
		{"address shared, the other endpoint second by key", []string{"-f", shared, "--from", "198.51.100.7", "--to", "host:n1/*", "--probe", "22"}, "its address 192.0.2.1 is also endpoint host:n1-eth0's"},
		{"bad selector still a selector error", []string{"--from", "host ==", "--to", "host:node1-eth0"}, "--from: selector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"reach", "-f", cluster}, tt.args...)
			code, stdout, stderr := runCLI(t, "", args...)
			assert.Equal(t, exitUsage, code, stderr)
			assert.Contains(t, stderr, tt.stderr)
			assert.Empty(t, stdout)
		})
	}
}

//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/cni"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/podnet"
)

// The agent in place of the CNI tests' stand-in: the real plugin plumbs
// pods and registers them; ADD returns only once the agent has enforced
// their policy, which comes from the directory datastore (labels there,
// addresses from the plugin). DEL unregisters.
func TestCNIPluginWithAgent(t *testing.T) {
	for _, dp := range dataplanes() {
		t.Run(dp.name, func(t *testing.T) { testCNIPluginWithAgent(t, dp) })
	}
}

func testCNIPluginWithAgent(t *testing.T, dp dataplane) {
	ctx := context.Background()
	node := netnstest.New(t, "cxan")
	require.NoError(t, podnet.PrepareNode(ctx, node, netip.MustParseAddr("10.78.255.1"), netip.MustParseAddr("fd78:ffff::1")))
	// The datastore knows the pods' labels (the API server would) but not
	// their addresses, and a policy: api only from frontend.
	store := dirStore(t, decode(t, `apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept}
---
`+podYAMLNoIP("frontend", "app: frontend")+"---\n"+podYAMLNoIP("api", "app: api")+"---\n"+podYAMLNoIP("intruder", "app: intruder")+`---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: frontend}}}]}]
`))
	be, err := dp.open(ctx, backend.Options{NetNS: node.Path(), Name: "cnitest"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = be.Close(context.Background()) })
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	a, err := agent.New(agent.Config{Node: "node-a", Store: store, Backend: be, EndpointSocket: sock})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	eventually10s(t, "agent ready", func() bool { return a.NodeStatus().Ready })

	conf := fmt.Appendf(nil, `{"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "calyx-cni",
  "ipamStore": "bolt:%s", "agentSocket": %q, "policyTimeout": "10s", "nodeName": "node-a", "nodeNetns": %q,
  "pools": [{"name": "v4", "cidr": "10.78.0.0/16", "blockSize": 26}, {"name": "v6", "cidr": "fd78::/64", "blockSize": 122}]}`,
		filepath.Join(dir, "ipam.db"), sock, node.Path())

	type pod struct {
		ns    *netns.NS
		args  *skel.CmdArgs
		addrs []netip.Addr
	}
	pods := map[string]*pod{}
	for _, name := range []string{"frontend", "api", "intruder"} {
		ns := netnstest.New(t, "cxap")
		args := &skel.CmdArgs{ContainerID: "c-" + name, Netns: ns.Path(), IfName: "eth0",
			Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=" + name, StdinData: conf}
		var out bytes.Buffer
		p := &cni.Plugin{Stdout: &out, Hostname: func() (string, error) { return "node-a", nil }}
		start := time.Now()
		require.NoError(t, p.Funcs().Add(args), "ADD %s", name)
		t.Logf("%s: ADD with policy enforced took %v", name, time.Since(start).Round(time.Millisecond))
		var res current.Result
		require.NoError(t, json.Unmarshal(out.Bytes(), &res))
		pp := &pod{ns: ns, args: args}
		for _, ip := range res.IPs {
			ad, ok := netip.AddrFromSlice(ip.Address.IP)
			require.True(t, ok)
			pp.addrs = append(pp.addrs, ad.Unmap())
		}
		pods[name] = pp
	}
	// The addresses came from the plugin, the labels from the datastore.
	_, applied := a.Ruleset()
	require.Len(t, applied.Endpoints, 3)
	assert.Equal(t, 3, a.NodeStatus().Registered)

	tests := []struct {
		from, to string
		allowed  bool
	}{
		{"frontend", "api", true},
		{"intruder", "api", false},
		{"api", "frontend", true},
		{"intruder", "frontend", true},
	}
	for _, tt := range tests {
		stop, err := lab.Serve(pods[tt.to].ns, tcp80)
		require.NoError(t, err)
		for _, dst := range pods[tt.to].addrs {
			dst = dst.Unmap()
			src := pods[tt.from].addrs[0].Unmap()
			for _, s := range pods[tt.from].addrs {
				if s.Unmap().Is4() == dst.Is4() {
					src = s.Unmap()
				}
			}
			pr := lab.Probe{From: tt.from, To: tt.to, Src: src, Dst: dst, Protocol: 6, SrcPort: 40000, DstPort: 80}
			ok, err := lab.ProbeFrom(ctx, pods[tt.from].ns, pr, 500*time.Millisecond)
			require.NoError(t, err)
			if tt.allowed && !ok { // a slow answer on a loaded machine is not a denial
				ok, err = lab.ProbeFrom(ctx, pods[tt.from].ns, pr, 2*time.Second)
				require.NoError(t, err)
			}
			assert.Equal(t, tt.allowed, ok, "%s → %s %s", tt.from, tt.to, dst)
		}
		require.NoError(t, stop())
	}

	for name, p := range pods {
		var out bytes.Buffer
		pl := &cni.Plugin{Stdout: &out, Hostname: func() (string, error) { return "node-a", nil }}
		require.NoError(t, pl.Funcs().Del(p.args), "DEL %s", name)
	}
	eventually10s(t, "unregistered", func() bool { return a.NodeStatus().Registered == 0 })
	// The datastore still holds the pods (the API server deletes them
	// later): they are this node's endpoints again as it describes them,
	// without the plugin's addresses.
	eventually10s(t, "the plugin's addresses gone", func() bool {
		_, rs := a.Ruleset()
		for _, ep := range rs.Endpoints {
			if len(ep.Addrs) > 0 {
				return false
			}
		}
		return len(rs.Endpoints) == 3
	})
}

// podYAMLNoIP is a pod of namespace shop on node-a with labels and no
// address yet (the API server before the CNI plugin ran).
func podYAMLNoIP(name, labels string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: shop, labels: {%s}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
`, name, labels)
}

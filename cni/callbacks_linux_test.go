//go:build linux

package cni

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/podnet"
)

// The callbacks run in-process with everything they need in their
// arguments: ADD writes its result, in the requested version, to the
// plugin's Stdout.
func TestAddCallbackWritesResult(t *testing.T) {
	node := netnstest.New(t, "cxcu-")
	require.NoError(t, podnet.PrepareNode(t.Context(), node))
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			pod := netnstest.New(t, "cxcu-")
			e := newCallbackEnv(t, &endpointapi.Memory{})
			conf := fmt.Appendf(nil, `{"cniVersion": %q, "name": "n", "type": "calyx-cni", "ipamStore": "bolt:%s", "agentSocket": %q, "nodeNetns": %q,
				"pools": [{"name": "v4", "cidr": "10.66.0.0/24"}]}`, v, e.store, e.socket, node.Path())
			args := &skel.CmdArgs{ContainerID: "c-" + v, Netns: pod.Path(), IfName: "eth1",
				Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p" + v, StdinData: conf}
			require.NoError(t, e.plugin.Funcs().Add(args))
			var res struct {
				CNIVersion string `json:"cniVersion"`
				IPs        []struct {
					Address string `json:"address"`
				} `json:"ips"`
			}
			require.NoError(t, json.Unmarshal(e.out.Bytes(), &res), e.out.String())
			require.Equal(t, v, res.CNIVersion)
			require.Len(t, res.IPs, 1)
			require.Equal(t, "10.66.0.0/32", res.IPs[0].Address)
			require.Len(t, e.agent.Endpoints(), 1)
			require.NoError(t, e.plugin.Funcs().Del(args))
			require.Empty(t, e.agent.Endpoints())
		})
	}
}

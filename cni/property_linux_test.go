//go:build linux

package cni

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"
	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/podnet"
	"github.com/calyxnet/calyx/ipam"
)

// Any sequence of ADD, DEL and GC leaves exactly the attached pods with
// an interface, an allocation and an agent endpoint, and IPAM consistent.
func TestPropertyLifecycle(t *testing.T) {
	node := netnstest.New(t, "cxpr-")
	require.NoError(t, podnet.PrepareNode(t.Context(), node))
	const npods = 4
	pods := make([]*netns.NS, npods)
	for i := range pods {
		pods[i] = netnstest.New(t, "cxpr-")
	}
	e := newCallbackEnv(t, &endpointapi.Memory{})
	conf := func(extra string) []byte {
		return fmt.Appendf(nil, `{%s, "ipamStore": "bolt:%s", "agentSocket": %q, "nodeNetns": %q, "nodeName": "n",
			"pools": [{"name": "v4", "cidr": "10.55.0.0/16", "blockSize": 26}, {"name": "v6", "cidr": "fd55::/112", "blockSize": 122}]%s}`,
			base, e.store, e.socket, node.Path(), extra)
	}
	round := 0
	rapid.Check(t, func(rt *rapid.T) {
		round++
		// Each round uses fresh container IDs: a sandbox is never reused.
		args := func(i int) *skel.CmdArgs {
			return &skel.CmdArgs{ContainerID: fmt.Sprintf("r%dp%d", round, i), Netns: pods[i].Path(), IfName: "eth0",
				Args: fmt.Sprintf("IgnoreUnknown=1;K8S_POD_NAMESPACE=prop;K8S_POD_NAME=p%d", i), StdinData: conf("")}
		}
		live := map[int]bool{}
		ops := rapid.SliceOfN(rapid.IntRange(0, 3*npods), 1, 8).Draw(rt, "ops")
		for _, op := range ops {
			i := op % npods
			switch op / npods {
			case 0, 1:
				e.out.Reset()
				require.NoError(rt, e.plugin.Funcs().Add(args(i)))
				live[i] = true
			case 2:
				require.NoError(rt, e.plugin.Funcs().Del(args(i)))
				delete(live, i)
			default:
				var valid []string
				for j := range live {
					valid = append(valid, fmt.Sprintf(`{"containerID": %q, "ifname": "eth0"}`, args(j).ContainerID))
				}
				gc := &skel.CmdArgs{StdinData: conf(`, "cni.dev/valid-attachments": [` + strings.Join(valid, ",") + `]`)}
				require.NoError(rt, e.plugin.Funcs().GC(gc))
			}
		}
		var want, gotLinks []string
		for i := range live {
			want = append(want, compile.WorkloadInterface("prop", fmt.Sprintf("p%d", i)))
		}
		h, err := netlink.NewHandleAt(nlns.NsHandle(node.Fd()))
		require.NoError(rt, err)
		ls, err := h.LinkList()
		h.Close()
		require.NoError(rt, err)
		for _, l := range ls {
			if strings.HasPrefix(l.Attrs().Name, "calyx") {
				gotLinks = append(gotLinks, l.Attrs().Name)
			}
		}
		slices.Sort(want)
		slices.Sort(gotLinks)
		require.Equal(rt, want, gotLinks)

		st, err := ipam.OpenBolt(t.Context(), e.store, nil)
		require.NoError(rt, err)
		al := ipam.New(st, ipam.Config{})
		hs, err := al.Handles(t.Context())
		require.NoError(rt, err)
		require.Len(rt, hs, len(live))
		rep, err := al.Check(t.Context())
		require.NoError(rt, err)
		require.True(rt, rep.OK(), "%+v", rep.Problems)
		require.NoError(rt, st.Close())
		require.Len(rt, e.agent.Endpoints(), len(live))

		for i := range live {
			require.NoError(rt, e.plugin.Funcs().Del(args(i)))
		}
	})
}

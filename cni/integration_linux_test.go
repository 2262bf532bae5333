//go:build linux

package cni_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/internal/etcdtest"
	"github.com/calyxnet/calyx/internal/podnet"
)

// TestLifecycleTwoPods runs two pods through ADD, CHECK, STATUS and DEL
// with each IPAM store the plugin takes: the embedded bbolt file and a
// real etcd.
func TestLifecycleTwoPods(t *testing.T) {
	t.Run("bolt", func(t *testing.T) { lifecycleTwoPods(t, newEnv(t)) })
	t.Run("etcd", func(t *testing.T) {
		lifecycleTwoPods(t, newEnv(t, withIPAMStore("etcd:"+etcdtest.Start(t))))
	})
}

func lifecycleTwoPods(t *testing.T, e *env) {
	ctx := t.Context()
	a, b := e.newPod("frontend"), e.newPod("api")

	ra, err := e.add(ctx, a)
	require.NoError(t, err)
	rb, err := e.add(ctx, b)
	require.NoError(t, err)

	t.Run("result", func(t *testing.T) {
		require.Len(t, ra.IPs, 2, "dual stack")
		require.Equal(t, compile.WorkloadInterface("shop", "frontend"), ra.Interfaces[0].Name)
		require.Equal(t, podnet.HostMAC().String(), ra.Interfaces[0].Mac)
		require.Equal(t, "eth0", ra.Interfaces[1].Name)
		require.Equal(t, a.ns.Path(), ra.Interfaces[1].Sandbox)
		for _, ipc := range ra.IPs {
			require.Equal(t, 1, *ipc.Interface)
			ones, bits := ipc.Address.Mask.Size()
			require.Equal(t, bits, ones, "host address")
		}
		require.Len(t, ra.Routes, 2)
		require.NotEqual(t, addrsOf(ra), addrsOf(rb))
	})
	t.Run("agent saw both endpoints", func(t *testing.T) {
		eps := e.agent.Endpoints()
		require.Len(t, eps, 2)
		ep := eps["k8s-pod-network."+a.rt.ContainerID]
		require.Equal(t, "shop", ep.Namespace)
		require.Equal(t, "frontend", ep.Pod)
		require.Equal(t, ra.Interfaces[0].Name, ep.HostIf)
		require.ElementsMatch(t, addrsOf(ra), ep.Addrs)
	})
	t.Run("pods reach each other through the node", func(t *testing.T) {
		for i, dst := range addrsOf(rb) {
			require.NoError(t, tcpReach(t, a.ns, b.ns, dst), "a → b %s", dst)
			require.NoError(t, tcpReach(t, b.ns, a.ns, addrsOf(ra)[i]), "b → a")
		}
	})
	t.Run("check", func(t *testing.T) {
		require.NoError(t, e.cni.CheckNetworkList(ctx, e.confList(), a.rt))
		require.NoError(t, e.cni.CheckNetworkList(ctx, e.confList(), b.rt))
	})
	t.Run("status", func(t *testing.T) {
		require.NoError(t, e.cni.GetStatusNetworkList(ctx, e.confList()))
	})
	t.Run("check notices a lost address", func(t *testing.T) {
		al := e.allocator(ctx)
		_, err := al.ReleaseByHandle(ctx, "k8s-pod-network."+b.rt.ContainerID)
		require.NoError(t, err)
		code, msg := cniCode(t, e.cni.CheckNetworkList(ctx, e.confList(), b.rt))
		require.Equal(t, types.ErrInternal, code)
		require.Contains(t, msg, "k8s-pod-network."+b.rt.ContainerID)
	})
	t.Run("del is idempotent", func(t *testing.T) {
		for _, p := range []*pod{a, b, a, b} {
			require.NoError(t, e.del(ctx, p))
		}
		require.Empty(t, e.workloadLinks())
		require.Empty(t, e.nodeRoutes())
		require.Empty(t, e.agent.Endpoints())
		hs, err := e.allocator(ctx).Handles(ctx)
		require.NoError(t, err)
		require.Empty(t, hs)
	})
}

func TestResultVersions(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			ctx := t.Context()
			e := newEnv(t, withVersion(v))
			p := e.newPod("web")
			r, err := e.cni.AddNetworkList(ctx, e.confList(), p.rt)
			require.NoError(t, err)
			require.Equal(t, v, r.Version())
			cur, err := current.NewResultFromResult(r)
			require.NoError(t, err)
			require.Len(t, cur.IPs, 2)
			if v != "0.3.0" && v != "0.3.1" {
				require.NoError(t, e.cni.CheckNetworkList(ctx, e.confList(), p.rt))
			}
			require.NoError(t, e.del(ctx, p))
			require.Empty(t, e.workloadLinks())
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		key   string
	}{
		{"unknown key", `"failOpenWithoutAgnet": true`, "failOpenWithoutAgnet"},
		{"malformed timeout", `"policyTimeout": "soon"`, "policyTimeout"},
		{"delegated ipam", `"ipam": {"type": "host-local"}`, "ipam"},
		{"mtu out of range", `"mtu": 12`, "mtu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			e := newEnv(t, withExtra(tt.extra))
			p := e.newPod("web")
			_, err := e.add(ctx, p)
			code, msg := cniCode(t, err)
			require.Equal(t, types.ErrInvalidNetworkConfig, code)
			require.Contains(t, msg, fmt.Sprintf("%q", tt.key))
			require.Empty(t, e.workloadLinks())
		})
	}
}

func TestFailClosed(t *testing.T) {
	t.Run("no agent", func(t *testing.T) {
		ctx := t.Context()
		e := newEnv(t, withoutAgent())
		p := e.newPod("web")
		_, err := e.add(ctx, p)
		code, msg := cniCode(t, err)
		require.Equal(t, types.ErrTryAgainLater, code)
		require.Contains(t, msg, "failOpenWithoutAgent")
		require.Empty(t, e.workloadLinks(), "no interface left behind")
		require.Empty(t, e.nodeRoutes())
		hs, err := e.allocator(ctx).Handles(ctx)
		require.NoError(t, err)
		require.Empty(t, hs, "no allocation left behind")

		code, _ = cniCode(t, e.cni.GetStatusNetworkList(ctx, e.confList()))
		require.EqualValues(t, 50, code)
	})
	t.Run("no agent, fail open", func(t *testing.T) {
		ctx := t.Context()
		e := newEnv(t, withoutAgent(), withExtra(`"failOpenWithoutAgent": true`))
		p := e.newPod("web")
		_, err := e.add(ctx, p)
		require.NoError(t, err)
		require.Len(t, e.workloadLinks(), 1)
		require.NoError(t, e.cni.GetStatusNetworkList(ctx, e.confList()))
		require.NoError(t, e.del(ctx, p))
	})
	t.Run("agent cannot program", func(t *testing.T) {
		ctx := t.Context()
		broken := &endpointapi.Memory{Broken: func() error { return errors.New("nftables: netlink busy") }}
		e := newEnv(t, withAgent(broken))
		code, msg := cniCode(t, e.cni.GetStatusNetworkList(ctx, e.confList()))
		require.EqualValues(t, 51, code)
		require.Contains(t, msg, "netlink busy")
		p := e.newPod("web")
		_, err := e.add(ctx, p)
		code, _ = cniCode(t, err)
		require.Equal(t, types.ErrTryAgainLater, code)
		require.Empty(t, e.workloadLinks())
	})
	t.Run("policy never enforced", func(t *testing.T) {
		ctx := t.Context()
		release := make(chan struct{})
		stuck := &endpointapi.Memory{Program: func(context.Context, endpointapi.Endpoint) error {
			<-release
			return nil
		}}
		e := newEnv(t, withAgent(stuck), withTimeout("200ms"))
		t.Cleanup(func() { close(release) })
		p := e.newPod("web")
		_, err := e.add(ctx, p)
		code, msg := cniCode(t, err)
		require.Equal(t, types.ErrTryAgainLater, code)
		require.Contains(t, msg, "not enforced")
		require.Empty(t, e.workloadLinks())
		hs, err := e.allocator(ctx).Handles(ctx)
		require.NoError(t, err)
		require.Empty(t, hs)
	})
}

func TestIPAMFailureLeavesNothing(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	al := e.allocator(ctx)
	// One usable IPv4 address in all: the second pod's IPAM step fails.
	require.NoError(t, al.UpsertPool(ctx, poolOf("v4", "10.78.0.0/32", 32)))
	require.NoError(t, al.UpsertPool(ctx, poolOf("v6", "fd78::/120", 122-2)))
	e.pools = `[]`
	list := e.confList()
	first, second := e.newPod("one"), e.newPod("two")
	_, err := e.cni.AddNetworkList(ctx, list, first.rt)
	require.NoError(t, err)
	_, err = e.cni.AddNetworkList(ctx, list, second.rt)
	code, msg := cniCode(t, err)
	require.Equal(t, types.ErrTryAgainLater, code, msg)
	require.Contains(t, msg, "exhausted")
	require.Equal(t, []string{compile.WorkloadInterface("shop", "one")}, e.workloadLinks())
	hs, err := al.Handles(ctx)
	require.NoError(t, err)
	require.Len(t, hs, 1, "the failed pod holds nothing, not even its IPv6 address")
	code, _ = cniCode(t, e.cni.GetStatusNetworkList(ctx, list))
	require.EqualValues(t, 50, code, "pools exhausted")
}

func TestDelAfterNetnsGone(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	p := e.newPod("web")
	_, err := e.add(ctx, p)
	require.NoError(t, err)
	require.NoError(t, p.ns.Delete())
	require.NoError(t, e.del(ctx, p))
	require.NoError(t, e.del(ctx, p))
	require.Empty(t, e.workloadLinks())
	hs, err := e.allocator(ctx).Handles(ctx)
	require.NoError(t, err)
	require.Empty(t, hs)
}

func TestGCAfterRuntimeCrash(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	pods := []*pod{e.newPod("keep"), e.newPod("orphan-1"), e.newPod("orphan-2")}
	for _, p := range pods {
		_, err := e.add(ctx, p)
		require.NoError(t, err)
	}
	// The runtime lost its cache: only the plugin's own GC can find the
	// orphans.
	fresh := libcni.NewCNIConfigWithCacheDir([]string{pluginDir(t)}, t.TempDir(), nil)
	keep := pods[0]
	require.NoError(t, fresh.GCNetworkList(ctx, e.confList(), &libcni.GCArgs{
		ValidAttachments: []types.GCAttachment{{ContainerID: keep.rt.ContainerID, IfName: "eth0"}},
	}))
	require.Equal(t, []string{compile.WorkloadInterface("shop", "keep")}, e.workloadLinks())
	hs, err := e.allocator(ctx).Handles(ctx)
	require.NoError(t, err)
	require.Len(t, hs, 1)
	require.Equal(t, "k8s-pod-network."+keep.rt.ContainerID, hs[0].ID)
	require.Len(t, e.agent.Endpoints(), 1)
	require.NoError(t, e.cni.CheckNetworkList(ctx, e.confList(), keep.rt))

	t.Run("host side without allocation", func(t *testing.T) {
		lost := e.newPod("lost")
		_, err := e.add(ctx, lost)
		require.NoError(t, err)
		_, err = e.allocator(ctx).ReleaseByHandle(ctx, "k8s-pod-network."+lost.rt.ContainerID)
		require.NoError(t, err)
		require.Len(t, e.workloadLinks(), 2)
		require.NoError(t, fresh.GCNetworkList(ctx, e.confList(), &libcni.GCArgs{
			ValidAttachments: []types.GCAttachment{{ContainerID: keep.rt.ContainerID, IfName: "eth0"}},
		}))
		require.Equal(t, []string{compile.WorkloadInterface("shop", "keep")}, e.workloadLinks())
		require.NoError(t, e.cni.CheckNetworkList(ctx, e.confList(), keep.rt))
	})
}

func TestConcurrentPods(t *testing.T) {
	n := 50
	if testing.Short() {
		n = 10
	}
	ctx := t.Context()
	e := newEnv(t)
	pods := make([]*pod, n)
	for i := range pods {
		pods[i] = e.newPod(fmt.Sprintf("pod-%d", i))
	}
	results := make([]*current.Result, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, p := range pods {
		wg.Go(func() { results[i], errs[i] = e.add(ctx, p) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	seen := map[netip.Addr]bool{}
	for _, r := range results {
		for _, a := range addrsOf(r) {
			require.False(t, seen[a], "address %s handed out twice", a)
			seen[a] = true
		}
	}
	require.Len(t, seen, 2*n)
	require.Len(t, e.workloadLinks(), n)
	require.Len(t, e.nodeRoutes(), 2*n)

	for i, p := range pods {
		wg.Go(func() { errs[i] = e.del(ctx, p) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	require.Empty(t, e.workloadLinks())
	require.Empty(t, e.nodeRoutes())
	require.Empty(t, e.agent.Endpoints())
	al := e.allocator(ctx)
	hs, err := al.Handles(ctx)
	require.NoError(t, err)
	require.Empty(t, hs)
	rep, err := al.Check(ctx)
	require.NoError(t, err)
	require.True(t, rep.OK(), "IPAM check: %+v", rep.Problems)
	require.True(t, slices.Equal(rep.Problems, nil))
}

func TestAddressFamilies(t *testing.T) {
	tests := []struct {
		name, pools  string
		want4, want6 int
	}{
		{"ipv4 only", `[{"name": "v4", "cidr": "10.77.0.0/16"}]`, 1, 0},
		{"ipv6 only", `[{"name": "v6", "cidr": "fd77::/64"}]`, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			e := newEnv(t)
			e.pools = tt.pools
			a, b := e.newPod("a"), e.newPod("b")
			ra, err := e.add(ctx, a)
			require.NoError(t, err)
			rb, err := e.add(ctx, b)
			require.NoError(t, err)
			var n4, n6 int
			for _, ad := range addrsOf(ra) {
				if ad.Is4() {
					n4++
				} else {
					n6++
				}
			}
			require.Equal(t, [2]int{tt.want4, tt.want6}, [2]int{n4, n6})
			require.Len(t, ra.Routes, 1)
			require.NoError(t, tcpReach(t, a.ns, b.ns, addrsOf(rb)[0]))
			require.NoError(t, e.cni.CheckNetworkList(ctx, e.confList(), a.rt))
		})
	}
}

// A runtime that retries an ADD (say after a timeout) gets the same
// addresses back, and the pod ends with one interface.
func TestAddRetried(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	p := e.newPod("web")
	r1, err := e.add(ctx, p)
	require.NoError(t, err)
	r2, err := e.add(ctx, p)
	require.NoError(t, err)
	require.Equal(t, addrsOf(r1), addrsOf(r2))
	require.Len(t, e.workloadLinks(), 1)
	hs, err := e.allocator(ctx).Handles(ctx)
	require.NoError(t, err)
	require.Len(t, hs, 1)
	require.Len(t, hs[0].Addrs, 2)
	require.NoError(t, e.cni.CheckNetworkList(ctx, e.confList(), p.rt))
}

// The runtime replaces a pod's sandbox and deletes the old one only
// afterwards: both attachments share the host-side name, and the late DEL
// of the old one must leave the new one alone.
func TestSandboxReplaced(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	old, repl := e.newPod("web"), e.newPod("web")
	_, err := e.add(ctx, old)
	require.NoError(t, err)
	r, err := e.add(ctx, repl)
	require.NoError(t, err)
	require.NoError(t, e.del(ctx, old))
	require.Equal(t, []string{compile.WorkloadInterface("shop", "web")}, e.workloadLinks())
	require.NoError(t, e.cni.CheckNetworkList(ctx, e.confList(), repl.rt))
	hs, err := e.allocator(ctx).Handles(ctx)
	require.NoError(t, err)
	require.Len(t, hs, 1)
	require.ElementsMatch(t, addrsOf(r), hs[0].Addrs)
	require.NoError(t, e.del(ctx, repl))
	require.Empty(t, e.workloadLinks())
}

//go:build linux

package podnet_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/podnet"
)

// listen opens a TCP listener inside ns and accepts in the background.
func listen(t *testing.T, ns *netns.NS, addr string) {
	t.Helper()
	var ln net.Listener
	require.NoError(t, ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}))
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			_ = c.Close()
		}
	}()
}

func dial(ns *netns.NS, addr string) error {
	return ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 2)
		_, err = c.Read(buf)
		return err
	})
}

func TestTwoPodsTalkThroughTheNode(t *testing.T) {
	ctx := context.Background()
	node := netnstest.New(t, "cxpn-")
	a := netnstest.New(t, "cxpn-")
	b := netnstest.New(t, "cxpn-")
	require.NoError(t, podnet.PrepareNode(ctx, node, netip.MustParseAddr("10.99.255.1"), netip.MustParseAddr("fd99::ffff")))

	cfgA := podnet.Config{HostIfName: "calyxtesta", Addrs: []netip.Addr{netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("fd99::1")}}
	cfgB := podnet.Config{HostIfName: "calyxtestb", Addrs: []netip.Addr{netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("fd99::2")}}
	require.NoError(t, podnet.Setup(ctx, node, a, cfgA))
	require.NoError(t, podnet.Setup(ctx, node, b, cfgB))
	require.NoError(t, podnet.Check(ctx, node, cfgA))
	require.NoError(t, podnet.Check(ctx, node, cfgB))

	listen(t, b, ":8080")
	listen(t, node, ":9090")
	for _, target := range []string{"10.99.0.2:8080", "[fd99::2]:8080"} {
		t.Run("pod-to-pod "+target, func(t *testing.T) {
			require.NoError(t, dial(a, target))
		})
	}
	t.Run("pod-to-node via gateway", func(t *testing.T) {
		// The node owns no address on the veth; the pod reaches the node
		// through its link-local gateway.
		require.NoError(t, dial(a, "[fe80::ecee:eeff:feee:eeee%eth0]:9090"))
	})

	require.NoError(t, podnet.Teardown(ctx, node, cfgA.HostIfName))
	require.NoError(t, podnet.Teardown(ctx, node, cfgA.HostIfName), "teardown twice is a no-op")
	require.Error(t, podnet.Check(ctx, node, cfgA))
	require.Error(t, dial(b, "10.99.0.1:1"), "pod A is gone")
}

func TestSetupRejectsBadName(t *testing.T) {
	node := netnstest.New(t, "cxpn-")
	pod := netnstest.New(t, "cxpn-")
	err := podnet.Setup(context.Background(), node, pod, podnet.Config{HostIfName: "a-name-much-too-long"})
	require.Error(t, err)
}

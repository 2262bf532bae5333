//go:build linux

package lab_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/netns"
)

var (
	tcp80  = lab.Port{Protocol: 6, Port: 80}
	tcp443 = lab.Port{Protocol: 6, Port: 443}
	udp53  = lab.Port{Protocol: 17, Port: 53}
	udp99  = lab.Port{Protocol: 17, Port: 99}
)

func TestNinePodsAllReachableWithoutPolicy(t *testing.T) {
	spec := lab.Spec{Pods: labtest.Pods(9, tcp80, tcp443, udp53, udp99), External: labtest.ExternalAddrs,
		ExternalPorts: []lab.Port{tcp80, udp53}}
	l := labtest.New(t, spec, lab.Options{})
	start := time.Now()
	m, err := l.Observe(context.Background())
	require.NoError(t, err)
	took := time.Since(start)
	// 10 parties × 10 parties × 2 families, 4 ports per pod, 2 external.
	require.Equal(t, 2*(10*9*4+10*2), len(m.Probes))
	want := lab.Expected(&compile.Ruleset{}, m.Probes)
	require.Empty(t, m.Diff(want), "\n%s", m)
	require.Less(t, took, 10*time.Second, "a full matrix must take seconds")
	t.Logf("%d probes in %v", len(m.Probes), took)
}

func TestDifferentSourcePortsEachRound(t *testing.T) {
	spec := lab.Spec{Pods: labtest.Pods(2, tcp80)}
	a, b := spec.Probes(20000), spec.Probes(20100)
	require.Equal(t, len(a), len(b))
	require.NotEqual(t, a[0].SrcPort, b[0].SrcPort)
}

func TestCloseLeavesNothing(t *testing.T) {
	l := labtest.New(t, lab.Spec{Pods: labtest.Pods(2, tcp80), External: labtest.ExternalAddrs}, lab.Options{})
	names, err := netns.List(l.ID())
	require.NoError(t, err)
	require.Len(t, names, 4, "node, two pods, external")
	require.NoError(t, l.Close())
	names, err = netns.List(l.ID())
	require.NoError(t, err)
	require.Empty(t, names)
}

func TestSpecValidation(t *testing.T) {
	pods := labtest.Pods(2, tcp80)
	pods[1].IPs = pods[0].IPs
	pods[1].Ports = []lab.Port{{Protocol: 1, Port: 3}}
	err := (&lab.Spec{Pods: pods}).Validate()
	require.ErrorIs(t, err, lab.ErrInvalidSpec)
	for _, want := range []string{"already belongs", "TCP or UDP"} {
		require.True(t, strings.Contains(err.Error(), want), "%v lacks %q", err, want)
	}
}

func TestSourcePortsAvoidServedPorts(t *testing.T) {
	spec := lab.Spec{Pods: labtest.Pods(2, lab.Port{Protocol: 6, Port: 20000}, lab.Port{Protocol: 17, Port: 20001})}
	for _, p := range spec.Probes(20000) {
		require.NotContains(t, []uint16{20000, 20001}, p.SrcPort)
	}
}

// The node serves its own ports: probes run between it and the external
// namespace both ways, on both families, and never between it and a pod.
func TestNodeProbesReachExternal(t *testing.T) {
	tcp22 := lab.Port{Protocol: 6, Port: 22}
	spec := lab.Spec{Pods: labtest.Pods(2, tcp80), External: labtest.ExternalAddrs,
		ExternalPorts: []lab.Port{tcp80, udp53}, NodePorts: []lab.Port{tcp22, udp53}}
	l := labtest.New(t, spec, lab.Options{})
	m, err := l.Observe(context.Background())
	require.NoError(t, err)
	var toNode, fromNode int
	for _, p := range m.Probes {
		switch {
		case p.To == lab.Node:
			require.Equal(t, lab.External, p.From, "%s", p.String())
			toNode++
		case p.From == lab.Node:
			require.Equal(t, lab.External, p.To, "%s", p.String())
			fromNode++
		}
	}
	// Two families, two node ports in; two families, two external ports out.
	require.Equal(t, 4, toNode)
	require.Equal(t, 4, fromNode)
	want := lab.Expected(&compile.Ruleset{}, m.Probes)
	// Under load (CI runs packages side by side) the first round can time
	// out while the new namespaces settle: probe the mismatches again.
	m, err = l.Recheck(context.Background(), m, want)
	require.NoError(t, err)
	require.Empty(t, m.Diff(want), "\n%s", m)
	ns, ok := l.NS(lab.Node)
	require.True(t, ok)
	require.Equal(t, l.NodeNS(), ns)
}

// A host endpoint's node: the external namespace hangs off "eth0", and the
// node has the other interfaces its host endpoints name, up, without
// carrier; the node's traffic with the outside crosses eth0.
func TestExternalLinkAndNodeLinks(t *testing.T) {
	tcp22 := lab.Port{Protocol: 6, Port: 22}
	spec := lab.Spec{External: labtest.ExternalAddrs, ExternalPorts: []lab.Port{tcp80}, NodePorts: []lab.Port{tcp22},
		ExternalLink: "eth0", NodeLinks: []string{"eth1", "bond0"}}
	l := labtest.New(t, spec, lab.Options{})
	h, err := netlink.NewHandleAt(nlns.NsHandle(l.NodeNS().Fd()))
	require.NoError(t, err)
	defer h.Close()
	for _, name := range []string{"eth0", "eth1", "bond0"} {
		link, err := h.LinkByName(name)
		require.NoError(t, err, name)
		require.NotZero(t, link.Attrs().Flags&net.FlagUp, "%s is up", name)
	}
	_, err = h.LinkByName(lab.ExternalInterface)
	require.Error(t, err, "no %s: eth0 took its place", lab.ExternalInterface)
	routes, err := h.RouteGet(labtest.ExternalAddrs[0].AsSlice())
	require.NoError(t, err)
	eth0, err := h.LinkByName("eth0")
	require.NoError(t, err)
	require.Equal(t, eth0.Attrs().Index, routes[0].LinkIndex, "the outside is reached through eth0")

	m, err := l.Observe(context.Background())
	require.NoError(t, err)
	want := lab.Expected(&compile.Ruleset{}, m.Probes)
	m, err = l.Recheck(context.Background(), m, want)
	require.NoError(t, err)
	require.Empty(t, m.Diff(want), "\n%s", m)
	require.Len(t, m.Probes, 6, "external to itself, to the node and back, two families")
}

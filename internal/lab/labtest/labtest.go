// Package labtest builds labs for tests: root check, cleanup, and the
// standard scenarios the conformance suites of every dataplane share.
package labtest

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// New builds a lab for the test and removes it when the test ends (also on
// failure). It skips without root, and fails instead when CI is set.
func New(tb testing.TB, spec lab.Spec, opts lab.Options) *lab.Lab {
	tb.Helper()
	netnstest.RequireRoot(tb)
	l, err := lab.New(context.Background(), spec, opts)
	if err != nil {
		tb.Fatalf("build lab: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("close lab %s: %v", l.ID(), err)
		}
	})
	return l
}

// Pods returns n dual-stack pods in namespaces "ns0", "ns1" (alternating),
// named "pod0" …, addressed 10.77.0.(i+1) and fd77::(i+1), each serving the
// given ports.
func Pods(n int, ports ...lab.Port) []lab.Pod {
	pods := make([]lab.Pod, n)
	for i := range pods {
		pods[i] = lab.Pod{
			Namespace: fmt.Sprintf("ns%d", i%2),
			Name:      fmt.Sprintf("pod%d", i),
			IPs: []netip.Addr{
				netip.AddrFrom4([4]byte{10, 77, 0, byte(i + 1)}),
				netip.MustParseAddr(fmt.Sprintf("fd77::%x", i+1)),
			},
			Ports: ports,
		}
	}
	return pods
}

// ExternalAddrs are the external namespace's addresses in the standard
// scenarios: documentation ranges.
var ExternalAddrs = []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8:77::7")}

// InNode runs a system command (nft, iptables, ipset …) in the lab's node
// namespace and returns its output; a failure fails the test.
func InNode(tb testing.TB, l *lab.Lab, name string, args ...string) string {
	tb.Helper()
	var out []byte
	err := l.NodeNS().Do(func() error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

//go:build linux

package iptables

import (
	"context"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/testgen"
)

// worldOf describes a lab for the random generators.
func worldOf(spec lab.Spec) *testgen.IRWorld {
	w := &testgen.IRWorld{External: spec.External, SrcPortMin: 20000, SrcPortMax: 50000}
	seen := map[uint16]bool{}
	for i := range spec.Pods {
		p := &spec.Pods[i]
		ip := testgen.IRPod{Key: p.Key(), Interface: p.Interface(), Addrs: p.IPs}
		for _, port := range p.Ports {
			ip.Ports = append(ip.Ports, compile.PortMember{Protocol: port.Protocol, Port: port.Port})
			if !seen[port.Port] {
				seen[port.Port] = true
				w.Ports = append(w.Ports, port.Port)
			}
		}
		w.Pods = append(w.Pods, ip)
	}
	return w
}

// TestModelEqualsKernel: random Rulesets applied one after the other (so
// every diff path runs); the matrix observed in the lab must be the
// model's, and after each Apply, Reconcile must find the kernel exactly as
// planned.
func TestModelEqualsKernel(t *testing.T) {
	spec := lab.Spec{Pods: labtest.Pods(5, tcp80, udp53, tcp443), External: labtest.ExternalAddrs,
		ExternalPorts: []lab.Port{tcp80, udp53}}
	r := newRig(t, spec)
	w := worldOf(spec)
	ctx := context.Background()
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		rs := testgen.IRRuleset(w).Draw(rt, "ruleset")
		n++
		if err := r.b.Apply(ctx, rs); err != nil {
			rt.Fatalf("apply: %v\n%s", err, rs)
		}
		dr, err := r.b.Reconcile(ctx)
		if err != nil {
			rt.Fatalf("reconcile: %v", err)
		}
		if !dr.Empty() {
			dump, _ := r.b.Dump(ctx)
			rt.Fatalf("incremental apply left drift: %s\n%s", dr, dump)
		}
		got, err := r.lab.Observe(ctx)
		if err != nil {
			rt.Fatalf("observe: %v", err)
		}
		want := lab.Expected(rs, got.Probes)
		if got, err = r.lab.Recheck(ctx, got, want); err != nil {
			rt.Fatalf("recheck: %v", err)
		}
		if diff := got.Diff(want); len(diff) > 0 {
			dump, _ := r.b.Dump(ctx)
			rt.Fatalf("iptables disagrees with the model on %d probes:\n%s\nruleset:\n%s\nrules:\n%s",
				len(diff), strings.Join(diff, "\n"), rs, dump)
		}
	})
	if n < 50 {
		t.Fatalf("only %d scenarios ran; want at least 50", n)
	}
	t.Logf("%d random scenarios: model == iptables", n)
}

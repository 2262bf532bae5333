//go:build linux

package iptables

import (
	"context"
	"testing"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/testgen"
)

// TestReach runs what `calyxctl reach --dataplane iptables` runs: Open as
// the lab's backend.Factory, one scenario, the observed matrix equal to
// the model's, and nothing left behind.
func TestReach(t *testing.T) {
	netnstest.RequireRoot(t)
	var open backend.Factory = Open
	spec := conformance.Spec()
	b := testgen.NewIR()
	for i := range spec.Pods {
		p := &spec.Pods[i]
		b.Endpoint(p.Key(), p.Interface(), p.IPs...)
	}
	conformance.WithAllowAllProfiles(b)
	conformance.ByName("tier order: security denies pod2 before default allows all").Build(b) // tiers
	m, err := lab.Reach(context.Background(), spec, b.RS, open, lab.Options{ProbeTimeout: 400e6})
	if err != nil {
		t.Fatal(err)
	}
	if diff := m.Diff(lab.Expected(b.RS, m.Probes)); len(diff) > 0 {
		t.Fatalf("observed differs from the model: %v", diff)
	}
}

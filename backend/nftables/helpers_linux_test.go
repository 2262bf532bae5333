//go:build linux

package nftables

import (
	"context"
	"net/netip"
	"testing"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/testgen"
)

var (
	tcp80  = lab.Port{Protocol: 6, Port: 80}
	tcp443 = lab.Port{Protocol: 6, Port: 443}
	udp53  = lab.Port{Protocol: 17, Port: 53}
)

// rig is a lab with the backend programming its node.
type rig struct {
	lab *lab.Lab
	b   *Backend
}

func newRig(t *testing.T, spec lab.Spec) *rig {
	t.Helper()
	l := labtest.New(t, spec, lab.Options{ProbeTimeout: 400e6})
	b, err := New(context.Background(), backend.Options{NetNS: l.NodeNS().Path(), Name: l.ID()})
	if err != nil {
		t.Fatalf("open backend: %v", err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return &rig{lab: l, b: b}
}

// ir returns a builder holding one endpoint per lab pod, with no policy.
func (r *rig) ir() *testgen.IR { return conformance.LabIR(r.lab) }

// conform applies rs, checks that Reconcile finds the kernel exactly as
// planned and that the observed matrix is the model's.
func (r *rig) conform(t *testing.T, rs *compile.Ruleset) *lab.Matrix {
	t.Helper()
	return conformance.Conform(t, r.lab, r.b, rs, r.noDrift)
}

// noDrift reports what Reconcile found changed, if anything, reading the
// table back (not trusting the generation).
func (r *rig) noDrift(ctx context.Context) error {
	r.b.forgetVerified()
	return conformance.NoDrift(r.b)(ctx)
}

type netipPrefixT = netip.Prefix

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

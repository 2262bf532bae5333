//go:build linux

package iptables

import (
	"context"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
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
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &rig{lab: l, b: b}
}

// ir returns a builder holding one endpoint per lab pod, with no policy.
func (r *rig) ir() *testgen.IR {
	b := testgen.NewIR()
	spec := r.lab.Spec()
	for i := range spec.Pods {
		p := &spec.Pods[i]
		b.Endpoint(p.Key(), p.Interface(), p.IPs...)
	}
	return b
}

// conform applies rs and checks that the observed matrix is the model's
// and that Reconcile finds the kernel exactly as planned.
func (r *rig) conform(t *testing.T, rs *compile.Ruleset) *lab.Matrix {
	t.Helper()
	ctx := context.Background()
	if err := r.b.Apply(ctx, rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if d, err := r.b.Reconcile(ctx); err != nil || !d.Empty() {
		dump, _ := r.b.Dump(ctx)
		t.Fatalf("reconcile after apply: %v %v\n%s", d, err, dump)
	}
	got, err := r.lab.Observe(ctx)
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	want := lab.Expected(rs, got.Probes)
	if got, err = r.lab.Recheck(ctx, got, want); err != nil {
		t.Fatalf("recheck: %v", err)
	}
	if diff := got.Diff(want); len(diff) > 0 {
		dump, _ := r.b.Dump(ctx)
		counters, _ := r.b.r.run(ctx, nil, "iptables-save", "-c")
		t.Logf("counters:\n%s", counters)
		t.Fatalf("iptables disagrees with the model on %d probes:\n%s\nruleset:\n%s\nrules:\n%s",
			len(diff), strings.Join(diff, "\n"), rs, dump)
	}
	return got
}

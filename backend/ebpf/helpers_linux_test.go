//go:build linux

package ebpf

import (
	"context"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/netns"
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

// newRig opens a backend named after a new lab of spec.
func newRig(t *testing.T, spec lab.Spec, o ...Option) *rig {
	t.Helper()
	return rigNamed(t, spec, "", o...)
}

// rigNamed opens a backend named name (the lab's ID if empty) in a new
// lab of spec.
func rigNamed(t *testing.T, spec lab.Spec, name string, o ...Option) *rig {
	t.Helper()
	l := labtest.New(t, spec, lab.Options{ProbeTimeout: 400e6})
	if name == "" {
		name = l.ID()
	}
	b, err := New(context.Background(), backend.Options{NetNS: l.NodeNS().Path(), Name: name}, o...)
	if err != nil {
		t.Fatalf("open backend %q: %v", name, err)
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

// noDrift reports what Reconcile found changed, if anything.
func (r *rig) noDrift(ctx context.Context) error { return conformance.NoDrift(r.b)(ctx) }

func r0(a compile.Action, m compile.Match) compile.Rule { return testgen.Rule(a, m) }

// hookPrograms lists, in run order, the TCX programs on one hook of the
// interface idx in ns.
func hookPrograms(t testing.TB, ns *netns.NS, idx int, at ebpf.AttachType) []ebpf.ProgramID {
	t.Helper()
	var ids []ebpf.ProgramID
	err := ns.Do(func() error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: at})
		if err != nil {
			return err
		}
		for _, p := range res.Programs {
			ids = append(ids, p.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("query interface %d: %v", idx, err)
	}
	return ids
}

// attachForeign attaches, in ns, a program that is not the backend's and
// returns verdict on one hook of the interface idx (at anchor; nil
// appends); the link and program go with the test.
func attachForeign(t testing.TB, ns *netns.NS, idx int, at ebpf.AttachType, verdict int32, anchor link.Anchor) ebpf.ProgramID {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, AttachType: at, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, verdict), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prog.Close() })
	var l link.Link
	if err := ns.Do(func() error {
		l, err = link.AttachTCX(link.TCXOptions{Interface: idx, Program: prog, Attach: at, Anchor: anchor})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
)

// pinNames lists the pins in dir.
func pinNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read pins: %v", err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestSameNameInTwoNamespaces: two backends of one Options.Name in two
// network namespaces have their own pins (bpffs is one per host); each
// enforces its own policy, and closing one leaves the other's pins,
// links and maps alone.
func TestSameNameInTwoNamespaces(t *testing.T) {
	ctx := context.Background()
	name := fmt.Sprintf("same%d", os.Getpid())
	a := rigNamed(t, smallSpec(), name)
	b := rigNamed(t, lab.Spec{Pods: labtest.Pods(3, tcp80)}, name)
	if a.b.PinDir() == b.b.PinDir() {
		t.Fatalf("both backends pin in %s", a.b.PinDir())
	}
	for _, r := range []*rig{a, b} {
		want, err := PinDir(name, r.lab.NodeNS().Path())
		if err != nil || want != r.b.PinDir() {
			t.Fatalf("PinDir(%q, %s) = %q, %v; the backend pins in %q", name, r.lab.NodeNS().Path(), want, err, r.b.PinDir())
		}
		if !strings.HasPrefix(filepath.Base(want), name+"@net") {
			t.Errorf("pin directory %s is not named NAME@netINODE", want)
		}
	}

	// a denies, b allows; then each changes while the other stays.
	if err := a.b.Apply(ctx, denyIngressOf(a, true)); err != nil {
		t.Fatal(err)
	}
	if err := b.b.Apply(ctx, denyIngressOf(b, false)); err != nil {
		t.Fatal(err)
	}
	if a.probe(t) || !b.probe(t) {
		t.Fatalf("a allowed %v (want false), b allowed %v (want true)", a.probe(t), b.probe(t))
	}
	a.conform(t, denyIngressOf(a, false))
	b.conform(t, denyIngressOf(b, true))
	if err := a.noDrift(ctx); err != nil {
		t.Fatalf("a drifted after b's Apply: %v", err)
	}

	aPins := pinNames(t, a.b.PinDir())
	if err := b.b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := pinNames(t, a.b.PinDir()); strings.Join(got, ",") != strings.Join(aPins, ",") {
		t.Errorf("closing b changed a's pins: %v, was %v", got, aPins)
	}
	if err := a.noDrift(ctx); err != nil {
		t.Errorf("a drifted after b's Close: %v", err)
	}
	a.conform(t, denyIngressOf(a, true))
}

// TestSecondLiveBackendRefused: a second backend of the same name in the
// same namespace gets ErrPinsInUse and changes nothing; once the first
// is gone (closed, or its process dead), a new one opens.
func TestSecondLiveBackendRefused(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, smallSpec())
	if err := r.b.Apply(ctx, denyIngressOf(r, true)); err != nil {
		t.Fatal(err)
	}
	opts := backend.Options{NetNS: r.lab.NodeNS().Path(), Name: r.lab.ID()}
	pins := pinNames(t, r.b.PinDir())
	b2, err := New(ctx, opts)
	if !errors.Is(err, ErrPinsInUse) {
		if b2 != nil {
			_ = b2.Close(ctx)
		}
		t.Fatalf("second live backend: %v, want ErrPinsInUse", err)
	}
	if !strings.Contains(err.Error(), r.b.PinDir()) {
		t.Errorf("error %q does not name the pin directory %s", err, r.b.PinDir())
	}
	if got := pinNames(t, r.b.PinDir()); strings.Join(got, ",") != strings.Join(pins, ",") {
		t.Errorf("refused backend changed the pins: %v, was %v", got, pins)
	}
	if r.probe(t) {
		t.Errorf("policy not enforced after the refused open")
	}
	if err := r.noDrift(ctx); err != nil {
		t.Errorf("drift after the refused open: %v", err)
	}

	// The process dies: its descriptors, the lock's among them, close.
	r.b.mu.Lock()
	r.b.release()
	r.b.closed = true
	r.b.mu.Unlock()
	b3, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("after the first backend died: %v", err)
	}
	if len(b3.links) == 0 {
		t.Errorf("the new backend adopted no links")
	}
	if err := b3.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b4, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if err := b4.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStalePinsOfAnotherNamespace: pins a crashed backend left, found
// under the directory of another namespace (the kernel reuses a deleted
// namespace's inode number), are adopted without harm: links attached in
// the other namespace are detached and forgotten at once (their interface
// indexes equal ours, so only the kernel's link list tells them apart),
// and the new backend's first Apply enforces its own lab exactly as the
// model says.
func TestStalePinsOfAnotherNamespace(t *testing.T) {
	ctx := context.Background()
	old := newRig(t, smallSpec())
	if err := old.b.Apply(ctx, denyIngressOf(old, true)); err != nil {
		t.Fatal(err)
	}
	old.b.mu.Lock()
	old.b.release()
	old.b.closed = true
	old.b.mu.Unlock()
	staleDir := old.b.PinDir()
	oldLinks := func() int {
		n := 0
		for _, p := range old.lab.Spec().Pods {
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				n += len(old.attached(t, p.Interface(), at))
			}
		}
		return n
	}
	if n := oldLinks(); n != 4 {
		t.Fatalf("the crashed backend left %d links, want 4", n)
	}

	// The new lab's namespace "gets the old one's number": its pin
	// directory is the old one, renamed.
	l := labtest.New(t, smallSpec(), lab.Options{ProbeTimeout: 400e6})
	name := old.lab.ID()
	dir, err := PinDir(name, l.NodeNS().Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staleDir, dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	b, err := New(ctx, backend.Options{NetNS: l.NodeNS().Path(), Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(ctx) })
	if len(b.links) != 0 {
		t.Errorf("adopted %d links of the other namespace", len(b.links))
	}
	if n := oldLinks(); n != 0 {
		t.Errorf("%d links of the other namespace still attached", n)
	}
	for _, p := range pinNames(t, dir) {
		if strings.HasPrefix(p, "link_") {
			t.Errorf("stale link pin %s kept", p)
		}
	}
	r := &rig{lab: l, b: b}
	r.conform(t, denyIngressOf(r, true))
	r.conform(t, denyIngressOf(r, false))
}

// TestNameMustBeOnePathElement: a name that would leave the layout
// directory is refused before anything is created.
func TestNameMustBeOnePathElement(t *testing.T) {
	requireBPF(t)
	for _, name := range []string{"a/b", "../x", "nul\x00", strings.Repeat("n", 201)} {
		b, err := New(context.Background(), backend.Options{Name: name})
		if err == nil {
			_ = b.Close(context.Background())
			t.Errorf("Name %q accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), "Options.Name") {
			t.Errorf("Name %q: error %q does not name the field", name, err)
		}
	}
}

// TestReleaseKeepsEnforcement: Release leaves links, programs and maps
// enforcing and frees the lock, so a new backend in the same process
// adopts them; the released backend refuses further work.
func TestReleaseKeepsEnforcement(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, smallSpec())
	if err := r.b.Apply(ctx, denyIngressOf(r, true)); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if r.probe(t) {
		t.Fatalf("enforcement lost with Release")
	}
	if err := r.b.Apply(ctx, denyIngressOf(r, false)); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Apply after Release: %v, want ErrClosed", err)
	}
	if err := r.b.Close(ctx); err != nil {
		t.Errorf("Close after Release: %v", err)
	}
	if _, err := os.Stat(r.b.PinDir()); err != nil {
		t.Fatalf("Close after Release removed the pins: %v", err)
	}
	b2, err := New(ctx, backend.Options{NetNS: r.lab.NodeNS().Path(), Name: r.lab.ID()})
	if err != nil {
		t.Fatalf("New after Release: %v", err)
	}
	t.Cleanup(func() { _ = b2.Close(ctx) })
	if n := len(b2.links); n != 4 {
		t.Errorf("adopted %d links, want 4", n)
	}
	r2 := &rig{lab: r.lab, b: b2}
	r2.conform(t, denyIngressOf(r2, false))
}

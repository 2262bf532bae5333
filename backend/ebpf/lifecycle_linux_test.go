//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/lab/labtest"
)

func smallSpec() lab.Spec {
	return lab.Spec{Pods: labtest.Pods(2, tcp80), External: labtest.ExternalAddrs, ExternalPorts: []lab.Port{tcp80}}
}

// ifindex returns the index of an interface in the lab's node.
func (r *rig) ifindex(t *testing.T, name string) int {
	t.Helper()
	h, err := netlink.NewHandleAt(nlns.NsHandle(r.lab.NodeNS().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l.Attrs().Index
}

// attached lists the IDs of the TCX programs on an interface and hook.
func (r *rig) attached(t *testing.T, iface string, at ebpf.AttachType) []ebpf.ProgramID {
	t.Helper()
	return hookPrograms(t, r.lab.NodeNS(), r.ifindex(t, iface), at)
}

// probe runs pod0 → pod1 on TCP 80 and reports whether it got through.
func (r *rig) probe(t *testing.T) bool {
	t.Helper()
	spec := r.lab.Spec()
	p0, p1 := spec.Pods[0], spec.Pods[1]
	probes := []lab.Probe{{From: p0.Key(), To: p1.Key(), Src: p0.IPs[0], Dst: p1.IPs[0], Protocol: 6, SrcPort: 41000, DstPort: 80}}
	m, err := r.lab.Run(context.Background(), probes)
	if err != nil {
		t.Fatal(err)
	}
	return m.Allowed[0]
}

// denyIngressOf returns a Ruleset where pod1 admits nothing (deny=true) or
// everything.
func denyIngressOf(r *rig, deny bool) *compile.Ruleset {
	b := r.ir()
	prof := b.AllowAllProfile()
	for _, ep := range b.RS.Endpoints {
		ep.Ingress.Profiles = []compile.PolicyID{prof}
		ep.Egress.Profiles = []compile.PolicyID{prof}
	}
	if deny {
		b.RS.Endpoints[r.lab.Spec().Pods[1].Key()].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny}}
	}
	return b.RS
}

// TestCloseLeavesNothing: after Close no pin, link or program of the
// backend is left, and a foreign TCX program on the same hook is
// untouched.
func TestCloseLeavesNothing(t *testing.T) {
	r := newRig(t, smallSpec())
	iface := r.lab.Spec().Pods[0].Interface()
	fid := attachForeign(t, r.lab.NodeNS(), r.ifindex(t, iface), ebpf.AttachTCXIngress, tcxNext, nil)

	ctx := context.Background()
	if err := r.b.Apply(ctx, denyIngressOf(r, true)); err != nil {
		t.Fatal(err)
	}
	if r.probe(t) {
		t.Fatalf("pod1 admits pod0 though its policy denies")
	}
	ids := r.attached(t, iface, ebpf.AttachTCXIngress)
	if len(ids) != 2 || !slices.Contains(ids, fid) {
		t.Fatalf("programs on %s ingress: %v; want ours and the foreign %d", iface, ids, fid)
	}
	var ours []ebpf.ProgramID
	for _, id := range ids {
		if id != fid {
			ours = append(ours, id)
		}
	}
	pins, _ := os.ReadDir(r.b.PinDir())
	if len(pins) == 0 {
		t.Fatalf("nothing pinned in %s", r.b.PinDir())
	}
	if err := r.b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.b.PinDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory %s still there (%v)", r.b.PinDir(), err)
	}
	if got := r.attached(t, iface, ebpf.AttachTCXIngress); !slices.Equal(got, []ebpf.ProgramID{fid}) {
		t.Errorf("after Close, %s ingress runs %v; want only the foreign %d", iface, got, fid)
	}
	for _, p := range r.lab.Spec().Pods {
		if got := r.attached(t, p.Interface(), ebpf.AttachTCXEgress); len(got) != 0 {
			t.Errorf("after Close, %s egress runs %v", p.Interface(), got)
		}
	}
	for _, id := range ours {
		if p, err := ebpf.NewProgramFromID(id); err == nil {
			p.Close()
			t.Errorf("program %d still loaded after Close", id)
		}
	}
	if !r.probe(t) {
		t.Errorf("traffic still denied after Close")
	}
	if err := r.b.Apply(ctx, denyIngressOf(r, true)); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Apply after Close: %v, want ErrClosed", err)
	}
}

// TestRestartKeepsEnforcement: with the backend object gone (no Close),
// the pinned links keep enforcing; a new backend adopts links, programs
// and IDs without reloading anything, then updates them in place.
func TestRestartKeepsEnforcement(t *testing.T) {
	r := newRig(t, smallSpec())
	ctx := context.Background()
	deny := denyIngressOf(r, true)
	if err := r.b.Apply(ctx, deny); err != nil {
		t.Fatal(err)
	}
	if r.probe(t) {
		t.Fatalf("not enforced")
	}
	// The agent dies: every descriptor closes, the pins stay.
	r.b.mu.Lock()
	r.b.release()
	r.b.closed = true
	r.b.mu.Unlock()
	if r.probe(t) {
		t.Fatalf("enforcement lost with the backend object")
	}
	b2, err := New(ctx, backend.Options{NetNS: r.lab.NodeNS().Path(), Name: r.lab.ID()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close(ctx) })
	if n := len(b2.links); n != 4 {
		t.Fatalf("adopted %d links, want 4", n)
	}
	if err := b2.Apply(ctx, denyIngressOf(r, true)); err != nil {
		t.Fatal(err)
	}
	if st := b2.LastApply(); st.ProgramsLoaded+st.LinksAttached+st.LinksUpdated != 0 {
		t.Errorf("re-applying the same policy after a restart changed programs or links: %+v", st)
	}
	if r.probe(t) {
		t.Fatalf("not enforced after adoption")
	}
	if err := b2.Apply(ctx, denyIngressOf(r, false)); err != nil {
		t.Fatal(err)
	}
	if st := b2.LastApply(); st.LinksAttached != 0 || st.LinksUpdated == 0 {
		t.Errorf("update after restart: %+v; want links updated in place, none attached", st)
	}
	if !r.probe(t) {
		t.Errorf("the new backend's update is not enforced")
	}
	d, err := b2.Reconcile(ctx)
	if err != nil || !d.Empty() {
		t.Errorf("drift after adoption: %v %v", d, err)
	}
}

// TestReconcileRepairsDrift: a link detached from outside, a pin removed,
// a set entry deleted and a foreign one added are all put right, and the
// lab agrees with the model again.
func TestReconcileRepairsDrift(t *testing.T) {
	r := newRig(t, smallSpec())
	ctx := context.Background()
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	spec := r.lab.Spec()
	p0, p1 := spec.Pods[0], spec.Pods[1]
	src := b.Selected("src", p0.Key())
	pol := b.Policy(compile.Ingress, "default", "from-pod0", r0(compile.ActionAllow, compile.Match{Src: compile.PeerMatch{Sets: []compile.SetID{src}}}))
	b.RS.Endpoints[p1.Key()].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{pol}, EndAction: compile.ActionDeny}}
	r.conform(t, b.RS)

	// Detach pod1's ingress-policy link behind the backend's back.
	ak := attachKey{p1.Interface(), hookEgress}
	info, err := r.b.links[ak].link.Info()
	if err != nil {
		t.Fatal(err)
	}
	other, err := link.NewFromID(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Detach(); err != nil {
		t.Fatal(err)
	}
	other.Close()
	if err := os.Remove(filepath.Join(r.b.PinDir(), linkPin(attachKey{p0.Interface(), hookIngress}))); err != nil {
		t.Fatal(err)
	}
	// Remove pod0 from the set, add a stranger.
	sets := r.b.objs.maps[refSets]
	removed := 0
	lpm, _ := r.b.cur.flat()
	for k := range lpm {
		if lpm[k] == string(src) {
			if err := sets.Delete(k); err != nil {
				t.Fatal(err)
			}
			removed++
		}
	}
	fam, addr, bits := lpmPrefix(mustPrefix("203.0.113.0/24"))
	if err := sets.Put(lpmKey(r.b.ids.byName[string(src)], fam, 0, 0, addr, bits), uint32(1)); err != nil {
		t.Fatal(err)
	}
	d, err := r.b.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.LinksReattached != 1 || d.PinsRestored != 1 || d.EntriesAdded != removed || d.EntriesDeleted != 1 {
		t.Errorf("drift %s; want 1 link re-attached, 1 pin restored, %d entries added, 1 deleted", d, removed)
	}
	t.Logf("repaired: %s", d)
	r.conform(t, b.RS)
}

// TestUnknownWorkloadInterfaceFailsClosed: a calyx… interface the Ruleset
// does not know gets the deny-all program at Apply; one created later gets
// it from the link watcher at once, or without the watcher at the next
// Reconcile; an interface without the prefix is left alone.
func TestUnknownWorkloadInterfaceFailsClosed(t *testing.T) {
	for _, watch := range []bool{true, false} {
		t.Run(fmt.Sprintf("watch=%v", watch), func(t *testing.T) {
			r := newRig(t, smallSpec(), WithLinkWatch(watch))
			ctx := context.Background()
			h, err := netlink.NewHandleAt(nlns.NsHandle(r.lab.NodeNS().Fd()))
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			for _, name := range []string{"calyxstranger1", "other0"} {
				if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "p" + name[len(name)-4:]}); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.b.Apply(ctx, denyIngressOf(r, false)); err != nil {
				t.Fatal(err)
			}
			if st := r.b.LastApply(); !slices.Equal(st.UnknownInterfaces, []string{"calyxstranger1"}) {
				t.Errorf("unknown interfaces %v", st.UnknownInterfaces)
			}
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				if got := r.attached(t, "calyxstranger1", at); len(got) != 1 {
					t.Errorf("calyxstranger1 %v runs %v; want the deny-all program", at, got)
				}
				if got := r.attached(t, "other0", at); len(got) != 0 {
					t.Errorf("other0 %v runs %v; want nothing", at, got)
				}
			}
			if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "calyxstranger2"}, PeerName: "pngr2"}); err != nil {
				t.Fatal(err)
			}
			if watch {
				deadline := time.Now().Add(5 * time.Second)
				for len(r.attached(t, "calyxstranger2", ebpf.AttachTCXIngress)) != 1 || len(r.attached(t, "calyxstranger2", ebpf.AttachTCXEgress)) != 1 {
					if time.Now().After(deadline) {
						t.Fatalf("the watcher did not cover calyxstranger2 within 5 s")
					}
					time.Sleep(2 * time.Millisecond)
				}
			}
			d, err := r.b.Reconcile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantReattached := 2
			if watch {
				wantReattached = 0 // covered already
			}
			if d.LinksReattached != wantReattached || len(r.attached(t, "calyxstranger2", ebpf.AttachTCXIngress)) != 1 {
				t.Errorf("a workload interface created after Apply: Reconcile found %s; want %d links re-attached", d, wantReattached)
			}
			dump, err := r.b.Dump(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(dump), "link calyxstranger2/ingress program deny-all (unknown workload interface: fail closed)") {
				t.Errorf("dump does not show the deny-all link:\n%s", dump)
			}
		})
	}
}

// TestCheckIsADryRun: Check loads through the verifier without attaching
// or writing anything; it reports an invalid Ruleset.
func TestCheckIsADryRun(t *testing.T) {
	r := newRig(t, smallSpec())
	ctx := context.Background()
	if err := r.b.Check(ctx, denyIngressOf(r, true)); err != nil {
		t.Fatal(err)
	}
	for _, p := range r.lab.Spec().Pods {
		if got := r.attached(t, p.Interface(), ebpf.AttachTCXEgress); len(got) != 0 {
			t.Errorf("Check attached %v to %s", got, p.Interface())
		}
	}
	if !r.probe(t) {
		t.Errorf("Check changed enforcement")
	}
	bad := denyIngressOf(r, true)
	bad.Endpoints[r.lab.Spec().Pods[0].Key()].Ingress.Profiles = []compile.PolicyID{"nope"}
	if err := r.b.Check(ctx, bad); !errors.Is(err, ErrInvalidRuleset) {
		t.Errorf("Check of a broken Ruleset: %v", err)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestReconcileRunsFirstAgain: a foreign program attached in front of
// ours that returns TCX_PASS decides before policy does (pod1 admits pod0
// although its policy denies); Reconcile sees that ours no longer runs
// first, attaches it at the head again, and leaves the foreign program in
// place behind it.
func TestReconcileRunsFirstAgain(t *testing.T) {
	r := newRig(t, smallSpec())
	ctx := context.Background()
	if err := r.b.Apply(ctx, denyIngressOf(r, true)); err != nil {
		t.Fatal(err)
	}
	if r.probe(t) {
		t.Fatal("pod1 admits pod0 though its policy denies")
	}
	iface := r.lab.Spec().Pods[1].Interface()
	const tcxPass = 0
	fid := attachForeign(t, r.lab.NodeNS(), r.ifindex(t, iface), ebpf.AttachTCXEgress, tcxPass, link.Head())
	if !r.probe(t) {
		t.Fatal("the foreign TCX_PASS program in front of ours did not bypass policy: the test proves nothing")
	}

	d, err := r.b.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.LinksReattached != 1 || !slices.Contains(d.Changed, "reattach first "+attachKey{iface, hookEgress}.String()) {
		t.Errorf("drift %s %v; want pod1's ingress-policy link attached first again", d, d.Changed)
	}
	if r.probe(t) {
		t.Error("after Reconcile pod1 still admits pod0")
	}
	ids := r.attached(t, iface, ebpf.AttachTCXEgress)
	if len(ids) != 2 || ids[0] == fid || ids[1] != fid {
		t.Errorf("programs on %s egress: %v; want ours, then the foreign %d", iface, ids, fid)
	}
	if d, err := r.b.Reconcile(ctx); err != nil || !d.Empty() {
		t.Errorf("second Reconcile: %v, %v; want no drift", d, err)
	}
}

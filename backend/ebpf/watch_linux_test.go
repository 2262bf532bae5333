//go:build linux

package ebpf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/testgen"
)

// watchNode is a namespace with a backend and a netlink handle.
type watchNode struct {
	t  *testing.T
	ns *netns.NS
	h  *netlink.Handle
	b  *Backend
}

func newWatchNode(t *testing.T, o ...Option) *watchNode {
	t.Helper()
	requireBPF(t)
	ns := netnstest.New(t, "cxwatch-")
	h, err := netlink.NewHandleAt(nlns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	b, err := New(context.Background(), backend.Options{NetNS: ns.Path(), Name: "watch-" + ns.Name()}, o...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return &watchNode{t: t, ns: ns, h: h, b: b}
}

// veth creates a veth pair whose host side is name; it goes with the
// namespace.
func (n *watchNode) veth(name string) int {
	n.t.Helper()
	if err := n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "p" + name[5:]}); err != nil {
		n.t.Fatalf("add %s: %v", name, err)
	}
	l, err := n.h.LinkByName(name)
	if err != nil {
		n.t.Fatal(err)
	}
	return l.Attrs().Index
}

// programs lists the TCX programs on a hook of an interface.
func (n *watchNode) programs(idx int, h hook) []ebpf.ProgramID {
	n.t.Helper()
	return hookPrograms(n.t, n.ns, idx, attachType(h))
}

// waitCovered waits until both hooks of idx run one program each and
// returns them.
func (n *watchNode) waitCovered(idx int) [2]ebpf.ProgramID {
	n.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		in, eg := n.programs(idx, hookIngress), n.programs(idx, hookEgress)
		if len(in) == 1 && len(eg) == 1 {
			return [2]ebpf.ProgramID{in[0], eg[0]}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("interface %d not covered within 5 s: ingress %v, egress %v", idx, in, eg)
		}
		time.Sleep(time.Millisecond)
	}
}

// progID returns the kernel ID of the backend's program fp (deny-all:
// "deny-all-ingress" and so on).
func (n *watchNode) progID(fp string) ebpf.ProgramID {
	n.t.Helper()
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	l, ok := n.b.progs[fp]
	if !ok {
		n.t.Fatalf("program %s not loaded", fp)
	}
	info, err := l.entry.Info()
	if err != nil {
		n.t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

func watchRuleset(ifaces map[string]netip.Addr) *compile.Ruleset {
	b := testgen.NewIR()
	for name, a := range ifaces {
		b.Endpoint("ns/"+name, name, a)
		b.RS.Endpoints["ns/"+name].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny}}
		b.RS.Endpoints["ns/"+name].Egress.Profiles = []compile.PolicyID{b.AllowAllProfile()}
	}
	return b.RS
}

// watcherGoroutines counts goroutines of link watchers and their
// subscriptions.
func watcherGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*Backend).watchLoop") || strings.Contains(g, "netlink.linkSubscribeAt") {
			n++
		}
	}
	return n
}

// TestLinkWatch: a workload interface gets a program as soon as it
// appears, before any Apply names it: the endpoint's own program (and its
// source addresses) if the last Apply named the interface, deny-all
// otherwise. The Apply that registers it then only switches links.
// Close stops the watcher, leaves no goroutine, link or pin behind.
func TestLinkWatch(t *testing.T) {
	before := watcherGoroutines()
	n := newWatchNode(t)
	ctx := context.Background()
	known := netip.MustParseAddr("10.88.0.1")
	rs := watchRuleset(map[string]netip.Addr{"calyxknown01": known})
	if err := n.b.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if st := n.b.LastApply(); len(st.MissingInterfaces) != 1 {
		t.Fatalf("missing interfaces %v, want calyxknown01", st.MissingInterfaces)
	}

	// Named by the last Apply: its own programs and source entry.
	idx := n.veth("calyxknown01")
	got := n.waitCovered(idx)
	n.b.mu.Lock()
	fpIn, fpEg := n.b.cur.attach[attachKey{"calyxknown01", hookIngress}], n.b.cur.attach[attachKey{"calyxknown01", hookEgress}]
	n.b.mu.Unlock()
	if want := [2]ebpf.ProgramID{n.progID(fpIn), n.progID(fpEg)}; got != want {
		t.Errorf("calyxknown01 runs %v, want its endpoint's programs %v", got, want)
	}
	var one uint32
	if err := n.b.objs.maps[refAddrs].Lookup(srcKey(uint32(idx), known), &one); err != nil {
		t.Errorf("source entry of calyxknown01: %v", err)
	}

	// Unknown: deny-all, then the Apply that names it only updates links.
	idx2 := n.veth("calyxnew0002")
	got = n.waitCovered(idx2)
	if want := [2]ebpf.ProgramID{n.progID(denyFP + "-ingress"), n.progID(denyFP + "-egress")}; got != want {
		t.Errorf("calyxnew0002 runs %v, want deny-all %v", got, want)
	}
	rs2 := watchRuleset(map[string]netip.Addr{"calyxknown01": known, "calyxnew0002": netip.MustParseAddr("10.88.0.2")})
	if err := n.b.Apply(ctx, rs2); err != nil {
		t.Fatal(err)
	}
	if st := n.b.LastApply(); st.LinksAttached != 0 || st.LinksUpdated != 2 || st.ProgramsLoaded != 0 {
		t.Errorf("registering a covered pod: %+v; want 2 links updated, none attached, no program loaded", st)
	}
	if d, err := n.b.Reconcile(ctx); err != nil || !d.Empty() {
		t.Errorf("drift after the watcher's attaches: %v, %v", d, err)
	}
	// Not a workload interface: left alone.
	idx3 := n.veth("other0003")
	time.Sleep(50 * time.Millisecond)
	if p := n.programs(idx3, hookIngress); len(p) != 0 {
		t.Errorf("other0003 runs %v", p)
	}

	if w := watcherGoroutines(); w <= before {
		t.Fatalf("no watcher goroutine while the backend is open (%d, before %d)", w, before)
	}
	if err := n.b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for watcherGoroutines() > before {
		if time.Now().After(deadline) {
			t.Fatalf("watcher goroutines left after Close: %d, before %d", watcherGoroutines(), before)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, i := range []int{idx, idx2} {
		if in, eg := n.programs(i, hookIngress), n.programs(i, hookEgress); len(in)+len(eg) != 0 {
			t.Errorf("interface %d still runs %v %v after Close", i, in, eg)
		}
	}
	if _, err := os.Stat(n.b.PinDir()); !os.IsNotExist(err) {
		t.Errorf("pin directory left: %v", err)
	}
	// An interface created after Close is not touched.
	idx4 := n.veth("calyxlate004")
	time.Sleep(50 * time.Millisecond)
	if p := n.programs(idx4, hookIngress); len(p) != 0 {
		t.Errorf("after Close calyxlate004 runs %v", p)
	}
}

// TestLinkWatchRacesApply: interfaces appear while Applies run; at the
// end every workload interface runs exactly one program per hook, the
// right one, and Reconcile finds nothing to repair.
func TestLinkWatchRacesApply(t *testing.T) {
	n := newWatchNode(t)
	ctx := context.Background()
	const count = 16
	names := make([]string, count)
	addrs := map[string]netip.Addr{}
	for i := range names {
		names[i] = fmt.Sprintf("calyxrace%02d", i)
		addrs[names[i]] = netip.AddrFrom4([4]byte{10, 88, 1, byte(i + 1)})
	}
	named := func(round int) *compile.Ruleset {
		m := map[string]netip.Addr{}
		for i, name := range names {
			if (i+round)%2 == 0 {
				m[name] = addrs[name]
			}
		}
		return watchRuleset(m)
	}
	var wg sync.WaitGroup
	idx := make([]int, count)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, name := range names {
			if err := n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: fmt.Sprintf("prace%02d", i)}); err != nil {
				t.Errorf("add %s: %v", name, err)
				return
			}
			l, _ := n.h.LinkByName(name)
			idx[i] = l.Attrs().Index
		}
	}()
	for round := range 12 {
		if err := n.b.Apply(ctx, named(round)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	final := named(0)
	if err := n.b.Apply(ctx, final); err != nil {
		t.Fatal(err)
	}
	deny := [2]ebpf.ProgramID{n.progID(denyFP + "-ingress"), n.progID(denyFP + "-egress")}
	for i, name := range names {
		got := n.waitCovered(idx[i])
		_, isNamed := final.Endpoints["ns/"+name]
		if isNamed == (got == deny) {
			t.Errorf("%s (named %v) runs %v; deny-all is %v", name, isNamed, got, deny)
		}
	}
	if d, err := n.b.Reconcile(ctx); err != nil || !d.Empty() {
		t.Errorf("drift: %v, %v", d, err)
	}
}

// TestApplyWithStaleInterfaceTable: Apply reads the watcher's table,
// which may lag behind the kernel. An interface the table still lists but
// that is gone (an attach to it, or an update of its defunct link, fails)
// counts as missing, not as an error; one the table does not list yet is
// covered by the watcher with its endpoint's program once it hears of it.
func TestApplyWithStaleInterfaceTable(t *testing.T) {
	n := newWatchNode(t)
	ctx := context.Background()
	a1, a2 := netip.MustParseAddr("10.88.2.1"), netip.MustParseAddr("10.88.2.2")
	idx := n.veth("calyxstale01")
	n.waitCovered(idx)
	rs := watchRuleset(map[string]netip.Addr{"calyxstale01": a1})
	if err := n.b.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	// The interface goes; the table is made to lag (as if the
	// notification were still queued), and a ghost is listed too.
	l, err := n.h.LinkByName("calyxstale01")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n.b.mu.Lock()
		_, listed := n.b.ifTable["calyxstale01"]
		n.b.mu.Unlock()
		if !listed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not hear of the deletion")
		}
		time.Sleep(time.Millisecond)
	}
	n.b.mu.Lock()
	n.b.ifTable["calyxstale01"] = idx
	n.b.ifTable["calyxghost02"] = 1 << 20
	n.b.mu.Unlock()
	// A policy change for the gone pod (its links need an update), and a
	// pod on the ghost interface (its links need an attach).
	rs2 := watchRuleset(map[string]netip.Addr{"calyxstale01": a1, "calyxghost02": a2})
	rs2.Endpoints["ns/calyxstale01"].Ingress.Tiers = nil
	if err := n.b.Apply(ctx, rs2); err != nil {
		t.Fatalf("Apply with a stale table: %v", err)
	}
	st := n.b.LastApply()
	if !slices.Contains(st.MissingInterfaces, "calyxstale01") || !slices.Contains(st.MissingInterfaces, "calyxghost02") {
		t.Errorf("missing interfaces %v, want both", st.MissingInterfaces)
	}
	if st.LinksUpdated != 0 || st.LinksAttached != 0 {
		t.Errorf("links updated or attached on gone interfaces: %+v", st)
	}
	// Once the table catches up, nothing is left of the gone interface.
	n.b.mu.Lock()
	delete(n.b.ifTable, "calyxstale01")
	n.b.mu.Unlock()
	if err := n.b.Apply(ctx, rs2); err != nil {
		t.Fatal(err)
	}
	n.b.mu.Lock()
	nlinks := len(n.b.links)
	n.b.mu.Unlock()
	if nlinks != 0 {
		t.Errorf("%d links recorded for interfaces that are gone", nlinks)
	}
	// The ghost appears for real: the watcher gives it its program.
	n.b.mu.Lock()
	delete(n.b.ifTable, "calyxghost02")
	n.b.mu.Unlock()
	gidx := n.veth("calyxghost02")
	got := n.waitCovered(gidx)
	n.b.mu.Lock()
	fp := n.b.cur.attach[attachKey{"calyxghost02", hookIngress}]
	n.b.mu.Unlock()
	if got[0] != n.progID(fp) {
		t.Errorf("calyxghost02 runs %v, want its endpoint's program %v", got, n.progID(fp))
	}
}

//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/calyxnet/calyx/backend"
)

// Drift says what Reconcile found changed from outside and repaired.
type Drift struct {
	// LinksReattached counts links that were detached, missing or on a
	// re-created interface, and attached again.
	LinksReattached int
	// LinksRestored counts links switched back to their program after
	// someone replaced it.
	LinksRestored int
	// PinsRestored counts links whose pin had been removed.
	PinsRestored int
	// EntriesAdded and EntriesDeleted count set map entries put back and
	// foreign ones removed.
	EntriesAdded, EntriesDeleted int
	// Changed names what was repaired ("reattach calyx…/ingress").
	Changed []string
}

// Empty reports whether nothing had drifted.
func (d *Drift) Empty() bool {
	return d.LinksReattached+d.LinksRestored+d.PinsRestored+d.EntriesAdded+d.EntriesDeleted == 0
}

// String lists the repairs.
func (d *Drift) String() string {
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(d.LinksReattached, "links re-attached")
	add(d.LinksRestored, "links switched back to their program")
	add(d.PinsRestored, "link pins restored")
	add(d.EntriesAdded, "set entries added")
	add(d.EntriesDeleted, "foreign set entries deleted")
	if len(parts) == 0 {
		return "no drift"
	}
	return strings.Join(parts, ", ")
}

// Reconcile reads links, pins and set maps back and repairs whatever
// differs from what the backend last applied: a link detached or switched
// to another program, a pin removed, set entries added or removed from
// outside. Workload interfaces created since the last Apply get the
// deny-all program. Before the first Apply it does nothing.
func (b *Backend) Reconcile(ctx context.Context) (*Drift, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	d := &Drift{}
	if b.cur == nil {
		return d, nil
	}
	ifaces, err := b.interfaces()
	if err != nil {
		return nil, err
	}
	var st Stats
	want := b.wantedLinks(b.cur, ifaces, &st)
	for _, ak := range slices.SortedFunc(mapsKeys(want), func(x, y attachKey) int { return strings.Compare(x.String(), y.String()) }) {
		fp := want[ak]
		prog, err := b.program(fp, ak.hook)
		if err != nil {
			return nil, err
		}
		a, ok := b.links[ak]
		if !ok || a.fp != fp || a.ifindex != ifaces[ak.dev()] || !b.alive(a) {
			if err := b.attach(ak, ifaces[ak.dev()], fp, prog); err != nil {
				return nil, err
			}
			d.LinksReattached++
			d.Changed = append(d.Changed, "reattach "+ak.String())
			continue
		}
		if info, err := a.link.Info(); err == nil {
			if pi, err := prog.Info(); err == nil {
				if id, ok := pi.ID(); ok && id != info.Program {
					if err := a.link.Update(prog); err != nil {
						return nil, fmt.Errorf("ebpf: restore link %s: %w", ak, err)
					}
					d.LinksRestored++
					d.Changed = append(d.Changed, "restore "+ak.String())
				}
			}
		}
		path := filepath.Join(b.dir, linkPin(ak))
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			_ = a.link.Unpin()
			if err := a.link.Pin(path); err != nil {
				return nil, fmt.Errorf("ebpf: re-pin %s: %w", ak, err)
			}
			d.PinsRestored++
			d.Changed = append(d.Changed, "re-pin "+ak.String())
		}
	}
	// Our links on each interface hook, to check they run first.
	firsts := map[devHook][]ownLink{}
	for ak, fp := range want {
		a, ok := b.links[ak]
		if !ok {
			continue
		}
		info, err := a.link.Info()
		if err != nil {
			continue
		}
		prog, err := b.program(fp, ak.hook)
		if err != nil {
			return nil, err
		}
		dh := devHook{ak.dev(), ak.hook}
		firsts[dh] = append(firsts[dh], ownLink{ak, fp, prog, info.ID})
	}
	for _, dh := range slices.SortedFunc(mapsKeys(firsts), func(x, y devHook) int {
		return strings.Compare(x.dev+x.hook.String(), y.dev+y.hook.String())
	}) {
		own := firsts[dh]
		slices.SortFunc(own, func(x, y ownLink) int { return strings.Compare(x.key.String(), y.key.String()) })
		behind, err := b.outrun(dh, ifaces[dh.dev], own)
		if err != nil {
			return nil, err
		}
		if !behind {
			continue
		}
		// A foreign program runs before ours: whatever it returns
		// (TCX_PASS, a redirect) would decide before policy does.
		for _, o := range own {
			if err := b.reattachFirst(o, ifaces[dh.dev]); err != nil {
				return nil, err
			}
			d.LinksReattached++
			d.Changed = append(d.Changed, "reattach first "+o.key.String())
		}
	}
	lpm, np, err := readEntries(b.objs)
	if err != nil {
		return nil, err
	}
	actual := &plan{raw: true, lpm: lpm, np: np}
	diff := entryDiff(actual, b.cur)
	if d.EntriesAdded, err = diff.add(b.objs); err != nil {
		return nil, err
	}
	if d.EntriesDeleted, err = diff.del(b.objs); err != nil {
		return nil, err
	}
	if b.addrs != nil {
		actualAddrs, err := readAddrs(b.objs)
		if err != nil {
			return nil, err
		}
		add, del := diffSet(actualAddrs, b.addrs)
		if err := putAll(b.objs.maps[refAddrs], add, 1); err != nil {
			return nil, err
		}
		for _, k := range del {
			if err := b.objs.maps[refAddrs].Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil, fmt.Errorf("ebpf: addrs: delete: %w", err)
			}
		}
		d.EntriesAdded += len(add)
		d.EntriesDeleted += len(del)
	}
	if !d.Empty() {
		b.log.Info("ebpf drift repaired", "dir", b.dir, "drift", d.String())
		if err := b.writeMeta(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Repair is Reconcile behind the backend.Repairer interface.
func (b *Backend) Repair(ctx context.Context) (backend.Drift, error) {
	d, err := b.Reconcile(ctx)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// devHook is one TCX hook of one interface.
type devHook struct {
	dev  string
	hook hook
}

// ownLink is one of the backend's links on a hook, as Reconcile found it.
type ownLink struct {
	key  attachKey
	fp   string
	prog *ebpf.Program
	id   link.ID
}

// outrun reports whether a program that is not the backend's runs on the
// hook before one of the backend's links: the kernel's list of the hook's
// programs, in run order, must start with all of own.
func (b *Backend) outrun(dh devHook, ifindex int, own []ownLink) (bool, error) {
	var res *link.QueryResult
	err := b.inNS(func() error {
		var err error
		res, err = link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: attachType(dh.hook)})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("ebpf: query %s/%s: %w", dh.dev, dh.hook, err)
	}
	ours := make(map[link.ID]bool, len(own))
	for _, o := range own {
		ours[o.id] = true
	}
	for i, p := range res.Programs {
		if i >= len(own) {
			break
		}
		if id, ok := p.LinkID(); !ok || !ours[id] {
			return true, nil
		}
	}
	return false, nil
}

// reattachFirst moves one of the backend's links to the head of its hook.
// A program can be attached to a hook once only, so the old link first
// switches to a stand-in that drops (traffic already met the foreign
// program first, so nothing that was judged is opened), the program is
// attached again at the head, and record closes the old link. On failure
// the old link gets its program back.
func (b *Backend) reattachFirst(o ownLink, ifindex int) error {
	old, ok := b.links[o.key]
	if !ok {
		return b.attach(o.key, ifindex, o.fp, o.prog)
	}
	stand, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, AttachType: attachType(o.key.hook), License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, tcxDrop), asm.Return()}})
	if err != nil {
		return fmt.Errorf("ebpf: stand-in program: %w", err)
	}
	defer stand.Close()
	if err := old.link.Update(stand); err != nil {
		return fmt.Errorf("ebpf: move %s first: %w", o.key, err)
	}
	if err := b.attach(o.key, ifindex, o.fp, o.prog); err != nil {
		if cur, ok := b.links[o.key]; ok && cur == old {
			_ = old.link.Update(o.prog)
		}
		return err
	}
	return nil
}

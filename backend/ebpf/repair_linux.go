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

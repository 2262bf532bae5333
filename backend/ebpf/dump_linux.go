//go:build linux

package ebpf

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/calyxnet/calyx/backend"
)

// Dump lists what the backend owns, deterministically: the pin
// directory, the maps, each program (chunks, instructions, steps), which
// program each interface and hook runs, and every set's entries as the
// maps hold them.
func (b *Backend) Dump(ctx context.Context) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	var w strings.Builder
	fmt.Fprintf(&w, "# calyx eBPF dataplane, layout %s, pins in %s\n", LayoutVersion, b.dir)
	for _, name := range sortedNames(b.objs.maps) {
		m := b.objs.maps[name]
		fmt.Fprintf(&w, "map %s %s key=%d value=%d max=%d\n", name, m.Type(), m.KeySize(), m.ValueSize(), m.MaxEntries())
	}
	if b.cur == nil {
		return []byte(w.String()), nil
	}
	for _, fp := range slices.Sorted(mapsKeys(b.cur.progs)) {
		ps := b.cur.progs[fp]
		n := 0
		for _, c := range ps.chunks {
			n += len(c)
		}
		fmt.Fprintf(&w, "program %s tcx-%s chunks=%d instructions=%d steps=%d runs=%d\n", fp, ps.hook, len(ps.chunks), n, ps.steps, len(ps.runs))
	}
	keys := slices.SortedFunc(mapsKeys(b.links), func(x, y attachKey) int { return strings.Compare(x.String(), y.String()) })
	for _, ak := range keys {
		a := b.links[ak]
		owner := b.cur.owner[ak]
		if owner == "" {
			owner = "unknown workload interface: fail closed"
		}
		fmt.Fprintf(&w, "link %s program %s (%s)\n", ak, a.fp, owner)
	}
	sets := map[string][]string{}
	lpm, np := b.cur.flat()
	for k, name := range lpm {
		sets[name] = append(sets[name], describeLPM(k))
	}
	for k, name := range np {
		sets[name] = append(sets[name], describeNP(k))
	}
	for _, name := range slices.Sorted(mapsKeys(sets)) {
		els := sets[name]
		slices.Sort(els)
		fmt.Fprintf(&w, "set %s id=%d entries=%d\n", name, b.ids.byName[name], len(els))
		for _, e := range els {
			fmt.Fprintf(&w, "  %s\n", e)
		}
	}
	return []byte(w.String()), nil
}

func addrOf(fam uint8, b []byte) netip.Addr {
	if fam == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b[:16]))
}

func describeLPM(k [lpmKeySize]byte) string {
	bits := int(binary.NativeEndian.Uint32(k[0:])) - lpmDataBits
	p := netip.PrefixFrom(addrOf(k[8], k[12:]), bits)
	if k[9] == 0 {
		return p.String()
	}
	return fmt.Sprintf("%s proto %d port %d", p, k[9], binary.BigEndian.Uint16(k[10:]))
}

func describeNP(k [npKeySize]byte) string {
	return fmt.Sprintf("%s proto %d port %d", addrOf(k[4], k[8:]), k[5], binary.BigEndian.Uint16(k[6:]))
}

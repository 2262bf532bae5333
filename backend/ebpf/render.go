package ebpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/calyxnet/calyx/compile"
)

// Render returns what Dump lists for rs once applied on a node where every
// endpoint's interface exists: each program (chunks, instructions, steps,
// merged runs), which program each interface and hook runs, and every
// set's map entries. It needs no kernel: what Apply would load, as text.
func Render(rs *compile.Ruleset) ([]byte, error) {
	x := newIDs()
	p, err := makePlan(rs, x, config{timeouts: DefaultTimeouts(), events: defaultSettings().flowEvents})
	if err != nil {
		return nil, err
	}
	var w strings.Builder
	planText(&w, p, x, p.renderLinks())
	return []byte(w.String()), nil
}

// planText writes the programs, links and set entries of p.
func planText(w *strings.Builder, p *plan, x *ids, links map[attachKey]string) {
	for _, fp := range slices.Sorted(mapsKeys(p.progs)) {
		ps := p.progs[fp]
		n := 0
		for _, c := range ps.chunks {
			n += len(c)
		}
		fmt.Fprintf(w, "program %s tcx-%s chunks=%d instructions=%d steps=%d runs=%d\n", fp, ps.hook, len(ps.chunks), n, ps.steps, len(ps.runs))
	}
	keys := slices.SortedFunc(mapsKeys(links), func(a, b attachKey) int { return strings.Compare(a.String(), b.String()) })
	for _, ak := range keys {
		owner := p.ownerOf(ak)
		if owner == "" {
			owner = "unknown workload interface: fail closed"
		}
		fmt.Fprintf(w, "link %s program %s (%s)\n", ak, links[ak], owner)
	}
	sets := map[string][]string{}
	lpm, np := p.flat()
	for k, name := range lpm {
		sets[name] = append(sets[name], describeLPM(k))
	}
	for k, name := range np {
		sets[name] = append(sets[name], describeNP(k))
	}
	for _, name := range slices.Sorted(mapsKeys(sets)) {
		els := sets[name]
		slices.Sort(els)
		fmt.Fprintf(w, "set %s id=%d entries=%d\n", name, x.byName[name], len(els))
		for _, e := range els {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
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

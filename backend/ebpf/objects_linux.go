//go:build linux

package ebpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Map sizes.
const (
	setsMax  = 1 << 20
	portsMax = 1 << 16
	ctMax    = 1 << 16
	fragsMax = 1 << 13
	metaMax  = 1 << 18
	eventsSz = 1 << 18
)

// mapSpecs are the maps every program shares. The layout version is in
// the pin directory's name; a pinned map whose shape differs from its
// spec is replaced, never reused.
func mapSpecs() map[string]*ebpf.MapSpec {
	return map[string]*ebpf.MapSpec{
		refScratch: {Name: "calyx_scratch", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: scratchSize, MaxEntries: 1},
		refSets: {Name: "calyx_sets", Type: ebpf.LPMTrie, KeySize: lpmKeySize, ValueSize: 4, MaxEntries: setsMax,
			Flags: 1 /* BPF_F_NO_PREALLOC */},
		refPorts:  {Name: "calyx_ports", Type: ebpf.Hash, KeySize: npKeySize, ValueSize: 4, MaxEntries: portsMax, Flags: 1},
		refCT:     {Name: "calyx_ct", Type: ebpf.LRUHash, KeySize: ctKeySize, ValueSize: ctValSize, MaxEntries: ctMax},
		refFrags:  {Name: "calyx_frags", Type: ebpf.LRUHash, KeySize: fragKeySize, ValueSize: ctValSize, MaxEntries: fragsMax},
		refEvents: {Name: "calyx_events", Type: ebpf.RingBuf, MaxEntries: eventsSz},
		refLost:   {Name: "calyx_lost", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1},
		refAddrs:  {Name: "calyx_addrs", Type: ebpf.Hash, KeySize: addrKeySize, ValueSize: 4, MaxEntries: portsMax, Flags: 1},
		refMeta:   {Name: "calyx_meta", Type: ebpf.Hash, KeySize: 32, ValueSize: 32, MaxEntries: metaMax, Flags: 1},
	}
}

// refMeta is the map that remembers IDs and program fingerprints across
// restarts.
const refMeta = "map_meta"

// objects are the shared maps.
type objects struct {
	maps     map[string]*ebpf.Map
	replaced []string // pinned maps of another layout that were replaced
}

func (o *objects) close() {
	for _, m := range o.maps {
		_ = m.Close()
	}
}

// openObjects opens the maps pinned in dir, creating what is missing and
// replacing what has another layout; with dir empty nothing is pinned.
func openObjects(dir string) (*objects, error) {
	o := &objects{maps: map[string]*ebpf.Map{}}
	for _, name := range sortedNames(mapSpecs()) {
		spec := mapSpecs()[name]
		var m *ebpf.Map
		var err error
		if dir == "" {
			m, err = ebpf.NewMap(spec)
		} else {
			m, err = openPinnedMap(dir, name, spec)
			if errors.Is(err, ebpf.ErrMapIncompatible) {
				// A map of another layout: replace it deliberately.
				_ = os.Remove(filepath.Join(dir, name))
				o.replaced = append(o.replaced, name)
				m, err = openPinnedMap(dir, name, spec)
			}
		}
		if err != nil {
			o.close()
			return nil, fmt.Errorf("ebpf: map %s: %w", name, err)
		}
		o.maps[name] = m
	}
	return o, nil
}

func openPinnedMap(dir, name string, spec *ebpf.MapSpec) (*ebpf.Map, error) {
	path := filepath.Join(dir, name)
	if m, err := ebpf.LoadPinnedMap(path, nil); err == nil {
		if err := spec.Compatible(m); err != nil {
			_ = m.Close()
			return nil, fmt.Errorf("%w: %w", ebpf.ErrMapIncompatible, err)
		}
		return m, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, err
	}
	if err := m.Pin(path); err != nil {
		_ = m.Close()
		return nil, err
	}
	return m, nil
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// loaded is one program in the kernel: its entry and the chunks it
// tail-calls through its own program array.
type loaded struct {
	fp     string
	hook   hook
	entry  *ebpf.Program
	chunks []*ebpf.Program
	tail   *ebpf.Map
	insns  int
	steps  int
}

func (l *loaded) close() {
	if l.entry != nil {
		_ = l.entry.Close()
	}
	for _, c := range l.chunks {
		_ = c.Close()
	}
	if l.tail != nil {
		_ = l.tail.Close()
	}
}

func attachType(h hook) ebpf.AttachType {
	if h == hookIngress {
		return ebpf.AttachTCXIngress
	}
	return ebpf.AttachTCXEgress
}

// load loads ps: the verifier checks every chunk.
func (o *objects) load(ps *progSpec) (*loaded, error) {
	l := &loaded{fp: ps.fp, hook: ps.hook, steps: ps.steps}
	var err error
	l.tail, err = ebpf.NewMap(&ebpf.MapSpec{Name: "calyx_tail", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4,
		MaxEntries: uint32(max(1, len(ps.chunks)))})
	if err != nil {
		return nil, fmt.Errorf("ebpf: program array: %w", err)
	}
	progs := make([]*ebpf.Program, len(ps.chunks))
	for i := len(ps.chunks) - 1; i >= 0; i-- {
		insns := ps.chunks[i]
		l.insns += len(insns)
		p, err := o.newProgram(fmt.Sprintf("calyx_%s_%d", ps.hook.String()[:2], i), insns, ps.hook, l.tail)
		if err != nil {
			for _, q := range progs[i+1:] {
				_ = q.Close()
			}
			_ = l.tail.Close()
			return nil, fmt.Errorf("ebpf: load chunk %d of %d (%d instructions): %w", i, len(ps.chunks), len(insns), err)
		}
		progs[i] = p
		if i > 0 {
			if err := l.tail.Put(uint32(i), p); err != nil {
				for _, q := range progs[i:] {
					_ = q.Close()
				}
				_ = l.tail.Close()
				return nil, fmt.Errorf("ebpf: program array: %w", err)
			}
		}
	}
	l.entry, l.chunks = progs[0], progs[1:]
	return l, nil
}

func (o *objects) newProgram(name string, insns asm.Instructions, h hook, tail *ebpf.Map) (*ebpf.Program, error) {
	insns = append(asm.Instructions(nil), insns...)
	refs := insns.ReferenceOffsets()
	for ref := range refs {
		var m *ebpf.Map
		if ref == refTail {
			m = tail
		} else if m = o.maps[ref]; m == nil {
			continue // a jump label
		}
		if err := insns.AssociateMap(ref, m); err != nil {
			return nil, err
		}
	}
	return ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name:         name,
		Type:         ebpf.SchedCLS,
		AttachType:   attachType(h),
		Instructions: insns,
		License:      "Dual MIT/GPL",
	}, ebpf.ProgramOptions{})
}

// loadDenyAll loads the program unknown workload interfaces get; with
// events, it reports every packet it drops.
func (o *objects) loadDenyAll(h hook, events bool) (*ebpf.Program, error) {
	return o.newProgram("calyx_deny", denyAllProgram(h, events), h, nil)
}

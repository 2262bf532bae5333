//go:build linux

package ebpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// syncEntries turns the set maps from what old planned (nil: empty) into
// what p plans. Additions go first, so a member moving between two sets
// is never missing from both.
func syncEntries(o *objects, old, p *plan) error {
	if _, err := addEntries(o, old, p); err != nil {
		return err
	}
	_, err := delEntries(o, old, p)
	return err
}

// addEntries writes the entries p has and old has not.
func addEntries(o *objects, old, p *plan) (int, error) {
	var oldLPM map[[lpmKeySize]byte]string
	var oldNP map[[npKeySize]byte]string
	if old != nil {
		oldLPM, oldNP = old.lpm, old.np
	}
	one := uint32(1)
	var addL [][lpmKeySize]byte
	for k := range p.lpm {
		if _, ok := oldLPM[k]; !ok {
			addL = append(addL, k)
		}
	}
	var addN [][npKeySize]byte
	for k := range p.np {
		if _, ok := oldNP[k]; !ok {
			addN = append(addN, k)
		}
	}
	if err := putAll(o.maps[refSets], addL, one); err != nil {
		return 0, err
	}
	if err := putAll(o.maps[refPorts], addN, one); err != nil {
		return 0, err
	}
	return len(addL) + len(addN), nil
}

// delEntries removes the entries old has and p has not.
func delEntries(o *objects, old, p *plan) (int, error) {
	if old == nil {
		return 0, nil
	}
	n := 0
	for k := range old.lpm {
		if _, ok := p.lpm[k]; !ok {
			if err := o.maps[refSets].Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return n, fmt.Errorf("ebpf: sets: delete: %w", err)
			}
			n++
		}
	}
	for k := range old.np {
		if _, ok := p.np[k]; !ok {
			if err := o.maps[refPorts].Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return n, fmt.Errorf("ebpf: ports: delete: %w", err)
			}
			n++
		}
	}
	return n, nil
}

// putAll writes keys with value v, in batches where the kernel allows.
func putAll[K any](m *ebpf.Map, keys []K, v uint32) error {
	const batch = 4096
	for len(keys) > 0 {
		n := min(len(keys), batch)
		vals := make([]uint32, n)
		for i := range vals {
			vals[i] = v
		}
		if _, err := m.BatchUpdate(keys[:n], vals, nil); err != nil {
			// Fall back to one update per key.
			for _, k := range keys[:n] {
				if err := m.Put(k, v); err != nil {
					return fmt.Errorf("ebpf: %s: put: %w", m, err)
				}
			}
		}
		keys = keys[n:]
	}
	return nil
}

// readEntries reads the set maps back.
func readEntries(o *objects) (map[[lpmKeySize]byte]string, map[[npKeySize]byte]string, error) {
	lpm := map[[lpmKeySize]byte]string{}
	np := map[[npKeySize]byte]string{}
	var lk [lpmKeySize]byte
	var v uint32
	it := o.maps[refSets].Iterate()
	for it.Next(&lk, &v) {
		lpm[lk] = ""
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("ebpf: read sets: %w", err)
	}
	var nk [npKeySize]byte
	it = o.maps[refPorts].Iterate()
	for it.Next(&nk, &v) {
		np[nk] = ""
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("ebpf: read ports: %w", err)
	}
	return lpm, np, nil
}

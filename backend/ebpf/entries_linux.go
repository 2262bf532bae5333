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
	d := entryDiff(old, p)
	if _, err := d.add(o); err != nil {
		return err
	}
	_, err := d.del(o)
	return err
}

// changes are the entries to add and to delete.
type changes struct {
	addL, delL [][lpmKeySize]byte
	addN, delN [][npKeySize]byte
	// vals holds the values of added entries that are not 1.
	vals map[[lpmKeySize]byte]uint32
}

// entryDiff lists the entries p has and old has not (add) and those old
// has and p has not (del). Sets whose entries did not change are skipped
// without looking at their members.
func entryDiff(old, p *plan) (c changes) {
	c.addL, c.delL, c.addN, c.delN = entryDiffLists(old, p)
	for _, e := range p.sets {
		for i, v := range e.vals {
			if c.vals == nil {
				c.vals = map[[lpmKeySize]byte]uint32{}
			}
			c.vals[e.lpm[i]] = v
		}
	}
	return c
}

func entryDiffLists(old, p *plan) (addL, delL [][lpmKeySize]byte, addN, delN [][npKeySize]byte) {
	if old == nil {
		old = &plan{raw: true}
	}
	if old.raw {
		ol, on := old.flat()
		pl, pn := p.flat()
		for k := range pl {
			if _, ok := ol[k]; !ok {
				addL = append(addL, k)
			}
		}
		for k := range ol {
			if _, ok := pl[k]; !ok {
				delL = append(delL, k)
			}
		}
		for k := range pn {
			if _, ok := on[k]; !ok {
				addN = append(addN, k)
			}
		}
		for k := range on {
			if _, ok := pn[k]; !ok {
				delN = append(delN, k)
			}
		}
		return
	}
	empty := &setEntries{}
	for name, e := range p.sets {
		oe := old.sets[name]
		if oe == e {
			continue
		}
		if oe != nil && e.delta != nil && e.delta.from == oe {
			addL, delL = append(addL, e.delta.add...), append(delL, e.delta.del...)
			continue
		}
		if oe == nil {
			oe = empty
		}
		al, dl := diffKeys(oe.keys(), e.keys())
		an, dn := diffKeys(oe.np, e.np)
		addL, delL, addN, delN = append(addL, al...), append(delL, dl...), append(addN, an...), append(delN, dn...)
	}
	for name, oe := range old.sets {
		if _, ok := p.sets[name]; !ok {
			delL, delN = append(delL, oe.keys()...), append(delN, oe.np...)
		}
	}
	return
}

func diffKeys[K comparable](old, cur []K) (add, del []K) {
	in := make(map[K]bool, len(old))
	for _, k := range old {
		in[k] = true
	}
	now := make(map[K]bool, len(cur))
	for _, k := range cur {
		now[k] = true
		if !in[k] {
			add = append(add, k)
		}
	}
	for _, k := range old {
		if !now[k] {
			del = append(del, k)
		}
	}
	return add, del
}

// add writes the entries to add.
func (c *changes) add(o *objects) (int, error) {
	var vals []uint32
	if c.vals != nil {
		vals = make([]uint32, len(c.addL))
		for i, k := range c.addL {
			vals[i] = 1
			if v, ok := c.vals[k]; ok {
				vals[i] = v
			}
		}
	}
	if err := putVals(o.maps[refSets], c.addL, vals); err != nil {
		return 0, err
	}
	if err := putAll(o.maps[refPorts], c.addN, 1); err != nil {
		return 0, err
	}
	return len(c.addL) + len(c.addN), nil
}

// del removes the entries to delete.
func (c *changes) del(o *objects) (int, error) {
	for _, k := range c.delL {
		if err := o.maps[refSets].Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, fmt.Errorf("ebpf: sets: delete: %w", err)
		}
	}
	for _, k := range c.delN {
		if err := o.maps[refPorts].Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, fmt.Errorf("ebpf: ports: delete: %w", err)
		}
	}
	return len(c.delL) + len(c.delN), nil
}

// putAll writes keys with value v, in batches where the kernel allows.
func putAll[K any](m *ebpf.Map, keys []K, v uint32) error {
	vals := make([]uint32, len(keys))
	for i := range vals {
		vals[i] = v
	}
	return putVals(m, keys, vals)
}

// putVals writes keys with their values (nil: 1 each).
func putVals[K any](m *ebpf.Map, keys []K, vals []uint32) error {
	if vals == nil {
		return putAll(m, keys, 1)
	}
	const batch = 4096
	for len(keys) > 0 {
		n := min(len(keys), batch)
		if _, err := m.BatchUpdate(keys[:n], vals[:n], nil); err != nil {
			// Fall back to one update per key.
			for i, k := range keys[:n] {
				if err := m.Put(k, vals[i]); err != nil {
					return fmt.Errorf("ebpf: %s: put: %w", m, err)
				}
			}
		}
		keys, vals = keys[n:], vals[n:]
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

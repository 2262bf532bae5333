//go:build linux

package nftables

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
)

func (s *nset) sameType(o *nset) bool {
	return s.interval == o.interval && s.isMap == o.isMap && s.concat == o.concat &&
		s.keyType.GetNFTMagic() == o.keyType.GetNFTMagic() && s.keyType.Bytes == o.keyType.Bytes
}

func elemSig(e *nftables.SetElement) string {
	var b strings.Builder
	b.WriteString(hex.EncodeToString(e.Key))
	if len(e.KeyEnd) > 0 {
		b.WriteString("-" + hex.EncodeToString(e.KeyEnd))
	}
	if e.IntervalEnd {
		b.WriteString("/end")
	}
	if e.VerdictData != nil {
		fmt.Fprintf(&b, ">%d:%s", e.VerdictData.Kind, e.VerdictData.Chain)
	}
	return b.String()
}

func elemSigs(els []nftables.SetElement) []string {
	out := make([]string, len(els))
	for i := range els {
		out[i] = elemSig(&els[i])
	}
	slices.Sort(out)
	return out
}

// sameElements compares raw kernel elements, in any order.
func (s *nset) sameElements(o *nset) bool {
	return slices.Equal(elemSigs(s.elems), elemSigs(o.elems))
}

// diffGroups returns the logical elements to add and to delete to turn
// cur's members into want's.
func diffGroups(cur, want *nset) (added, removed [][]nftables.SetElement) {
	have := make(map[string]bool, len(cur.keys))
	for _, k := range cur.keys {
		have[k] = true
	}
	wanted := make(map[string]bool, len(want.keys))
	for i, k := range want.keys {
		wanted[k] = true
		if !have[k] {
			added = append(added, want.groups[i])
		}
	}
	for i, k := range cur.keys {
		if !wanted[k] {
			removed = append(removed, cur.groups[i])
		}
	}
	return added, removed
}

func sameBase(cur, want *nchain) bool {
	if (cur.base == nil) != (want.base == nil) {
		return false
	}
	if cur.base == nil {
		return true
	}
	return cur.base.num == want.base.num && cur.base.prio == want.base.prio && cur.baseOK
}

func sameRules(cur, want *nchain) bool {
	if len(cur.rules) != len(want.rules) {
		return false
	}
	for i := range cur.rules {
		if cur.rules[i] != want.rules[i] && cur.rules[i].signature() != want.rules[i].signature() {
			return false
		}
	}
	return true
}

// Package irmerge merges the rules of a run of one action before a
// dataplane renders them, for the kernel dataplanes that write a tier's
// small policies into one chain (nftables, iptables).
//
// Within a run of rules with the same terminal action (Allow, Deny, Pass)
// the order of the rules does not matter: the first that matches decides
// the same way as any other. So rules equal but for their destination
// ports are one rule on the union of the ports, and rules equal but for
// the one literal set of nets they read on a side are one rule on the
// union of the nets. A tier of 10,000 two-rule policies renders as a few
// hundred rules. The verdicts are the model's; each backend's property and
// conformance tests check it.
package irmerge

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/calyxnet/calyx/compile"
)

// Rule is one rule of a tier, or several merged into one.
type Rule struct {
	// Policy and Index say where the (first merged) rule comes from.
	Policy *compile.Policy
	Index  int
	// Rule is the policy's rule, or a merged copy.
	Rule *compile.Rule
	// N counts the IR rules merged into this one.
	N int
}

// skip names the part of a match a merge key leaves out.
type skip uint8

const (
	skipDstPorts skip = iota + 1
	skipSrcSets
	skipDstSets
)

// matchKey writes everything m checks but the skipped part.
func matchKey(b *strings.Builder, m *compile.Match, sk skip) {
	b.WriteByte(m.Protocol)
	b.WriteByte(m.NotProtocol)
	b.WriteByte(m.IPVersion)
	for _, ic := range []*compile.ICMPMatch{m.ICMP, m.NotICMP} {
		switch {
		case ic == nil:
			b.WriteByte('-')
		case ic.Code == nil:
			b.WriteByte('t')
			b.WriteByte(ic.Type)
		default:
			b.WriteByte('c')
			b.WriteByte(ic.Type)
			b.WriteByte(*ic.Code)
		}
	}
	ids := func(l []compile.SetID) {
		for _, id := range l {
			b.WriteString(string(id))
			b.WriteByte(0)
		}
		b.WriteByte(1)
	}
	ports := func(l []compile.PortRange) {
		for _, p := range l {
			b.WriteString(strconv.Itoa(int(p.Min)))
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(p.Max)))
			b.WriteByte(',')
		}
		b.WriteByte(1)
	}
	for _, side := range []struct {
		pm          *compile.PeerMatch
		sets, ports bool
	}{{&m.Src, sk != skipSrcSets, true}, {&m.Dst, sk != skipDstSets, sk != skipDstPorts}} {
		if side.sets {
			ids(side.pm.Sets)
		} else {
			b.WriteByte('*')
		}
		ids(side.pm.NotSets)
		if side.ports {
			ports(side.pm.Ports)
		} else {
			b.WriteByte('*')
		}
		ids(side.pm.NamedPorts)
		ports(side.pm.NotPorts)
		ids(side.pm.NotNamedPorts)
		b.WriteByte(2)
	}
}

// group groups a run's rules by key (rules for which key returns false
// stay alone), in order of first appearance, and reports whether any group
// holds more than one rule.
func group(seg []Rule, key func(int, *strings.Builder) bool) ([][]int, bool) {
	var groups [][]int
	at := map[string]int{}
	merged := false
	var b strings.Builder
	for i := range seg {
		b.Reset()
		if !key(i, &b) {
			groups = append(groups, []int{i})
			continue
		}
		k := b.String()
		if g, ok := at[k]; ok {
			groups[g] = append(groups[g], i)
			merged = true
			continue
		}
		at[k] = len(groups)
		groups = append(groups, []int{i})
	}
	return groups, merged
}

// Ports merges the rules of a run of one action that are equal but for
// their destination ports. union joins the ports of a merged rule (nil
// keeps them as they come, in rule order).
func Ports(seg []Rule, union func([]compile.PortRange) []compile.PortRange) []Rule {
	groups, merged := group(seg, func(i int, b *strings.Builder) bool {
		m := &seg[i].Rule.Match
		if len(m.Dst.Ports) == 0 {
			return false
		}
		matchKey(b, m, skipDstPorts)
		return true
	})
	if !merged {
		return seg
	}
	out := make([]Rule, 0, len(groups))
	for _, g := range groups {
		first := seg[g[0]]
		if len(g) == 1 {
			out = append(out, first)
			continue
		}
		var ports []compile.PortRange
		n := 0
		for _, i := range g {
			ports = append(ports, seg[i].Rule.Match.Dst.Ports...)
			n += max(seg[i].N, 1)
		}
		if union != nil {
			ports = union(ports)
		}
		ru := *first.Rule
		ru.Match.Dst.Ports = ports
		first.Rule, first.N = &ru, n
		out = append(out, first)
	}
	return out
}

// Sets are the sets a render reads: the Ruleset's, and the unions of nets
// that merging made for this render (Extra, created on first use).
type Sets struct {
	RS    *compile.Ruleset
	Extra map[compile.SetID]*compile.IPSet
}

// Set returns the set id names: one of the Ruleset's, or one made by this
// render.
func (s *Sets) Set(id compile.SetID) *compile.IPSet {
	if x, ok := s.Extra[id]; ok {
		return x
	}
	return s.RS.Sets[id]
}

// LiteralNets returns the literal set of nets a side reads, if it reads
// exactly one set and that set is one.
func (s *Sets) LiteralNets(pm *compile.PeerMatch) (*compile.IPSet, bool) {
	if len(pm.Sets) != 1 {
		return nil, false
	}
	x := s.Set(pm.Sets[0])
	if x == nil || !x.Literal || x.Kind != compile.SetNets {
		return nil, false
	}
	return x, true
}

// Nets merges the rules of a run of one action that are equal but for the
// one literal set of nets they read on a side (the source if it
// qualifies, else the destination) into one rule on a set of the union.
func (s *Sets) Nets(seg []Rule) []Rule {
	side := make([]skip, len(seg))
	groups, merged := group(seg, func(i int, b *strings.Builder) bool {
		m := &seg[i].Rule.Match
		if _, ok := s.LiteralNets(&m.Src); ok {
			side[i] = skipSrcSets
		} else if _, ok := s.LiteralNets(&m.Dst); ok {
			side[i] = skipDstSets
		} else {
			return false
		}
		b.WriteByte(byte(side[i]))
		matchKey(b, m, side[i])
		return true
	})
	if !merged {
		return seg
	}
	out := make([]Rule, 0, len(groups))
	for _, g := range groups {
		first := seg[g[0]]
		if len(g) == 1 {
			out = append(out, first)
			continue
		}
		var nets []netip.Prefix
		n := 0
		for _, i := range g {
			pm := &seg[i].Rule.Match.Src
			if side[i] == skipDstSets {
				pm = &seg[i].Rule.Match.Dst
			}
			x, _ := s.LiteralNets(pm)
			nets = append(nets, x.Nets...)
			n += max(seg[i].N, 1)
		}
		id := s.merged(nets)
		ru := *first.Rule
		pm := &ru.Match.Src
		if side[g[0]] == skipDstSets {
			pm = &ru.Match.Dst
		}
		pm.Sets = []compile.SetID{id}
		first.Rule, first.N = &ru, n
		out = append(out, first)
	}
	return out
}

// merged adds a literal set of nets made for this render (the union of
// merged rules' sets), named by its content, and returns its ID.
func (s *Sets) merged(nets []netip.Prefix) compile.SetID {
	nets = slices.Clone(nets)
	slices.SortFunc(nets, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	nets = slices.Compact(nets)
	h := sha256.New()
	for _, n := range nets {
		h.Write([]byte(n.String()))
		h.Write([]byte{0})
	}
	id := compile.SetID("merged:" + hex.EncodeToString(h.Sum(nil)[:6]))
	if s.Extra == nil {
		s.Extra = map[compile.SetID]*compile.IPSet{}
	}
	s.Extra[id] = &compile.IPSet{ID: id, Kind: compile.SetNets, Literal: true, Nets: nets}
	return id
}

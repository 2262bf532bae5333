//go:build linux

package nftables

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"

	"github.com/calyxnet/calyx/compile"
)

// Merging the rules of a tier's small policies before rendering them.
//
// mergeRules unions rendered rules; doing the same on the IR first means a
// tier of 900 two-rule policies renders a hundred rules instead of 2,700
// (then unions those). The reasoning is mergeRules': within a run of
// rules with the same terminal action (Allow, Deny, Pass), order does not
// matter, so rules equal but for their destination ports are one rule with
// the union of the ports, and rules equal but for one literal set of nets
// on one side are one rule with the union of the nets.

// irInlineRules is the most rules a tier policy may have for its rules to
// be merged with its neighbours' and written into the tier chain. Larger
// policies get chains of their own (policyPiecesFor), shared by every
// tier chain that uses them.
const irInlineRules = 8

// irRule is one rule of a tier, or several merged into one.
type irRule struct {
	pol *compile.Policy
	idx int
	// rule is the policy's, or a merged copy.
	rule *compile.Rule
	// n counts the IR rules merged into this one.
	n int
}

// renderIRRun renders the rules of consecutive small policies of a tier.
func (r *renderer) renderIRRun(run []irRule) []*nrule {
	var out []*nrule
	for i := 0; i < len(run); {
		a := run[i].rule.Action
		j := i + 1
		if a != compile.ActionLog {
			for j < len(run) && run[j].rule.Action == a {
				j++
			}
		}
		seg := run[i:j]
		if len(seg) > 1 {
			seg = r.mergeIRNets(mergeIRPorts(seg))
		}
		for k := range seg {
			out = append(out, r.renderIR(&seg[k])...)
		}
		i = j
	}
	return out
}

// renderIR renders one (possibly merged) rule.
func (r *renderer) renderIR(ir *irRule) []*nrule {
	ru := ir.rule
	if ir.n <= 1 {
		if ru.Action == compile.ActionPass {
			return r.renderRule(ir.pol, ir.idx, ru, &expr.Verdict{Kind: expr.VerdictReturn}, "return")
		}
		return r.renderAction(ir.pol, ir.idx, ru)
	}
	comment := mergedComment(ruleComment(ir.pol, ir.idx, ru), ir.n)
	v, vtext := &expr.Verdict{Kind: expr.VerdictAccept}, "accept"
	switch ru.Action {
	case compile.ActionDeny:
		v, vtext = &expr.Verdict{Kind: expr.VerdictDrop}, "drop"
	case compile.ActionPass:
		v, vtext = &expr.Verdict{Kind: expr.VerdictReturn}, "return"
	}
	alts := r.alternatives(&ru.Match)
	out := make([]*nrule, 0, len(alts))
	for _, terms := range alts {
		out = append(out, newRule(terms, vtext, v, comment))
	}
	return out
}

// irSkip names the part of a match a merge key leaves out.
type irSkip uint8

const (
	skipDstPorts irSkip = iota + 1
	skipSrcSets
	skipDstSets
)

// matchKey writes everything m checks but the skipped part.
func matchKey(b *strings.Builder, m *compile.Match, skip irSkip) {
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
		pm    *compile.PeerMatch
		sets  bool
		ports bool
	}{{&m.Src, skip != skipSrcSets, true}, {&m.Dst, skip != skipDstSets, skip != skipDstPorts}} {
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

// groupIR groups the rules of a segment by key (rules for which key
// returns false stay alone), in order of first appearance, and returns
// whether any group holds more than one rule.
func groupIR(seg []irRule, key func(int, *strings.Builder) bool) ([][]int, bool) {
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

// mergeIRPorts merges rules equal but for their destination ports.
func mergeIRPorts(seg []irRule) []irRule {
	groups, merged := groupIR(seg, func(i int, b *strings.Builder) bool {
		m := &seg[i].rule.Match
		if len(m.Dst.Ports) == 0 {
			return false
		}
		matchKey(b, m, skipDstPorts)
		return true
	})
	if !merged {
		return seg
	}
	out := make([]irRule, 0, len(groups))
	for _, g := range groups {
		first := seg[g[0]]
		if len(g) == 1 {
			out = append(out, first)
			continue
		}
		var ports []compile.PortRange
		n := 0
		for _, i := range g {
			ports = append(ports, seg[i].rule.Match.Dst.Ports...)
			n += max(seg[i].n, 1)
		}
		ru := *first.rule
		ru.Match.Dst.Ports = mergePorts(ports)
		first.rule, first.n = &ru, n
		out = append(out, first)
	}
	return out
}

// literalNets returns the literal set a side of m reads, if it reads
// exactly one and nothing else restricts its address.
func (r *renderer) literalNets(pm *compile.PeerMatch) (*compile.IPSet, bool) {
	if len(pm.Sets) != 1 {
		return nil, false
	}
	s := r.setOf(pm.Sets[0])
	if s == nil || !s.Literal || s.Kind != compile.SetNets {
		return nil, false
	}
	return s, true
}

// mergeIRNets merges rules equal but for the one literal set of nets they
// read on one side (the source if it qualifies, else the destination).
func (r *renderer) mergeIRNets(seg []irRule) []irRule {
	side := make([]irSkip, len(seg))
	groups, merged := groupIR(seg, func(i int, b *strings.Builder) bool {
		m := &seg[i].rule.Match
		if _, ok := r.literalNets(&m.Src); ok {
			side[i] = skipSrcSets
		} else if _, ok := r.literalNets(&m.Dst); ok {
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
	out := make([]irRule, 0, len(groups))
	for _, g := range groups {
		first := seg[g[0]]
		if len(g) == 1 {
			out = append(out, first)
			continue
		}
		var nets []netip.Prefix
		n := 0
		for _, i := range g {
			pm := &seg[i].rule.Match.Src
			if side[i] == skipDstSets {
				pm = &seg[i].rule.Match.Dst
			}
			s, _ := r.literalNets(pm)
			nets = append(nets, s.Nets...)
			n += max(seg[i].n, 1)
		}
		id := r.mergedSet(nets)
		ru := *first.rule
		pm := &ru.Match.Src
		if side[g[0]] == skipDstSets {
			pm = &ru.Match.Dst
		}
		pm.Sets = []compile.SetID{id}
		first.rule, first.n = &ru, n
		out = append(out, first)
	}
	return out
}

// mergedSet returns a literal set of nets made for this render (the union
// of merged rules' sets), named by its content.
func (r *renderer) mergedSet(nets []netip.Prefix) compile.SetID {
	nets = slices.Clone(nets)
	slices.SortFunc(nets, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	nets = slices.Compact(nets)
	texts := make([]string, len(nets))
	for i, n := range nets {
		texts[i] = n.String()
	}
	id := compile.SetID("merged:" + shortHash(texts...))
	if r.extra == nil {
		r.extra = map[compile.SetID]*compile.IPSet{}
	}
	r.extra[id] = &compile.IPSet{ID: id, Kind: compile.SetNets, Literal: true, Nets: nets}
	return id
}

// setOf returns the set id names: one of the Ruleset's, or one made by
// this render.
func (r *renderer) setOf(id compile.SetID) *compile.IPSet {
	if s, ok := r.extra[id]; ok {
		return s
	}
	return r.rs.Sets[id]
}

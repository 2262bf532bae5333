package iptables

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/calyxnet/calyx/compile"
)

// Small policies written into their tier chain, merged.
//
// A tier is one ordered list of rules: which policy a rule came from
// changes nothing but the order. The rules of small policies are written
// straight into the tier chain (renderRules keeps the mark logic of a
// policy chain: a run of Allow, or of Pass, rules returns once decided
// before a rule of another action), which spares a chain and a jump per
// policy: a node of 10,000 policies holds a few dozen chains, not 10,000.
// Within a run of one action the order of rules does not matter either,
// so rules equal but for their destination ports become one rule on the
// union of the ports (multiport chunks), and rules equal but for the one
// literal set of nets they read on a side become one rule on the union
// (an ipset named by its members).

// inlineRules is the most rules a policy may have to be written into its
// tier chains; larger ones keep a chain of their own.
const inlineRules = 8

// irRule is one rule of a tier, or several merged into one.
type irRule struct {
	pol *compile.Policy
	idx int
	// rule is the policy's, or a merged copy.
	rule *compile.Rule
	// n counts the rules merged into this one.
	n int
}

// renderRules writes rules as a policy chain would (see renderPolicy)
// and reports whether the last run leaves a decision that the caller must
// return on before anything else.
func (r *renderer) renderRules(rules []irRule) (bodies []string, pending bool) {
	var last compile.Action
	for i := 0; i < len(rules); {
		a := rules[i].rule.Action
		j := i + 1
		if a != compile.ActionLog {
			for j < len(rules) && rules[j].rule.Action == a {
				j++
			}
		}
		seg := rules[i:j]
		if len(seg) > 1 {
			seg = r.mergeIRNets(mergeIRPorts(seg))
		}
		var out []string
		for k := range seg {
			out = append(out, r.rule(seg[k].pol, seg[k].idx, seg[k].rule)...)
		}
		if len(out) > 0 {
			if last != 0 && a != last {
				bodies = append(bodies, ifDecided+" -j RETURN")
				last = 0
			}
			bodies = append(bodies, out...)
			if a == compile.ActionAllow || a == compile.ActionPass {
				last = a
			}
		}
		i = j
	}
	return bodies, last != 0
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
		pm          *compile.PeerMatch
		sets, ports bool
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

// groupIR groups a run's rules by key (rules for which key returns false
// stay alone), in order of first appearance, and reports whether any
// group holds more than one rule.
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
		ru.Match.Dst.Ports = ports // portChunks sorts and joins them
		first.rule, first.n = &ru, n
		out = append(out, first)
	}
	return out
}

// literalSet returns the literal set of nets a side reads, if it reads
// exactly one set and it is one.
func (r *renderer) literalSet(pm *compile.PeerMatch) (*compile.IPSet, bool) {
	if len(pm.Sets) != 1 {
		return nil, false
	}
	s := r.setOf(pm.Sets[0])
	if s == nil || !s.Literal || s.Kind != compile.SetNets {
		return nil, false
	}
	return s, true
}

// mergeIRNets merges rules equal but for the one literal set of nets
// they read on a side (the source if it qualifies, else the destination).
func (r *renderer) mergeIRNets(seg []irRule) []irRule {
	side := make([]irSkip, len(seg))
	groups, merged := groupIR(seg, func(i int, b *strings.Builder) bool {
		m := &seg[i].rule.Match
		if _, ok := r.literalSet(&m.Src); ok {
			side[i] = skipSrcSets
		} else if _, ok := r.literalSet(&m.Dst); ok {
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
			s, _ := r.literalSet(pm)
			nets = append(nets, s.Nets...)
			n += max(seg[i].n, 1)
		}
		ru := *first.rule
		pm := &ru.Match.Src
		if side[g[0]] == skipDstSets {
			pm = &ru.Match.Dst
		}
		pm.Sets = []compile.SetID{r.mergedSet(nets)}
		first.rule, first.n = &ru, n
		out = append(out, first)
	}
	return out
}

// mergedSet returns a literal set of nets made for this render (the
// union of merged rules' sets), named by its content.
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

// mergedIPSet adds the ipset of a merged set's nets in this family (named
// by its members, so a cached tier chain brings it along) and returns its
// name.
func (r *renderer) mergedIPSet(s *compile.IPSet) string {
	is := &ipset{typ: "hash:net", family: "inet"}
	if r.v == 6 {
		is.family = "inet6"
	}
	nets, _ := r.literalNets(s.ID)
	for _, p := range nets {
		is.members = append(is.members, netMembers(p)...)
	}
	slices.Sort(is.members)
	is.members = slices.Compact(is.members)
	is.name = r.n.prefix + strconv.Itoa(int(r.v)) + "-" + shortHash(append([]string{"merged"}, is.members...)...)
	r.fp.sets[is.name] = is
	return is.name
}

//go:build linux

package nftables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/calyxnet/calyx/compile"
)

// Merging rules of one chain into set lookups.
//
// Consecutive rules that all end in the same terminal verdict (accept,
// drop or return) can be evaluated in any order: a packet matching any of
// them gets that verdict, one matching none falls through. Within such a
// run, rules that differ only in the ports, or only in the addresses, of
// one term are one rule matching the union of those values. A tier chain
// of 900 small Kubernetes policies then holds a hundred rules, not
// thousands: fewer kernel objects to create, and — what matters most for
// a new pod — fewer rules for the kernel to walk when it validates the
// table after a change to a verdict map or chain.

// dimKind says which value of a term can be unioned with other rules'.
type dimKind uint8

const (
	// dimPorts: a port (source or destination) in ranges.
	dimPorts dimKind = iota + 1
	// dimNets: an address (source or destination) in intervals.
	dimNets
)

// mergeDim describes a term that tests one value against a set of
// alternatives, so that two terms of the same dimension can be unioned.
type mergeDim struct {
	kind  dimKind
	side  string
	fam   uint8
	ports []compile.PortRange
	nets  []interval
}

// terminalKind returns the verdict of a rule that ends evaluation of the
// chain whatever follows, and whether it is one.
func terminalKind(ru *nrule) (expr.VerdictKind, bool) {
	v, ok := ru.verdict.(*expr.Verdict)
	if !ok {
		return 0, false
	}
	switch v.Kind {
	case expr.VerdictAccept, expr.VerdictDrop, expr.VerdictReturn:
		return v.Kind, true
	}
	return 0, false
}

// mergeRules returns rules with every run of same-verdict rules merged
// along ports, then along addresses. It never changes which verdict a
// packet gets; rules it cannot merge are returned as they are (the same
// pointers, so caches keyed by them keep working).
func mergeRules(rules []*nrule) []*nrule {
	var out []*nrule
	changed := false
	for i := 0; i < len(rules); {
		k, ok := terminalKind(rules[i])
		j := i + 1
		for ok && j < len(rules) {
			if k2, ok2 := terminalKind(rules[j]); !ok2 || k2 != k {
				break
			}
			j++
		}
		run := rules[i:j]
		if len(run) > 1 {
			m := mergePass(mergePass(run, dimPorts), dimNets)
			if len(m) != len(run) {
				changed = true
			}
			run = m
		}
		out = append(out, run...)
		i = j
	}
	if !changed {
		return rules
	}
	return out
}

// mergeCandidate returns the index of the first term of ru that can be
// merged along kind, or -1.
func mergeCandidate(ru *nrule, kind dimKind) int {
	for i := range ru.terms {
		if d := ru.terms[i].dim; d != nil && d.kind == kind {
			return i
		}
	}
	return -1
}

// mergeKey identifies what rules must share to be merged along their term
// idx: every other term, in order, and the verdict.
func mergeKey(ru *nrule, idx int) string {
	var b strings.Builder
	d := ru.terms[idx].dim
	b.WriteString(strconv.Itoa(idx))
	b.WriteByte('|')
	b.WriteString(d.side)
	b.WriteByte(byte('0' + d.fam))
	for i := range ru.terms {
		if i == idx {
			b.WriteString("\x00*")
			continue
		}
		b.WriteByte(0)
		b.WriteString(ru.terms[i].text)
	}
	b.WriteByte(0)
	b.WriteString(ru.vtext)
	return b.String()
}

type mergeGroup struct {
	idx     int
	members []*nrule
}

// mergePass merges the rules of one run (same terminal verdict) that
// differ only in their term of dimension kind.
func mergePass(run []*nrule, kind dimKind) []*nrule {
	groups := map[string]*mergeGroup{}
	order := make([]*mergeGroup, 0, len(run))
	merging := false
	for _, ru := range run {
		idx := mergeCandidate(ru, kind)
		if idx < 0 {
			order = append(order, &mergeGroup{idx: -1, members: []*nrule{ru}})
			continue
		}
		key := mergeKey(ru, idx)
		g := groups[key]
		if g == nil {
			g = &mergeGroup{idx: idx}
			groups[key] = g
			order = append(order, g)
		} else {
			merging = true
		}
		g.members = append(g.members, ru)
	}
	if !merging {
		return run
	}
	out := make([]*nrule, 0, len(order))
	for _, g := range order {
		if len(g.members) == 1 {
			out = append(out, g.members[0])
			continue
		}
		out = append(out, mergeGroupRules(g, kind)...)
	}
	return out
}

// mergeGroupRules builds the rules matching the union of a group's values,
// as few as the size of an anonymous set allows.
func mergeGroupRules(g *mergeGroup, kind dimKind) []*nrule {
	first := g.members[0]
	d := first.terms[g.idx].dim
	var merged []term
	switch kind {
	case dimPorts:
		var all []compile.PortRange
		for _, m := range g.members {
			all = append(all, m.terms[g.idx].dim.ports...)
		}
		merged = append(merged, portRangesTerm(d.side, mergePorts(all), false))
	case dimNets:
		var all []interval
		for _, m := range g.members {
			all = append(all, m.terms[g.idx].dim.nets...)
		}
		merged = append(merged, netsTerm(d.fam, d.side, mergeIvs(all)))
	}
	comment := mergedComment(first.comment, len(g.members))
	out := make([]*nrule, 0, len(merged))
	for _, t := range merged {
		terms := make([]term, len(first.terms))
		copy(terms, first.terms)
		terms[g.idx] = t
		out = append(out, newRule(terms, first.vtext, first.verdict, comment))
	}
	return out
}

// mergedComment names the first rule of a merged group and how many
// others it holds, within the 120 bytes a comment gets.
func mergedComment(first string, n int) string {
	suffix := " +" + strconv.Itoa(n-1) + " merged"
	if strings.HasSuffix(first, " merged") {
		// Merged twice (ports, then addresses): count rules once more.
		if i := strings.LastIndex(first, " +"); i >= 0 {
			first = first[:i]
		}
	}
	return truncate(first, 120-len(suffix)) + suffix
}

// mergeIvs sorts intervals and joins those that overlap or touch.
func mergeIvs(ivs []interval) []interval {
	pfx := make([]netip.Prefix, 0, len(ivs))
	var ranges []interval
	for _, iv := range ivs {
		if p, ok := prefixOf(iv); ok {
			pfx = append(pfx, p)
		} else {
			ranges = append(ranges, iv)
		}
	}
	if len(ranges) == 0 {
		return mergeIntervals(pfx)
	}
	return joinIntervals(append(prefixIntervals(pfx), ranges...))
}

// netsTerm matches an address against intervals: a prefix compare for a
// single prefix, an anonymous interval set otherwise.
func netsTerm(fam uint8, side string, ivs []interval) term {
	if len(ivs) == 1 {
		if p, ok := prefixOf(ivs[0]); ok && p.Bits() > 0 {
			return prefixTerms(fam, side, p, false)[0]
		}
	}
	pl, t := addrPayload(fam, side, reg1)
	as := &anonSet{keyType: nftables.TypeIPAddr, interval: true,
		elems: make([]nftables.SetElement, 0, 2*len(ivs)), texts: make([]string, 0, len(ivs)),
		groups: make([][]nftables.SetElement, 0, len(ivs))}
	if fam == 6 {
		as.keyType = nftables.TypeIP6Addr
	}
	w := 4
	if fam == 6 {
		w = 16
	}
	keys := make([]byte, 0, 2*w*len(ivs))
	for _, iv := range ivs {
		start := len(as.elems)
		keys = appendAddr(keys, iv.first)
		as.elems = append(as.elems, nftables.SetElement{Key: keys[len(keys)-w : len(keys) : len(keys)]})
		if next := iv.last.Next(); next.IsValid() {
			keys = appendAddr(keys, next)
			as.elems = append(as.elems, nftables.SetElement{Key: keys[len(keys)-w : len(keys) : len(keys)], IntervalEnd: true})
		}
		as.texts = append(as.texts, iv.text())
		as.groups = append(as.groups, as.elems[start:len(as.elems):len(as.elems)])
	}
	return term{exprs: []expr.Any{pl, &expr.Lookup{SourceRegister: reg1}},
		text: fmt.Sprintf("%s { %s }", t, strings.Join(as.texts, ", ")), anon: as,
		dim: &mergeDim{kind: dimNets, side: side, fam: fam, nets: ivs}}
}

// namedSets returns rules with every constant set they read turned into a
// named set called by its content, and those sets. The kernel finds a set
// by walking the table's list of sets, and an anonymous set's name by
// scanning them all: thousands of anonymous sets make a batch slow. Named
// ones are shared by the IPv4 and IPv6 rules of a match, by every rule
// and chain that reads the same values, and are filled in bounded chunks,
// so they may hold any number of elements.
func namedSets(rules []*nrule) ([]*nrule, []*nset) {
	var out []*nrule
	var sets []*nset
	seen := map[string]bool{}
	named := map[*anonSet]*nset{}
	for i, ru := range rules {
		if len(ru.anon) == 0 {
			if out != nil {
				out = append(out, ru)
			}
			continue
		}
		if out == nil {
			out = append(make([]*nrule, 0, len(rules)), rules[:i]...)
		}
		terms := make([]term, len(ru.terms))
		copy(terms, ru.terms)
		for k := range terms {
			as := terms[k].anon
			if as == nil {
				continue
			}
			ns, ok := named[as]
			if !ok {
				ns = as.named()
				named[as] = ns
			}
			if !seen[ns.name] {
				seen[ns.name] = true
				sets = append(sets, ns)
			}
			t := &terms[k]
			exprs := make([]expr.Any, len(t.exprs))
			copy(exprs, t.exprs)
			lk := *exprs[len(exprs)-1].(*expr.Lookup)
			lk.SetName, lk.SetID = ns.name, 0
			exprs[len(exprs)-1] = &lk
			t.exprs, t.anon = exprs, nil
			if b := strings.IndexByte(t.text, '{'); b >= 0 {
				t.text = t.text[:b] + "@" + ns.name
			}
		}
		out = append(out, newRule(terms, ru.vtext, ru.verdict, ru.comment))
	}
	if out == nil {
		return rules, nil
	}
	return out, sets
}

// named returns the named set holding as's elements, called by a hash of
// its type and elements.
func (as *anonSet) named() *nset {
	parts := make([]string, 0, len(as.texts)+1)
	parts = append(parts, fmt.Sprintf("%s/%d/%v/%v", as.keyType.Name, as.keyType.Bytes, as.interval, as.concat))
	parts = append(parts, as.texts...)
	ns := &nset{name: "c-" + shortHash(parts...), keyType: as.keyType, interval: as.interval, concat: as.concat}
	// No keys: a set named by its content never has elements to diff.
	ns.elemText = as.texts
	ns.groups = as.groups
	ns.elems = as.elems
	return ns
}

// appendAddr appends the address's bytes (4 for IPv4, 16 for IPv6).
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

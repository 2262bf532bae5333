package compile

import "slices"

// Option configures a Compiler.
type Option func(*Compiler)

// WithoutOptimization turns rule optimisation off: every rule of the
// source is compiled, even those that can never be reached. Tests use it to
// prove that optimisation never changes a verdict.
func WithoutOptimization() Option {
	return func(c *Compiler) { c.noOptimize = true }
}

// dropShadowed removes the rules that can never be reached: a rule is
// shadowed when an earlier rule of the same policy, whose action ends the
// evaluation of the policy (Allow, Deny or Pass), matches every packet the
// later rule matches. The analysis is conservative: it only drops what it
// can prove, comparing sets by ID (a set is never assumed to contain
// another) and ports by range.
func dropShadowed(rules []Rule) []Rule {
	out := rules[:0:0]
	var finals []*Match
	for i := range rules {
		r := &rules[i]
		shadowed := false
		for _, f := range finals {
			if f.Covers(&r.Match) {
				shadowed = true
				break
			}
		}
		if shadowed {
			continue
		}
		out = append(out, *r)
		if r.Action != ActionLog {
			finals = append(finals, &rules[i].Match)
		}
	}
	return out
}

// Covers reports whether m matches every packet o matches (a sound but
// incomplete test: false may mean "could not prove it").
func (m *Match) Covers(o *Match) bool {
	if m.Protocol != 0 && m.Protocol != o.Protocol {
		return false
	}
	if m.NotProtocol != 0 && m.NotProtocol != o.NotProtocol && (o.Protocol == 0 || o.Protocol == m.NotProtocol) {
		return false
	}
	if m.IPVersion != 0 && m.IPVersion != o.IPVersion {
		return false
	}
	if m.ICMP != nil && !icmpCovers(m.ICMP, o.ICMP) {
		return false
	}
	if m.NotICMP != nil && !o.NotICMP.equal(m.NotICMP) {
		return false
	}
	return m.Src.covers(&o.Src) && m.Dst.covers(&o.Dst)
}

// icmpCovers: m (type, optional code) matches every packet o matches.
func icmpCovers(m, o *ICMPMatch) bool {
	if o == nil || m.Type != o.Type {
		return false
	}
	return m.Code == nil || (o.Code != nil && *m.Code == *o.Code)
}

func (p *PeerMatch) covers(o *PeerMatch) bool {
	if !subset(p.Sets, o.Sets) || !subset(p.NotSets, o.NotSets) {
		return false
	}
	if len(p.Ports) > 0 || len(p.NamedPorts) > 0 {
		if len(o.Ports) == 0 && len(o.NamedPorts) == 0 {
			return false
		}
		for _, r := range o.Ports {
			if !rangeCovered(p.Ports, r) {
				return false
			}
		}
		if !subset(o.NamedPorts, p.NamedPorts) {
			return false
		}
	}
	if len(p.NotPorts) > 0 || len(p.NotNamedPorts) > 0 {
		// Every port p excludes must be excluded by o too.
		for _, r := range p.NotPorts {
			if !rangeCovered(o.NotPorts, r) {
				return false
			}
		}
		if !subset(p.NotNamedPorts, o.NotNamedPorts) {
			return false
		}
	}
	return true
}

// subset reports whether every element of a is in b.
func subset[T comparable](a, b []T) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// rangeCovered reports whether r lies inside one of the ranges (ranges from
// mergeRanges are disjoint and not adjacent, so one must hold it whole).
func rangeCovered(ranges []PortRange, r PortRange) bool {
	for _, x := range ranges {
		if x.Min <= r.Min && r.Max <= x.Max {
			return true
		}
	}
	return false
}

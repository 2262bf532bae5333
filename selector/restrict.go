package selector

import (
	"slices"
	"strings"
)

// restriction is what a selector requires of one label for it to match.
// present means the label must be there; values, when non-nil, lists the
// only values it may have (an empty non-nil list: the selector can never
// match). The analysis is sound but not complete: a selector matches a
// label set only if every restriction holds, but not the other way round.
// The Index relies on the soundness to skip selectors and items.
type restriction struct {
	present bool
	values  []string // sorted, unique; nil: any value
}

// restrictions derives, for the keys it can, what n requires of labels.
// Negations are only understood directly above has (which requires nothing
// the index can use), != and not in.
func restrictions(n *node) map[string]restriction {
	switch n.op {
	case opEq:
		return map[string]restriction{n.key: {present: true, values: []string{n.value}}}
	case opIn:
		return map[string]restriction{n.key: {present: true, values: append([]string{}, n.set...)}}
	case opHas, opContains, opStartsWith, opEndsWith:
		return map[string]restriction{n.key: {present: true}}
	case opNot:
		switch a := n.args[0]; a.op {
		case opNe: // !(k != v) is k == v
			return map[string]restriction{a.key: {present: true, values: []string{a.value}}}
		case opNotIn: // !(k not in S) is k in S
			return map[string]restriction{a.key: {present: true, values: append([]string{}, a.set...)}}
		}
		return nil
	case opAnd:
		out := map[string]restriction{}
		for _, a := range n.args {
			for k, r := range restrictions(a) {
				base := out[k]
				base.present = base.present || r.present
				switch {
				case base.values == nil:
					base.values = r.values
				case r.values != nil:
					base.values = intersectSorted(base.values, r.values)
				}
				out[k] = base
			}
		}
		return out
	case opOr:
		out := restrictions(n.args[0])
		for _, a := range n.args[1:] {
			other := restrictions(a)
			for k, r := range out {
				o, ok := other[k]
				if !ok || !o.present || !r.present {
					delete(out, k)
					continue
				}
				if r.values == nil || o.values == nil {
					r.values = nil
				} else {
					r.values = unionSorted(r.values, o.values)
				}
				out[k] = r
			}
		}
		return out
	}
	return nil
}

func intersectSorted(a, b []string) []string {
	out := []string{}
	for _, v := range a {
		if _, found := slices.BinarySearch(b, v); found {
			out = append(out, v)
		}
	}
	return out
}

func unionSorted(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// indexKind says how the Index files a selector.
type indexKind uint8

const (
	// indexNever: the selector cannot match any label set.
	indexNever indexKind = iota
	// indexByValue: the label key must have one of values.
	indexByValue
	// indexByKey: the label key must be present.
	indexByKey
	// indexAny: nothing usable is required; checked against every item.
	indexAny
)

// indexPlan is the requirement the Index files a selector under.
type indexPlan struct {
	kind   indexKind
	key    string
	values []string
}

// planIndex picks the requirement of n to file it under, with no other
// selector filed yet.
func planIndex(n *node) indexPlan {
	return choosePlan(n, func(string, string) int { return 0 }, func(string) int { return 0 })
}

// choosePlan picks the requirement of n to file it under. An item is
// checked against every selector filed under one of its labels, so the
// best requirement is the one whose buckets hold the fewest selectors
// already (byValue and byKey report the current sizes): a key restricted
// to values beats a key that must merely be present, which beats nothing.
// Ties go to fewer values, then to a key not inherited from a namespace,
// then to the smallest key, so the choice is deterministic.
func choosePlan(n *node, byValue func(k, v string) int, byKey func(k string) int) indexPlan {
	rs := restrictions(n)
	best := indexPlan{kind: indexAny}
	bestScore := 0
	better := func(p indexPlan, score int) bool {
		if p.kind != best.kind {
			return p.kind < best.kind
		}
		if score != bestScore {
			return score < bestScore
		}
		if len(p.values) != len(best.values) {
			return len(p.values) < len(best.values)
		}
		if inherited(p.key) != inherited(best.key) {
			return !inherited(p.key)
		}
		return p.key < best.key
	}
	for k, r := range rs {
		var p indexPlan
		score := 0
		switch {
		case r.values != nil && len(r.values) == 0:
			return indexPlan{kind: indexNever}
		case r.values != nil:
			p = indexPlan{kind: indexByValue, key: k, values: r.values}
			for _, v := range r.values {
				score += byValue(k, v)
			}
		case r.present:
			p = indexPlan{kind: indexByKey, key: k}
			score = byKey(k)
		default:
			continue
		}
		if better(p, score) {
			best, bestScore = p, score
		}
	}
	return best
}

// inherited reports whether key is one Calico gives every endpoint of a
// namespace (the namespace's own labels under "pcns.", and the namespace
// name): such a key is shared by many items, so filing a selector under it
// selects little.
func inherited(key string) bool {
	return strings.HasPrefix(key, "pcns.") || key == "projectcalico.org/namespace"
}

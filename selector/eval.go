package selector

import "strings"

// The syntax tree keeps what the canonical form needs (a != "x" and
// !a == "x" print differently); evaluation runs on a compiled form in
// which every leaf is one of a few positive tests plus a negation flag
// (Calico's != and "not in" are exactly the negations of == and in, missing
// labels included), and every group evaluates its leaves in a tight loop
// before recursing into nested groups.

// test is a positive leaf test. testAll (all() and global()) only exists
// while compiling: groups fold it away.
type test uint8

const (
	testAll test = iota
	testHas
	testEq
	testIn
	testContains
	testStartsWith
	testEndsWith
)

type leaf struct {
	key   string
	value string
	set   []string
	test  test
	neg   bool
}

// group is a compiled &&/|| group (a lone leaf is a group of one):
// its value is neg XOR (and ? all members hold : some member holds).
type group struct {
	and    bool
	neg    bool
	leaves []leaf
	groups []*group
}

// compile turns a syntax tree into its evaluation form.
func compile(n *node) *group {
	switch n.op {
	case opAnd, opOr:
		g := &group{and: n.op == opAnd}
		for _, a := range n.args {
			l, ok := compileLeaf(a)
			switch {
			case !ok:
				g.groups = append(g.groups, compile(a))
			case l.test != testAll:
				g.leaves = append(g.leaves, l)
			case l.neg == g.and:
				// !all() in an && group, all() in an || group: the
				// group's value is known.
				return &group{and: !l.neg}
			}
			// all() in an && group, !all() in an || group: no effect.
		}
		return g
	case opNot:
		if _, ok := compileLeaf(n.args[0]); !ok {
			g := compile(n.args[0])
			g.neg = !g.neg
			return g
		}
	}
	l, _ := compileLeaf(n)
	if l.test == testAll {
		// An empty && group is true, an empty || group false.
		return &group{and: !l.neg}
	}
	return &group{and: true, leaves: []leaf{l}}
}

// compileLeaf compiles n if it is a leaf or a negated leaf.
func compileLeaf(n *node) (leaf, bool) {
	neg := false
	if n.op == opNot {
		neg = true
		n = n.args[0]
	}
	l := leaf{key: n.key, value: n.value, set: n.set, neg: neg}
	switch n.op {
	case opAll, opGlobal:
		l.test = testAll
	case opHas:
		l.test = testHas
	case opEq:
		l.test = testEq
	case opNe:
		l.test, l.neg = testEq, !neg
	case opIn:
		l.test = testIn
	case opNotIn:
		l.test, l.neg = testIn, !neg
	case opContains:
		l.test = testContains
	case opStartsWith:
		l.test = testStartsWith
	case opEndsWith:
		l.test = testEndsWith
	default:
		return leaf{}, false
	}
	return l, true
}

// holds applies the positive test of l, other than has and ==, to the
// value of a present label.
func (l *leaf) holds(v string) bool {
	switch l.test {
	case testIn:
		return setContains(l.set, v)
	case testContains:
		return strings.Contains(v, l.value)
	case testStartsWith:
		return strings.HasPrefix(v, l.value)
	case testEndsWith:
		return strings.HasSuffix(v, l.value)
	}
	return false
}

// evalMap evaluates g on a plain map. It duplicates evalLabels so that the
// common case (a Set) pays for direct map lookups instead of an interface
// call per leaf.
func (g *group) evalMap(m map[string]string) bool {
	for i := range g.leaves {
		l := &g.leaves[i]
		v, ok := m[l.key]
		if ok {
			if l.test == testEq {
				ok = v == l.value
			} else if l.test != testHas {
				ok = l.holds(v)
			}
		}
		// A false member decides an && group, a true one an || group.
		if ok != l.neg != g.and {
			return g.and == g.neg
		}
	}
	if len(g.groups) == 0 {
		return g.and != g.neg
	}
	return g.evalGroupsMap(m)
}

// evalGroupsMap finishes evalMap with the nested groups; kept apart so that
// evalMap, the hot path, is not recursive.
func (g *group) evalGroupsMap(m map[string]string) bool {
	for _, sub := range g.groups {
		if sub.evalMap(m) != g.and {
			return g.and == g.neg
		}
	}
	return g.and != g.neg
}

// evalLabels evaluates g on any Labels implementation.
func (g *group) evalLabels(labels Labels) bool {
	for i := range g.leaves {
		l := &g.leaves[i]
		v, ok := labels.Get(l.key)
		if ok {
			if l.test == testEq {
				ok = v == l.value
			} else if l.test != testHas {
				ok = l.holds(v)
			}
		}
		if ok != l.neg != g.and {
			return g.and == g.neg
		}
	}
	for _, sub := range g.groups {
		if sub.evalLabels(labels) != g.and {
			return g.and == g.neg
		}
	}
	return g.and != g.neg
}

// firstKey returns the key of the first leaf Matches looks up, for the
// benchmark that measures the cost of that one lookup alone.
func (g *group) firstKey() string {
	for g != nil {
		if len(g.leaves) > 0 {
			return g.leaves[0].key
		}
		if len(g.groups) == 0 {
			break
		}
		g = g.groups[0]
	}
	return ""
}

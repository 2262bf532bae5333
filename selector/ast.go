package selector

import (
	"sort"
	"strings"
)

// op is the kind of a node of a parsed selector.
type op uint8

const (
	opAll op = iota
	opGlobal
	opHas
	opEq
	opNe
	opIn
	opNotIn
	opContains
	opStartsWith
	opEndsWith
	opNot
	opAnd
	opOr
)

// node is one node of a selector's syntax tree. Leaves use key and value
// (or set); opNot has exactly one arg, opAnd and opOr at least two, never
// one of their own kind (groups are flattened), and opNot never wraps
// another opNot (pairs cancel). Nodes are never mutated once built.
type node struct {
	op    op
	key   string
	value string
	set   []string // opIn, opNotIn: sorted by bytes, no duplicates
	args  []*node
}

// smallSet is the size up to which set membership is a linear scan; above
// it a binary search is cheaper.
const smallSet = 8

func setContains(set []string, v string) bool {
	if len(set) <= smallSet {
		for _, s := range set {
			if s == v {
				return true
			}
		}
		return false
	}
	i := sort.SearchStrings(set, v)
	return i < len(set) && set[i] == v
}

// leafOps maps the comparison operators to their canonical spelling.
var leafOps = [...]string{
	opEq:         " == ",
	opNe:         " != ",
	opIn:         " in ",
	opNotIn:      " not in ",
	opContains:   " contains ",
	opStartsWith: " starts with ",
	opEndsWith:   " ends with ",
}

// appendQuoted appends v in double quotes, or in single quotes when it
// contains a double quote (a parsed value never holds both).
func appendQuoted(b []byte, v string) []byte {
	q := byte('"')
	if strings.IndexByte(v, '"') >= 0 {
		q = '\''
	}
	b = append(b, q)
	b = append(b, v...)
	return append(b, q)
}

// appendCanonical appends the canonical form of n to b.
func appendCanonical(b []byte, n *node) []byte {
	switch n.op {
	case opAll:
		return append(b, "all()"...)
	case opGlobal:
		return append(b, "global()"...)
	case opHas:
		b = append(b, "has("...)
		b = append(b, n.key...)
		return append(b, ')')
	case opEq, opNe, opContains, opStartsWith, opEndsWith:
		b = append(b, n.key...)
		b = append(b, leafOps[n.op]...)
		return appendQuoted(b, n.value)
	case opIn, opNotIn:
		b = append(b, n.key...)
		b = append(b, leafOps[n.op]...)
		b = append(b, '{')
		for i, v := range n.set {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = appendQuoted(b, v)
		}
		return append(b, '}')
	case opNot:
		b = append(b, '!')
		return appendCanonical(b, n.args[0])
	case opAnd, opOr:
		sep := " && "
		if n.op == opOr {
			sep = " || "
		}
		b = append(b, '(')
		for i, a := range n.args {
			if i > 0 {
				b = append(b, sep...)
			}
			b = appendCanonical(b, a)
		}
		return append(b, ')')
	}
	return b
}

// canonical renders n. Short selectors are built in a stack buffer so the
// only allocation is the resulting string.
func canonical(n *node) string {
	var buf [128]byte
	return string(appendCanonical(buf[:0], n))
}

// negate returns the negation of n, cancelling a double negation.
func negate(n *node) *node {
	if n.op == opNot {
		return n.args[0]
	}
	return &node{op: opNot, args: []*node{n}}
}

// groupOf builds an opAnd or opOr node from operands, splicing in the
// operands of any operand of the same kind so groups stay flat.
func groupOf(kind op, operands []*node) *node {
	if len(operands) == 1 {
		return operands[0]
	}
	flat := 0
	for _, o := range operands {
		if o.op == kind {
			flat += len(o.args)
		} else {
			flat++
		}
	}
	args := make([]*node, 0, flat)
	for _, o := range operands {
		if o.op == kind {
			args = append(args, o.args...)
		} else {
			args = append(args, o)
		}
	}
	return &node{op: kind, args: args}
}

// withPrefix returns a copy of n with prefix in front of every label key.
func withPrefix(n *node, prefix string) *node {
	c := *n
	if c.key != "" {
		c.key = prefix + c.key
	}
	if len(n.args) > 0 {
		c.args = make([]*node, len(n.args))
		for i, a := range n.args {
			c.args[i] = withPrefix(a, prefix)
		}
	}
	return &c
}

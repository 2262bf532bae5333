package selector

import (
	"crypto/sha256"
	"encoding/base64"
	"sync"
)

// Labels is a set of labels a selector is evaluated against. Get reports
// the value of key and whether the label is present.
//
// Implementations that compute labels on the fly (an endpoint's own labels
// over its namespace's, say) should not allocate in Get: [Selector.Matches]
// then does not allocate either.
type Labels interface {
	Get(key string) (value string, ok bool)
}

// Set is the plain map implementation of [Labels].
type Set map[string]string

// Get returns the value of key and whether it is present.
func (s Set) Get(key string) (string, bool) {
	v, ok := s[key]
	return v, ok
}

// Selector is a parsed Calico selector. It is immutable and safe for
// concurrent use. A nil *Selector behaves as [All].
type Selector struct {
	root *node
	prog *group // evaluation form of root
	str  string // canonical form, computed once

	idOnce sync.Once
	id     string
}

func newSelector(root *node) *Selector {
	return &Selector{root: root, prog: compile(root), str: canonical(root)}
}

var (
	allNode = &node{op: opAll}
	allProg = &group{and: true}
)

// All returns the selector that matches every label set: all().
func All() *Selector {
	return &Selector{root: allNode, prog: allProg, str: "all()"}
}

// MustParse is like [Parse] but panics on a syntax error. It is meant for
// selectors that are constants of the program.
func MustParse(expr string) *Selector {
	s, err := Parse(expr)
	if err != nil {
		panic(err)
	}
	return s
}

// Matches reports whether the selector matches labels. A nil Labels is the
// empty label set. Matches does not allocate when labels is a [Set] or an
// implementation whose Get does not allocate.
func (s *Selector) Matches(labels Labels) bool {
	if s == nil {
		return true
	}
	switch l := labels.(type) {
	case Set:
		return s.prog.evalMap(l)
	case nil:
		return s.prog.evalMap(nil)
	default:
		return s.prog.evalLabels(l)
	}
}

// String returns the canonical form of the selector, Calico's: every leaf
// is printed as key OP "value" with single spaces (single quotes when the
// value holds a double quote), "not in", "starts with" and "ends with" in
// their two-word spelling, set members sorted by bytes without duplicates,
// every && and || group in parentheses with its operands in written order,
// and "!" directly before its operand. Parsing the canonical form gives the
// same canonical form back.
func (s *Selector) String() string {
	if s == nil {
		return "all()"
	}
	return s.str
}

// UniqueID returns a stable identifier derived only from the canonical
// form, with Calico's scheme (libcalico-go hash.MakeUniqueID with prefix
// "s"): "s:" followed by the unpadded URL-safe base64 encoding of the
// SHA-224 digest of "s:" + String(). Two selectors have the same ID exactly
// when they have the same canonical form. The ID is computed on first use
// and cached.
func (s *Selector) UniqueID() string {
	if s == nil {
		return uniqueID("all()")
	}
	s.idOnce.Do(func() { s.id = uniqueID(s.str) })
	return s.id
}

func uniqueID(canonical string) string {
	sum := sha256.Sum224([]byte("s:" + canonical))
	return "s:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// IsAll reports whether the selector is exactly all() (or nil), the
// selector And drops.
func (s *Selector) IsAll() bool {
	return s == nil || s.root.op == opAll
}

// Not returns the negation of the selector; the negation of a negation is
// the original expression.
func (s *Selector) Not() *Selector {
	if s == nil {
		s = All()
	}
	return newSelector(negate(s.root))
}

// And returns the conjunction of sels. Nil operands and all() operands are
// dropped; with no operand left the result is [All], with one it is that
// operand. Operands that are themselves conjunctions are spliced in, so
// And(Parse("a == 'x' && b == 'y'"), Parse("c == 'z'")) has the canonical
// form of Parse("a == 'x' && b == 'y' && c == 'z'").
func And(sels ...*Selector) *Selector {
	operands := make([]*node, 0, len(sels))
	var only *Selector
	for _, s := range sels {
		if s.IsAll() {
			continue
		}
		operands = append(operands, s.root)
		only = s
	}
	switch len(operands) {
	case 0:
		return All()
	case 1:
		return only
	}
	return newSelector(groupOf(opAnd, operands))
}

// WithKeyPrefix returns a copy of the selector with prefix in front of
// every label key it mentions; all() and global() are unchanged. This is
// how Calico evaluates a rule's namespaceSelector over an endpoint: the
// endpoint inherits its namespace's labels under the "pcns." prefix, and
// team == "x" becomes pcns.team == "x". The prefix should consist of label
// key characters (letters, digits, "_", ".", "/", "-"), otherwise the
// canonical form of the result does not parse.
func (s *Selector) WithKeyPrefix(prefix string) *Selector {
	if s == nil {
		s = All()
	}
	if prefix == "" {
		return s
	}
	return newSelector(withPrefix(s.root, prefix))
}

package selector

import (
	"fmt"
	"slices"
	"strings"
)

// ParseError is the error [Parse] returns for a selector it cannot parse.
type ParseError struct {
	// Input is the selector as given to Parse.
	Input string
	// Offset is the byte offset in Input where parsing failed.
	Offset int
	// Expected says what the parser expected at Offset, for example
	// "a quoted value".
	Expected string
}

// Error returns a message like
// `selector "app ==": offset 6: expected a quoted value`.
func (e *ParseError) Error() string {
	return fmt.Sprintf("selector %q: offset %d: expected %s", e.Input, e.Offset, e.Expected)
}

// maxDepth bounds the nesting of parentheses so that a hostile selector
// cannot exhaust the stack of the parser or of the evaluator.
const maxDepth = 512

// Parse parses a Calico selector expression.
//
// The grammar, in EBNF (terminals in quotes; ws is any run of spaces,
// tabs, carriage returns and newlines and may appear between any two
// tokens, but not inside a key, a keyword or "has("):
//
//	selector   = [ or-expr ] .                        (* empty or blank: all() *)
//	or-expr    = and-expr { "||" and-expr } .
//	and-expr   = unary { "&&" unary } .
//	unary      = { "!" } primary .                    (* "!" binds tightest *)
//	primary    = "(" or-expr ")"
//	           | "all(" ")" | "global(" ")"
//	           | "has(" key ")"
//	           | key compare value
//	           | key member set .
//	compare    = "==" | "!=" | "contains"
//	           | "starts" [ ws ] "with" | "ends" [ ws ] "with" .
//	member     = "in" | "not" [ ws ] "in" .
//	set        = "{" [ value { "," value } [ "," ] ] "}" .
//	value      = '"' { byte other than '"' } '"'
//	           | "'" { byte other than "'" } "'" .      (* no escapes *)
//	key        = keychar { keychar } .
//	keychar    = "a"…"z" | "A"…"Z" | "0"…"9" | "_" | "." | "/" | "-" .
//
// So "!" binds tighter than "&&", which binds tighter than "||"; "notin",
// "startswith" and "endswith" are accepted spellings; sets may be empty and
// may end with a comma. Keywords are matched as prefixes, as Calico's
// tokenizer does: "a in{'x'}" is valid. Parentheses nest at most 512
// deep.
//
// A syntax error is returned as a *[ParseError].
func Parse(expr string) (*Selector, error) {
	p := parser{in: expr}
	p.skipWS()
	if p.pos == len(p.in) {
		return All(), nil
	}
	n, err := p.orExpr(0)
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.in) {
		return nil, p.fail(`"&&", "||" or the end of the selector`)
	}
	return newSelector(n), nil
}

type parser struct {
	in  string
	pos int
}

func (p *parser) fail(expected string) error {
	return &ParseError{Input: p.in, Offset: p.pos, Expected: expected}
}

func (p *parser) skipWS() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// accept consumes tok if the input continues with it.
func (p *parser) accept(tok string) bool {
	if strings.HasPrefix(p.in[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

// orExpr and andExpr leave p.pos after the trailing whitespace of their
// last operand.
func (p *parser) orExpr(depth int) (*node, error) {
	first, err := p.andExpr(depth)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(p.in[p.pos:], "||") {
		return first, nil
	}
	operands := []*node{first}
	for p.accept("||") {
		n, err := p.andExpr(depth)
		if err != nil {
			return nil, err
		}
		operands = append(operands, n)
	}
	return groupOf(opOr, operands), nil
}

func (p *parser) andExpr(depth int) (*node, error) {
	first, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(p.in[p.pos:], "&&") {
		return first, nil
	}
	operands := []*node{first}
	for p.accept("&&") {
		n, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		operands = append(operands, n)
	}
	return groupOf(opAnd, operands), nil
}

func (p *parser) unary(depth int) (*node, error) {
	negated := false
	for {
		p.skipWS()
		if p.pos < len(p.in) && p.in[p.pos] == '!' && !strings.HasPrefix(p.in[p.pos:], "!=") {
			negated = !negated
			p.pos++
			continue
		}
		break
	}
	n, err := p.primary(depth)
	if err != nil {
		return nil, err
	}
	p.skipWS()
	if negated {
		n = negate(n)
	}
	return n, nil
}

func (p *parser) primary(depth int) (*node, error) {
	if p.pos == len(p.in) {
		return nil, p.fail(`a label key, "has(", "all()", "global()", "!" or "("`)
	}
	if p.in[p.pos] == '(' {
		if depth >= maxDepth {
			return nil, p.fail(fmt.Sprintf("at most %d nested parentheses", maxDepth))
		}
		p.pos++
		n, err := p.orExpr(depth + 1)
		if err != nil {
			return nil, err
		}
		if !p.accept(")") {
			return nil, p.fail(`"&&", "||" or ")"`)
		}
		return n, nil
	}
	switch {
	case p.accept("has("):
		p.skipWS()
		key := p.key()
		if key == "" {
			return nil, p.fail("a label key")
		}
		p.skipWS()
		if !p.accept(")") {
			return nil, p.fail(`")"`)
		}
		return &node{op: opHas, key: key}, nil
	case p.accept("all("):
		p.skipWS()
		if !p.accept(")") {
			return nil, p.fail(`")"`)
		}
		return allNode, nil
	case p.accept("global("):
		p.skipWS()
		if !p.accept(")") {
			return nil, p.fail(`")"`)
		}
		return &node{op: opGlobal}, nil
	}
	key := p.key()
	if key == "" {
		return nil, p.fail(`a label key, "has(", "all()", "global()", "!" or "("`)
	}
	p.skipWS()
	var kind op
	switch {
	case p.accept("=="):
		kind = opEq
	case p.accept("!="):
		kind = opNe
	case p.accept("contains"):
		kind = opContains
	case p.accept("starts"):
		p.skipWS()
		if !p.accept("with") {
			return nil, p.fail(`"with"`)
		}
		kind = opStartsWith
	case p.accept("ends"):
		p.skipWS()
		if !p.accept("with") {
			return nil, p.fail(`"with"`)
		}
		kind = opEndsWith
	case p.accept("not"):
		p.skipWS()
		if !p.accept("in") {
			return nil, p.fail(`"in"`)
		}
		kind = opNotIn
	case p.accept("in"):
		kind = opIn
	default:
		return nil, p.fail(`an operator (==, !=, in, not in, contains, starts with, ends with)`)
	}
	p.skipWS()
	if kind == opIn || kind == opNotIn {
		set, err := p.set()
		if err != nil {
			return nil, err
		}
		return &node{op: kind, key: key, set: set}, nil
	}
	v, err := p.value("a quoted value")
	if err != nil {
		return nil, err
	}
	return &node{op: kind, key: key, value: v}, nil
}

func (p *parser) key() string {
	start := p.pos
	for p.pos < len(p.in) && isKeyChar(p.in[p.pos]) {
		p.pos++
	}
	return p.in[start:p.pos]
}

func isKeyChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == '/' || c == '-'
}

// value parses a quoted string; expected names what a missing value is.
func (p *parser) value(expected string) (string, error) {
	if p.pos == len(p.in) || (p.in[p.pos] != '"' && p.in[p.pos] != '\'') {
		return "", p.fail(expected)
	}
	q := p.in[p.pos]
	end := strings.IndexByte(p.in[p.pos+1:], q)
	if end < 0 {
		p.pos = len(p.in)
		return "", p.fail(fmt.Sprintf("a closing %c", q))
	}
	v := p.in[p.pos+1 : p.pos+1+end]
	p.pos += end + 2
	return v, nil
}

// set parses a set literal and returns its members sorted and unique.
func (p *parser) set() ([]string, error) {
	if !p.accept("{") {
		return nil, p.fail(`"{"`)
	}
	var set []string
	for {
		p.skipWS()
		if p.accept("}") {
			break
		}
		v, err := p.value(`a quoted value or "}"`)
		if err != nil {
			return nil, err
		}
		set = append(set, v)
		p.skipWS()
		if p.accept(",") {
			continue
		}
		if p.accept("}") {
			break
		}
		return nil, p.fail(`"," or "}"`)
	}
	if len(set) > 1 {
		slices.Sort(set)
		set = slices.Compact(set)
	}
	return set, nil
}

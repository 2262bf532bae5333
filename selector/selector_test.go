package selector

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustParse(t *testing.T, expr string) *Selector {
	t.Helper()
	s, err := Parse(expr)
	require.NoError(t, err, "Parse(%q)", expr)
	return s
}

func TestParseCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "all()"},
		{"blank", " \t\r\n ", "all()"},
		{"all", "all()", "all()"},
		{"all with spaces", " all( ) ", "all()"},
		{"global", "global()", "global()"},
		{"global with spaces", "global(  )", "global()"},
		{"eq single quotes", "app == 'x'", `app == "x"`},
		{"eq no spaces", `app=="x"`, `app == "x"`},
		{"ne", `app!='x'`, `app != "x"`},
		{"value with double quote", `a == 'say "hi"'`, `a == 'say "hi"'`},
		{"value with single quote", `a == "it's"`, `a == "it's"`},
		{"empty value", `a == ""`, `a == ""`},
		{"value keeps spaces and symbols", `a == " x && y || ( "`, `a == " x && y || ( "`},
		{"calico key", `projectcalico.org/name == "ns1"`, `projectcalico.org/name == "ns1"`},
		{"key characters", `A-b_c.d/9 == "v"`, `A-b_c.d/9 == "v"`},
		{"key starting with digit and dash", `-9 == "v"`, `-9 == "v"`},
		{"key named like keywords", `has == "1" && all == "2" && in == "3"`, `(has == "1" && all == "2" && in == "3")`},
		{"in sorted dedup", `a in {"z", 'b', "z", "a"}`, `a in {"a", "b", "z"}`},
		{"in sorted by bytes", `a in {"b", "B", "a", "_"}`, `a in {"B", "_", "a", "b"}`},
		{"in trailing comma", `a in {"x",}`, `a in {"x"}`},
		{"in empty", `a in {}`, `a in {}`},
		{"in no space before brace", `a in{"x"}`, `a in {"x"}`},
		{"not in", `a not in {"x"}`, `a not in {"x"}`},
		{"notin", `a notin {"x"}`, `a not in {"x"}`},
		{"not  in", `a not   in {"x"}`, `a not in {"x"}`},
		{"not in empty", `a notin {}`, `a not in {}`},
		{"in set quoting", `a in {'"', "'"}`, `a in {'"', "'"}`},
		{"contains", `a contains 'x'`, `a contains "x"`},
		{"starts with", `a starts with 'x'`, `a starts with "x"`},
		{"startswith", `a startswith 'x'`, `a starts with "x"`},
		{"ends with", `a ends  with 'x'`, `a ends with "x"`},
		{"endswith", `a endswith'x'`, `a ends with "x"`},
		{"has", `has(a)`, `has(a)`},
		{"has spaces inside", `has( a )`, `has(a)`},
		{"not has", `!has(a)`, `!has(a)`},
		{"not has spaced", `! has(a)`, `!has(a)`},
		{"double not", `!!has(a)`, `has(a)`},
		{"triple not", `! !! has(a)`, `!has(a)`},
		{"not around parens cancels", `!(!a == "x")`, `a == "x"`},
		{"not not parens", `!!(a == "x" && b == "y")`, `(a == "x" && b == "y")`},
		{"not of group", `!(a == "x" && b == "y")`, `!(a == "x" && b == "y")`},
		{"redundant parens", `((a == "x"))`, `a == "x"`},
		{"paren all", ` (all() )`, `all()`},
		{"and chain", `a == "1" && b == "2" && c == "3"`, `(a == "1" && b == "2" && c == "3")`},
		{"or chain", `a == "1" || b == "2" || c == "3"`, `(a == "1" || b == "2" || c == "3")`},
		{"precedence", `a == "1" || b == "2" && c == "3"`, `(a == "1" || (b == "2" && c == "3"))`},
		{"precedence left", `a == "1" && b == "2" || c == "3"`, `((a == "1" && b == "2") || c == "3")`},
		{"parens override", `(a == "1" || b == "2") && c == "3"`, `((a == "1" || b == "2") && c == "3")`},
		{"nested and flattened", `(a == "1" && b == "2") && c == "3"`, `(a == "1" && b == "2" && c == "3")`},
		{"nested or flattened", `a == "1" || (b == "2" || c == "3")`, `(a == "1" || b == "2" || c == "3")`},
		{"not binds tighter than and", `!a == "1" && b == "2"`, `(!a == "1" && b == "2")`},
		{"calico test 1", `! (has( b)||! has(a ))`, `!(has(b) || !has(a))`},
		{"calico test 2", `! (a == "b"&&! c != "d")`, `!(a == "b" && !c != "d")`},
		{"newline whitespace", "a == 'x'\n&& b == 'y'", `(a == "x" && b == "y")`},
		{"all in and kept", `all() && a == "x"`, `(all() && a == "x")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.in)
			assert.Equal(t, tt.want, s.String())
			again := mustParse(t, s.String())
			assert.Equal(t, s.String(), again.String(), "canonical form must round-trip")
			assert.Equal(t, s.UniqueID(), again.UniqueID())
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		offset   int
		expected string
	}{
		{"missing value", "app ==", 6, "a quoted value"},
		{"number value", "a == 1", 5, "a quoted value"},
		{"label value", "b == b", 5, "a quoted value"},
		{"literal on the left", "'b1' == b", 0, `a label key, "has(", "all()", "global()", "!" or "("`},
		{"bare label", "b", 1, "an operator (==, !=, in, not in, contains, starts with, ends with)"},
		{"single equals", "a = 'x'", 2, "an operator (==, !=, in, not in, contains, starts with, ends with)"},
		{"garbage", "a b", 2, "an operator (==, !=, in, not in, contains, starts with, ends with)"},
		{"lone not", "!", 1, `a label key, "has(", "all()", "global()", "!" or "("`},
		{"single ampersand", `foo == "bar" &`, 13, `"&&", "||" or the end of the selector`},
		{"single pipe", `foo == "bar" |`, 13, `"&&", "||" or the end of the selector`},
		{"dangling and", `foo == "bar" &&`, 15, `a label key, "has(", "all()", "global()", "!" or "("`},
		{"unterminated double", `a == "FOO`, 9, `a closing "`},
		{"unterminated single", `a == 'FOO"`, 10, `a closing '`},
		{"mismatched quotes", `"FOO'`, 0, `a label key, "has(", "all()", "global()", "!" or "("`},
		{"open paren", "(", 1, `a label key, "has(", "all()", "global()", "!" or "("`},
		{"close paren", ")", 0, `a label key, "has(", "all()", "global()", "!" or "("`},
		{"empty parens", "()", 1, `a label key, "has(", "all()", "global()", "!" or "("`},
		{"unclosed paren", `(a == "x"`, 9, `"&&", "||" or ")"`},
		{"extra close paren", `a == "x")`, 8, `"&&", "||" or the end of the selector`},
		{"unexpected char", "%", 0, `a label key, "has(", "all()", "global()", "!" or "("`},
		{"has without key", "has()", 4, "a label key"},
		{"has unclosed", "has(a", 5, `")"`},
		{"has with space before paren", "has (a)", 4, "an operator (==, !=, in, not in, contains, starts with, ends with)"},
		{"has of quoted", `has("a")`, 4, "a label key"},
		{"all with argument", "all(a)", 4, `")"`},
		{"global unclosed", "global(", 7, `")"`},
		{"starts without with", `a starts "x"`, 9, `"with"`},
		{"ends without with", `a ends "x"`, 7, `"with"`},
		{"not without in", `a not {"x"}`, 6, `"in"`},
		{"in without set", `a in "x"`, 5, `"{"`},
		{"in bad member", `a in {x}`, 6, `a quoted value or "}"`},
		{"in leading comma", `a in {,}`, 6, `a quoted value or "}"`},
		{"in double comma", `a in {"x",,}`, 10, `a quoted value or "}"`},
		{"in missing comma", `a in {"x" "y"}`, 10, `"," or "}"`},
		{"in unclosed", `a in {"x"`, 9, `"," or "}"`},
		{"trailing garbage", `a == "x" b`, 9, `"&&", "||" or the end of the selector`},
		{"ne at start", `!= "x"`, 0, `a label key, "has(", "all()", "global()", "!" or "("`},
		{"value on both sides", `a == "x" == "y"`, 9, `"&&", "||" or the end of the selector`},
		{"not after key", `a ! = "x"`, 2, "an operator (==, !=, in, not in, contains, starts with, ends with)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.in)
			require.Error(t, err)
			assert.Nil(t, s)
			var pe *ParseError
			require.True(t, errors.As(err, &pe), "error %v is not a *ParseError", err)
			assert.Equal(t, tt.in, pe.Input)
			assert.Equal(t, tt.offset, pe.Offset, "offset in %q", tt.in)
			assert.Equal(t, tt.expected, pe.Expected)
			assert.Contains(t, err.Error(), "expected "+tt.expected)
		})
	}
}

func TestParseErrorMessage(t *testing.T) {
	_, err := Parse("app ==")
	require.Error(t, err)
	assert.Equal(t, `selector "app ==": offset 6: expected a quoted value`, err.Error())
}

func TestParseNestingLimit(t *testing.T) {
	deep := strings.Repeat("(", maxDepth) + `a == "x"` + strings.Repeat(")", maxDepth)
	s := mustParse(t, deep)
	assert.Equal(t, `a == "x"`, s.String())

	tooDeep := "(" + deep + ")"
	_, err := Parse(tooDeep)
	var pe *ParseError
	require.True(t, errors.As(err, &pe))
	assert.Equal(t, maxDepth, pe.Offset)
}

func TestMatches(t *testing.T) {
	tests := []struct {
		sel     string
		match   []Set
		noMatch []Set
	}{
		{`a == "b"`, []Set{{"a": "b"}, {"a": "b", "c": "d"}}, []Set{{}, {"a": "c"}, {"c": "d"}, {"a": ""}}},
		{`a == ""`, []Set{{"a": ""}}, []Set{{}, {"a": "x"}}},
		{`a != "b"`, []Set{{}, {"a": "c"}, {"c": "b"}, {"a": ""}}, []Set{{"a": "b"}}},
		{`a in {"x", "y"}`, []Set{{"a": "x"}, {"a": "y"}}, []Set{{}, {"a": "z"}, {"b": "x"}}},
		{`a in {}`, nil, []Set{{}, {"a": ""}, {"a": "x"}}},
		{`a not in {"x", "y"}`, []Set{{}, {"a": "z"}, {"b": "x"}}, []Set{{"a": "x"}, {"a": "y"}}},
		{`a not in {}`, []Set{{}, {"a": ""}, {"a": "x"}}, nil},
		{`a in {"a","b","c","d","e","f","g","h","i","j","k"}`, []Set{{"a": "a"}, {"a": "f"}, {"a": "k"}}, []Set{{}, {"a": "l"}, {"a": ""}}},
		{`has(a)`, []Set{{"a": ""}, {"a": "x"}}, []Set{{}, {"b": "a"}}},
		{`!has(a)`, []Set{{}, {"b": "a"}}, []Set{{"a": ""}}},
		{`a contains "ell"`, []Set{{"a": "hello"}, {"a": "ell"}}, []Set{{}, {"a": "help"}}},
		{`a contains ""`, []Set{{"a": ""}, {"a": "x"}}, []Set{{}}},
		{`a starts with "he"`, []Set{{"a": "hello"}, {"a": "he"}}, []Set{{}, {"a": "the"}}},
		{`a ends with "lo"`, []Set{{"a": "hello"}, {"a": "lo"}}, []Set{{}, {"a": "lot"}}},
		{`!a contains "x"`, []Set{{}, {"a": "y"}}, []Set{{"a": "x"}}},
		{`all()`, []Set{{}, {"a": "b"}}, nil},
		{`global()`, []Set{{}, {"a": "b"}}, nil},
		{`!all()`, nil, []Set{{}, {"a": "b"}}},
		{`!global()`, nil, []Set{{}, {"a": "b"}}},
		{`a == "a1" && b != "b1"`, []Set{{"a": "a1"}, {"a": "a1", "b": "x"}}, []Set{{"a": "a1", "b": "b1"}, {}}},
		{`a == "a1" || b == "b1"`, []Set{{"a": "a1"}, {"b": "b1"}}, []Set{{}, {"a": "b1"}}},
		{`!(!has(a) || has(b))`, []Set{{"a": "a"}}, []Set{{"b": "b"}, {"a": "a", "b": "b"}}},
		{`! a == 'a1' || ! b == 'b1'`, []Set{{}, {"a": "a1"}}, []Set{{"a": "a1", "b": "b1"}}},
		{`projectcalico.org/namespace == "prod" && app in {"api", "web"}`,
			[]Set{{"projectcalico.org/namespace": "prod", "app": "web"}},
			[]Set{{"projectcalico.org/namespace": "dev", "app": "web"}, {"app": "api"}}},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			s := mustParse(t, tt.sel)
			again := mustParse(t, s.String())
			for _, l := range tt.match {
				assert.True(t, s.Matches(l), "%s should match %v", tt.sel, l)
				assert.True(t, s.Matches(funcLabels(l)), "%s should match %v via Labels", tt.sel, l)
				assert.True(t, again.Matches(l), "canonical %s should match %v", s, l)
			}
			for _, l := range tt.noMatch {
				assert.False(t, s.Matches(l), "%s should not match %v", tt.sel, l)
				assert.False(t, s.Matches(funcLabels(l)), "%s should not match %v via Labels", tt.sel, l)
				assert.False(t, again.Matches(l), "canonical %s should not match %v", s, l)
			}
		})
	}
}

// funcLabels exercises the generic Labels path of Matches.
type funcLabels map[string]string

func (f funcLabels) Get(k string) (string, bool) {
	v, ok := f[k]
	return v, ok
}

func TestMatchesNilLabelsAndSelector(t *testing.T) {
	assert.True(t, mustParse(t, `a != "x"`).Matches(nil))
	assert.False(t, mustParse(t, `has(a)`).Matches(nil))
	var s *Selector
	assert.True(t, s.Matches(Set{"a": "b"}))
	assert.Equal(t, "all()", s.String())
	assert.Equal(t, All().UniqueID(), s.UniqueID())
}

func TestMatchesDoesNotAllocate(t *testing.T) {
	s := mustParse(t, `has(projectcalico.org/name) && !has(skip) && env != "prod" && tier not in {"db","cache"} && app starts with "pay"`)
	set := Set{"projectcalico.org/name": "x", "env": "dev", "tier": "web", "app": "payment"}
	fl := funcLabels(set)
	var ok bool
	allocs := testing.AllocsPerRun(100, func() { ok = s.Matches(set) })
	assert.True(t, ok)
	assert.Zero(t, allocs, "Matches on a Set")
	allocs = testing.AllocsPerRun(100, func() { ok = s.Matches(fl) })
	assert.True(t, ok)
	assert.Zero(t, allocs, "Matches on another Labels implementation")
}

func TestUniqueID(t *testing.T) {
	// Calico computes hash.MakeUniqueID("s", canonical): "s:" + unpadded
	// URL-safe base64 of SHA-224("s:" + canonical).
	s := mustParse(t, "all()")
	assert.Equal(t, "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug", s.UniqueID())
	assert.Len(t, s.UniqueID(), len("s:")+38)

	// Calico's early parser tests pinned SHA-224 digests of canonical forms
	// (without the "s:" salt); they show our canonical strings are Calico's
	// byte for byte.
	vectors := []struct{ in, digest string }{
		{"", "yAKsl-CNoToGJvI4pNl6xXkWbnkbEnlK7IRXBA"},
		{" (all() )", "yAKsl-CNoToGJvI4pNl6xXkWbnkbEnlK7IRXBA"},
		{`! (has( b)||! has(a ))`, "hSyHDjavfOProPgh2ui1yqeCS31caoii1SGzZw"},
		{`! (a == "b"&&! c != "d")`, "Vrj0UGjYYduG4mcP4DKl6qrmTxJhacqDcYiWqg"},
	}
	for _, v := range vectors {
		sum := sha256.Sum224([]byte(mustParse(t, v.in).String()))
		assert.Equal(t, v.digest, base64.RawURLEncoding.EncodeToString(sum[:]), v.in)
	}

	a := mustParse(t, `a == 'x' && b in {"2","1"}`)
	b := mustParse(t, `(a=="x")&&b in{'1','2','1',}`)
	assert.Equal(t, a.UniqueID(), b.UniqueID())
	assert.NotEqual(t, a.UniqueID(), mustParse(t, `a == "y"`).UniqueID())
}

func TestAnd(t *testing.T) {
	x := mustParse(t, `a == "x"`)
	y := mustParse(t, `b == "y" && c == "z"`)
	z := mustParse(t, `d == "1" || e == "2"`)
	tests := []struct {
		name string
		sels []*Selector
		want string
	}{
		{"none", nil, "all()"},
		{"only nil and all", []*Selector{nil, All(), mustParse(t, "")}, "all()"},
		{"one", []*Selector{nil, x, All()}, `a == "x"`},
		{"two", []*Selector{x, z}, `(a == "x" && (d == "1" || e == "2"))`},
		{"flattened", []*Selector{x, y}, `(a == "x" && b == "y" && c == "z")`},
		{"global kept", []*Selector{mustParse(t, "global()"), x}, `(global() && a == "x")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := And(tt.sels...)
			assert.Equal(t, tt.want, got.String())
			assert.Equal(t, tt.want, mustParse(t, got.String()).String())
		})
	}
	assert.Equal(t, mustParse(t, `a == "x" && b == "y" && c == "z"`).UniqueID(), And(x, y).UniqueID())
	assert.True(t, And(x, y).Matches(Set{"a": "x", "b": "y", "c": "z"}))
	assert.False(t, And(x, y).Matches(Set{"a": "x", "b": "y"}))
}

func TestNot(t *testing.T) {
	x := mustParse(t, `a == "x"`)
	assert.Equal(t, `!a == "x"`, x.Not().String())
	assert.Equal(t, `a == "x"`, x.Not().Not().String())
	assert.Equal(t, `!(a == "x" && has(b))`, mustParse(t, `a == "x" && has(b)`).Not().String())
	assert.Equal(t, `!all()`, All().Not().String())
	assert.False(t, x.Not().Matches(Set{"a": "x"}))
	assert.True(t, x.Not().Matches(Set{}))
}

func TestWithKeyPrefix(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`team == "x"`, `pcns.team == "x"`},
		{`all()`, `all()`},
		{`global()`, `global()`},
		{`has(projectcalico.org/name) && !has(a) || b in {"1"} || c not in {"2"}`,
			`((has(pcns.projectcalico.org/name) && !has(pcns.a)) || pcns.b in {"1"} || pcns.c not in {"2"})`},
		{`a != "1" && b contains "2" && c starts with "3" && d ends with "4"`,
			`(pcns.a != "1" && pcns.b contains "2" && pcns.c starts with "3" && pcns.d ends with "4")`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s := mustParse(t, tt.in)
			p := s.WithKeyPrefix("pcns.")
			assert.Equal(t, tt.want, p.String())
			assert.Equal(t, tt.want, mustParse(t, p.String()).String())
		})
	}
	s := mustParse(t, `team == "x"`)
	p := s.WithKeyPrefix("pcns.")
	assert.Equal(t, `team == "x"`, s.String(), "original unchanged")
	assert.True(t, p.Matches(Set{"pcns.team": "x"}))
	assert.False(t, p.Matches(Set{"team": "x"}))
	assert.Same(t, s, s.WithKeyPrefix(""))
}

func TestSelectorConcurrentUse(t *testing.T) {
	// Run with -race: UniqueID is computed lazily on first use.
	s := mustParse(t, `app == "x" && tier in {"a", "b"}`)
	const workers = 8
	ids := make(chan string, workers)
	prefixed := make(chan string, workers)
	for range workers {
		go func() {
			labels := Set{"app": "x", "tier": "a"}
			ok := true
			for range 100 {
				ok = ok && s.Matches(labels)
			}
			if !ok {
				ids <- "no match"
			} else {
				ids <- s.UniqueID()
			}
			prefixed <- s.WithKeyPrefix("p.").String()
		}()
	}
	want := uniqueID(s.String())
	for range workers {
		assert.Equal(t, want, <-ids)
		assert.Equal(t, `(p.app == "x" && p.tier in {"a", "b"})`, <-prefixed)
	}
}

package selector

import (
	"errors"
	"strings"
	"testing"
)

// fuzzLabelSets derives label sets from the words and quoted strings of the
// input, so that the selector's leaves have a chance to match.
func fuzzLabelSets(input string) []Set {
	var keys, values []string
	for i := 0; i < len(input); {
		c := input[i]
		switch {
		case c == '"' || c == '\'':
			end := strings.IndexByte(input[i+1:], c)
			if end < 0 {
				i = len(input)
				continue
			}
			values = append(values, input[i+1:i+1+end])
			i += end + 2
		case isKeyChar(c):
			j := i
			for j < len(input) && isKeyChar(input[j]) {
				j++
			}
			keys = append(keys, input[i:j])
			i = j
		default:
			i++
		}
	}
	values = append(values, "")
	sets := []Set{{}}
	for vi, v := range values {
		s := Set{}
		for ki, k := range keys {
			// Vary which keys are present and which value they hold.
			if (ki+vi)%3 != 2 {
				s[k] = values[(ki+vi)%len(values)]
			} else {
				s[k] = v
			}
		}
		sets = append(sets, s)
		if len(sets) > 8 {
			break
		}
	}
	return sets
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"", " ", "all()", "global()", `app == "x"`, `a != 'b'`,
		`a in {"x", 'y',}`, `a notin {}`, `a not in {"q"}`, `has(projectcalico.org/name)`,
		`!has(a) && b contains "c" || d startswith 'e' && f ends with "g"`,
		`!(!a == "x")`, `((a == "1" && b == "2") && c == "3")`,
		`! (has( b)||! has(a ))`, `a == '"'`, `a == "it's"`, "app ==", "a == 1",
		`(a == "x"`, `a in {"x" "y"}`, "has(", "!!!!", `a == "x" b`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		s, err := Parse(input)
		if err != nil {
			if s != nil {
				t.Fatalf("Parse(%q) returned both a selector and %v", input, err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %v is not a *ParseError", input, err)
			}
			if pe.Offset < 0 || pe.Offset > len(input) || pe.Input != input || pe.Expected == "" {
				t.Fatalf("Parse(%q): bad error %#v", input, pe)
			}
			return
		}
		canon := s.String()
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, input, err)
		}
		if again.String() != canon {
			t.Fatalf("canonical form of %q is not stable: %q then %q", input, canon, again.String())
		}
		if again.UniqueID() != s.UniqueID() {
			t.Fatalf("UniqueID of %q changed after round trip", input)
		}
		not := s.Not()
		for _, labels := range fuzzLabelSets(input) {
			m := s.Matches(labels)
			if again.Matches(labels) != m {
				t.Fatalf("%q and its canonical form %q disagree on %v", input, canon, labels)
			}
			if s.Matches(funcLabels(labels)) != m {
				t.Fatalf("%q: Set and Labels evaluation disagree on %v", input, labels)
			}
			if not.Matches(labels) == m {
				t.Fatalf("%q: Not() does not negate on %v", input, labels)
			}
		}
	})
}

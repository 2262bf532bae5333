package resource

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// TestUnifiedDiffApplies: patching a with the diff gives b, for any two
// texts over a small alphabet of lines (so that lines repeat).
func TestUnifiedDiffApplies(t *testing.T) {
	lines := rapid.SliceOfN(rapid.SampledFrom([]string{"a", "b", "c", "d", "  x: 1", ""}), 0, 30)
	rapid.Check(t, func(t *rapid.T) {
		a := join(lines.Draw(t, "a"))
		b := join(lines.Draw(t, "b"))
		d := UnifiedDiff("a", "b", a, b)
		if (d == "") != (a == b) {
			t.Fatalf("empty diff iff equal: %q", d)
		}
		got, err := patch(a, d)
		if err != nil {
			t.Fatalf("%v\n%s", err, d)
		}
		if got != b {
			t.Fatalf("patched:\n%q\nwant\n%q\ndiff:\n%s", got, b, d)
		}
	})
}

func join(ls []string) string {
	if len(ls) == 0 {
		return ""
	}
	return strings.Join(ls, "\n") + "\n"
}

// patch applies a unified diff (as UnifiedDiff writes it) to a.
func patch(a, d string) (string, error) {
	if d == "" {
		return a, nil
	}
	src := splitLines(a)
	var out []string
	pos := 0 // next line of src to copy
	dl := strings.Split(strings.TrimSuffix(d, "\n"), "\n")[2:]
	for i := 0; i < len(dl); i++ {
		h := dl[i]
		if !strings.HasPrefix(h, "@@ -") {
			return "", fmt.Errorf("hunk header expected: %q", h)
		}
		spec := strings.Fields(h)[1] // -start,len
		start, _ := strconv.Atoi(strings.Split(spec[1:], ",")[0])
		n, _ := strconv.Atoi(strings.Split(spec[1:], ",")[1])
		if n > 0 {
			start-- // one-based, except for empty ranges
		}
		out = append(out, src[pos:start]...)
		pos = start
		for i+1 < len(dl) && !strings.HasPrefix(dl[i+1], "@@ ") {
			i++
			l := dl[i]
			switch l[0] {
			case ' ':
				if pos >= len(src) || src[pos] != l[1:] {
					return "", fmt.Errorf("context %q does not match", l)
				}
				out = append(out, l[1:])
				pos++
			case '-':
				if pos >= len(src) || src[pos] != l[1:] {
					return "", fmt.Errorf("removed %q does not match", l)
				}
				pos++
			case '+':
				out = append(out, l[1:])
			}
		}
	}
	out = append(out, src[pos:]...)
	return join(out), nil
}

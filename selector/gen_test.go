package selector

import (
	"fmt"
	"strings"

	"pgregory.net/rapid"
)

// Small pools make collisions (equal keys, equal values, shared parents)
// likely, which is where the index has to get things right.
var (
	genKeys   = []string{"app", "tier", "env", "projectcalico.org/namespace", "pcns.team"}
	genValues = []string{"", "a", "b", "ab", "ba", `q"`, "x y"}
)

func quote(v string) string {
	if strings.Contains(v, `"`) {
		return "'" + v + "'"
	}
	return `"` + v + `"`
}

// genExpr draws a selector expression as text, in varied spellings.
func genExpr(t *rapid.T, depth int) string {
	key := func() string { return rapid.SampledFrom(genKeys).Draw(t, "key") }
	val := func() string { return quote(rapid.SampledFrom(genValues).Draw(t, "value")) }
	set := func() string {
		vs := rapid.SliceOfN(rapid.SampledFrom(genValues), 0, 4).Draw(t, "set")
		parts := make([]string, len(vs))
		for i, v := range vs {
			parts[i] = quote(v)
		}
		trail := ""
		if len(vs) > 0 && rapid.Bool().Draw(t, "trailing comma") {
			trail = ","
		}
		return "{" + strings.Join(parts, ", ") + trail + "}"
	}
	leaf := func() string {
		switch rapid.IntRange(0, 11).Draw(t, "leaf") {
		case 0:
			return key() + " == " + val()
		case 1:
			return key() + " != " + val()
		case 2:
			return key() + " in " + set()
		case 3:
			return key() + rapid.SampledFrom([]string{" not in ", " notin "}).Draw(t, "notin") + set()
		case 4:
			return "has(" + key() + ")"
		case 5:
			return "!has(" + key() + ")"
		case 6:
			return key() + " contains " + val()
		case 7:
			return key() + rapid.SampledFrom([]string{" starts with ", " startswith "}).Draw(t, "sw") + val()
		case 8:
			return key() + rapid.SampledFrom([]string{" ends with ", " endswith "}).Draw(t, "ew") + val()
		case 9:
			return "all()"
		case 10:
			return "global()"
		default:
			return key() + " == " + val()
		}
	}
	if depth <= 0 {
		return leaf()
	}
	switch rapid.IntRange(0, 5).Draw(t, "shape") {
	case 0, 1:
		return leaf()
	case 2:
		return "!" + genExpr(t, depth-1)
	case 3:
		return "(" + genExpr(t, depth-1) + ")"
	case 4:
		n := rapid.IntRange(2, 3).Draw(t, "n")
		parts := make([]string, n)
		for i := range parts {
			parts[i] = genExpr(t, depth-1)
		}
		return strings.Join(parts, " && ")
	default:
		n := rapid.IntRange(2, 3).Draw(t, "n")
		parts := make([]string, n)
		for i := range parts {
			parts[i] = genExpr(t, depth-1)
		}
		return "(" + strings.Join(parts, " || ") + ")"
	}
}

func genSelector(t *rapid.T) *Selector {
	expr := genExpr(t, 3)
	s, err := Parse(expr)
	if err != nil {
		panic(fmt.Sprintf("generated selector %q does not parse: %v", expr, err))
	}
	return s
}

func genLabels(t *rapid.T, label string) map[string]string {
	return rapid.MapOfN(rapid.SampledFrom(genKeys), rapid.SampledFrom(genValues), 0, 4).Draw(t, label)
}

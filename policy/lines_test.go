package policy

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestLineTreeLookup(t *testing.T) {
	const doc = `metadata:
  name: x
spec:
  ingress:
  - action: Allow
    source:
      nets: [10.0.0.0/8]
  - action: Deny
    destination: &d
      ports:
      - 80
      - 443
  egress:
  - destination: *d
`
	var root yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(doc), &root))
	lt := newLineTree(root.Content[0])
	for path, want := range map[string]int{
		"":                                     1,
		"metadata.name":                        2,
		"spec":                                 3,
		"spec.ingress":                         4,
		"spec.ingress[0]":                      5,
		"spec.ingress[0].source.nets":          7,
		"spec.ingress[1].destination":          9,
		"spec.ingress[1].destination.ports[1]": 12,
		"spec.ingress[7]":                      4,  // missing item: its sequence
		"spec.ingress[0].notThere":             5,  // missing key: its mapping
		"spec.egress[0].destination.ports":     10, // through the alias
	} {
		require.Equal(t, want, lt.lookup(path), path)
	}
	require.Zero(t, (*lineTree)(nil).lookup("spec"))
}

// A document of nested aliases does not build a tree past the budget.
func TestLineTreeBounded(t *testing.T) {
	doc := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g"} {
		doc += n + ": &" + n + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
		prev = n
	}
	var root yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(doc), &root))
	var count func(t *lineTree) int
	count = func(t *lineTree) int {
		n := 1
		for i := range t.kids {
			n += count(&t.kids[i])
		}
		return n
	}
	require.LessOrEqual(t, count(newLineTree(root.Content[0])), maxLineNodes+1)
}

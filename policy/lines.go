package policy

import "go.yaml.in/yaml/v3"

// lineTree is what an Origin keeps of an object's YAML: the line of every
// mapping value and sequence item, and nothing else, so a Set of 20,000
// objects does not hold 20,000 parse trees (a yaml.Node per scalar, with
// its tag, style, comments and value) just to point errors at lines.
type lineTree struct {
	line int32
	// seq is set for a sequence: kids are its items. Otherwise kids are
	// the values of a mapping's keys (in keys' order), or none.
	seq  bool
	keys []string
	kids []lineTree
}

// maxLineNodes bounds the tree of one object; past it (a document of
// aliases expanding into a huge tree) deeper fields report the line of the
// nearest ancestor kept.
const maxLineNodes = 1 << 16

// newLineTree copies the lines of n.
func newLineTree(n *yaml.Node) *lineTree {
	budget := maxLineNodes
	t := buildLines(n, int32(nodeLine(n)), &budget)
	return &t
}

func nodeLine(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}

// buildLines copies n, whose line as the reader sees it is line: the key's
// line for a collection under a key, the node's own otherwise.
func buildLines(n *yaml.Node, line int32, budget *int) lineTree {
	n = resolveAlias(n)
	t := lineTree{line: line}
	if n == nil || *budget <= 0 {
		return t
	}
	*budget--
	switch n.Kind {
	case yaml.SequenceNode:
		t.seq = true
		t.kids = make([]lineTree, 0, len(n.Content))
		for _, item := range n.Content {
			if *budget <= 0 {
				break
			}
			t.kids = append(t.kids, buildLines(item, int32(nodeLine(resolveAlias(item))), budget))
		}
	case yaml.MappingNode:
		t.keys = make([]string, 0, len(n.Content)/2)
		t.kids = make([]lineTree, 0, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content) && *budget > 0; i += 2 {
			key, val := n.Content[i], resolveAlias(n.Content[i+1])
			l := int32(nodeLine(val))
			if val != nil && (val.Kind == yaml.MappingNode || val.Kind == yaml.SequenceNode) {
				// Point at the key: that is the line a reader looks at.
				l = int32(key.Line)
			}
			t.keys = append(t.keys, key.Value)
			t.kids = append(t.kids, buildLines(val, l, budget))
		}
	}
	return t
}

// lookup returns the line of the field at path (a.b[2].c, map keys as
// [key]); when the path is not all there (a missing field), the line of
// the deepest node on it that is.
func (t *lineTree) lookup(path string) int {
	if t == nil {
		return 0
	}
	for _, seg := range splitPath(path) {
		var next *lineTree
		switch {
		case seg.index >= 0:
			if t.seq && seg.index < len(t.kids) {
				next = &t.kids[seg.index]
			}
		case !t.seq:
			for i, k := range t.keys {
				if k == seg.key {
					next = &t.kids[i]
					break
				}
			}
		}
		if next == nil {
			break
		}
		t = next
	}
	return int(t.line)
}

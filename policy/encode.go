package policy

import (
	"encoding/json"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// Encode writes objs as multi-document YAML that Decode reads back to the
// same objects. apiVersion and kind are written from each object's Go type
// (an empty TypeMeta, as informers give, is fine). Strings that a YAML 1.1
// reader would take for booleans (y, n, on, off, yes, no) are quoted.
func Encode(w io.Writer, objs []Object) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	for i, obj := range objs {
		n, err := objectNode(obj)
		if err != nil {
			return fmt.Errorf("encode object %d: %w", i, err)
		}
		if err := enc.Encode(n); err != nil {
			return fmt.Errorf("encode object %d: %w", i, err)
		}
	}
	return enc.Close()
}

// objectNode renders obj as a YAML mapping with apiVersion and kind first.
func objectNode(obj Object) (*yaml.Node, error) {
	k := KindOf(obj)
	if k == "" {
		return nil, fmt.Errorf("unsupported object type %T", obj)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	m := doc.Content[0]
	var rest []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		switch m.Content[i].Value {
		case "apiVersion", "kind":
		default:
			rest = append(rest, m.Content[i], m.Content[i+1])
		}
	}
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	m.Content = append([]*yaml.Node{str("apiVersion"), str(k.APIVersion()), str("kind"), str(k.WireName())}, rest...)
	restyle(m)
	return m, nil
}

// restyle drops the JSON flow and quoting styles so the output reads like
// hand-written YAML, quoting only where a YAML 1.1 reader would misread.
func restyle(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && yaml11Bool(n.Value) {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		restyle(c)
	}
}

// yaml11Bool reports whether a YAML 1.1 reader would read s as a boolean.
func yaml11Bool(s string) bool {
	switch s {
	case "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
		"on", "On", "ON", "off", "Off", "OFF", "true", "True", "TRUE", "false", "False", "FALSE":
		return true
	}
	return false
}

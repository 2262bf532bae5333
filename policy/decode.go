package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DecodeOptions are the optional knobs of DecodeWithOptions and
// LoadPathsWithOptions.
type DecodeOptions struct {
	// DefaultNamespace is given to namespaced objects written without
	// metadata.namespace, as kubectl and calicoctl do; "" means "default".
	DefaultNamespace string
	// Stdin is read for the path "-" by LoadPathsWithOptions; nil means
	// os.Stdin.
	Stdin io.Reader
}

// Result is what DecodeWithOptions and LoadPathsWithOptions return.
type Result struct {
	// Objects are the decoded, validated objects in input order.
	Objects []Object
	// Origins[i] tells where Objects[i] was written and resolves its field
	// paths to lines.
	Origins []*Origin
	// Warnings are things to show that did not stop decoding: skipped
	// kinds, ignored fields.
	Warnings []Warning
}

// Origin is where an object was decoded from.
type Origin struct {
	// Position is where the object starts.
	Position
	// lines are the lines of the object's fields.
	lines *lineTree
	// prefix is the field path of the object inside its document (for
	// items of a List: "items[3]").
	prefix string
}

// At returns the position of a field of the object, given its path (as in
// ValidationError.Field, e.g. spec.egress[0]); the object's own position
// when the field cannot be found. A nil Origin gives the zero Position.
func (o *Origin) At(field string) Position {
	if o == nil {
		return Position{}
	}
	p := o.Position
	if l := o.lines.lookup(field); l > 0 {
		p.Line = l
	}
	return p
}

// maxNodes bounds the work of expanding YAML aliases, so a small document
// of nested aliases ("billion laughs") cannot exhaust memory.
const maxNodes = 1 << 20

// Decode reads every object in r: multi-document YAML or JSON, including
// kind: List and typed lists (NetworkPolicyList …). source names the input
// in errors.
//
// Decode is all or nothing: it returns the objects and a nil error, or no
// objects and an error. The error is a ValidationErrors listing every
// problem in the input (syntax, unknown fields, wrong types, invalid
// values) each with its source, line, kind, namespace/name and field path;
// or, when the input is valid but holds no object of a kind this package
// reads, an error wrapping ErrNoObjects. So err == nil exactly when
// len(objects) > 0. Documents of other kinds (Service, Deployment …) are
// skipped; DecodeWithOptions reports them as warnings.
func Decode(r io.Reader, source string) ([]Object, error) {
	res, err := DecodeWithOptions(r, source, DecodeOptions{})
	return res.Objects, err
}

// DecodeWithOptions is Decode with options, returning warnings and origins
// beside the objects. It has Decode's all-or-nothing contract: on error
// Result.Objects is empty (warnings are still returned).
func DecodeWithOptions(r io.Reader, source string, opts DecodeOptions) (Result, error) {
	d := newDecoder(source, opts)
	d.decodeStream(r)
	return d.finish()
}

// decoder holds the state of one Decode call.
type decoder struct {
	source string
	opts   DecodeOptions
	res    Result
	errs   ValidationErrors
	fields map[reflect.Type]map[string]reflect.StructField
}

func newDecoder(source string, opts DecodeOptions) *decoder {
	if opts.DefaultNamespace == "" {
		opts.DefaultNamespace = "default"
	}
	return &decoder{source: source, opts: opts, fields: map[reflect.Type]map[string]reflect.StructField{}}
}

func (d *decoder) finish() (Result, error) {
	if len(d.errs) > 0 {
		d.res.Objects, d.res.Origins = nil, nil
		return d.res, d.errs
	}
	if len(d.res.Objects) == 0 {
		return d.res, fmt.Errorf("%s: %w", d.source, ErrNoObjects)
	}
	return d.res, nil
}

// decodeStream reads the documents of one source.
func (d *decoder) decodeStream(r io.Reader) {
	dec := yaml.NewDecoder(r)
	for doc := 0; ; doc++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			// A syntax error ends the stream: the parser cannot resync.
			d.errs = append(d.errs, &ValidationError{
				Position: Position{Source: d.source, Doc: doc, Line: yamlErrorLine(err)},
				Message:  "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "),
			})
			return
		}
		d.decodeDocument(&n, doc)
	}
}

// yamlErrorLine extracts the line from a yaml.v3 error message ("yaml: line
// 3: ..."); 0 when it has none.
func yamlErrorLine(err error) int {
	msg := err.Error()
	i := strings.Index(msg, "line ")
	if i < 0 {
		return 0
	}
	rest := msg[i+len("line "):]
	j := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if j < 0 {
		j = len(rest)
	}
	n, _ := strconv.Atoi(rest[:j])
	return n
}

func (d *decoder) decodeDocument(doc *yaml.Node, index int) {
	root := doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return
		}
		root = doc.Content[0]
	}
	pos := Position{Source: d.source, Doc: index, Line: root.Line}
	budget := maxNodes
	v, err := toValue(root, &budget, 0)
	if err != nil {
		e := &ValidationError{Position: withLine(pos, err), Message: err.Error()}
		// Name the object if its kind and name can be read as written.
		apiVersion, kind := scalarAt(root, "apiVersion"), scalarAt(root, "kind")
		if k, ok := kindFor(apiVersion, kind); ok {
			e.Kind, e.Namespace, e.Name = k, scalarAt(root, "metadata.namespace"), scalarAt(root, "metadata.name")
		}
		d.errs = append(d.errs, e)
		return
	}
	if v == nil {
		return // an empty document, as between two "---"
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.errs = append(d.errs, &ValidationError{Position: pos, Message: "document is not a mapping (want apiVersion, kind, metadata …)"})
		return
	}
	d.decodeValue(m, root, pos, "", "", "")
}

// scalarAt returns the scalar at path below n, or "".
func scalarAt(n *yaml.Node, path string) string {
	if n == nil {
		return ""
	}
	segs := splitPath(path)
	for _, seg := range segs {
		n = resolveAlias(n)
		if n == nil || n.Kind != yaml.MappingNode {
			return ""
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg.key {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return ""
		}
		n = next
	}
	if n = resolveAlias(n); n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// withLine takes the line from a nodeError, if err is one.
func withLine(p Position, err error) Position {
	var ne *nodeError
	if errors.As(err, &ne) && ne.line > 0 {
		p.Line = ne.line
	}
	return p
}

// decodeValue decodes one object or list. listAPIVersion and listKind are
// the defaults a typed list gives its items.
func (d *decoder) decodeValue(m map[string]any, node *yaml.Node, pos Position, prefix, defAPIVersion, defKind string) {
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	if _, set := m["apiVersion"]; !set {
		apiVersion = defAPIVersion
	}
	if _, set := m["kind"]; !set {
		kind = defKind
	}
	ns, name := metaIDs(m)
	origin := &Origin{Position: pos, lines: newLineTree(node), prefix: prefix}
	fail := func(field, format string, args ...any) {
		d.errs = append(d.errs, &ValidationError{
			Position: origin.At(field), Namespace: ns, Name: name,
			Field: joinPath(prefix, field), Message: fmt.Sprintf(format, args...),
		})
	}
	if kind == "" {
		fail("kind", "missing kind")
		return
	}
	if apiVersion == "" {
		fail("apiVersion", "missing apiVersion for kind %s", kind)
		return
	}
	if items, isList := m["items"]; isList || strings.HasSuffix(kind, "List") {
		d.decodeList(m, items, node, pos, prefix, apiVersion, kind)
		return
	}
	k, known := kindFor(apiVersion, kind)
	if !known {
		d.res.Warnings = append(d.res.Warnings, Warning{
			Position: pos, APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: name,
			Message: fmt.Sprintf("skipped: %s %s does not concern policy", apiVersion, kind),
		})
		return
	}
	m = withTypeMeta(m, k)
	start := len(d.errs)
	report := func(field, msg string) {
		d.errs = append(d.errs, &ValidationError{
			Position: origin.At(field), Kind: k, Namespace: ns, Name: name,
			Field: joinPath(prefix, field), Message: msg,
		})
	}
	obj := newObject(k)
	t := reflect.TypeOf(obj).Elem()
	if k == KindFelixConfiguration {
		m = d.dropUnknownFelixFields(m, origin, ns, name)
	}
	d.checkValue(t, m, "", report)
	strictOK := len(d.errs) == start
	b, err := json.Marshal(m)
	if err == nil {
		err = json.Unmarshal(b, obj)
	}
	if err != nil {
		if strictOK {
			report("", err.Error())
		}
		return
	}
	dropEmptyLists(reflect.ValueOf(obj).Elem())
	d.defaultNamespace(obj, k, origin, report)
	ns = obj.GetNamespace()
	for _, fe := range validateObject(obj) {
		report(fe.Field, fe.Message)
	}
	if len(d.errs) > start {
		return
	}
	d.res.Objects = append(d.res.Objects, obj)
	d.res.Origins = append(d.res.Origins, origin)
}

// withTypeMeta returns m with apiVersion and kind set to the canonical
// values for k (the CRD alias and typed-list items are normalised).
func withTypeMeta(m map[string]any, k Kind) map[string]any {
	out := make(map[string]any, len(m)+2)
	for key, v := range m {
		out[key] = v
	}
	out["apiVersion"] = k.APIVersion()
	out["kind"] = k.WireName()
	return out
}

func (d *decoder) defaultNamespace(obj Object, k Kind, origin *Origin, report func(field, msg string)) {
	if k.Namespaced() {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(d.opts.DefaultNamespace)
		}
		return
	}
	if ns := obj.GetNamespace(); ns != "" {
		d.res.Warnings = append(d.res.Warnings, Warning{
			Position: origin.At("metadata.namespace"), APIVersion: k.APIVersion(), Kind: k.WireName(),
			Name: obj.GetName(), Namespace: ns,
			Message: fmt.Sprintf("metadata.namespace %q ignored: %s is cluster-scoped", ns, k.WireName()),
		})
		obj.SetNamespace("")
	}
}

// felixKnownFields are the FelixConfiguration spec fields Calyx reads.
func felixKnownFields() map[string]bool {
	t := reflect.TypeOf(FelixConfigurationSpec{})
	out := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out[name] = true
	}
	return out
}

// dropUnknownFelixFields removes FelixConfiguration spec fields Calyx does
// not read, with a warning each: FelixConfiguration has well over a hundred
// fields that do not concern policy, and refusing them would refuse valid
// Calico configuration.
func (d *decoder) dropUnknownFelixFields(m map[string]any, origin *Origin, ns, name string) map[string]any {
	spec, ok := m["spec"].(map[string]any)
	if !ok {
		return m
	}
	known := felixKnownFields()
	var drop []string
	for key := range spec {
		if !known[key] {
			drop = append(drop, key)
		}
	}
	if len(drop) == 0 {
		return m
	}
	sort.Strings(drop)
	kept := make(map[string]any, len(spec))
	for key, v := range spec {
		if known[key] {
			kept[key] = v
		}
	}
	out := make(map[string]any, len(m))
	for key, v := range m {
		out[key] = v
	}
	out["spec"] = kept
	for _, key := range drop {
		d.res.Warnings = append(d.res.Warnings, Warning{
			Position: origin.At("spec." + key), APIVersion: CalicoAPIVersion, Kind: string(KindFelixConfiguration),
			Namespace: ns, Name: name,
			Message: fmt.Sprintf("spec.%s: not used by Calyx, ignored", key),
		})
	}
	return out
}

func (d *decoder) decodeList(m map[string]any, items any, node *yaml.Node, pos Position, prefix, apiVersion, kind string) {
	report := func(field, msg string) {
		d.errs = append(d.errs, &ValidationError{Position: (&Origin{Position: pos, lines: newLineTree(node)}).At(field), Field: joinPath(prefix, field), Message: kind + ": " + msg})
	}
	for key := range m {
		switch key {
		case "apiVersion", "kind", "metadata", "items":
		default:
			report(key, fmt.Sprintf("unknown field %q", key))
		}
	}
	list, ok := items.([]any)
	if items != nil && !ok {
		report("items", "want a list")
		return
	}
	itemAPIVersion, itemKind := "", ""
	if kind != "List" {
		itemAPIVersion, itemKind = apiVersion, strings.TrimSuffix(kind, "List")
	}
	itemsNode := lookupNode(node, "items")
	for i, it := range list {
		field := fmt.Sprintf("items[%d]", i)
		im, ok := it.(map[string]any)
		if !ok {
			report(field, "list item is not a mapping")
			continue
		}
		var inode *yaml.Node
		if itemsNode != nil && itemsNode.Kind == yaml.SequenceNode && i < len(itemsNode.Content) {
			inode = resolveAlias(itemsNode.Content[i])
		}
		ipos := pos
		if inode != nil {
			ipos.Line = inode.Line
		}
		d.decodeValue(im, inode, ipos, joinPath(prefix, field), itemAPIVersion, itemKind)
	}
}

// metaIDs reads metadata.namespace and metadata.name for error messages.
func metaIDs(m map[string]any) (ns, name string) {
	md, _ := m["metadata"].(map[string]any)
	ns, _ = md["namespace"].(string)
	name, _ = md["name"].(string)
	return ns, name
}

func joinPath(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	case strings.HasPrefix(field, "["):
		return prefix + field
	}
	return prefix + "." + field
}

// nodeError is a problem found while converting YAML nodes, with its line.
type nodeError struct {
	line int
	msg  string
}

func (e *nodeError) Error() string { return e.msg }

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// toValue converts a YAML node to the JSON data model (map[string]any,
// []any, string, int64, uint64, float64, bool, nil). Scalars keep the type
// YAML 1.2 gives them, so y, n, on and off stay strings; mapping keys are
// always strings as written.
func toValue(n *yaml.Node, budget *int, depth int) (any, error) {
	*budget--
	if *budget < 0 {
		return nil, &nodeError{line: n.Line, msg: "document too large (too many nodes after expanding aliases)"}
	}
	if depth > 200 {
		return nil, &nodeError{line: n.Line, msg: "document nested too deeply"}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return toValue(n.Content[0], budget, depth+1)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, &nodeError{line: n.Line, msg: "unknown alias"}
		}
		return toValue(n.Alias, budget, depth+1)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := toValue(c, budget, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		var merges []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, vn := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				merges = append(merges, vn)
				continue
			}
			if k.Kind != yaml.ScalarNode {
				return nil, &nodeError{line: k.Line, msg: "mapping key is not a scalar"}
			}
			if _, dup := out[k.Value]; dup {
				return nil, &nodeError{line: k.Line, msg: fmt.Sprintf("duplicate key %q", k.Value)}
			}
			v, err := toValue(vn, budget, depth+1)
			if err != nil {
				return nil, err
			}
			out[k.Value] = v
		}
		// Merge keys ("<<: *base") fill in what the mapping does not set.
		for _, mn := range merges {
			mv, err := toValue(mn, budget, depth+1)
			if err != nil {
				return nil, err
			}
			srcs := []any{mv}
			if l, ok := mv.([]any); ok {
				srcs = l
			}
			for _, s := range srcs {
				sm, ok := s.(map[string]any)
				if !ok {
					return nil, &nodeError{line: mn.Line, msg: "merge key value is not a mapping"}
				}
				for k, v := range sm {
					if _, set := out[k]; !set {
						out[k] = v
					}
				}
			}
		}
		return out, nil
	case yaml.ScalarNode:
		return scalarValue(n)
	}
	return nil, &nodeError{line: n.Line, msg: "unsupported YAML node"}
}

func scalarValue(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, &nodeError{line: n.Line, msg: err.Error()}
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return i, nil
		}
		var u uint64
		if err := n.Decode(&u); err == nil {
			return u, nil
		}
		return nil, &nodeError{line: n.Line, msg: fmt.Sprintf("integer %s out of range", n.Value)}
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, &nodeError{line: n.Line, msg: err.Error()}
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, &nodeError{line: n.Line, msg: fmt.Sprintf("%s is not a finite number", n.Value)}
		}
		return f, nil
	default:
		// !!str, !!timestamp, !!binary and custom tags: the text as written.
		return n.Value, nil
	}
}

// lookupNode finds the node at a field path (a.b[2].c, map keys as [key])
// below a mapping node; when the path is not all there (a missing field),
// the deepest node on it that is.
func lookupNode(n *yaml.Node, path string) *yaml.Node {
	n = resolveAlias(n)
	if n == nil || path == "" {
		return n
	}
	for _, seg := range splitPath(path) {
		n = resolveAlias(n)
		if n == nil {
			return nil
		}
		if seg.index >= 0 {
			if n.Kind != yaml.SequenceNode || seg.index >= len(n.Content) {
				return n
			}
			n = n.Content[seg.index]
			continue
		}
		if n.Kind != yaml.MappingNode {
			return n
		}
		var found *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg.key {
				// Point at the key: that is the line a reader looks at.
				found = n.Content[i+1]
				if found.Kind == yaml.MappingNode || found.Kind == yaml.SequenceNode {
					found = &yaml.Node{Kind: found.Kind, Line: n.Content[i].Line, Content: found.Content, Alias: found.Alias}
				}
				break
			}
		}
		if found == nil {
			return n
		}
		n = found
	}
	return n
}

type pathSeg struct {
	key   string
	index int
}

// splitPath splits a.b[2].c[key] into segments.
func splitPath(path string) []pathSeg {
	var out []pathSeg
	for path != "" {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return out
			}
			inner := path[1:end]
			if i, err := strconv.Atoi(inner); err == nil {
				out = append(out, pathSeg{index: i})
			} else {
				out = append(out, pathSeg{key: inner, index: -1})
			}
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			out = append(out, pathSeg{key: path[:end], index: -1})
			path = path[end:]
		}
	}
	return out
}

// checkValue checks v against the Go type t the way a strict JSON decoder
// would, but reports every unknown field and type mismatch with its path.
func (d *decoder) checkValue(t reflect.Type, v any, path string, report func(field, msg string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		b, err := json.Marshal(v)
		if err == nil {
			err = reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(b)
		}
		if err != nil {
			report(path, err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			report(path, "want a mapping, got "+describe(v))
			return
		}
		fields := d.structFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				report(joinPath(path, k), fmt.Sprintf("unknown field %q", k))
				continue
			}
			d.checkValue(f.Type, m[k], joinPath(path, k), report)
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			if _, ok := v.(string); !ok {
				report(path, "want base64 text, got "+describe(v))
			}
			return
		}
		l, ok := v.([]any)
		if !ok {
			report(path, "want a list, got "+describe(v))
			return
		}
		for i, e := range l {
			d.checkValue(t.Elem(), e, fmt.Sprintf("%s[%d]", path, i), report)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			report(path, "want a mapping, got "+describe(v))
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.checkValue(t.Elem(), m[k], path+"["+k+"]", report)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			report(path, "want a string, got "+describe(v)+quoteHint(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			report(path, "want true or false, got "+describe(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if !fitsInt(t, v) {
			report(path, fmt.Sprintf("want an integer in range for %s, got %s", t.Kind(), describe(v)))
		}
	case reflect.Float32, reflect.Float64:
		switch v.(type) {
		case int64, uint64, float64:
		default:
			report(path, "want a number, got "+describe(v))
		}
	}
}

// structFields maps the JSON names of t's fields (embedded inline structs
// flattened) to the fields.
func (d *decoder) structFields(t reflect.Type) map[string]reflect.StructField {
	if f, ok := d.fields[t]; ok {
		return f
	}
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range d.structFields(ft) {
					if _, shadowed := out[k]; !shadowed {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	d.fields[t] = out
	return out
}

func fitsInt(t reflect.Type, v any) bool {
	var f float64
	switch n := v.(type) {
	case int64:
		f = float64(n)
	case uint64:
		f = float64(n)
	case float64:
		if n != math.Trunc(n) {
			return false
		}
		f = n
	default:
		return false
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return f >= 0 && f <= math.Pow(2, float64(t.Bits()))-1
	default:
		lim := math.Pow(2, float64(t.Bits()-1))
		return f >= -lim && f <= lim-1
	}
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("the boolean %t", x)
	case int64, uint64, float64:
		return fmt.Sprintf("the number %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func quoteHint(v any) string {
	switch v.(type) {
	case bool, int64, uint64, float64:
		return " (quote it to make it a string)"
	}
	return ""
}

// dropEmptyLists sets empty lists to nil, so "egress: []" and no egress
// decode to the same object, as the Kubernetes API server stores them
// (every such list is omitempty). A list behind a pointer is left alone:
// there an empty list means something (FelixConfiguration's
// failsafeInboundHostPorts: [] means no fail-safe ports, not the
// default ones).
func dropEmptyLists(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if !v.Type().Field(i).IsExported() {
				continue
			}
			if f.Kind() == reflect.Slice && f.Len() == 0 && !f.IsNil() && f.CanSet() {
				f.Set(reflect.Zero(f.Type()))
				continue
			}
			dropEmptyLists(f)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			dropEmptyLists(v.Index(i))
		}
	case reflect.Pointer:
		if !v.IsNil() && v.Elem().Kind() == reflect.Struct {
			dropEmptyLists(v.Elem())
		}
	}
}

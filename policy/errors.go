package policy

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoObjects is returned (wrapped) by Decode and LoadPaths when the input
// holds no object of a kind this package reads: it was empty, held only
// comments, or only kinds that were skipped. kubectl refuses such input the
// same way ("no objects passed to apply").
var ErrNoObjects = errors.New("no objects to read")

// Position is where something was written: the source (a file name, "-"
// for stdin, or whatever the caller passed to Decode), the zero-based index
// of the YAML document in that source, and the one-based line (0 when not
// known).
type Position struct {
	// Source names the input, as given to Decode.
	Source string
	// Doc is the zero-based index of the YAML document in the source.
	Doc int
	// Line is the one-based line in the source; 0 when unknown.
	Line int
}

// String formats the position as source:line (or just the source).
func (p Position) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d", p.Source, p.Line)
	}
	return p.Source
}

// ValidationError is one problem with one object. Decode and Set.Upsert
// report every problem they find as a ValidationErrors list; errors.As
// finds both the list and its first element.
type ValidationError struct {
	// Position is where the problem was written: the field's own line when
	// known, else the object's.
	Position
	// Kind is the object's kind ("" when the document had none).
	Kind Kind
	// Namespace is the object's namespace ("" for cluster-scoped kinds).
	Namespace string
	// Name is the object's name.
	Name string
	// Field is the field path, such as spec.egress[0].destination.ports[1];
	// empty for problems with the document as a whole.
	Field string
	// Message says what is wrong and, where it helps, what to write.
	Message string
}

// Error formats the problem as
// source:line: Kind "namespace/name": field.path: message.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(e.Position.String())
	b.WriteString(": ")
	if e.Kind != "" {
		b.WriteString(e.Kind.WireName())
		if id := objectID(e.Namespace, e.Name); id != "" {
			fmt.Fprintf(&b, " %q", id)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

func objectID(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// ValidationErrors is every problem found in one input, in input order.
// It is the error type Decode, LoadPaths and Set.Upsert return for invalid
// input.
type ValidationErrors []*ValidationError

// Error prints one problem per line.
func (l ValidationErrors) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual problems to errors.Is and errors.As.
func (l ValidationErrors) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Warning is something a caller should show but that does not stop
// decoding, such as a document of a kind that does not concern policy.
type Warning struct {
	// Position is where the document was written.
	Position
	// APIVersion and Kind are as written in the document.
	APIVersion, Kind string
	// Namespace and Name identify the object, when it had them.
	Namespace, Name string
	// Message says what happened.
	Message string
}

// String formats the warning like a ValidationError.
func (w Warning) String() string {
	var b strings.Builder
	b.WriteString(w.Position.String())
	b.WriteString(": ")
	if w.Kind != "" {
		b.WriteString(w.Kind)
		if id := objectID(w.Namespace, w.Name); id != "" {
			fmt.Fprintf(&b, " %q", id)
		}
		b.WriteString(": ")
	}
	b.WriteString(w.Message)
	return b.String()
}

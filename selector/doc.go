// Package selector implements the Calico label selector language: parsing
// ([Parse]), evaluation against a set of labels ([Selector.Matches]), a
// canonical textual form ([Selector.String]) and a stable identifier derived
// from it ([Selector.UniqueID]), plus [Index], an incremental inverted index
// that tracks which items (endpoints, network sets …) each selector matches.
//
// # Semantics
//
// Selectors follow Calico's semantics exactly (libcalico-go
// lib/selector), so selectors written for Calico mean the same thing here:
//
//   - values are strings, always quoted: app == 1 is a syntax error;
//   - on a missing label, != and "not in" match; ==, in, contains,
//     "starts with", "ends with" and has() do not;
//   - all() and global() match every label set. global() only has a special
//     meaning in a rule's namespaceSelector, where Calico rewrites it to
//     !has(projectcalico.org/namespace) (and all() to
//     has(projectcalico.org/namespace)) after prefixing the namespace
//     selector's keys with "pcns."; that rewriting belongs to the policy
//     compiler, see [Selector.WithKeyPrefix];
//   - an empty or blank selector is all().
//
// # Differences from Calico's own package
//
// The parser has no global state and no lock; a [Selector] is immutable and
// safe for concurrent use. The canonical form also cancels pairs of "!"
// written around parentheses (Calico prints !!a == "x" for !(!a == "x")) and
// flattens nested groups of the same operator ((a && b) && c prints as
// (a && b && c)), so Parse(s.String()).String() == s.String() for every
// selector; newlines and carriage returns count as whitespace (Calico's
// tokenizer only skips spaces and tabs); parentheses nest at most 512
// deep, so a hostile selector cannot exhaust the stack. For every selector Calico itself
// parses without nested same-operator groups or double negations, String
// and UniqueID are identical to Calico's.
package selector

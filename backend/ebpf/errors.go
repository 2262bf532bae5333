package ebpf

import "errors"

// Errors callers branch on.
var (
	// ErrInvalidRuleset is returned for a Ruleset that refers to sets or
	// policies it does not hold, or that gives two endpoints one interface.
	ErrInvalidRuleset = errors.New("ebpf: invalid ruleset")
	// ErrTooBig is returned for an endpoint direction whose policy does not
	// fit the longest tail-call chain the kernel runs, or host endpoints
	// with more addresses or fail-safe ports than their programs compare.
	ErrTooBig = errors.New("ebpf: policy too big for one endpoint")
	// ErrPinsInUse is returned by New when another live backend of the
	// same Options.Name in the same network namespace holds the pin
	// directory: two backends must never write one set of maps.
	ErrPinsInUse = errors.New("ebpf: pin directory in use")
)

package nftables

import "errors"

// Errors callers branch on.
var (
	// ErrInvalidRuleset is returned for a Ruleset that refers to a set or
	// policy it does not hold; nothing is sent to the kernel.
	ErrInvalidRuleset = errors.New("nftables: inconsistent ruleset")
	// ErrKernelRejected wraps the kernel's refusal of a batch; the previous
	// ruleset is still in force, whole.
	ErrKernelRejected = errors.New("nftables: kernel rejected the batch")
)

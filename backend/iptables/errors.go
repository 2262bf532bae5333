package iptables

import "errors"

// Errors callers branch on.
var (
	// ErrInvalidRuleset is returned for a Ruleset that refers to a set or
	// policy it does not hold; nothing is sent to the kernel.
	ErrInvalidRuleset = errors.New("iptables: inconsistent ruleset")
	// ErrMixedMode is returned when the host holds iptables rules in both
	// the legacy and the nf_tables backend: enforcing in one of them would
	// leave the other's rules silently in force.
	ErrMixedMode = errors.New("iptables: rules split between iptables-legacy and iptables-nft")
	// ErrRestoreFailed wraps a refusal of iptables-restore or ipset
	// restore; the transaction that failed left the previous rules whole.
	ErrRestoreFailed = errors.New("iptables: restore failed")
)

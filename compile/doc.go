// Package compile turns a policy.Set into a Ruleset: the backend-neutral
// intermediate representation every Calyx dataplane renders.
//
// A Ruleset is the whole desired state of one node: content-addressed IP
// sets (selector members, literal nets, named ports, domains), policies
// compiled once per direction and shared by the endpoints they apply to,
// the node's endpoints with their ordered tiers and profiles, and node-wide
// settings. It is plain data: deterministic, printable (String) and
// comparable (Diff).
//
// The meaning of a Ruleset is defined by package backend/model, the
// reference interpreter; every kernel backend is tested against it.
//
// # Evaluation of one direction of one endpoint
//
//	for each tier in DirectionPolicy.Tiers (in order):
//	    for each policy in the tier (in order):
//	        for each rule (in order):
//	            if the rule matches:
//	                Log   → log, go on with the next rule
//	                Allow → ACCEPT (stop)
//	                Deny  → DROP (stop)
//	                Pass  → go to the next tier
//	    if no rule passed or decided: the tier's EndAction
//	        (Deny → DROP; Pass → next tier)
//	then (no tier applies, or every tier passed):
//	    the profiles, in order; first Allow/Deny decides; none → DROP
//
// A packet between two endpoints passes the source's egress, then the
// destination's ingress. Only the first packet of a flow is judged; replies
// of an allowed flow pass.
package compile

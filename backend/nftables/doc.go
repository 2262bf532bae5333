// Package nftables renders a compile.Ruleset into one nftables table with
// google/nftables over netlink: no nft binary in the data path.
//
// # Layout of the table
//
// One table, "inet calyx" (Options.Name suffixes it: "calyx-NAME"), that
// Calyx owns whole and nothing else touches:
//
//	chain forward-egress  (hook forward, priority filter)    pod egress stage
//	chain forward-ingress (hook forward, priority filter+1)  pod ingress stage
//	chain input           (hook input, priority filter)      pod → node: pod egress
//	chain input-host      (hook input, priority filter+1)    DefaultEndpointToHostAction
//	chain output          (hook output, priority filter)     node → pod: pod ingress
//
// Each base chain accepts established and related packets first and drops
// invalid ones, then dispatches through a verdict map keyed by interface
// name (iifname for egress, from the pod's host-side veth; oifname for
// ingress): one hash lookup, never a list of jumps. A calyx-prefixed
// interface missing from the map (a pod not programmed yet) is dropped:
// fail closed.
//
// Allow is "accept", which in nftables ends only the base chain it is
// reached from: a packet between two pods is accepted by forward-egress and
// then judged again by forward-ingress, registered on the same hook at the
// next priority. So a flow needs both the source's egress and the
// destination's ingress to allow it, without marks. Deny is "drop", final.
//
// Below the maps, chains are shared and content-addressed:
//
//	ep-HASH    one endpoint direction: "jump tier-…" per tier, then
//	           "jump prof-…" per profile, then drop
//	tier-HASH  one tier's policies for an endpoint: "jump pol-…" per
//	           policy, then the end action (drop for Deny; nothing for Pass)
//	pol-HASH   one compiled policy's rules: accept, drop, log (a policy
//	           of up to eight rules is written into its tier chains
//	           instead: cheaper than a jump, and fewer kernel objects)
//	prof-HASH  one profile's rules
//
// Endpoints whose policy is the same share ep and tier chains, so a new pod
// with the same policies as an existing one costs one map element. Pass
// without marks: a policy with Pass rules is split into segments at each
// Pass rule (pol-HASH-s0, -s1 …) and the tier chain holds the Pass rule
// itself as "MATCH return", which leaves the tier chain and continues with
// the next tier in the endpoint chain.
//
// # Sets
//
// Each compile set becomes named sets, one per family: "s-HASH-4"
// (ipv4_addr, interval) and "s-HASH-6" for nets, "np-HASH-4"
// (ipv4_addr . inet_proto . inet_service) and "np-HASH-6" for named ports.
// Names derive from the set ID, so a membership change adds and deletes
// elements only.
//
// Within a run of rules with one terminal action (accept, drop, return)
// order does not matter, so rules equal but for their destination ports
// become one rule on the union of the ports, and rules equal but for one
// literal set of nets become one rule on the union of the nets, across the
// small policies of a tier too: a tier of 10,000 two-rule policies is a
// few hundred rules. A run of rules of one shape in a policy (same action,
// a literal net, a protocol, ports) becomes one rule with a concatenated
// interval set: one lookup per packet however long the run. Constant sets
// are named by their content ("c-HASH"), shared by the two families and
// by chains: the kernel finds named sets much faster than it builds
// anonymous ones.
//
// # Transactions
//
// Every Apply is one netlink batch: the kernel commits all of it or none.
// The backend keeps what it last applied, diffs, and sends only changes
// (new chains, flushed-and-refilled changed chains, set and map elements
// added or deleted, dead chains and sets deleted). Set element additions
// are split into bounded messages and the socket buffers are sized for big
// batches. The netlink connection stays open between Applies (closing one
// waits for the kernel's deferred frees). Reconcile reads the table back and repairs what others changed:
// rules deleted, replaced or appended, elements removed, chains added.
// Close deletes the table and nothing else.
//
// Traffic between a pod and its own node follows the pod's policy (egress
// towards the node, ingress from it); Settings.DefaultEndpointToHostAction
// Deny then drops pod-to-node traffic after the pod's egress allowed it.
// Host endpoints are not rendered yet.
package nftables

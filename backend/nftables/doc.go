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
//	chain host-input      (regular)                          node ← world: host endpoint ingress
//	chain host-output     (regular)                          node → world: host endpoint egress
//	chain failsafe-in     (regular)                          fail-safe inbound ports
//	chain failsafe-out    (regular)                          fail-safe outbound ports
//
// The last four exist only while the Ruleset has a host endpoint (see
// Host endpoints below).
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
//	hep-HASH   one host endpoint direction: invalid dropped, "jump
//	           failsafe-in" (or -out), then "goto ep-…"
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
// Only the sets some rule of the node reads become kernel sets. A Ruleset
// holds the sets of every policy of the cluster, and most belong to
// policies of other nodes' pods: at the agent benchmark's scale (10,000
// policies, 110 local pods) 130 of 10,100 sets are read. A set is created
// in the batch that adds the first rule reading it and deleted in the one
// that removes the last; while no rule reads it, its members may change
// and nothing is sent.
//
// Each set read becomes named sets, one per family it has members of:
// "s-HASH-4" (ipv4_addr, interval) and "s-HASH-6" for nets, "np-HASH-4"
// (ipv4_addr . inet_proto . inet_service) and "np-HASH-6" for named ports.
// Names derive from the set ID, so a membership change within a family
// that has members adds and deletes elements only.
//
// A family without members gets no set: rules read it as the empty set it
// would be (a lookup in it never matches, so that rule is not written; a
// "not in it" always holds, so that term is not written). On an IPv4-only
// node this halves the kernel's sets.
//
// The price of leaving out a family: when a set's first member of a
// family arrives, or its last leaves, the rules reading the set change too
// (the set is created or deleted, and the tier and policy chains that read
// it are rewritten, as for a policy change), in the same atomic batch as
// the elements. A pod joining or leaving a set that keeps members of its
// families is still elements only.
//
// Set count is what a big table costs: the kernel finds a set by name by
// walking the table's list of sets, for every set it creates (twice: the
// name is checked for uniqueness), every element message, every rule that
// reads a set and every element dump, so creating a table of N sets, or
// reading it back, costs about N² name comparisons: 20,000 sets of two
// elements take about a minute to create and another to read back, 2,000
// under half a second each (BenchmarkKernelSets).
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
// Reading the table back costs one element dump per set, and the kernel
// finds each set by walking the table's list of sets (see Sets). So Reconcile first asks for the
// namespace's nftables generation, which every committed batch moves,
// whoever sends it: unmoved since the kernel was known to hold what the
// backend applied (a read that found nothing, or an Apply or repair that
// was the only commit since), nothing can have changed and nothing is
// read. Any other commit in the namespace, to any table, makes the next
// Reconcile read everything.
//
// Planning a batch costs in proportion to the table's objects, not to
// their names' sorting: chains and sets are compared by identity with
// what was last applied (render shares unchanged ones between Applies),
// and only the changed names are sorted.
//
// Traffic between a pod and its own node follows the pod's policy (egress
// towards the node, ingress from it); Settings.DefaultEndpointToHostAction
// Deny then drops pod-to-node traffic after the pod's egress allowed it.
//
// # Host endpoints
//
// A host endpoint's policy judges the node's own traffic with the world:
// new flows delivered to the node (input) that arrive on the endpoint's
// interfaces, and new flows the node sends (output) that leave by them.
// The input and output base chains keep their first rule, "not a workload
// interface", and with host endpoints it goes to host-input or host-output
// instead of accepting. Forwarded traffic and traffic between the node and
// its pods never reach those chains: the forward chains and the pods' maps
// are the same with or without host endpoints.
//
//	chain host-input {
//		IPv6 neighbour discovery accept
//		ct state established,related accept
//		iifname "eth0" goto hep-…                         named interfaces
//		iifname "lo" accept                               unless named
//		meta nfproto ipv4 ip daddr 10.0.0.5 goto hep-…    addresses only
//		goto hep-…                                        interfaceName "*"
//	}
//
// A named interface wins over an endpoint known by addresses, which wins
// over "*"; among endpoints of one kind the first key in sorted order wins.
// Loopback is only an endpoint's that names it; an endpoint naming a
// workload interface claims nothing.
// What no endpoint claims falls off the chain: the base chain accepts it.
// host-output is the same with oifname and the source address.
//
// An endpoint's hep chain drops invalid packets, accepts the fail-safe
// ports (failsafe-in: protocol and destination port, and the source when
// the entry has a net; failsafe-out: the destination), then goes to the
// endpoint's ep chain: the same tiers, policies and profiles as a
// workload's, shared with workloads of the same policy, ending in drop. A
// change of the fail-safe ports rewrites one chain; a change of a host
// endpoint's policy adds its new chains and rewrites its dispatch chain.
package nftables

// Package ebpf renders a compile.Ruleset into eBPF programs generated in
// Go with cilium/ebpf's asm package (building Calyx needs no clang and no
// object files) and attaches them with TCX to the host side of every pod's
// veth: TCX ingress runs the pod's egress policy, TCX egress its ingress
// policy. A packet between two pods of the node meets the source's egress
// program, then the destination's ingress program, as the model says.
//
// # Programs
//
// One program per endpoint direction; endpoints whose direction has the
// same tiers, policies and profiles share one program (a new pod in a
// namespace costs two TCX links and a set entry, no load). A program:
//
//  1. parses Ethernet, IPv4 (options, fragments) or IPv6 (hop-by-hop,
//     routing, fragment, destination options and AH headers, up to eight),
//     TCP, UDP, SCTP and UDPLite ports, ICMP and ICMPv6 type and code, and
//     for ICMP errors the quoted packet's tuple. ARP passes; other
//     ethertypes, truncated headers and unknown IP versions are dropped.
//     IPv6 neighbour and router discovery (types 133–136, hop limit 255,
//     never forwarded) always passes, as in the nftables dataplane;
//  2. on TCX ingress, drops a packet whose source address is not one of
//     the pod's own on that interface (a hash map of (interface index,
//     address)): a forged source would otherwise pass as another
//     endpoint's traffic further on. Then it looks the packet up in
//     conntrack (below); a live flow passes;
//  3. walks the direction flattened into straight-line code: each tier's
//     policies' rules in order (Allow and Deny end the walk, Pass jumps to
//     the next tier, Log writes a ring buffer event naming policy and rule
//     and goes on), the tier's end action, then the profiles (where Pass
//     is ignored), then deny. With flow events, the step that decides
//     stores its ID in the event (see Events). A run of consecutive rules of one tier (across
//     policies) with one action, each matching one net set on one side and
//     at most a protocol, an IP version and destination ports (the shapes
//     Kubernetes NetworkPolicy and "hundreds of CIDR+port Allow rules"
//     produce), becomes at most three LPM lookups keyed by (run, protocol,
//     port, address), (run, protocol, address) and (run, address). A run
//     of rules without addresses (protocol, IP version and ports only) may
//     mix Allow and Deny: its entries carry the index of the first rule
//     that makes them, and the lowest index among the hits decides
//     (a "dispatch");
//  4. on Allow: with DefaultEndpointToHostAction Deny, traffic from a pod
//     to its own node (a FIB lookup that finds a local route) is dropped;
//     otherwise a conntrack entry is made and, for a first fragment, a
//     fragment entry. The verdict is TCX_NEXT (later TCX programs still
//     run) or TCX_DROP.
//
// Code that outgrows one program is split into chunks of at most 16,384
// instructions (more when needed to stay within 33 chunks) that tail-call
// each other through a program array of their own; a Pass into a later
// chunk resumes at its tier. An endpoint with 50,000 distinct rules loads
// as up to 33 chunks; 50,000 CIDR+port rules, or 50,000 port rules of
// both actions, are one lookup. Programs are run
// in tests with BPF_PROG_TEST_RUN against the model (rapid, more than
// 10,000 cases per run).
//
// # Sets
//
// Net sets share one LPM trie keyed by (32-bit set ID, family, protocol,
// port, address): a set's members are prefixes with protocol and port 0;
// merged runs use the same map with their protocol and ports. Named ports
// live in a hash map keyed by (set ID, family, protocol, port, address).
// Set IDs stay with their set while programs use it, so a membership
// change writes map entries and never reloads a program.
//
// # Conntrack
//
// Calyx keeps its own conntrack in a BPF LRU hash map, as Calico's and
// Cilium's eBPF dataplanes do, rather than the kernel's through the
// bpf_skb_ct_lookup kfunc: at TCX, before netfilter, the kernel has no
// entry for a flow unless netfilter conntrack also runs in the namespace
// (and it would have to run for every flow), the kfunc needs BTF IDs that
// asm-generated programs would have to resolve by hand, and the LRU map
// bounds memory by itself. Entries are keyed by interface, hook and the
// tuple as seen where the flow was allowed; a packet is established if its
// tuple is known on its hook, a reply if its reversed tuple is known on
// the other hook of the same interface, related if it is an ICMP error
// quoting a known flow. TCP flags move an entry through SYN-sent (20 s
// idle), established once a reply was seen (1 h), and closing after a RST
// or FINs both ways (10 s); UDP and other protocols live 60 s, ICMP echo
// 5 s (an echo request never rides on another's entry). A SYN is never a
// reply, and a SYN on a closing flow is judged afresh. A flow allowed
// before a policy change stays open after it, exactly as with the kernel
// conntrack of the nftables and iptables dataplanes; new flows see the
// new policy. Because the source's program records an allowed flow even
// when the destination's program then drops it, the destination may
// answer that exact tuple (UDP, not a TCP SYN) for 60 s.
//
// # Events
//
// Programs write 64-byte records to one ring buffer (ReadEvents): a Log
// rule's packet, and with flow events (on by default; WithFlowEvents)
// every verdict of policy: Allow for a packet that opens a flow (the
// decision that makes its conntrack entry), Deny for a dropped packet.
// The record names what decided by a 64-bit ID the backend resolves: a
// rule (tier, policy, index), the end of a tier, the end of the profiles,
// a forged source address, a host endpoint's fail-safe port, or the
// deny-all program of an unknown interface (Event.Reason). A merged run or dispatch is one lookup for
// many rules; its events are resolved in Go to the first of the run's
// rules that matches the packet, the rule the model names (against the
// sets of the last Apply). Packets of flows conntrack knows (replies,
// related ICMP, later fragments) write nothing. Malformed packets are
// dropped without an event.
//
// A denied flow has no conntrack entry, so each of its packets is judged
// and reported again: a flood of denied packets is a flood of events.
// The ring buffer (256 KiB, about 3,600 records) is never waited for:
// when it is full the record is dropped and a per-CPU counter counts it
// (LostEvents); the verdict is the same either way. Events cost only
// judged packets, 80-170 ns each here (10 rules: 270-280 ns without,
// 350-375 ns with, BenchmarkFlowEvents and BenchmarkProgramRun; with the
// buffer full 20-45 ns more than without), and nothing for packets of
// known flows: a TCP connection is judged once per program, by its SYN.
// That is why they are on by default; off, the programs are exactly those
// without event code.
//
// # Pins and lifecycle
//
// Maps, links and program arrays are pinned under
// /sys/fs/bpf/calyx/v1/NAME@netINODE (PinDir): NAME is Options.Name
// ("calyx" by default) and INODE the inode number of the backend's network
// namespace (the N of /proc/PID/ns/net's "net:[N]"). bpffs is one per host
// (it is mounted if missing), not one per network namespace, so without
// the namespace in the name two backends of one name in two namespaces
// would adopt each other's maps. New takes an exclusive lock (flock) on
// the directory, held until Close or the process's death: a second live
// backend of the same name in the same namespace fails with ErrPinsInUse
// instead of rewriting the first one's maps, while a restarted agent
// takes the lock its dead predecessor left and adopts its pins. "v1" is the layout version: a pinned map whose type,
// key, value or size differs from the current layout is replaced
// deliberately (and every program reloaded), never reused. A new Backend
// adopts the maps, the links, set IDs and which program each link runs
// (a meta map remembers them), so an agent restart keeps enforcement in
// place and the first Apply after it loads nothing that did not change.
//
// Apply loads new programs first (the verifier checks them before
// anything changes), adds set entries, attaches or switches links with
// Link.Update (atomic per link), then removes links, programs and entries
// that are no longer used. Each link switches atomically; links of
// different endpoints switch one after the other. Check loads every
// program without attaching: the verifier is the dry run. Dump lists maps,
// programs, links and set entries. Reconcile (Repair) puts back links
// detached or replaced from outside, lost pins and set entries added or
// removed from outside, and attaches its links at the head of their hook
// again when a foreign program was put in front of them (one that returns
// TCX_PASS would otherwise decide before policy; it stays, behind ours).
// Close detaches and unpins everything the backend
// owns and nothing else: foreign TCX programs on the same interfaces stay.
//
// # Host endpoints
//
// A host endpoint's programs run on the node's own interfaces, with the
// hooks the other way round: TCX ingress runs its ingress policy, TCX
// egress its egress policy. Interface "eth0" is that interface (the first
// endpoint by key, if two name it; a workload interface gets none); "*"
// every interface of the node but workload interfaces and lo, except
// those a named host endpoint claims (a second "*" endpoint is ignored);
// "" the same interfaces, its programs judging only packets whose
// node-side address (the destination on ingress, the source on egress)
// is one of the endpoint's Addrs. Endpoints without a name each have
// their own link on every host interface ("eth0", then "eth0:1", ... in
// pins and Dump), and leave each other's packets alone: an address goes
// to the first "" endpoint by key that lists it, "*" takes the rest. Which
// interfaces they cover is read at every Apply and Reconcile; an
// interface a host endpoint names that does not exist is not attached
// (Stats.MissingInterfaces) until an Apply or Reconcile finds it.
//
// Only the node's own traffic is judged. After conntrack, an egress packet
// the node did not originate (it arrived on an interface: __sk_buff
// ingress_ifindex is not 0, which tells forwarded traffic even once it is
// source-NATed to a node address) passes (TCX_NEXT) unjudged, its flow
// entered in conntrack: the replies of a source-NATed flow come back to a
// node address, and TCX ingress runs before netfilter undoes the NAT.
// An ingress packet passes untouched unless a FIB lookup finds a local
// route for it (the lookup is most of what a forwarded packet from
// outside costs there). Forwarded traffic between the world and the pods
// is thus left to the pods' programs, and traffic between the node and
// its pods never meets a host interface. Then the fail-safe ports (Settings.FailsafeInbound on
// ingress: protocol, destination port and, with a Net, the source;
// FailsafeOutbound on egress, with a Net the destination) are allowed, and
// the endpoint's tiers and profiles run as a workload's, ending in deny.
// The addresses and fail-safe ports are compared inline: at most 256
// addresses of endpoints without a name and 256 fail-safe ports per
// direction (ErrTooBig beyond).
// There is no source check and no endpoint-to-host action. Conntrack
// entries are per interface, as for pods: a reply that comes back by
// another interface than its flow left by is judged afresh. The verdict is
// taken at TCX ingress, before netfilter's PREROUTING: a connection to a
// node address that kube-proxy would DNAT to a pod is judged as the
// node's own (Calico judges it after DNAT, as forwarded).
//
// # Unknown interfaces fail closed; the link watcher
//
// A TCX program exists only on the interfaces it was attached to, so the
// dataplane cannot drop traffic of a pod interface it does not know, as
// the nftables dataplane's forward chain does, without an agent. At
// every Apply and Reconcile the backend attaches a deny-all program to
// both hooks of every interface with the workload prefix
// (compile.InterfacePrefix) that the Ruleset does not name.
//
// The link watcher (on by default; WithLinkWatch) covers the interfaces
// created in between: New subscribes to link notifications of the
// backend's namespace (netlink, on a thread locked in that namespace),
// and a goroutine attaches a program to both hooks of every new workload
// interface as soon as its RTM_NEWLINK arrives: the endpoint's own
// program (and its source addresses) if the last Apply named the
// interface, deny-all otherwise. A new pod is then fail-closed within
// one TCX attach of its veth appearing, while the CNI plugin is still
// moving the peer and setting addresses, and the Apply that registers it
// only switches its two links with Link.Update (microseconds) instead of
// attaching them: a TCX attach waits for an RCU grace period under the
// RTNL lock (7-16 ms on a quiet machine here; both hooks, concurrently, a
// median of 50 ms at load 7, BenchmarkNewVeth), an update replaces the
// program in place and does not.
// The watcher holds the backend's lock while it attaches, so it never
// runs during an Apply; an Apply that starts meanwhile waits for it
// (Stats.Wait). The watcher also keeps the namespace's interface table
// from the notifications, so Apply lists no interfaces: it looks up only
// those of endpoints new since the last Apply (the pod the CNI plugin
// just created, perhaps in place of one of the same name) or missing
// from the table, and lists them all when more than eight are. The table
// may lag behind the kernel by the notifications not read yet: an
// interface gone meanwhile counts as missing (its attach or update fails
// and is skipped), one not heard of yet gets its program from the
// watcher. If the netlink socket overflows, the watcher subscribes again
// and lists and sweeps every interface. Close stops it first and waits
// for its goroutines; nothing it attached outlives Close.
//
// # Requirements and limits
//
// Linux 6.6 or later (TCX; New returns an error wrapping
// backend.ErrNotSupported on older kernels), CAP_BPF and CAP_NET_ADMIN.
// Options.NetNS selects the network namespace the interfaces live in.
// Namespace inode numbers are reused once a namespace is gone, so pins a
// crashed backend left for a deleted namespace are adopted (and their
// links to vanished interfaces dropped) by the next backend of that name
// in a namespace that gets the same number.
package ebpf

// Package iptables renders a compile.Ruleset into iptables chains and
// ipsets, programmed with one iptables-restore --noflush transaction per
// family and apply, and ipset restore for the sets.
//
// # Layout
//
// Every name starts with the instance prefix: "calyx-", or "calyx-TAG-"
// where TAG is backend.Options.Name (hashed to six characters when longer,
// so chain names fit iptables' 28 characters and set names ipset's 31).
// In the filter table of iptables and ip6tables alike:
//
//	FORWARD → calyx-fwd   pod traffic only; conntrack first (established,
//	                      related accept; invalid drop); -i calyx+ → fe
//	                      (the source pod's egress), -o calyx+ → fi (the
//	                      destination pod's ingress); accept if allowed
//	INPUT   → calyx-in    pod → node: the pod's egress, then
//	                      Settings.DefaultEndpointToHostAction;
//	                      anything else → calyx-hi (or RETURN without
//	                      host endpoints)
//	OUTPUT  → calyx-out   node → pod: the pod's ingress; anything
//	                      else → calyx-ho (or RETURN)
//
// Each is one jump, the first rule of its built-in chain. IPv6 neighbour
// discovery between a pod and its node is always accepted. Host endpoints
// are described below.
//
// Dispatch is by ipset, not by a list of interfaces: endpoints that share
// an endpoint chain share a hash:net,iface set of their (address,
// interface) pairs, and the "fe" (egress: src,src) and "fi" (ingress:
// dst,dst) chains hold one set lookup per distinct endpoint chain, then
// DROP. A new pod whose policy equals an existing pod's is one ipset
// member and no iptables rule; a packet with a forged source address, or
// from a calyx interface without an endpoint (a pod not programmed yet),
// reaches the DROP: fail closed.
//
// Below the dispatch, chains are shared and named by content or ID:
//
//	e-HASH  one endpoint direction: clear the marks, jump to each tier
//	        chain (return as soon as the accept mark is set), then each
//	        profile chain, then DROP
//	t-HASH  one tier's policies: the rules of small policies (at most 8
//	        rules) written in place, with same-action runs merged (ports
//	        into multiport chunks, literal nets into one ipset named by
//	        its members); a jump to the chain of each larger policy;
//	        return when allowed or passed; DROP at the end for a Deny end
//	        action. A node of 10,000 small policies holds a few dozen
//	        chains, not 10,000
//	p-HASH  one compiled policy, named by its ID and shared by every
//	        endpoint it applies to; r-HASH the same for a profile (whose
//	        Pass rules do nothing)
//	x-HASH  one rule with a negation iptables cannot write in one match
//	        (not ICMP type T of any protocol): excluded packets return
//	        first
//
// Decisions travel back up with mark bits: 0x1000000 (allowed) and
// 0x2000000 (passed: go on with the next tier); 0x4000000 logs a Log rule
// once when its match needed several rules. Deny is DROP, final. Log is
// NFLOG with a prefix naming the policy and rule.
//
// An Allow or Pass rule sets its mark; the policy chain returns on the
// mark after the last of a run of rules of that action (the caller checks
// the mark too, so the chain's end needs no check).
//
// A rule becomes one or more iptables rules with the same action: one per
// protocol when ports are matched without a protocol, one per multiport
// chunk (15 ports, a range counting two), one per named-port set. A literal
// set holding one net of the family is written inline (-s, -d: one CIDR
// per match); every other set is an ipset lookup. A run of at least four
// rules of one shape (same action, a protocol, one literal nets set on one
// side, destination ports) becomes one hash:net,port set lookup.
//
// # Host endpoints
//
// A host endpoint's policy judges the node's own traffic: what INPUT
// delivers to it and what it sends out through OUTPUT, neither from nor
// to a workload interface. Forwarded traffic never meets it (FORWARD is
// unchanged, not one rule more for pods), and neither does traffic
// between the node and its pods, which calyx-in and calyx-out keep
// judging by the pods' policy. calyx-hi (ingress, -i) and calyx-ho
// (egress, -o) pick the endpoint, goto its h- chain, and leave every other
// packet alone (it returns to INPUT or OUTPUT):
//
//	-i eth0 -g h-…        an endpoint named by interface, in both
//	                      families (a named endpoint wins over "*")
//	-i lo -j RETURN       loopback is no one's unless named
//	-d ADDR -g h-…        an endpoint known by its addresses only
//	                      (Interface ""): -d inbound, -s outbound, in the
//	                      families of its addresses
//	-g h-…                the endpoint of every interface ("*")
//
//	h-HASH  IPv6 neighbour discovery accepted; conntrack (established,
//	        related accept; invalid drop); the fail-safe ports of the
//	        direction (Settings.FailsafeInbound / FailsafeOutbound) accepted,
//	        one multiport rule per protocol and net (-s inbound, -d
//	        outbound; a net of the other family does not apply); then the
//	        endpoint's e- chain, shared machinery with the workloads, which
//	        returns only when allowed: ACCEPT, else DROP
//
// A host endpoint with no tier and no allowing profile denies all but its
// fail-safe ports, as in Calico. When two endpoints claim one interface,
// or "*", the first by key is used; one named after a workload interface
// gets no rule (its traffic is its pod's).
//
// # Sets
//
// Each compile set a rule uses becomes an ipset per family, "…4-HASH"
// (family inet) and "…6-HASH" (inet6), named by the set ID so a
// membership change touches members only: hash:net for nets (a /0 is
// written as two /1 halves, which hash:net accepts), hash:ip,port for
// named ports. Merged runs are hash:net,port sets named by content.
//
// # Transactions
//
// An Apply runs `ipset restore` (create sets, add and delete members),
// then one `iptables-restore --noflush --wait` per family (declaring a
// chain flushes it, so each new or changed chain is written whole, and
// chains no longer used are deleted at the end), then `ipset restore` to
// destroy the sets no rule refers to any more. Each restore is atomic; if
// one fails the families applied before it stay applied and the next
// Apply reads the kernel back before diffing.
//
// Every rule carries a comment "cx:HASH" of its chain, position and
// content, and rules are written exactly as iptables-save prints them.
// Reconcile reads iptables-save and ipset save, compares line by line, and
// rewrites any chain that differs (a rule deleted, changed, appended),
// restores moved or missing jumps, members and sets, and deletes chains
// and sets with our prefix that the state does not have. Close removes our
// jumps, chains and sets and nothing else.
//
// The first Apply, too, reads the kernel: a restarted agent patches what
// its predecessor left instead of flushing. New detects the iptables mode
// (go-iptables finds the binary and version; `iptables --version` names the
// mode) and refuses with ErrMixedMode a host where the other mode holds
// rules. Options.NetNS runs every binary in that network namespace, from a
// thread switched into it with package internal/netns.
//
// A membership change of existing hash:net and hash:net,iface sets (a pod
// like its neighbours, a label change; up to 64 members) goes to the
// kernel over netlink instead of through `ipset restore`. Check applies
// the Ruleset from scratch in a throw-away network namespace, so the
// kernel (ipset, iptables-restore) validates it and nothing in force
// changes.
//
// Rendering is cached between Applies by policy identity (the compiler
// shares unchanged policies between Rulesets), so a new pod on a node of
// 10,000 policies renders only what changed. Render returns the restore
// inputs for a Ruleset without touching anything.
//
// A workload endpoint appears in a family's dispatch only if it has an
// address of that family: a single-stack pod's traffic in the other family
// is dropped like an unknown interface's.
package iptables

// Name is the registry name of this backend.
const Name = "iptables"

package compile

import (
	"net/netip"
)

// Ruleset is the whole desired state of one node, and nothing else: the IP
// sets its rules refer to, the policies (compiled once and shared by every
// endpoint they apply to), the node's endpoints with their ordered tiers, and
// node-wide settings.
//
// A Ruleset is plain data. It holds no kernel types, is produced
// deterministically from its input, prints canonically (String) and can be
// compared with Diff. Backends must treat it as read-only: the compiler may
// share parts of one Ruleset with the next.
type Ruleset struct {
	// Node is the node the Ruleset is for; empty for the virtual node that
	// holds every endpoint of the cluster (simulation).
	Node string
	// Sets maps a set ID to its definition and members. Every SetID that a
	// rule refers to is present.
	Sets map[SetID]*IPSet
	// Policies maps a policy ID to its compiled rules. Every PolicyID that an
	// endpoint refers to is present.
	Policies map[PolicyID]*Policy
	// Endpoints maps an endpoint key (see EndpointKey) to the endpoint.
	Endpoints map[string]*Endpoint
	// Settings are the node-wide knobs.
	Settings Settings
}

// SetID names an IP set. It is derived from the set's definition (its kind
// and what selects its members), never from its members, so a membership
// change keeps the ID and touches set elements only. Two rules with the same
// definition share one set.
type SetID string

// SetKind says what a set's members are.
type SetKind uint8

const (
	// SetNets holds addresses and CIDRs: the endpoints and network sets a
	// selector picks, or the literal nets of a rule.
	SetNets SetKind = iota + 1
	// SetNamedPorts holds (address, protocol, port) triples: the named port
	// of every endpoint a selector picks.
	SetNamedPorts
	// SetDomains holds the addresses that names matching its domain
	// patterns resolve to. Its members are filled at run time (DNS); the
	// compiler emits it empty.
	SetDomains
)

// String returns the kind's name.
func (k SetKind) String() string {
	switch k {
	case SetNets:
		return "nets"
	case SetNamedPorts:
		return "named-ports"
	case SetDomains:
		return "domains"
	}
	return "unknown"
}

// IPSet is one set: its definition and, for selector and literal sets, its
// members.
type IPSet struct {
	// ID is derived from Kind and the definition fields below.
	ID   SetID
	Kind SetKind
	// Selector is the canonical selector over flattened endpoint labels
	// whose matches are the members (SetNets from a selector, SetNamedPorts).
	// Empty for literal and domain sets.
	Selector string
	// PortName and Protocol define a SetNamedPorts set: the named port
	// PortName with protocol Protocol of every endpoint Selector picks.
	PortName string
	Protocol uint8
	// Domains are the patterns of a SetDomains set, sorted ("*.minepool.com").
	Domains []string
	// Literal is true for a set of nets written literally in a rule; its
	// members never change.
	Literal bool

	// Nets are the members of a SetNets set: sorted, de-duplicated,
	// canonical (masked) prefixes; a single address is a /32 or /128.
	Nets []netip.Prefix
	// Ports are the members of a SetNamedPorts set, sorted.
	Ports []PortMember
}

// PortMember is one member of a named-port set.
type PortMember struct {
	Addr     netip.Addr
	Protocol uint8
	Port     uint16
}

// PolicyID names a compiled policy in one direction. It is derived from the
// source policy's identity and the direction ("in:" or "out:" + tier/name),
// so every endpoint the policy applies to refers to the same compiled rules.
type PolicyID string

// Direction is the direction of traffic relative to an endpoint.
type Direction uint8

const (
	// Ingress is traffic towards the endpoint.
	Ingress Direction = iota + 1
	// Egress is traffic from the endpoint.
	Egress
)

// String returns "ingress" or "egress".
func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return "unknown"
}

// Policy is one source policy (or profile) compiled for one direction: an
// ordered list of rules.
type Policy struct {
	ID        PolicyID
	Direction Direction
	// Tier is the tier the policy belongs to; empty for profiles.
	Tier string
	// Name is the policy's display name: "namespace/name" for namespaced
	// policies, "name" for global ones, "profile:name" for profiles.
	Name string
	// Rules are evaluated in order; the first Allow, Deny or Pass decides.
	Rules []Rule
}

// Action is what a matching rule does.
type Action uint8

const (
	// ActionAllow accepts the flow; no later tier is consulted.
	ActionAllow Action = iota + 1
	// ActionDeny drops the flow.
	ActionDeny
	// ActionPass skips the rest of the tier and goes to the next one.
	ActionPass
	// ActionLog logs the packet and goes on with the next rule.
	ActionLog
)

// String returns the action as Calico spells it.
func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "Allow"
	case ActionDeny:
		return "Deny"
	case ActionPass:
		return "Pass"
	case ActionLog:
		return "Log"
	}
	return "Unknown"
}

// Rule is one compiled rule: a match and an action, with where it came from.
type Rule struct {
	Match  Match
	Action Action
	Origin Origin
}

// Origin says where a rule came from, for traces and flow logs.
type Origin struct {
	// Tier, Policy (display name as Policy.Name) and Kind of the source
	// policy ("NetworkPolicy", "GlobalNetworkPolicy", "KubernetesNetworkPolicy",
	// "Profile").
	Tier   string
	Policy string
	Kind   string
	// Index is the rule's index in the source policy's rule list for its
	// direction; -1 for a rule the compiler synthesised (a profile's allow).
	Index int
	// Path is the field path of the rule in the source document
	// ("spec.egress[0]").
	Path string
	// Source is where the source document was read ("policies/pay.yaml:14").
	Source string
}

// Match is the conjunction of everything a rule checks. A zero Match
// matches every packet.
type Match struct {
	// Protocol, when non-zero, is the IP protocol number the packet must
	// have; NotProtocol, when non-zero, one it must not have.
	Protocol    uint8
	NotProtocol uint8
	// IPVersion, when non-zero (4 or 6), restricts the rule to one family.
	IPVersion uint8
	// ICMP and NotICMP match ICMP or ICMPv6 type and code.
	ICMP    *ICMPMatch
	NotICMP *ICMPMatch
	// Src and Dst match the packet's source and destination.
	Src, Dst PeerMatch
}

// ICMPMatch matches an ICMP type and, if Code is non-nil, code.
type ICMPMatch struct {
	Type uint8
	Code *uint8
}

// PeerMatch matches one side (source or destination) of a packet.
type PeerMatch struct {
	// Sets: the address must be in every one of these SetNets/SetDomains
	// sets (a rule's nets and its selector are separate sets, ANDed).
	Sets []SetID
	// NotSets: the address must be in none of these.
	NotSets []SetID
	// Ports and NamedPorts are ORed: if either is non-empty, the port must
	// be in one of the ranges, or (address, protocol, port) must be in one
	// of the SetNamedPorts sets.
	Ports      []PortRange
	NamedPorts []SetID
	// NotPorts and NotNamedPorts: the port must be in none of the ranges
	// and (address, protocol, port) in none of the sets.
	NotPorts      []PortRange
	NotNamedPorts []SetID
}

// PortRange is an inclusive range of ports; a single port has Min == Max.
type PortRange struct {
	Min, Max uint16
}

// EndpointKind says what an endpoint is.
type EndpointKind uint8

const (
	// WorkloadEndpoint is a pod's interface.
	WorkloadEndpoint EndpointKind = iota + 1
	// HostEndpoint is one of the node's own interfaces.
	HostEndpoint
)

// String returns "workload" or "host".
func (k EndpointKind) String() string {
	switch k {
	case WorkloadEndpoint:
		return "workload"
	case HostEndpoint:
		return "host"
	}
	return "unknown"
}

// Endpoint is one endpoint on the node and the policy that governs it.
type Endpoint struct {
	// Key is the endpoint's identity: "namespace/name" for a workload,
	// "host:node/name" for a host endpoint.
	Key  string
	Kind EndpointKind
	// Node is the node the endpoint lives on.
	Node string
	// Interface is the host-side interface name: for a workload, the veth
	// in the node's namespace; for a host endpoint, its interfaceName:
	// "*" for every interface of the node but its workloads' and loopback,
	// empty for a host endpoint that only names expected IPs (its policy
	// applies to the node's traffic to and from those addresses).
	Interface string
	// Addrs are the endpoint's addresses, sorted.
	Addrs []netip.Addr
	// Ingress and Egress govern traffic to and from the endpoint.
	Ingress, Egress DirectionPolicy
}

// DirectionPolicy is what decides one direction of one endpoint: the tiers
// that apply, in order, then the profiles.
type DirectionPolicy struct {
	// Tiers lists, in evaluation order, only the tiers with at least one
	// policy that applies to the endpoint in this direction.
	Tiers []TierPolicies
	// Profiles are consulted only when no tier applies (Tiers is empty) or
	// every applying tier ended in Pass; the first Allow or Deny of a
	// profile decides; if none does, the packet is denied.
	Profiles []PolicyID
}

// TierPolicies is one tier's applying policies for one endpoint and
// direction.
type TierPolicies struct {
	Tier     string
	Policies []PolicyID
	// EndAction is what happens when no rule of the tier's policies
	// decided: ActionDeny (the default) or ActionPass.
	EndAction Action
}

// Settings are the node-wide knobs of a Ruleset.
type Settings struct {
	// FailsafeInbound and FailsafeOutbound are host ports never blocked by
	// host endpoint policy.
	FailsafeInbound  []ProtoPort
	FailsafeOutbound []ProtoPort
	// DefaultEndpointToHostAction is what happens to traffic from a
	// workload to its own node: Deny (Drop), Allow (Accept) or Pass
	// (Return: host endpoint policy decides). Calico's default is Drop.
	DefaultEndpointToHostAction Action
	// LogPrefix prefixes every log line the dataplane emits.
	LogPrefix string
}

// ProtoPort is a protocol and port, optionally restricted to a peer net.
type ProtoPort struct {
	Protocol uint8
	Port     uint16
	Net      netip.Prefix
}

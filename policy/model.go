package policy

import (
	"net/netip"

	"github.com/calyxnet/calyx/selector"
)

// This file holds the normalised model: what the compiler consumes. Every
// Calico rule of meaning (namespace scoping, label prefixes, inferred
// types, Kubernetes conversion) has already been applied here, so the
// compiler never re-derives Calico semantics.

// Labels that Calico gives endpoints implicitly, and the prefixes under
// which an endpoint inherits its namespace's and service account's labels.
const (
	// LabelNamespace holds an endpoint's (or namespaced network set's)
	// namespace.
	LabelNamespace = "projectcalico.org/namespace"
	// LabelOrchestrator is "k8s" on endpoints made from pods.
	LabelOrchestrator = "projectcalico.org/orchestrator"
	// LabelServiceAccount holds a pod's service account name.
	LabelServiceAccount = "projectcalico.org/serviceaccount"
	// LabelName is set on namespaces and service accounts to their name
	// (seen through the prefixes below as pcns.projectcalico.org/name and
	// pcsa.projectcalico.org/name).
	LabelName = "projectcalico.org/name"
	// NamespaceLabelPrefix prefixes the namespace labels an endpoint
	// inherits; a rule's namespaceSelector is rewritten onto it.
	NamespaceLabelPrefix = "pcns."
	// ServiceAccountLabelPrefix prefixes the service account labels an
	// endpoint inherits; serviceAccounts.selector is rewritten onto it.
	ServiceAccountLabelPrefix = "pcsa."
	// OrchestratorK8s is the value of LabelOrchestrator for pods.
	OrchestratorK8s = "k8s"
	// K8sPolicyNamePrefix prefixes the name of a converted Kubernetes
	// NetworkPolicy, as Calico names it.
	K8sPolicyNamePrefix = "knp.default."
	// K8sPolicyOrder is the order of converted Kubernetes NetworkPolicies.
	K8sPolicyOrder = 1000.0
	// NamespaceParentPrefix prefixes the parent ID of a namespace (Calico's
	// profile name for it): kns.<namespace>.
	NamespaceParentPrefix = "kns."
	// ServiceAccountParentPrefix prefixes the parent ID of a service
	// account: ksa.<namespace>.<name>.
	ServiceAccountParentPrefix = "ksa."
)

// Direction is ingress (into the endpoint) or egress (out of it).
type Direction uint8

// Directions.
const (
	Ingress Direction = iota
	Egress
)

// String returns "ingress" or "egress".
func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Policy is a normalised policy of any kind (Calico, global, staged or
// converted Kubernetes).
type Policy struct {
	// Kind is the kind the policy was written as.
	Kind Kind
	// Namespace is the policy's namespace; empty for global policies.
	Namespace string
	// Name is the policy's name; for Kubernetes policies it is Calico's
	// "knp.default.<name>".
	Name string
	// Tier is the tier the policy belongs to ("default" when none given).
	Tier string
	// Order places the policy in its tier; nil means after all that have
	// one.
	Order *float64
	// Selector picks the endpoints the policy applies to, over the
	// flattened endpoint label space (namespace scope, namespaceSelector
	// and serviceAccountSelector already folded in).
	Selector *selector.Selector
	// Types lists the directions the policy governs, Ingress before Egress,
	// inferred as Calico does when the source did not say.
	Types []Direction
	// Ingress and Egress are the rules, in order.
	Ingress, Egress []RuleInfo
	// Staged is true for the staged kinds: such a policy is never enforced.
	Staged bool
	// StagedAction is Set or Delete for staged policies.
	StagedAction StagedAction
	// DoNotTrack, PreDNAT and ApplyOnForward are GlobalNetworkPolicy's host
	// endpoint knobs; ApplyOnForward is true for namespaced policies.
	DoNotTrack, PreDNAT, ApplyOnForward bool
	// Position is where the policy was written (zero if not decoded).
	Position Position
}

// Key returns the policy's identity: namespace/name, or name when global.
func (p *Policy) Key() string { return objectID(p.Namespace, p.Name) }

// Applies reports whether the policy governs direction d.
func (p *Policy) Applies(d Direction) bool {
	for _, t := range p.Types {
		if t == d {
			return true
		}
	}
	return false
}

// Rules returns the rules for direction d.
func (p *Policy) Rules(d Direction) []RuleInfo {
	if d == Egress {
		return p.Egress
	}
	return p.Ingress
}

// RuleInfo is a normalised rule.
type RuleInfo struct {
	// Action is Allow, Deny, Log or Pass.
	Action Action
	// Protocol is the IP protocol number to match; 0 means any.
	Protocol uint8
	// NotProtocol is a protocol number to exclude; 0 means none.
	NotProtocol uint8
	// ICMP and NotICMP match ICMP type/code; nil means no condition.
	ICMP, NotICMP *ICMPMatch
	// IPVersion is 4 or 6; 0 means both.
	IPVersion int
	// Source and Destination are the conditions on each end.
	Source, Destination Match
	// HTTP is the rule's HTTP match, decoded but NOT enforced at L3/L4: a
	// backend that cannot enforce it must treat the rule as if the HTTP
	// match were absent and report so (see L7).
	HTTP *HTTPMatch
	// Annotations are the rule's metadata annotations.
	Annotations map[string]string
	// Field is the rule's path in its source object, such as
	// spec.egress[0] (for converted Kubernetes rules,
	// spec.ingress[0].from[1] and the like).
	Field string
	// Position is where the rule was written.
	Position Position
}

// L7 reports whether the rule has conditions (HTTP) the L3/L4 dataplanes do
// not enforce.
func (r *RuleInfo) L7() bool { return r.HTTP != nil }

// ICMPMatch is an ICMP type and optional code.
type ICMPMatch struct {
	// Type is the ICMP type.
	Type uint8
	// Code is the ICMP code; nil means any code.
	Code *uint8
}

// PortRange is an inclusive range of ports; a single port has Min == Max.
type PortRange struct {
	// Min is the first port.
	Min uint16
	// Max is the last port.
	Max uint16
}

// Match is the normalised condition on one end of a packet. Empty fields
// mean "no condition"; all non-empty ones must hold.
type Match struct {
	// Nets: the address is in one of these.
	Nets []netip.Prefix
	// NotNets: the address is in none of these.
	NotNets []netip.Prefix
	// Selector: the address belongs to an endpoint or network set whose
	// flattened labels match; nil means any address. Namespace scope,
	// namespaceSelector and serviceAccounts are folded in.
	Selector *selector.Selector
	// NotSelector: the address does not belong to an endpoint or network
	// set whose flattened labels match; nil means no condition. As in
	// Calico it is not namespace-scoped.
	NotSelector *selector.Selector
	// Ports: the port is in one of these ranges or named ports (when both
	// are empty, any port).
	Ports []PortRange
	// NamedPorts are port names, resolved per destination endpoint by the
	// compiler: the endpoint's ports of that name and the rule's protocol
	// (of any protocol when the rule has none, which Calico allows for
	// named ports).
	NamedPorts []string
	// NotPorts and NotNamedPorts: the port is in none of these.
	NotPorts      []PortRange
	NotNamedPorts []string
	// Domains (destination only): the address is one a DNS name matching
	// one of these patterns resolved to.
	Domains []string
	// Service: the address is an endpoint of this Kubernetes Service
	// (namespace filled in); nil means no condition.
	Service *ServiceMatch
}

// Endpoint is a normalised workload or host endpoint.
type Endpoint struct {
	// Kind is KindPod for workload endpoints, KindHostEndpoint for host
	// endpoints.
	Kind Kind
	// Namespace is the pod's namespace; empty for host endpoints.
	Namespace string
	// Name is the pod's or HostEndpoint's name.
	Name string
	// Node is the node the endpoint is on (spec.nodeName, spec.node).
	Node string
	// InterfaceName is the host endpoint's interface ("*" for all); empty
	// for workloads, whose interface the CNI plugin names.
	InterfaceName string
	// Labels are the endpoint's own labels (without implicit ones; see
	// Set.EndpointLabels for the flattened view).
	Labels map[string]string
	// IPs are the endpoint's addresses.
	IPs []netip.Addr
	// Ports are the endpoint's named ports.
	Ports []EndpointNamedPort
	// ServiceAccount is the pod's service account ("" if none given).
	ServiceAccount string
	// Profiles are the host endpoint's profiles, applied when no policy
	// applies; workloads get kns.<namespace> and ksa.<ns>.<sa> implicitly.
	Profiles []string
	// Position is where the endpoint was written.
	Position Position
}

// Key returns namespace/name for workloads, name for host endpoints.
func (e *Endpoint) Key() string { return objectID(e.Namespace, e.Name) }

// EndpointNamedPort is a named port of an endpoint.
type EndpointNamedPort struct {
	// Name is the port's name.
	Name string
	// Protocol is the IP protocol number (TCP 6 when not given).
	Protocol uint8
	// Port is the port number.
	Port uint16
}

// NetworkSetInfo is a normalised NetworkSet or GlobalNetworkSet.
type NetworkSetInfo struct {
	// Kind is KindNetworkSet or KindGlobalNetworkSet.
	Kind Kind
	// Namespace is empty for global network sets.
	Namespace string
	// Name is the set's name.
	Name string
	// Labels are the set's own labels.
	Labels map[string]string
	// Nets are the set's nets.
	Nets []netip.Prefix
	// AllowedEgressDomains are the set's domains.
	AllowedEgressDomains []string
}

// Key returns namespace/name, or name when global.
func (n *NetworkSetInfo) Key() string { return objectID(n.Namespace, n.Name) }

// TierInfo is a normalised tier.
type TierInfo struct {
	// Name is the tier's name.
	Name string
	// Order places the tier; nil means after all that have one.
	Order *float64
	// DefaultAction is Deny or Pass: what happens at the end of the tier.
	DefaultAction Action
	// Implicit is true for the default tier when no Tier object defines it.
	Implicit bool
}

// ProfileInfo is a normalised profile: rules applied to an endpoint in a
// direction when no policy applies to it there, and labels it lends.
type ProfileInfo struct {
	// Name is the profile's ID: a Profile's name, kns.<namespace> for a
	// namespace or ksa.<namespace>.<name> for a service account.
	Name string
	// Ingress and Egress are the profile's rules, in order.
	Ingress, Egress []RuleInfo
	// Labels are the labels the profile lends its endpoints (see
	// Set.ParentLabels).
	Labels map[string]string
	// Implicit is true for the namespace and service account profiles,
	// which no Profile object defines.
	Implicit bool
}

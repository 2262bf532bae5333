package policy

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Object is any resource this package decodes: the projectcalico.org/v3
// types declared here and the Kubernetes types *networkingv1.NetworkPolicy,
// *corev1.Namespace, *corev1.Pod and *corev1.ServiceAccount. All of them
// are pointers to structs that embed metav1.TypeMeta and metav1.ObjectMeta.
// Use KindOf, not TypeMeta, to learn an object's kind: objects handed over
// by informers often carry an empty TypeMeta.
type Object interface {
	metav1.Object
	// GetObjectKind gives access to the apiVersion and kind fields.
	GetObjectKind() schema.ObjectKind
}

// NetworkPolicy is a namespaced projectcalico.org/v3 NetworkPolicy: rules
// for the endpoints of one namespace.
type NetworkPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata; name and namespace
	// identify the policy.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the policy itself.
	Spec NetworkPolicySpec `json:"spec,omitempty"`
}

// NetworkPolicySpec is the specification of a NetworkPolicy.
type NetworkPolicySpec struct {
	// Tier names the tier the policy belongs to; empty means "default".
	Tier string `json:"tier,omitempty"`
	// Order places the policy inside its tier: lower first; nil means
	// after every policy that has an order.
	Order *float64 `json:"order,omitempty"`
	// Ingress is the ordered list of rules for traffic into the selected
	// endpoints.
	Ingress []Rule `json:"ingress,omitempty"`
	// Egress is the ordered list of rules for traffic out of the selected
	// endpoints.
	Egress []Rule `json:"egress,omitempty"`
	// Selector picks the endpoints (of the policy's namespace) the policy
	// applies to; empty means all().
	Selector string `json:"selector,omitempty"`
	// Types says which directions the policy governs (Ingress, Egress).
	// When omitted it is inferred: Egress only if there are egress rules
	// and no ingress rules, both if there are both, Ingress otherwise.
	Types []PolicyType `json:"types,omitempty"`
	// ServiceAccountSelector further restricts the endpoints to those whose
	// service account's labels match it.
	ServiceAccountSelector string `json:"serviceAccountSelector,omitempty"`
	// PerformanceHints are hints to Calico's policy engine; they never
	// change what is enforced.
	PerformanceHints []string `json:"performanceHints,omitempty"`
}

// GlobalNetworkPolicy is a cluster-scoped projectcalico.org/v3 policy: it
// can select endpoints of every namespace and host endpoints.
type GlobalNetworkPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata; the name identifies the
	// policy.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the policy itself.
	Spec GlobalNetworkPolicySpec `json:"spec,omitempty"`
}

// GlobalNetworkPolicySpec is the specification of a GlobalNetworkPolicy.
type GlobalNetworkPolicySpec struct {
	// Tier names the tier the policy belongs to; empty means "default".
	Tier string `json:"tier,omitempty"`
	// Order places the policy inside its tier: lower first; nil means
	// after every policy that has an order.
	Order *float64 `json:"order,omitempty"`
	// Ingress is the ordered list of rules for traffic into the selected
	// endpoints.
	Ingress []Rule `json:"ingress,omitempty"`
	// Egress is the ordered list of rules for traffic out of the selected
	// endpoints.
	Egress []Rule `json:"egress,omitempty"`
	// Selector picks the endpoints the policy applies to; empty means all().
	Selector string `json:"selector,omitempty"`
	// Types says which directions the policy governs; inferred as for
	// NetworkPolicySpec.Types when omitted.
	Types []PolicyType `json:"types,omitempty"`
	// DoNotTrack applies the rules before connection tracking and exempts
	// allowed packets from it (host endpoints only).
	DoNotTrack bool `json:"doNotTrack,omitempty"`
	// PreDNAT applies the rules before DNAT (host endpoints, ingress only).
	PreDNAT bool `json:"preDNAT,omitempty"`
	// ApplyOnForward applies the rules to traffic forwarded through a host
	// endpoint as well as to traffic to and from the host.
	ApplyOnForward bool `json:"applyOnForward,omitempty"`
	// ServiceAccountSelector further restricts the endpoints to those whose
	// service account's labels match it.
	ServiceAccountSelector string `json:"serviceAccountSelector,omitempty"`
	// NamespaceSelector further restricts the endpoints to those whose
	// namespace's labels match it.
	NamespaceSelector string `json:"namespaceSelector,omitempty"`
	// PerformanceHints are hints to Calico's policy engine; they never
	// change what is enforced.
	PerformanceHints []string `json:"performanceHints,omitempty"`
}

// StagedAction says what a staged policy would do to its enforced
// counterpart: Set (default) or Delete.
type StagedAction string

// Staged actions.
const (
	StagedActionSet    StagedAction = "Set"
	StagedActionDelete StagedAction = "Delete"
)

// StagedNetworkPolicy is a NetworkPolicy kept for preview: it is decoded,
// validated and reported but never enforced.
type StagedNetworkPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the staged policy.
	Spec StagedNetworkPolicySpec `json:"spec,omitempty"`
}

// StagedNetworkPolicySpec is a NetworkPolicySpec plus the staged action.
type StagedNetworkPolicySpec struct {
	// StagedAction is Set (preview the policy) or Delete (preview its
	// removal); empty means Set.
	StagedAction StagedAction `json:"stagedAction,omitempty"`
	// NetworkPolicySpec holds the fields of the policy being staged.
	NetworkPolicySpec `json:",inline"`
}

// StagedGlobalNetworkPolicy is a GlobalNetworkPolicy kept for preview: it
// is decoded, validated and reported but never enforced.
type StagedGlobalNetworkPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the staged policy.
	Spec StagedGlobalNetworkPolicySpec `json:"spec,omitempty"`
}

// StagedGlobalNetworkPolicySpec is a GlobalNetworkPolicySpec plus the staged
// action.
type StagedGlobalNetworkPolicySpec struct {
	// StagedAction is Set (preview the policy) or Delete (preview its
	// removal); empty means Set.
	StagedAction StagedAction `json:"stagedAction,omitempty"`
	// GlobalNetworkPolicySpec holds the fields of the policy being staged.
	GlobalNetworkPolicySpec `json:",inline"`
}

// StagedKubernetesNetworkPolicy is a Kubernetes NetworkPolicy kept for
// preview: never enforced.
type StagedKubernetesNetworkPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the staged policy.
	Spec StagedKubernetesNetworkPolicySpec `json:"spec,omitempty"`
}

// StagedKubernetesNetworkPolicySpec is a networking.k8s.io/v1
// NetworkPolicySpec plus the staged action.
type StagedKubernetesNetworkPolicySpec struct {
	// StagedAction is Set (preview the policy) or Delete (preview its
	// removal); empty means Set.
	StagedAction StagedAction `json:"stagedAction,omitempty"`
	// NetworkPolicySpec holds the fields of the Kubernetes policy being
	// staged.
	networkingv1.NetworkPolicySpec `json:",inline"`
}

// PolicyType is a direction a policy governs.
type PolicyType string

// Policy types.
const (
	PolicyTypeIngress PolicyType = "Ingress"
	PolicyTypeEgress  PolicyType = "Egress"
)

// Action is what a rule does with a packet it matches.
type Action string

// Rule actions.
const (
	// Allow accepts the packet; no later rule or tier is consulted.
	Allow Action = "Allow"
	// Deny drops the packet; no later rule or tier is consulted.
	Deny Action = "Deny"
	// Log logs the packet and goes on with the next rule.
	Log Action = "Log"
	// Pass skips the rest of the tier and goes on with the next tier.
	Pass Action = "Pass"
)

// Rule is one Calico rule: match criteria and an action.
type Rule struct {
	// Action is Allow, Deny, Log or Pass.
	Action Action `json:"action"`
	// IPVersion restricts the rule to IPv4 (4) or IPv6 (6).
	IPVersion *int `json:"ipVersion,omitempty"`
	// Protocol restricts the rule to one IP protocol: TCP, UDP, ICMP,
	// ICMPv6, SCTP, UDPLite or a number 1-255. Required with ports.
	Protocol *Protocol `json:"protocol,omitempty"`
	// ICMP restricts the rule to an ICMP type (and code); only with
	// protocol ICMP or ICMPv6.
	ICMP *ICMPFields `json:"icmp,omitempty"`
	// NotProtocol excludes one IP protocol.
	NotProtocol *Protocol `json:"notProtocol,omitempty"`
	// NotICMP excludes an ICMP type (and code).
	NotICMP *ICMPFields `json:"notICMP,omitempty"`
	// Source holds the criteria on the packet's source.
	Source EntityRule `json:"source,omitzero"`
	// Destination holds the criteria on the packet's destination.
	Destination EntityRule `json:"destination,omitzero"`
	// HTTP matches HTTP methods and paths. It is decoded and reported, but
	// not enforced by the L3/L4 dataplanes.
	HTTP *HTTPMatch `json:"http,omitempty"`
	// Metadata carries annotations about the rule.
	Metadata *RuleMetadata `json:"metadata,omitempty"`
}

// RuleMetadata carries free-form information about a rule.
type RuleMetadata struct {
	// Annotations are key/value pairs about the rule.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ICMPFields is an ICMP type and optional code.
type ICMPFields struct {
	// Type is the ICMP type, 0-254 (for example 8, echo request).
	Type *int `json:"type,omitempty"`
	// Code is the ICMP code, 0-255; only together with Type.
	Code *int `json:"code,omitempty"`
}

// HTTPMatch matches HTTP requests (methods and paths, ANDed).
type HTTPMatch struct {
	// Methods lists HTTP methods, ORed.
	Methods []string `json:"methods,omitempty"`
	// Paths lists path matches, ORed.
	Paths []HTTPPath `json:"paths,omitempty"`
}

// HTTPPath is one HTTP path match: exactly one of Exact and Prefix.
type HTTPPath struct {
	// Exact matches the path exactly.
	Exact string `json:"exact,omitempty"`
	// Prefix matches paths starting with it.
	Prefix string `json:"prefix,omitempty"`
}

// EntityRule holds the criteria on one end (source or destination) of a
// packet. All the given criteria must hold.
type EntityRule struct {
	// Nets restricts to addresses in any of these CIDRs (or single IPs).
	Nets []string `json:"nets,omitempty"`
	// Selector restricts to endpoints (and network sets) whose labels
	// match. In a namespaced policy without NamespaceSelector it only
	// selects within the policy's namespace.
	Selector string `json:"selector,omitempty"`
	// NamespaceSelector restricts to endpoints in namespaces whose labels
	// match; all() means every namespace, global() means non-namespaced
	// things (host endpoints, global network sets).
	NamespaceSelector string `json:"namespaceSelector,omitempty"`
	// Services restricts to the endpoints of a Kubernetes Service.
	Services *ServiceMatch `json:"services,omitempty"`
	// Ports restricts to these ports, ranges ("80:90") or named ports.
	// Needs protocol TCP, UDP or SCTP on the rule.
	Ports []Port `json:"ports,omitempty"`
	// NotNets excludes addresses in any of these CIDRs.
	NotNets []string `json:"notNets,omitempty"`
	// NotSelector excludes endpoints whose labels match. Unlike a negated
	// Selector, it also lets traffic from non-Calico addresses through.
	NotSelector string `json:"notSelector,omitempty"`
	// NotPorts excludes these ports, ranges or named ports.
	NotPorts []Port `json:"notPorts,omitempty"`
	// ServiceAccounts restricts to pods running as matching service
	// accounts.
	ServiceAccounts *ServiceAccountMatch `json:"serviceAccounts,omitempty"`
	// Domains restricts (destination only) to DNS names: exact names or
	// patterns with * wildcards such as *.minepool.com or xmr.*.com.
	Domains []string `json:"domains,omitempty"`
}

// ServiceMatch names a Kubernetes Service.
type ServiceMatch struct {
	// Name is the Service's name.
	Name string `json:"name,omitempty"`
	// Namespace is the Service's namespace; empty means the policy's.
	Namespace string `json:"namespace,omitempty"`
}

// ServiceAccountMatch matches pods by service account; Names and Selector
// are ANDed.
type ServiceAccountMatch struct {
	// Names lists service account names (in the policy's namespace for a
	// namespaced policy).
	Names []string `json:"names,omitempty"`
	// Selector is a Calico selector over the service account's labels.
	Selector string `json:"selector,omitempty"`
}

// Tier is a projectcalico.org/v3 Tier: an ordered group of policies.
type Tier struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata; the name is the tier's.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the tier's settings.
	Spec TierSpec `json:"spec,omitempty"`
}

// TierSpec is the specification of a Tier.
type TierSpec struct {
	// Order places the tier: lower first; nil means after every tier that
	// has an order. The default tier's order is 1,000,000.
	Order *float64 `json:"order,omitempty"`
	// DefaultAction is what happens at the end of the tier when a policy of
	// the tier applied and no rule decided: Deny (default) or Pass.
	DefaultAction Action `json:"defaultAction,omitempty"`
}

// NetworkSet is a namespaced projectcalico.org/v3 NetworkSet: a labelled
// set of nets that rule selectors can pick.
type NetworkSet struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata; labels are what rule
	// selectors match.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the nets.
	Spec NetworkSetSpec `json:"spec,omitempty"`
}

// NetworkSetSpec is the specification of a NetworkSet or GlobalNetworkSet.
type NetworkSetSpec struct {
	// Nets lists the CIDRs (or single IPs) in the set.
	Nets []string `json:"nets,omitempty"`
	// AllowedEgressDomains lists DNS names (with * wildcards) in the set.
	AllowedEgressDomains []string `json:"allowedEgressDomains,omitempty"`
}

// GlobalNetworkSet is a cluster-scoped NetworkSet.
type GlobalNetworkSet struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata; labels are what rule
	// selectors match.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the nets.
	Spec NetworkSetSpec `json:"spec,omitempty"`
}

// HostEndpoint is a projectcalico.org/v3 HostEndpoint: a host interface
// (or all of a host's interfaces, with interfaceName "*") policed like an
// endpoint.
type HostEndpoint struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata; labels are what policy
	// selectors match.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the interface.
	Spec HostEndpointSpec `json:"spec,omitempty"`
}

// HostEndpointSpec is the specification of a HostEndpoint.
type HostEndpointSpec struct {
	// Node is the name of the node the interface is on.
	Node string `json:"node,omitempty"`
	// InterfaceName is the interface's name, or "*" for all of the node's
	// interfaces; empty means the endpoint is identified by ExpectedIPs.
	InterfaceName string `json:"interfaceName,omitempty"`
	// ExpectedIPs are the interface's addresses, used by rule selectors.
	ExpectedIPs []string `json:"expectedIPs,omitempty"`
	// Profiles are applied (after policies) and lend their labels.
	Profiles []string `json:"profiles,omitempty"`
	// Ports are named ports on the host, for named-port rules.
	Ports []EndpointPort `json:"ports,omitempty"`
}

// EndpointPort is a named port of a host endpoint.
type EndpointPort struct {
	// Name is the port's name.
	Name string `json:"name"`
	// Protocol is TCP, UDP or SCTP.
	Protocol Protocol `json:"protocol"`
	// Port is the port number.
	Port uint16 `json:"port"`
}

// Profile is a projectcalico.org/v3 Profile: rules applied after all
// policies when no policy applied, and labels lent to the endpoints that
// use it.
type Profile struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the profile.
	Spec ProfileSpec `json:"spec,omitempty"`
}

// ProfileSpec is the specification of a Profile.
type ProfileSpec struct {
	// Ingress rules of the profile.
	Ingress []Rule `json:"ingress,omitempty"`
	// Egress rules of the profile.
	Egress []Rule `json:"egress,omitempty"`
	// LabelsToApply are added to the labels of every endpoint using the
	// profile.
	LabelsToApply map[string]string `json:"labelsToApply,omitempty"`
}

// FelixConfiguration is a projectcalico.org/v3 FelixConfiguration, reduced to
// the fields that concern policy and the dataplane. The object named
// "default" is cluster-wide; "node.<name>" overrides it for one node.
// Other Calico fields are skipped with a warning.
type FelixConfiguration struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the standard object metadata.
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds the settings.
	Spec FelixConfigurationSpec `json:"spec,omitempty"`
}

// FelixConfigurationSpec is the subset of Calico's FelixConfigurationSpec
// that Calyx honours.
type FelixConfigurationSpec struct {
	// FailsafeInboundHostPorts are always open into host endpoints, so a
	// policy can never lock operators out. nil means Calico's default list.
	FailsafeInboundHostPorts *[]ProtoPort `json:"failsafeInboundHostPorts,omitempty"`
	// FailsafeOutboundHostPorts are always open out of host endpoints.
	FailsafeOutboundHostPorts *[]ProtoPort `json:"failsafeOutboundHostPorts,omitempty"`
	// DefaultEndpointToHostAction is what happens to traffic from a
	// workload to its own host after policy: Drop (default), Accept or
	// Return.
	DefaultEndpointToHostAction string `json:"defaultEndpointToHostAction,omitempty"`
	// WireguardEnabled turns on WireGuard encryption of IPv4 traffic
	// between nodes.
	WireguardEnabled *bool `json:"wireguardEnabled,omitempty"`
	// WireguardEnabledV6 turns on WireGuard encryption of IPv6 traffic.
	WireguardEnabledV6 *bool `json:"wireguardEnabledV6,omitempty"`
	// WireguardListeningPort is WireGuard's UDP port (default 51820).
	WireguardListeningPort *int `json:"wireguardListeningPort,omitempty"`
	// WireguardInterfaceName is the WireGuard device's name.
	WireguardInterfaceName string `json:"wireguardInterfaceName,omitempty"`
	// BPFEnabled selects the eBPF dataplane.
	BPFEnabled *bool `json:"bpfEnabled,omitempty"`
	// NFTablesMode is Enabled, Disabled or Auto: selects the nftables
	// dataplane.
	NFTablesMode string `json:"nftablesMode,omitempty"`
	// IptablesBackend is Legacy, NFT or Auto.
	IptablesBackend string `json:"iptablesBackend,omitempty"`
	// LogSeverityScreen is the agent's log level (Debug, Info, Warning,
	// Error, Fatal).
	LogSeverityScreen string `json:"logSeverityScreen,omitempty"`
	// LogPrefix is the prefix of packet log lines written by Log rules.
	LogPrefix string `json:"logPrefix,omitempty"`
	// FlowLogsEnabled turns on flow logs (a Calyx use of Calico's name).
	FlowLogsEnabled *bool `json:"flowLogsEnabled,omitempty"`
}

// ProtoPort is a protocol and port (and optional net) of a fail-safe rule.
type ProtoPort struct {
	// Protocol is TCP, UDP or SCTP.
	Protocol string `json:"protocol"`
	// Port is the port number.
	Port uint16 `json:"port"`
	// Net restricts the rule to a CIDR; empty means any.
	Net string `json:"net,omitempty"`
}

// Package policy reads network policy the way Kubernetes and Calico users
// write it and turns it into one validated, normalised model that the
// compiler consumes without re-deriving any Calico semantics.
//
// # Resources
//
// The projectcalico.org/v3 kinds NetworkPolicy, GlobalNetworkPolicy,
// StagedNetworkPolicy, StagedGlobalNetworkPolicy,
// StagedKubernetesNetworkPolicy, Tier, NetworkSet, GlobalNetworkSet,
// HostEndpoint, Profile, IPPool and FelixConfiguration are Go types of this
// package whose JSON/YAML field names are exactly Calico's (crd.projectcalico.org/v1
// is read as an alias). Rules also take the destination field domains
// (exact names and * wildcards, as in *.minepool.com or xmr.*.com).
// FelixConfiguration is reduced to the fields that concern policy and the
// dataplane; its other Calico fields are dropped with a warning.
//
// The Kubernetes kinds networking.k8s.io/v1 NetworkPolicy and v1 Namespace,
// Pod and ServiceAccount use the k8s.io/api types, so objects from informers
// can be handed over as they are. KindOf names an object's kind by its Go
// type (KindK8sNetworkPolicy for a Kubernetes NetworkPolicy).
//
// # Decoding
//
// Decode reads a stream of YAML (1.2: y, n, on and off stay strings) or
// JSON documents; a document may be a single object, a kind: List or a
// typed list (GlobalNetworkPolicyList …, whose items may omit apiVersion
// and kind). Aliases and merge keys are expanded (within a node budget).
// Documents of kinds this package does not read are skipped and reported
// as warnings by DecodeWithOptions, so `kubectl get all -A -o yaml` can be
// fed in whole. LoadPaths reads files and directories.
//
// Decoding is strict and complete: every unknown field, wrong type and
// invalid value of every document is reported, each as a *ValidationError
// with source, document index, line, kind, namespace/name and field path,
// all together as a ValidationErrors:
//
//	policies/pay.yaml:14: NetworkPolicy "shop/allow-payment": spec.egress[0].destination.ports[1]: port 70000 out of range 1-65535
//
// The contract is all or nothing: Decode returns objects and a nil error,
// or no objects and an error; the error is ErrNoObjects (wrapped) exactly
// when the input was valid but held nothing to read. So err == nil if and
// only if at least one object is returned. Encode writes objects back;
// Decode(Encode(objs)) gives objs again.
//
// Namespaced objects written without a namespace go to "default" (or
// DecodeOptions.DefaultNamespace). Empty lists decode like absent ones, as
// the API server stores them.
//
// # Validation
//
// Validate checks one object as Calico's validator (or the Kubernetes API
// server, for the Kubernetes kinds) would: selectors parse; global() only
// alone in a rule's namespaceSelector; ports 1-65535, ranges ordered,
// numeric ports only with protocol TCP, UDP or SCTP; named ports valid;
// protocols known; ICMP fields only with ICMP/ICMPv6 and a consistent
// ipVersion; nets are CIDRs of one IP version; names in Calico's formats;
// actions, types and staged actions known; and so on. Set.Validate adds the
// checks that need every object: a policy's tier must exist.
//
// # The normalised model
//
// A Set holds objects indexed by kind, namespace and name, and their
// normalised forms; Upsert and Delete return a Change for incremental
// consumers. Its accessors give:
//
//   - Tiers, in evaluation order: lower order first, unset last, ties by
//     name. The default tier (order 1,000,000, end action Deny) is always
//     there.
//   - Policies (enforced) in evaluation order: by tier, then by order
//     within the tier (lower first, unset last), ties by namespace/name.
//     StagedPolicies, in the same order, never change what is enforced.
//   - Endpoints: workloads from Pods (host-networked and finished pods
//     excluded) and host endpoints; NetworkSets; Namespaces,
//     ServiceAccounts, Profiles, IPPools, FelixConfig.
//   - Profile: the rules that decide for an endpoint in a direction no
//     policy applies to, by the IDs EndpointParents lists (a namespace's
//     profile allows everything, as in Calico).
//
// A Policy carries one effective *selector.Selector saying which endpoints
// it applies to, its directions (Types, inferred as Calico does when
// omitted: Egress if it has only egress rules, both if both, else
// Ingress), and its rules. A RuleInfo has protocols as numbers, nets as
// netip.Prefix, ports as ranges plus named ports (which the compiler
// resolves per destination endpoint), and for each end ONE effective
// selector and ONE notSelector (nil: no condition), its field path
// (spec.egress[0]) and source position. An http match is kept but is not
// enforced by L3/L4 dataplanes (RuleInfo.L7).
//
// A Kubernetes NetworkPolicy becomes, as in Calico, an Allow-only policy
// named knp.default.<name> in tier default at order 1000; see
// ConvertK8sNetworkPolicy.
//
// # The flattened label space
//
// Every selector in the model is evaluated against an endpoint's (or
// network set's) flattened labels, exactly as in Calico:
//
//   - the endpoint's own labels, plus for pods projectcalico.org/namespace,
//     projectcalico.org/orchestrator = k8s and
//     projectcalico.org/serviceaccount (EndpointOwnLabels);
//   - its namespace's labels under the prefix pcns., plus
//     pcns.projectcalico.org/name = <namespace> (parent kns.<namespace>);
//   - its service account's labels under pcsa., plus
//     pcsa.projectcalico.org/name = <name> (parent ksa.<namespace>.<name>);
//   - for host endpoints, the labelsToApply of their profiles (parents named
//     after the profiles).
//
// Own labels win over inherited ones. Set.EndpointLabels and
// Set.NetworkSetLabels give the flattened view; EndpointParents and
// Set.ParentLabels give the pieces separately, as selector.Index wants
// them (a change to a Namespace or ServiceAccount then only updates its
// parent).
//
// Selectors are rewritten onto that space when normalising: a namespaced
// policy's selector is ANDed with projectcalico.org/namespace == "<ns>"; a
// global policy's namespaceSelector is prefixed pcns. (all() becoming
// has(projectcalico.org/namespace)) and its serviceAccountSelector pcsa.;
// in rules, a namespaceSelector is prefixed pcns. (all() meaning every
// namespace, global() meaning only non-namespaced things: host endpoints
// and global network sets), a rule selector in a namespaced policy without
// namespaceSelector is scoped to the policy's namespace (in a global policy
// it is not), and serviceAccounts become projectcalico.org/serviceaccount
// in {names} AND the pcsa.-prefixed selector. As in Calico, a rule's
// notSelector is not namespace-scoped.
//
// # Concurrency and ownership
//
// Decoding and normalising are pure and deterministic. A Set is not safe
// for concurrent use, and keeps the objects given to Upsert: do not modify
// one afterwards, Upsert a new one instead.
package policy

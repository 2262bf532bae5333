// Package policy reads network policy the way Kubernetes and Calico users
// write it and turns it into one validated, normalised model.
//
// # Resources
//
// The projectcalico.org/v3 kinds NetworkPolicy, GlobalNetworkPolicy,
// StagedNetworkPolicy, StagedGlobalNetworkPolicy,
// StagedKubernetesNetworkPolicy, Tier, NetworkSet, GlobalNetworkSet,
// HostEndpoint, Profile, IPPool and FelixConfiguration are Go types of this
// package whose JSON/YAML field names are exactly Calico's. The Kubernetes
// kinds networking.k8s.io/v1 NetworkPolicy and v1 Namespace, Pod and
// ServiceAccount use the k8s.io/api types, so objects from informers can be
// handed over as they are.
package policy

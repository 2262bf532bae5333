package policy

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// API groups and versions this package reads.
const (
	// CalicoAPIVersion is the apiVersion of Calico's resources.
	CalicoAPIVersion = "projectcalico.org/v3"
	// CalicoCRDAPIVersion is the apiVersion Calico stores its resources
	// under as CRDs; read as an alias of CalicoAPIVersion.
	CalicoCRDAPIVersion = "crd.projectcalico.org/v1"
	// K8sNetworkingAPIVersion is the apiVersion of Kubernetes NetworkPolicy.
	K8sNetworkingAPIVersion = "networking.k8s.io/v1"
	// K8sCoreAPIVersion is the apiVersion of Namespace, Pod, ServiceAccount.
	K8sCoreAPIVersion = "v1"
)

// Kind names an object's kind. The Calico and Kubernetes kinds that share a
// name are told apart: a Kubernetes NetworkPolicy is KindK8sNetworkPolicy.
type Kind string

// Kinds of Object.
const (
	KindNetworkPolicy                 Kind = "NetworkPolicy"
	KindGlobalNetworkPolicy           Kind = "GlobalNetworkPolicy"
	KindStagedNetworkPolicy           Kind = "StagedNetworkPolicy"
	KindStagedGlobalNetworkPolicy     Kind = "StagedGlobalNetworkPolicy"
	KindStagedKubernetesNetworkPolicy Kind = "StagedKubernetesNetworkPolicy"
	KindTier                          Kind = "Tier"
	KindNetworkSet                    Kind = "NetworkSet"
	KindGlobalNetworkSet              Kind = "GlobalNetworkSet"
	KindHostEndpoint                  Kind = "HostEndpoint"
	KindProfile                       Kind = "Profile"
	KindIPPool                        Kind = "IPPool"
	KindFelixConfiguration            Kind = "FelixConfiguration"
	// KindK8sNetworkPolicy is networking.k8s.io/v1 NetworkPolicy.
	KindK8sNetworkPolicy Kind = "KubernetesNetworkPolicy"
	KindNamespace        Kind = "Namespace"
	KindPod              Kind = "Pod"
	KindServiceAccount   Kind = "ServiceAccount"
)

// Namespaced reports whether objects of the kind live in a namespace.
func (k Kind) Namespaced() bool {
	switch k {
	case KindNetworkPolicy, KindStagedNetworkPolicy, KindStagedKubernetesNetworkPolicy,
		KindNetworkSet, KindK8sNetworkPolicy, KindPod, KindServiceAccount:
		return true
	}
	return false
}

// APIVersion returns the apiVersion objects of the kind are written with.
func (k Kind) APIVersion() string {
	switch k {
	case KindK8sNetworkPolicy:
		return K8sNetworkingAPIVersion
	case KindNamespace, KindPod, KindServiceAccount:
		return K8sCoreAPIVersion
	}
	return CalicoAPIVersion
}

// WireName returns the kind as written in the kind field of a document.
func (k Kind) WireName() string {
	if k == KindK8sNetworkPolicy {
		return "NetworkPolicy"
	}
	return string(k)
}

// KindOf returns the kind of an object by its Go type, or "" for a type
// this package does not know.
func KindOf(obj Object) Kind {
	switch obj.(type) {
	case *NetworkPolicy:
		return KindNetworkPolicy
	case *GlobalNetworkPolicy:
		return KindGlobalNetworkPolicy
	case *StagedNetworkPolicy:
		return KindStagedNetworkPolicy
	case *StagedGlobalNetworkPolicy:
		return KindStagedGlobalNetworkPolicy
	case *StagedKubernetesNetworkPolicy:
		return KindStagedKubernetesNetworkPolicy
	case *Tier:
		return KindTier
	case *NetworkSet:
		return KindNetworkSet
	case *GlobalNetworkSet:
		return KindGlobalNetworkSet
	case *HostEndpoint:
		return KindHostEndpoint
	case *Profile:
		return KindProfile
	case *IPPool:
		return KindIPPool
	case *FelixConfiguration:
		return KindFelixConfiguration
	case *networkingv1.NetworkPolicy:
		return KindK8sNetworkPolicy
	case *corev1.Namespace:
		return KindNamespace
	case *corev1.Pod:
		return KindPod
	case *corev1.ServiceAccount:
		return KindServiceAccount
	}
	return ""
}

// newObject returns a fresh object for a kind.
func newObject(k Kind) Object {
	switch k {
	case KindNetworkPolicy:
		return &NetworkPolicy{}
	case KindGlobalNetworkPolicy:
		return &GlobalNetworkPolicy{}
	case KindStagedNetworkPolicy:
		return &StagedNetworkPolicy{}
	case KindStagedGlobalNetworkPolicy:
		return &StagedGlobalNetworkPolicy{}
	case KindStagedKubernetesNetworkPolicy:
		return &StagedKubernetesNetworkPolicy{}
	case KindTier:
		return &Tier{}
	case KindNetworkSet:
		return &NetworkSet{}
	case KindGlobalNetworkSet:
		return &GlobalNetworkSet{}
	case KindHostEndpoint:
		return &HostEndpoint{}
	case KindProfile:
		return &Profile{}
	case KindIPPool:
		return &IPPool{}
	case KindFelixConfiguration:
		return &FelixConfiguration{}
	case KindK8sNetworkPolicy:
		return &networkingv1.NetworkPolicy{}
	case KindNamespace:
		return &corev1.Namespace{}
	case KindPod:
		return &corev1.Pod{}
	case KindServiceAccount:
		return &corev1.ServiceAccount{}
	}
	return nil
}

// kindFor maps an apiVersion and kind as written in a document to a Kind;
// ok is false for anything this package does not read.
func kindFor(apiVersion, kind string) (Kind, bool) {
	switch apiVersion {
	case CalicoAPIVersion, CalicoCRDAPIVersion:
		switch k := Kind(kind); k {
		case KindNetworkPolicy, KindGlobalNetworkPolicy, KindStagedNetworkPolicy,
			KindStagedGlobalNetworkPolicy, KindStagedKubernetesNetworkPolicy, KindTier,
			KindNetworkSet, KindGlobalNetworkSet, KindHostEndpoint, KindProfile,
			KindIPPool, KindFelixConfiguration:
			return k, true
		}
	case K8sNetworkingAPIVersion:
		if kind == "NetworkPolicy" {
			return KindK8sNetworkPolicy, true
		}
	case K8sCoreAPIVersion:
		switch k := Kind(kind); k {
		case KindNamespace, KindPod, KindServiceAccount:
			return k, true
		}
	}
	return "", false
}

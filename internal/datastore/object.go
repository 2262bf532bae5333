package datastore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/calyxnet/calyx/policy"
)

// kinds is every kind a store holds, in the order Kinds returns them.
var kinds = [...]policy.Kind{
	policy.KindTier,
	policy.KindGlobalNetworkPolicy,
	policy.KindNetworkPolicy,
	policy.KindStagedGlobalNetworkPolicy,
	policy.KindStagedNetworkPolicy,
	policy.KindStagedKubernetesNetworkPolicy,
	policy.KindK8sNetworkPolicy,
	policy.KindGlobalNetworkSet,
	policy.KindNetworkSet,
	policy.KindHostEndpoint,
	policy.KindProfile,
	policy.KindIPPool,
	policy.KindFelixConfiguration,
	policy.KindNamespace,
	policy.KindServiceAccount,
	policy.KindPod,
}

// NewObject returns an empty object of a kind, nil for an unknown kind.
func NewObject(k policy.Kind) policy.Object {
	switch k {
	case policy.KindNetworkPolicy:
		return &policy.NetworkPolicy{}
	case policy.KindGlobalNetworkPolicy:
		return &policy.GlobalNetworkPolicy{}
	case policy.KindStagedNetworkPolicy:
		return &policy.StagedNetworkPolicy{}
	case policy.KindStagedGlobalNetworkPolicy:
		return &policy.StagedGlobalNetworkPolicy{}
	case policy.KindStagedKubernetesNetworkPolicy:
		return &policy.StagedKubernetesNetworkPolicy{}
	case policy.KindTier:
		return &policy.Tier{}
	case policy.KindNetworkSet:
		return &policy.NetworkSet{}
	case policy.KindGlobalNetworkSet:
		return &policy.GlobalNetworkSet{}
	case policy.KindHostEndpoint:
		return &policy.HostEndpoint{}
	case policy.KindProfile:
		return &policy.Profile{}
	case policy.KindIPPool:
		return &policy.IPPool{}
	case policy.KindFelixConfiguration:
		return &policy.FelixConfiguration{}
	case policy.KindK8sNetworkPolicy:
		return &networkingv1.NetworkPolicy{}
	case policy.KindNamespace:
		return &corev1.Namespace{}
	case policy.KindPod:
		return &corev1.Pod{}
	case policy.KindServiceAccount:
		return &corev1.ServiceAccount{}
	}
	return nil
}

// Kinds returns every kind a store can hold.
func Kinds() []policy.Kind { return slices.Clone(kinds[:]) }

// shortNames are the abbreviations calicoctl and kubectl accept.
var shortNames = map[string]policy.Kind{
	"gnp":    policy.KindGlobalNetworkPolicy,
	"np":     policy.KindNetworkPolicy,
	"sgnp":   policy.KindStagedGlobalNetworkPolicy,
	"snp":    policy.KindStagedNetworkPolicy,
	"sknp":   policy.KindStagedKubernetesNetworkPolicy,
	"knp":    policy.KindK8sNetworkPolicy,
	"netpol": policy.KindK8sNetworkPolicy,
	"gns":    policy.KindGlobalNetworkSet,
	"ns":     policy.KindNamespace,
	"netset": policy.KindNetworkSet,
	"hep":    policy.KindHostEndpoint,
	"pro":    policy.KindProfile,
	"ippool": policy.KindIPPool,
	"felix":  policy.KindFelixConfiguration,
	"sa":     policy.KindServiceAccount,
	"po":     policy.KindPod,
}

// ParseKind maps a kind as a user types it to a Kind: the kind's name in
// any case, singular or plural (GlobalNetworkPolicy, globalnetworkpolicies),
// a short name (gnp, np, knp, netpol, hep, ns, po …) or a name qualified by
// its API group (networkpolicy.projectcalico.org,
// networkpolicies.networking.k8s.io). A bare "networkpolicy" is Calico's, as
// in calicoctl; the Kubernetes one is "knp" or
// "networkpolicy.networking.k8s.io".
func ParseKind(s string) (policy.Kind, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	name, group, _ := strings.Cut(in, ".")
	if k, ok := shortNames[name]; ok && group == "" {
		return k, nil
	}
	for _, k := range kinds {
		wire := strings.ToLower(k.WireName())
		if k == policy.KindK8sNetworkPolicy && group == "" {
			wire = strings.ToLower(string(k))
		}
		if name != wire && name != plural(wire) {
			continue
		}
		switch group {
		case "", Group(k):
			return k, nil
		case "crd.projectcalico.org":
			if Group(k) == "projectcalico.org" {
				return k, nil
			}
		}
	}
	return "", fmt.Errorf("unknown kind %q (want e.g. GlobalNetworkPolicy, gnp, NetworkPolicy, knp, Pod)", s)
}

func plural(s string) string {
	if strings.HasSuffix(s, "y") {
		return s[:len(s)-1] + "ies"
	}
	return s + "s"
}

// Group returns the API group of a kind: "projectcalico.org",
// "networking.k8s.io", or "" for the core kinds.
func Group(k policy.Kind) string {
	g, _, found := strings.Cut(k.APIVersion(), "/")
	if !found {
		return ""
	}
	return g
}

// ResourceName names an object the way kubectl's -o name does:
// lowercase kind, dot, API group (none for the core kinds), slash, name;
// e.g. globalnetworkpolicy.projectcalico.org/deny-all,
// networkpolicy.networking.k8s.io/allow-web or pod/web-0.
func ResourceName(key policy.ObjectKey) string {
	r := strings.ToLower(key.Kind.WireName())
	if g := Group(key.Kind); g != "" {
		r += "." + g
	}
	return r + "/" + key.Name
}

// Prepare checks an object a caller wants to store and returns the copy a
// store keeps: a namespaced object without namespace goes to "default",
// apiVersion and kind are set from the Go type, metadata.resourceVersion
// is cleared (it is the store's to set). Invalid objects give the
// policy.ValidationErrors of policy.Validate; obj is never modified.
func Prepare(obj policy.Object) (policy.Object, error) {
	k := policy.KindOf(obj)
	if k == "" {
		return nil, fmt.Errorf("datastore: unsupported object type %T", obj)
	}
	cp, err := Copy(obj)
	if err != nil {
		return nil, err
	}
	cp.SetResourceVersion("")
	if k.Namespaced() && cp.GetNamespace() == "" {
		cp.SetNamespace("default")
	}
	if !k.Namespaced() && cp.GetNamespace() != "" {
		return nil, policy.ValidationErrors{{Kind: k, Name: cp.GetName(), Field: "metadata.namespace",
			Message: fmt.Sprintf("%s is cluster-scoped: remove metadata.namespace", k.WireName())}}
	}
	cp.GetObjectKind().SetGroupVersionKind(gvk(k))
	if err := policy.Validate(cp, nil); err != nil {
		return nil, err
	}
	return cp, nil
}

// Copy returns a deep copy of an object.
func Copy(obj policy.Object) (policy.Object, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("datastore: copy %T: %w", obj, err)
	}
	cp := reflect.New(reflect.TypeOf(obj).Elem()).Interface().(policy.Object)
	if err := json.Unmarshal(b, cp); err != nil {
		return nil, fmt.Errorf("datastore: copy %T: %w", obj, err)
	}
	return cp, nil
}

// WithRevision returns a copy of obj whose metadata.resourceVersion is rev,
// as stores hand objects out: `calyxctl get -o yaml` then shows the
// revision, and `calyxctl replace` of that output is checked against it.
func WithRevision(obj policy.Object, rev string) (policy.Object, error) {
	cp, err := Copy(obj)
	if err != nil {
		return nil, err
	}
	cp.SetResourceVersion(rev)
	return cp, nil
}

// Encoding returns an object's canonical encoding: its YAML as
// policy.Encode writes it, without metadata.resourceVersion.
func Encoding(obj policy.Object) ([]byte, error) {
	if obj.GetResourceVersion() != "" {
		cp, err := Copy(obj)
		if err != nil {
			return nil, err
		}
		cp.SetResourceVersion("")
		obj = cp
	}
	var b bytes.Buffer
	if err := policy.Encode(&b, []policy.Object{obj}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ContentRevision returns a revision derived from an object's content:
// equal objects have equal revisions wherever they are stored, whatever
// their apiVersion alias or resourceVersion. The directory store uses it.
func ContentRevision(obj policy.Object) (string, error) {
	k := policy.KindOf(obj)
	if k == "" {
		return "", fmt.Errorf("datastore: unsupported object type %T", obj)
	}
	// A shallow copy is enough to clear two value fields without
	// touching obj, and JSON is far cheaper than the YAML of Encoding.
	v := reflect.New(reflect.TypeOf(obj).Elem())
	v.Elem().Set(reflect.ValueOf(obj).Elem())
	cp := v.Interface().(policy.Object)
	cp.SetResourceVersion("")
	cp.GetObjectKind().SetGroupVersionKind(gvk(k))
	b, err := json.Marshal(cp)
	if err != nil {
		return "", fmt.Errorf("datastore: %s: %w", policy.KeyOf(obj), err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// CompareKeys orders keys by kind name, namespace, then name.
func CompareKeys(a, b policy.ObjectKey) int {
	if a.Kind != b.Kind {
		return strings.Compare(string(a.Kind), string(b.Kind))
	}
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// SortItems sorts items by key, as List returns them.
func SortItems(items []Item) {
	slices.SortFunc(items, func(a, b Item) int {
		return CompareKeys(policy.KeyOf(a.Object), policy.KeyOf(b.Object))
	})
}

func gvk(k policy.Kind) schema.GroupVersionKind {
	return schema.FromAPIVersionAndKind(k.APIVersion(), k.WireName())
}

package testgen

import (
	"fmt"
	"net/netip"

	"github.com/calyxnet/calyx/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ScaleOptions size a synthetic cluster for benchmarks.
type ScaleOptions struct {
	// Namespaces and PodsPerNamespace give the cluster's pods.
	Namespaces, PodsPerNamespace int
	// AppsPerNamespace splits each namespace's pods into apps.
	AppsPerNamespace int
	// PoliciesPerNamespace: half Kubernetes NetworkPolicies, half Calico
	// NetworkPolicies. Global policies come on top (a security tier).
	PoliciesPerNamespace int
	// LocalPods of the pods are on node "node0"; the rest spread over
	// nodes of 110 pods.
	LocalPods int
}

// DefaultScale is the cluster of the compiler's figures: 10,000 pods in 100
// namespaces, 2,000 namespaced policies (plus 4 global), 110 pods on node0.
var DefaultScale = ScaleOptions{Namespaces: 100, PodsPerNamespace: 100, AppsPerNamespace: 10, PoliciesPerNamespace: 20, LocalPods: 110}

// ScaleCluster builds a synthetic cluster of realistic shape: each
// namespace runs a chain of apps (web → api → db …) with Kubernetes
// policies that allow each app from the previous one and from monitoring,
// Calico policies with tiers, named ports and deny rules, and a security
// tier of global policies that deny or pass everything else on (the tier's
// default action is Pass).
func ScaleCluster(o ScaleOptions) []policy.Object {
	var objs []policy.Object
	tiers := []string{"web", "api", "db"}
	podIdx := 0
	for n := range o.Namespaces {
		ns := fmt.Sprintf("team-%03d", n)
		objs = append(objs, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": fmt.Sprintf("t%d", n%10), "env": []string{"prod", "staging"}[n%2]}},
		})
		for p := range o.PodsPerNamespace {
			app := p % o.AppsPerNamespace
			node := "node0"
			if podIdx >= o.LocalPods {
				node = fmt.Sprintf("node%d", 1+(podIdx-o.LocalPods)/110)
			}
			objs = append(objs, ScalePod(ns, fmt.Sprintf("app%d-%d", app, p), podIdx, map[string]string{
				"app": fmt.Sprintf("app%d", app), "tier": tiers[app%3], "version": fmt.Sprintf("v%d", p%3),
			}, node))
			podIdx++
		}
		for i := range o.PoliciesPerNamespace {
			app := i % o.AppsPerNamespace
			if i%2 == 0 {
				objs = append(objs, scaleK8sPolicy(ns, i, app, o.AppsPerNamespace))
			} else {
				objs = append(objs, scaleCalicoPolicy(ns, i, app))
			}
		}
	}
	order := func(f float64) *float64 { return &f }
	objs = append(objs,
		&policy.Tier{TypeMeta: metav1.TypeMeta{APIVersion: policy.CalicoAPIVersion, Kind: "Tier"},
			ObjectMeta: metav1.ObjectMeta{Name: "security"}, Spec: policy.TierSpec{Order: order(100), DefaultAction: policy.Pass}},
		&policy.GlobalNetworkPolicy{TypeMeta: metav1.TypeMeta{APIVersion: policy.CalicoAPIVersion, Kind: "GlobalNetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: "security.block-bad-nets"},
			Spec: policy.GlobalNetworkPolicySpec{Tier: "security", Order: order(1), Selector: "all()",
				Types:   []policy.PolicyType{policy.PolicyTypeIngress, policy.PolicyTypeEgress},
				Ingress: []policy.Rule{{Action: policy.Deny, Source: policy.EntityRule{Nets: []string{"198.51.100.0/24", "203.0.113.0/24"}}}},
				Egress:  []policy.Rule{{Action: policy.Deny, Destination: policy.EntityRule{Nets: []string{"198.51.100.0/24"}}}},
			}},
		&policy.GlobalNetworkPolicy{TypeMeta: metav1.TypeMeta{APIVersion: policy.CalicoAPIVersion, Kind: "GlobalNetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: "security.prod-isolation"},
			Spec: policy.GlobalNetworkPolicySpec{Tier: "security", Order: order(2), Selector: "all()", NamespaceSelector: "env == 'prod'",
				Types:   []policy.PolicyType{policy.PolicyTypeIngress},
				Ingress: []policy.Rule{{Action: policy.Deny, Source: policy.EntityRule{NamespaceSelector: "env == 'staging'"}}},
			}},
		&policy.GlobalNetworkPolicy{TypeMeta: metav1.TypeMeta{APIVersion: policy.CalicoAPIVersion, Kind: "GlobalNetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: "allow-dns"},
			Spec: policy.GlobalNetworkPolicySpec{Order: order(10), Selector: "all()",
				Types:  []policy.PolicyType{policy.PolicyTypeEgress},
				Egress: []policy.Rule{{Action: policy.Allow, Protocol: protoPtr("UDP"), Destination: policy.EntityRule{Ports: []policy.Port{policy.SinglePort(53)}}}},
			}},
		&policy.GlobalNetworkPolicy{TypeMeta: metav1.TypeMeta{APIVersion: policy.CalicoAPIVersion, Kind: "GlobalNetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: "default-deny"},
			Spec: policy.GlobalNetworkPolicySpec{Selector: "all()", NamespaceSelector: "has(projectcalico.org/name)",
				Types: []policy.PolicyType{policy.PolicyTypeIngress, policy.PolicyTypeEgress}}},
	)
	return objs
}

func protoPtr(name string) *policy.Protocol {
	p := policy.ProtocolFromName(name)
	return &p
}

// ScalePod returns pod number idx with a unique address in 10.128.0.0/9
// and the named ports http (8080) and metrics (9090).
func ScalePod(ns, name string, idx int, labels map[string]string, node string) *corev1.Pod {
	ip := netip.AddrFrom4([4]byte{10, byte(128 + idx>>16), byte(idx >> 8), byte(idx)}).String()
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "app", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
		}}}},
		Status: corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

func scaleK8sPolicy(ns string, i, app, apps int) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	http := intstr.FromString("http")
	metrics := intstr.FromInt32(9090)
	prev := fmt.Sprintf("app%d", (app+apps-1)%apps)
	next := fmt.Sprintf("app%d", (app+1)%apps)
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app%d-%d", app, i), Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", app)}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": prev}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &http}}},
				{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "t0"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &metrics}}},
			},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{next, prev}}}}}}},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromInt32(443))}}},
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func scaleCalicoPolicy(ns string, i, app int) *policy.NetworkPolicy {
	order := float64(100 + i)
	tcp := policy.ProtocolFromName("TCP")
	return &policy.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: policy.CalicoAPIVersion, Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("calico-%d", i), Namespace: ns},
		Spec: policy.NetworkPolicySpec{
			Order:    &order,
			Selector: fmt.Sprintf("app == 'app%d' && version in {'v0', 'v1'}", app),
			Types:    []policy.PolicyType{policy.PolicyTypeIngress},
			Ingress: []policy.Rule{
				{Action: policy.Deny, Protocol: &tcp, Source: policy.EntityRule{Selector: "tier == 'db'"}, Destination: policy.EntityRule{Ports: []policy.Port{policy.SinglePort(22)}}},
				{Action: policy.Allow, Protocol: &tcp, Source: policy.EntityRule{Selector: "tier == 'web'", NamespaceSelector: "team == 't1'"},
					Destination: policy.EntityRule{Ports: []policy.Port{policy.NamedPort("http"), policy.PortFromRange(8000, 8100)}}},
				{Action: policy.Allow, Source: policy.EntityRule{Nets: []string{fmt.Sprintf("172.16.%d.0/24", i)}}},
			},
		},
	}
}

package policy_test

import (
	"testing"

	"github.com/calyxnet/calyx/policy"
	"github.com/calyxnet/calyx/selector"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"pgregory.net/rapid"
)

var (
	propKeys   = []string{"app", "tier", "team", "example.com/role"}
	propValues = []string{"a", "b", "c"}
)

func genLabels(t *rapid.T, label string) map[string]string {
	out := map[string]string{}
	for _, k := range propKeys {
		if rapid.Bool().Draw(t, label+"-has-"+k) {
			out[k] = rapid.SampledFrom(propValues).Draw(t, label+"-"+k)
		}
	}
	return out
}

func genLabelSelector(t *rapid.T) metav1.LabelSelector {
	var s metav1.LabelSelector
	if rapid.Bool().Draw(t, "matchLabels") {
		s.MatchLabels = genLabels(t, "ml")
	}
	n := rapid.IntRange(0, 3).Draw(t, "exprs")
	for i := 0; i < n; i++ {
		op := rapid.SampledFrom([]metav1.LabelSelectorOperator{
			metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist,
		}).Draw(t, "op")
		e := metav1.LabelSelectorRequirement{Key: rapid.SampledFrom(propKeys).Draw(t, "key"), Operator: op}
		if op == metav1.LabelSelectorOpIn || op == metav1.LabelSelectorOpNotIn {
			e.Values = rapid.SliceOfNDistinct(rapid.SampledFrom(propValues), 1, 3, rapid.ID[string]).Draw(t, "values")
		}
		s.MatchExpressions = append(s.MatchExpressions, e)
	}
	return s
}

// TestK8sSelectorProperty: a converted podSelector picks exactly the pods
// the Kubernetes label selector (apimachinery's implementation) picks.
func TestK8sSelectorProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ls := genLabelSelector(t)
		pod := genLabels(t, "pod")
		np := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
			Spec:       networkingv1.NetworkPolicySpec{PodSelector: ls},
		}
		cnp := policy.ConvertK8sNetworkPolicy(np)
		sel, err := selector.Parse(cnp.Spec.Selector)
		require.NoError(t, err, cnp.Spec.Selector)
		k8s, err := metav1.LabelSelectorAsSelector(&ls)
		require.NoError(t, err)

		flat := selector.Set{policy.LabelOrchestrator: policy.OrchestratorK8s}
		for k, v := range pod {
			flat[k] = v
		}
		require.Equal(t, k8s.Matches(k8slabels.Set(pod)), sel.Matches(flat), "selector %s on %v", cnp.Spec.Selector, pod)
	})
}

// TestK8sPortsProperty: the converted rules allow exactly the (protocol,
// port) pairs the Kubernetes ports allow, however ports, ranges and
// protocols are mixed.
func TestK8sPortsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		protos := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP}
		n := rapid.IntRange(1, 6).Draw(t, "ports")
		var ports []networkingv1.NetworkPolicyPort
		for i := 0; i < n; i++ {
			var p networkingv1.NetworkPolicyPort
			if rapid.Bool().Draw(t, "proto") {
				pr := rapid.SampledFrom(protos).Draw(t, "protocol")
				p.Protocol = &pr
			}
			if rapid.IntRange(0, 9).Draw(t, "allports") > 0 {
				v := intstr.FromInt32(int32(rapid.IntRange(1, 40).Draw(t, "port")))
				p.Port = &v
				if rapid.Bool().Draw(t, "range") {
					end := v.IntVal + int32(rapid.IntRange(0, 5).Draw(t, "len"))
					p.EndPort = &end
				}
			}
			ports = append(ports, p)
		}
		np := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
			Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: ports}}},
		}
		want := func(proto uint8, port int) bool {
			for _, p := range ports {
				pp := uint8(6)
				if p.Protocol != nil && *p.Protocol == corev1.ProtocolUDP {
					pp = 17
				}
				if pp != proto {
					continue
				}
				if p.Port == nil {
					return true
				}
				end := p.Port.IntVal
				if p.EndPort != nil {
					end = *p.EndPort
				}
				if int32(port) >= p.Port.IntVal && int32(port) <= end {
					return true
				}
			}
			return false
		}
		set := policy.NewSet()
		_, err := set.Upsert(np)
		require.NoError(t, err)
		rules := set.Policies()[0].Ingress
		got := func(proto uint8, port int) bool {
			for _, r := range rules {
				if r.Protocol != proto {
					continue
				}
				if len(r.Destination.Ports) == 0 {
					return true
				}
				for _, pr := range r.Destination.Ports {
					if port >= int(pr.Min) && port <= int(pr.Max) {
						return true
					}
				}
			}
			return false
		}
		seen := map[uint8]bool{}
		for _, r := range rules {
			require.False(t, seen[r.Protocol], "one rule per protocol (there is one peer)")
			seen[r.Protocol] = true
		}
		for _, proto := range []uint8{6, 17} {
			for port := 1; port <= 50; port++ {
				require.Equal(t, want(proto, port), got(proto, port), "proto %d port %d", proto, port)
			}
		}
	})
}

package policy

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConvertK8sNetworkPolicy converts a Kubernetes NetworkPolicy into the
// Calico NetworkPolicy Calico itself would enforce for it: named
// knp.default.<name>, tier default, order 1000, Allow rules only (isolation
// then comes from the tier's end-of-tier deny), following the Kubernetes
// NetworkPolicy spec:
//
//   - one rule per (protocol, peer) pair, protocols in sorted order, each
//     rule carrying every port of its protocol (adjacent numbers merged into
//     ranges, endPort giving a range, named ports kept as names);
//   - a port without protocol is TCP; a rule without ports matches every
//     protocol and port; a rule without peers matches every peer;
//   - a peer's podSelector alone selects pods of the policy's namespace;
//     namespaceSelector and podSelector in one peer are ANDed, separate
//     peers ORed (separate rules); an empty namespaceSelector means every
//     namespace;
//   - ipBlock becomes nets, its except notNets;
//   - omitted policyTypes means Ingress, plus Egress when the policy has
//     egress rules.
//
// The input must be valid (see Validate).
func ConvertK8sNetworkPolicy(np *networkingv1.NetworkPolicy) *NetworkPolicy {
	out, _ := convertK8s(np)
	return out
}

func convertK8s(np *networkingv1.NetworkPolicy) (*NetworkPolicy, *ruleFields) {
	order := K8sPolicyOrder
	out := &NetworkPolicy{}
	out.Name = K8sPolicyNamePrefix + np.Name
	out.Namespace = np.Namespace
	out.Spec.Tier = DefaultTierName
	out.Spec.Order = &order
	out.Spec.Selector = k8sSelector(&np.Spec.PodSelector, true)
	fields := &ruleFields{}
	for i, r := range np.Spec.Ingress {
		rules, paths := k8sRules(r.From, r.Ports, true, fmt.Sprintf("spec.ingress[%d]", i), "from")
		out.Spec.Ingress = append(out.Spec.Ingress, rules...)
		fields.Ingress = append(fields.Ingress, paths...)
	}
	for i, r := range np.Spec.Egress {
		rules, paths := k8sRules(r.To, r.Ports, false, fmt.Sprintf("spec.egress[%d]", i), "to")
		out.Spec.Egress = append(out.Spec.Egress, rules...)
		fields.Egress = append(fields.Egress, paths...)
	}
	ingress, egress := false, false
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	if len(np.Spec.PolicyTypes) == 0 {
		ingress = true
		egress = len(np.Spec.Egress) > 0
	}
	if ingress {
		out.Spec.Types = append(out.Spec.Types, PolicyTypeIngress)
	}
	if egress {
		out.Spec.Types = append(out.Spec.Types, PolicyTypeEgress)
	}
	return out, fields
}

// k8sSelector converts a label selector into Calico syntax. Pod selectors
// also require projectcalico.org/orchestrator == "k8s" so they only pick
// pods; a present but empty namespace selector is all().
func k8sSelector(s *metav1.LabelSelector, pod bool) string {
	var parts []string
	if pod {
		parts = append(parts, fmt.Sprintf("%s == %q", LabelOrchestrator, OrchestratorK8s))
	}
	if s == nil {
		return strings.Join(parts, " && ")
	}
	if !pod && len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		return "all()"
	}
	for _, k := range sortedKeys(s.MatchLabels) {
		parts = append(parts, fmt.Sprintf("%s == %q", k, s.MatchLabels[k]))
	}
	for _, e := range s.MatchExpressions {
		quoted := make([]string, len(e.Values))
		for i, v := range e.Values {
			quoted[i] = fmt.Sprintf("%q", v)
		}
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			parts = append(parts, fmt.Sprintf("%s in {%s}", e.Key, strings.Join(quoted, ", ")))
		case metav1.LabelSelectorOpNotIn:
			parts = append(parts, fmt.Sprintf("%s not in {%s}", e.Key, strings.Join(quoted, ", ")))
		case metav1.LabelSelectorOpExists:
			parts = append(parts, fmt.Sprintf("has(%s)", e.Key))
		case metav1.LabelSelectorOpDoesNotExist:
			parts = append(parts, fmt.Sprintf("!has(%s)", e.Key))
		}
	}
	return strings.Join(parts, " && ")
}

// k8sRules converts one ingress or egress rule; paths[i] is the source
// field of rules[i] (the peer's path, or the rule's when it has no peers).
func k8sRules(peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, ingress bool, path, peerField string) (rules []Rule, paths []string) {
	// Group the ports by protocol; nil for a protocol means all its ports.
	type protoPorts struct {
		all   bool
		ports []Port
	}
	byProto := map[string]*protoPorts{}
	anyProto := len(ports) == 0
	for _, p := range ports {
		proto := string(corev1.ProtocolTCP)
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		pp := byProto[proto]
		if pp == nil {
			pp = &protoPorts{}
			byProto[proto] = pp
		}
		switch {
		case p.Port == nil:
			pp.all, pp.ports = true, nil
		case pp.all:
		case p.Port.Type != 0:
			pp.ports = append(pp.ports, NamedPort(p.Port.StrVal))
		case p.EndPort != nil:
			pp.ports = append(pp.ports, PortFromRange(int(p.Port.IntVal), int(*p.EndPort)))
		default:
			pp.ports = append(pp.ports, SinglePort(int(p.Port.IntVal)))
		}
	}
	protos := make([]string, 0, len(byProto))
	for p := range byProto {
		protos = append(protos, p)
	}
	sort.Strings(protos)
	if anyProto {
		protos = []string{""}
	}
	for _, proto := range protos {
		var protocol *Protocol
		var dstPorts []Port
		if proto != "" {
			p := ProtocolFromName(proto)
			protocol = &p
			dstPorts = simplifyPorts(byProto[proto].ports)
		}
		emit := func(peer EntityRule, field string) {
			r := Rule{Action: Allow, Protocol: protocol}
			if ingress {
				r.Source = peer
				r.Destination = EntityRule{Ports: dstPorts}
			} else {
				peer.Ports = dstPorts
				r.Destination = peer
			}
			rules = append(rules, r)
			paths = append(paths, field)
		}
		if len(peers) == 0 {
			emit(EntityRule{}, path)
			continue
		}
		for i := range peers {
			emit(k8sPeer(&peers[i]), fmt.Sprintf("%s.%s[%d]", path, peerField, i))
		}
	}
	return rules, paths
}

func k8sPeer(p *networkingv1.NetworkPolicyPeer) EntityRule {
	if p.IPBlock != nil {
		e := EntityRule{Nets: []string{p.IPBlock.CIDR}}
		if len(p.IPBlock.Except) > 0 {
			e.NotNets = append([]string(nil), p.IPBlock.Except...)
		}
		return e
	}
	e := EntityRule{Selector: k8sSelector(p.PodSelector, true)}
	if p.NamespaceSelector != nil {
		e.NamespaceSelector = k8sSelector(p.NamespaceSelector, false)
	}
	return e
}

// simplifyPorts merges numeric ports and ranges into the fewest ranges
// (80, 81, 82 → 80:82), numbers first in ascending order, then the named
// ports in the order given.
func simplifyPorts(ports []Port) []Port {
	if len(ports) <= 1 {
		return ports
	}
	var ranges [][2]int
	var named []Port
	for _, p := range ports {
		if p.Name != "" {
			named = append(named, p)
			continue
		}
		ranges = append(ranges, [2]int{p.Min, p.Max})
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i][0] < ranges[j][0] })
	var out []Port
	for _, r := range ranges {
		if n := len(out); n > 0 && r[0] <= out[n-1].Max+1 {
			if r[1] > out[n-1].Max {
				out[n-1].Max = r[1]
			}
			continue
		}
		out = append(out, PortFromRange(r[0], r[1]))
	}
	return append(out, named...)
}

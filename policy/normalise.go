package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/calyxnet/calyx/selector"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// NormalizePolicy returns the normalised form of a policy object
// (NetworkPolicy, GlobalNetworkPolicy, the staged kinds, or a Kubernetes
// NetworkPolicy). The object must be valid (Validate); origin may be nil.
func NormalizePolicy(obj Object, origin *Origin) (*Policy, error) {
	if err := Validate(obj, origin); err != nil {
		return nil, err
	}
	return normalizeValidPolicy(obj, origin)
}

// normalizeValidPolicy is NormalizePolicy for an object already validated.
func normalizeValidPolicy(obj Object, origin *Origin) (*Policy, error) {
	var p *Policy
	switch o := obj.(type) {
	case *NetworkPolicy:
		p = normalizeCalico(KindNetworkPolicy, o.Namespace, o.Name, &o.Spec, nil, origin, nil)
	case *StagedNetworkPolicy:
		p = normalizeCalico(KindStagedNetworkPolicy, o.Namespace, o.Name, &o.Spec.NetworkPolicySpec, nil, origin, nil)
		p.Staged, p.StagedAction = true, stagedAction(o.Spec.StagedAction)
	case *GlobalNetworkPolicy:
		p = normalizeCalico(KindGlobalNetworkPolicy, "", o.Name, nil, &o.Spec, origin, nil)
	case *StagedGlobalNetworkPolicy:
		p = normalizeCalico(KindStagedGlobalNetworkPolicy, "", o.Name, nil, &o.Spec.GlobalNetworkPolicySpec, origin, nil)
		p.Staged, p.StagedAction = true, stagedAction(o.Spec.StagedAction)
	case *networkingv1.NetworkPolicy:
		cnp, fields := convertK8s(o)
		p = normalizeCalico(KindK8sNetworkPolicy, cnp.Namespace, cnp.Name, &cnp.Spec, nil, origin, fields)
	case *StagedKubernetesNetworkPolicy:
		knp := &networkingv1.NetworkPolicy{ObjectMeta: o.ObjectMeta, Spec: o.Spec.NetworkPolicySpec}
		cnp, fields := convertK8s(knp)
		p = normalizeCalico(KindStagedKubernetesNetworkPolicy, cnp.Namespace, cnp.Name, &cnp.Spec, nil, origin, fields)
		p.Staged, p.StagedAction = true, stagedAction(o.Spec.StagedAction)
	default:
		return nil, fmt.Errorf("%T is not a policy kind", obj)
	}
	return p, nil
}

func stagedAction(a StagedAction) StagedAction {
	if a == "" {
		return StagedActionSet
	}
	return a
}

// ruleFields gives, for converted Kubernetes policies, the source field path
// of each generated rule.
type ruleFields struct {
	Ingress, Egress []string
}

// normalizeCalico normalises a namespaced (np) or global (gnp) spec.
func normalizeCalico(kind Kind, ns, name string, np *NetworkPolicySpec, gnp *GlobalNetworkPolicySpec, origin *Origin, fields *ruleFields) *Policy {
	p := &Policy{Kind: kind, Namespace: ns, Name: name}
	if origin != nil {
		p.Position = origin.Position
	}
	var tier, sel, saSel, nsSel string
	var types []PolicyType
	var ingress, egress []Rule
	if np != nil {
		tier, p.Order, sel, saSel, types, ingress, egress = np.Tier, np.Order, np.Selector, np.ServiceAccountSelector, np.Types, np.Ingress, np.Egress
		p.ApplyOnForward = true
	} else {
		tier, p.Order, sel, saSel, nsSel, types, ingress, egress = gnp.Tier, gnp.Order, gnp.Selector, gnp.ServiceAccountSelector, gnp.NamespaceSelector, gnp.Types, gnp.Ingress, gnp.Egress
		p.DoNotTrack, p.PreDNAT, p.ApplyOnForward = gnp.DoNotTrack, gnp.PreDNAT, gnp.ApplyOnForward
	}
	if p.Order != nil {
		o := *p.Order
		p.Order = &o
	}
	if tier == "" {
		tier = DefaultTierName
	}
	p.Tier = tier

	// The policy's own selector, over the flattened label space.
	parts := []*selector.Selector{mustParse(sel)}
	if ns != "" {
		parts = append(parts, namespaceIs(ns))
	}
	if nsSel != "" {
		parts = append(parts, rewriteAllGlobal(mustParse(nsSel).WithKeyPrefix(NamespaceLabelPrefix), LabelNamespace, false))
	}
	if saSel != "" {
		s := mustParse(saSel).WithKeyPrefix(ServiceAccountLabelPrefix)
		if ns == "" {
			s = rewriteAllGlobal(s, LabelServiceAccount, false)
		}
		parts = append(parts, s)
	}
	p.Selector = selector.And(parts...)
	p.Types = inferTypes(types, len(ingress) > 0, len(egress) > 0)

	base := "spec"
	if origin != nil && origin.prefix != "" {
		base = origin.prefix + ".spec"
	}
	for i := range ingress {
		field := fmt.Sprintf("%s.ingress[%d]", base, i)
		if fields != nil {
			field = joinPath(originPrefix(origin), fields.Ingress[i])
		}
		p.Ingress = append(p.Ingress, normalizeRule(&ingress[i], ns, field, origin))
	}
	for i := range egress {
		field := fmt.Sprintf("%s.egress[%d]", base, i)
		if fields != nil {
			field = joinPath(originPrefix(origin), fields.Egress[i])
		}
		p.Egress = append(p.Egress, normalizeRule(&egress[i], ns, field, origin))
	}
	return p
}

// inferTypes applies Calico's defaulting: Egress only when there are
// egress rules and no ingress rules, both when there are both, else
// Ingress (including a policy with no rules at all).
func inferTypes(types []PolicyType, hasIngress, hasEgress bool) []Direction {
	if len(types) == 0 {
		switch {
		case !hasEgress:
			return []Direction{Ingress}
		case !hasIngress:
			return []Direction{Egress}
		default:
			return []Direction{Ingress, Egress}
		}
	}
	var out []Direction
	if hasType(types, PolicyTypeIngress) {
		out = append(out, Ingress)
	}
	if hasType(types, PolicyTypeEgress) {
		out = append(out, Egress)
	}
	return out
}

func mustParse(s string) *selector.Selector {
	sel, err := selector.Parse(s)
	if err != nil {
		// Validated before; reaching here is a bug in validation.
		panic(fmt.Sprintf("policy: selector %q passed validation but does not parse: %v", s, err))
	}
	return sel
}

func namespaceIs(ns string) *selector.Selector {
	return mustParse(fmt.Sprintf("%s == %q", LabelNamespace, ns))
}

// rewriteAllGlobal rewrites all() to has(key) and, when withGlobal,
// global() to !has(key), as Calico does for (prefixed) namespace
// selectors. It works on the canonical text, outside quoted values.
func rewriteAllGlobal(sel *selector.Selector, key string, withGlobal bool) *selector.Selector {
	text := sel.String()
	var b strings.Builder
	var quote byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		if quote != 0 {
			if c == quote {
				quote = 0
			}
			b.WriteByte(c)
			continue
		}
		if c == '"' || c == '\'' {
			quote = c
			b.WriteByte(c)
			continue
		}
		boundary := i == 0 || !isIdentByte(text[i-1])
		switch {
		case boundary && strings.HasPrefix(text[i:], "all()"):
			b.WriteString("has(" + key + ")")
			i += len("all()") - 1
		case boundary && withGlobal && strings.HasPrefix(text[i:], "global()"):
			b.WriteString("!has(" + key + ")")
			i += len("global()") - 1
		default:
			b.WriteByte(c)
		}
	}
	return mustParse(b.String())
}

// entitySelector builds the single effective selector of one end of a rule,
// as Calico's getEndpointSelector: the namespace scope (the policy's own
// namespace, or the rewritten namespaceSelector) ANDed with the service
// account match and the selector, applied as soon as any selector field is
// used. nil means any address.
func entitySelector(e *EntityRule, ns string) *selector.Selector {
	var nsSel *selector.Selector
	switch {
	case e.NamespaceSelector != "":
		nsSel = rewriteAllGlobal(mustParse(e.NamespaceSelector).WithKeyPrefix(NamespaceLabelPrefix), LabelNamespace, true)
	case ns != "":
		nsSel = namespaceIs(ns)
	}
	var parts []*selector.Selector
	if sa := e.ServiceAccounts; sa != nil && (sa.Selector != "" || len(sa.Names) > 0) {
		parts = append(parts, serviceAccountSelector(sa))
	}
	if e.Selector != "" {
		parts = append(parts, mustParse(e.Selector))
	}
	if nsSel != nil && (len(parts) > 0 || e.NotSelector != "" || e.NamespaceSelector != "") {
		parts = append([]*selector.Selector{nsSel}, parts...)
	}
	if len(parts) == 0 {
		return nil
	}
	return selector.And(parts...)
}

// serviceAccountSelector folds serviceAccounts into a selector:
// projectcalico.org/serviceaccount in {names} AND the selector over the
// service account's labels (prefixed pcsa.).
func serviceAccountSelector(sa *ServiceAccountMatch) *selector.Selector {
	var parts []*selector.Selector
	if sa.Selector != "" {
		parts = append(parts, mustParse(sa.Selector).WithKeyPrefix(ServiceAccountLabelPrefix))
	}
	if len(sa.Names) > 0 {
		quoted := make([]string, len(sa.Names))
		for i, n := range sa.Names {
			quoted[i] = fmt.Sprintf("%q", n)
		}
		parts = append(parts, mustParse(fmt.Sprintf("%s in {%s}", LabelServiceAccount, strings.Join(quoted, ", "))))
	}
	return selector.And(parts...)
}

func normalizeRule(r *Rule, ns, field string, origin *Origin) RuleInfo {
	out := RuleInfo{Action: r.Action, Field: field}
	if origin != nil {
		out.Position = origin.At(strings.TrimPrefix(strings.TrimPrefix(field, origin.prefix), "."))
	}
	if r.IPVersion != nil {
		out.IPVersion = *r.IPVersion
	}
	if r.Protocol != nil {
		out.Protocol, _ = r.Protocol.Number()
	}
	if r.NotProtocol != nil {
		out.NotProtocol, _ = r.NotProtocol.Number()
	}
	out.ICMP = icmpMatch(r.ICMP)
	out.NotICMP = icmpMatch(r.NotICMP)
	out.Source = normalizeEntity(&r.Source, ns)
	out.Destination = normalizeEntity(&r.Destination, ns)
	if r.HTTP != nil {
		h := *r.HTTP
		out.HTTP = &h
	}
	if r.Metadata != nil && len(r.Metadata.Annotations) > 0 {
		out.Annotations = make(map[string]string, len(r.Metadata.Annotations))
		for k, v := range r.Metadata.Annotations {
			out.Annotations[k] = v
		}
	}
	return out
}

func icmpMatch(f *ICMPFields) *ICMPMatch {
	if f == nil || f.Type == nil {
		return nil
	}
	m := &ICMPMatch{Type: uint8(*f.Type)}
	if f.Code != nil {
		c := uint8(*f.Code)
		m.Code = &c
	}
	return m
}

func normalizeEntity(e *EntityRule, ns string) Match {
	m := Match{
		Nets:     prefixes(e.Nets),
		NotNets:  prefixes(e.NotNets),
		Selector: entitySelector(e, ns),
	}
	if e.NotSelector != "" {
		m.NotSelector = mustParse(e.NotSelector)
	}
	m.Ports, m.NamedPorts = portRanges(e.Ports)
	m.NotPorts, m.NotNamedPorts = portRanges(e.NotPorts)
	if len(e.Domains) > 0 {
		m.Domains = append([]string(nil), e.Domains...)
	}
	if e.Services != nil {
		s := *e.Services
		if s.Namespace == "" {
			s.Namespace = ns
		}
		m.Service = &s
	}
	return m
}

func prefixes(nets []string) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range nets {
		if p, err := parseNet(n); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func portRanges(ports []Port) ([]PortRange, []string) {
	var ranges []PortRange
	var names []string
	for _, p := range ports {
		if p.Name != "" {
			names = append(names, p.Name)
			continue
		}
		ranges = append(ranges, PortRange{Min: uint16(p.Min), Max: uint16(p.Max)})
	}
	return ranges, names
}

// NormalizePod returns the workload endpoint of a pod, and false for pods
// Calico does not make endpoints of: host-networked pods (they share the
// node's addresses and are policed as the host) and pods that have
// finished (phase Succeeded or Failed). A pod not yet scheduled is kept,
// with an empty Node, so that policy can be checked against manifests.
func NormalizePod(pod *corev1.Pod) (*Endpoint, bool) {
	if pod.Spec.HostNetwork {
		return nil, false
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return nil, false
	}
	ep := &Endpoint{
		Kind:           KindPod,
		Namespace:      pod.Namespace,
		Name:           pod.Name,
		Node:           pod.Spec.NodeName,
		Labels:         copyLabels(pod.Labels),
		ServiceAccount: pod.Spec.ServiceAccountName,
	}
	var ips []string
	if len(pod.Status.PodIPs) > 0 {
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
	} else if pod.Status.PodIP != "" {
		ips = append(ips, pod.Status.PodIP)
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			ep.IPs = append(ep.IPs, a.Unmap())
		}
	}
	for _, port := range PodPorts(pod) {
		if port.Name != "" {
			ep.Ports = append(ep.Ports, port)
		}
	}
	return ep, true
}

// PodPorts returns every port a pod's containers declare (sidecars, the
// restartable init containers, included), named or not, with TCP as the
// default protocol; ports outside 1-65535 are left out.
func PodPorts(pod *corev1.Pod) []EndpointNamedPort {
	containers := pod.Spec.Containers
	for _, c := range pod.Spec.InitContainers {
		// Sidecars (restartable init containers) serve for the pod's life.
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			containers = append(containers, c)
		}
	}
	var out []EndpointNamedPort
	for _, c := range containers {
		for _, port := range c.Ports {
			if port.ContainerPort < 1 || port.ContainerPort > 65535 {
				continue
			}
			proto := ProtocolFromName(string(port.Protocol))
			if port.Protocol == "" {
				proto = ProtocolFromName("TCP")
			}
			n, _ := proto.Number()
			out = append(out, EndpointNamedPort{Name: port.Name, Protocol: n, Port: uint16(port.ContainerPort)})
		}
	}
	return out
}

// NormalizeHostEndpoint returns the endpoint of a HostEndpoint.
func NormalizeHostEndpoint(h *HostEndpoint) *Endpoint {
	ep := &Endpoint{
		Kind:          KindHostEndpoint,
		Name:          h.Name,
		Node:          h.Spec.Node,
		InterfaceName: h.Spec.InterfaceName,
		Labels:        copyLabels(h.Labels),
		Profiles:      append([]string(nil), h.Spec.Profiles...),
	}
	for _, s := range h.Spec.ExpectedIPs {
		if a, err := netip.ParseAddr(s); err == nil {
			ep.IPs = append(ep.IPs, a.Unmap())
		}
	}
	for _, p := range h.Spec.Ports {
		n, _ := p.Protocol.Number()
		ep.Ports = append(ep.Ports, EndpointNamedPort{Name: p.Name, Protocol: n, Port: p.Port})
	}
	return ep
}

// NormalizeNetworkSet returns the normalised form of a NetworkSet or
// GlobalNetworkSet; nil for other objects.
func NormalizeNetworkSet(obj Object) *NetworkSetInfo {
	var spec *NetworkSetSpec
	var k Kind
	switch o := obj.(type) {
	case *NetworkSet:
		spec, k = &o.Spec, KindNetworkSet
	case *GlobalNetworkSet:
		spec, k = &o.Spec, KindGlobalNetworkSet
	default:
		return nil
	}
	return &NetworkSetInfo{
		Kind: k, Namespace: obj.GetNamespace(), Name: obj.GetName(),
		Labels:               copyLabels(obj.GetLabels()),
		Nets:                 prefixes(spec.Nets),
		AllowedEgressDomains: append([]string(nil), spec.AllowedEgressDomains...),
	}
}

func copyLabels(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// EndpointOwnLabels returns the labels an endpoint carries itself in the
// flattened label space: its labels plus, for workloads, the implicit
// projectcalico.org/namespace, projectcalico.org/orchestrator and
// projectcalico.org/serviceaccount. Inherited labels come from the parents
// (EndpointParents).
//
// A pod's own labels that start with pcns. or pcsa. are dropped, as Calico
// drops them: otherwise a pod could pretend to be in another namespace.
func EndpointOwnLabels(ep *Endpoint) map[string]string {
	out := copyLabels(ep.Labels)
	if ep.Kind == KindPod {
		for k := range out {
			if strings.HasPrefix(k, NamespaceLabelPrefix) || strings.HasPrefix(k, ServiceAccountLabelPrefix) {
				delete(out, k)
			}
		}
		out[LabelNamespace] = ep.Namespace
		out[LabelOrchestrator] = OrchestratorK8s
		if ep.ServiceAccount != "" {
			out[LabelServiceAccount] = ep.ServiceAccount
		}
	}
	return out
}

// EndpointParents returns the IDs of the parents an endpoint inherits
// labels from, in precedence order: for a workload its namespace
// (kns.<ns>) and service account (ksa.<ns>.<sa>); for a host endpoint its
// profiles. These are the parent IDs to give selector.Index.UpdateLabels.
func EndpointParents(ep *Endpoint) []string {
	if ep.Kind == KindPod {
		parents := []string{NamespaceParentID(ep.Namespace)}
		if ep.ServiceAccount != "" {
			parents = append(parents, ServiceAccountParentID(ep.Namespace, ep.ServiceAccount))
		}
		return parents
	}
	return append([]string(nil), ep.Profiles...)
}

// NetworkSetOwnLabels returns a network set's labels in the flattened label
// space: its labels plus projectcalico.org/namespace for a namespaced set.
func NetworkSetOwnLabels(ns *NetworkSetInfo) map[string]string {
	out := copyLabels(ns.Labels)
	if ns.Namespace != "" {
		out[LabelNamespace] = ns.Namespace
	}
	return out
}

// NetworkSetParents returns the parent IDs of a network set: its
// namespace's for a namespaced set, none for a global one.
func NetworkSetParents(ns *NetworkSetInfo) []string {
	if ns.Namespace != "" {
		return []string{NamespaceParentID(ns.Namespace)}
	}
	return nil
}

// NamespaceParentID is the parent ID of a namespace: kns.<name>.
func NamespaceParentID(ns string) string { return NamespaceParentPrefix + ns }

// ServiceAccountParentID is the parent ID of a service account:
// ksa.<namespace>.<name>.
func ServiceAccountParentID(ns, name string) string {
	return ServiceAccountParentPrefix + ns + "." + name
}

// NamespaceParentLabels returns the labels a namespace lends its endpoints:
// its labels under pcns. plus pcns.projectcalico.org/name.
func NamespaceParentLabels(ns *corev1.Namespace) map[string]string {
	out := make(map[string]string, len(ns.Labels)+1)
	for k, v := range ns.Labels {
		out[NamespaceLabelPrefix+k] = v
	}
	out[NamespaceLabelPrefix+LabelName] = ns.Name
	return out
}

// ServiceAccountParentLabels returns the labels a service account lends its
// pods: its labels under pcsa. plus pcsa.projectcalico.org/name.
func ServiceAccountParentLabels(sa *corev1.ServiceAccount) map[string]string {
	out := make(map[string]string, len(sa.Labels)+1)
	for k, v := range sa.Labels {
		out[ServiceAccountLabelPrefix+k] = v
	}
	out[ServiceAccountLabelPrefix+LabelName] = sa.Name
	return out
}

// compareOrder orders optional orders: lower first, nil last.
func compareOrder(a, b *float64) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	case *a < *b:
		return -1
	case *a > *b:
		return 1
	}
	return 0
}

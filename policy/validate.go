package policy

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"

	"github.com/calyxnet/calyx/selector"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// fieldError is a problem at a field path inside one object.
type fieldError struct {
	Field   string
	Message string
}

// fieldErrors collects problems with their paths.
type fieldErrors []fieldError

func (l *fieldErrors) add(field, format string, args ...any) {
	*l = append(*l, fieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Validate checks one object on its own (set-level checks, such as a
// policy's tier existing, are Set.Validate's) and returns every problem as
// a ValidationErrors, or nil. origin may be nil; it adds source and line.
func Validate(obj Object, origin *Origin) error {
	k := KindOf(obj)
	if k == "" {
		return &ValidationError{Position: origin.At(""), Message: fmt.Sprintf("unsupported object type %T", obj)}
	}
	var out ValidationErrors
	for _, fe := range validateObject(obj) {
		out = append(out, &ValidationError{
			Position: origin.At(fe.Field), Kind: k, Namespace: obj.GetNamespace(), Name: obj.GetName(),
			Field: joinPath(originPrefix(origin), fe.Field), Message: fe.Message,
		})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func originPrefix(o *Origin) string {
	if o == nil {
		return ""
	}
	return o.prefix
}

// validateObject checks one decoded object.
func validateObject(obj Object) fieldErrors {
	var errs fieldErrors
	k := KindOf(obj)
	validateMeta(&errs, obj, k)
	switch o := obj.(type) {
	case *NetworkPolicy:
		validatePolicySpec(&errs, "spec", o.Spec.Tier, o.Spec.Selector, o.Spec.ServiceAccountSelector, "", o.Spec.Types, o.Spec.Ingress, o.Spec.Egress, true)
	case *StagedNetworkPolicy:
		validateStagedAction(&errs, o.Spec.StagedAction)
		if o.Spec.StagedAction == StagedActionDelete {
			rest := o.Spec.NetworkPolicySpec
			rest.Tier = ""
			if !reflect.DeepEqual(rest, NetworkPolicySpec{}) {
				errs.add("spec", "with stagedAction Delete, give no spec fields but tier")
			}
		}
		validatePolicySpec(&errs, "spec", o.Spec.Tier, o.Spec.Selector, o.Spec.ServiceAccountSelector, "", o.Spec.Types, o.Spec.Ingress, o.Spec.Egress, true)
	case *GlobalNetworkPolicy:
		validateGlobalSpec(&errs, &o.Spec)
	case *StagedGlobalNetworkPolicy:
		validateStagedAction(&errs, o.Spec.StagedAction)
		if o.Spec.StagedAction == StagedActionDelete {
			rest := o.Spec.GlobalNetworkPolicySpec
			rest.Tier = ""
			if !reflect.DeepEqual(rest, GlobalNetworkPolicySpec{}) {
				errs.add("spec", "with stagedAction Delete, give no spec fields but tier")
			}
		}
		validateGlobalSpec(&errs, &o.Spec.GlobalNetworkPolicySpec)
	case *StagedKubernetesNetworkPolicy:
		validateStagedAction(&errs, o.Spec.StagedAction)
		if o.Spec.StagedAction == StagedActionDelete && !reflect.DeepEqual(o.Spec.NetworkPolicySpec, networkingv1.NetworkPolicySpec{}) {
			errs.add("spec", "with stagedAction Delete, give no spec fields")
		}
		validateK8sSpec(&errs, "spec", &o.Spec.NetworkPolicySpec)
	case *networkingv1.NetworkPolicy:
		validateK8sSpec(&errs, "spec", &o.Spec)
	case *Tier:
		validateTier(&errs, o)
	case *NetworkSet:
		validateNetworkSet(&errs, o.Labels, &o.Spec)
	case *GlobalNetworkSet:
		validateNetworkSet(&errs, o.Labels, &o.Spec)
	case *HostEndpoint:
		validateHostEndpoint(&errs, &o.Spec)
	case *Profile:
		validateRules(&errs, "spec.ingress", o.Spec.Ingress, true, false)
		validateRules(&errs, "spec.egress", o.Spec.Egress, false, false)
		validateLabels(&errs, "spec.labelsToApply", o.Spec.LabelsToApply)
	case *IPPool:
		validateIPPool(&errs, &o.Spec)
	case *FelixConfiguration:
		validateFelix(&errs, &o.Spec)
	case *corev1.Pod:
		validatePod(&errs, o)
	}
	return errs
}

func validateMeta(errs *fieldErrors, obj Object, k Kind) {
	name := obj.GetName()
	switch {
	case name == "":
		errs.add("metadata.name", "missing name")
	case k == KindNamespace || k == KindTier:
		for _, msg := range validation.IsDNS1123Label(name) {
			errs.add("metadata.name", "invalid %s name %q: %s", strings.ToLower(string(k)), name, msg)
		}
	case k == KindNetworkPolicy || k == KindStagedNetworkPolicy:
		if msg := policyNameProblem(name, true); msg != "" {
			errs.add("metadata.name", "invalid policy name %q: %s", name, msg)
		}
	case k == KindGlobalNetworkPolicy || k == KindStagedGlobalNetworkPolicy:
		if msg := policyNameProblem(name, false); msg != "" {
			errs.add("metadata.name", "invalid policy name %q: %s", name, msg)
		}
	default:
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			errs.add("metadata.name", "invalid name %q: %s", name, msg)
		}
	}
	if k.Namespaced() {
		for _, msg := range validation.IsDNS1123Label(obj.GetNamespace()) {
			errs.add("metadata.namespace", "invalid namespace %q: %s", obj.GetNamespace(), msg)
		}
	}
	validateLabels(errs, "metadata.labels", obj.GetLabels())
}

// policyNameProblem checks a Calico policy name as Calico does: a DNS-1123
// label, optionally prefixed by a tier name and a dot ("security.allow");
// namespaced policies may also be named knp.default.<subdomain> or
// ossg.default.<subdomain>. "" when the name is fine.
func policyNameProblem(name string, namespaced bool) string {
	if namespaced {
		for _, prefix := range []string{"knp.default.", "ossg.default."} {
			if rest, ok := strings.CutPrefix(name, prefix); ok {
				return strings.Join(validation.IsDNS1123Subdomain(rest), "; ")
			}
		}
	}
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return "want a DNS-1123 label, optionally prefixed by \"<tier>.\""
	}
	for _, part := range parts {
		if msgs := validation.IsDNS1123Label(part); len(msgs) > 0 {
			return strings.Join(msgs, "; ")
		}
	}
	return ""
}

func validateLabels(errs *fieldErrors, path string, labels map[string]string) {
	for _, key := range sortedKeys(labels) {
		for _, msg := range validation.IsQualifiedName(key) {
			errs.add(path, "invalid label key %q: %s", key, msg)
		}
		for _, msg := range validation.IsValidLabelValue(labels[key]) {
			errs.add(path+"["+key+"]", "invalid label value %q: %s", labels[key], msg)
		}
	}
}

func validateStagedAction(errs *fieldErrors, a StagedAction) {
	switch a {
	case "", StagedActionSet, StagedActionDelete:
	default:
		errs.add("spec.stagedAction", "unknown staged action %q (want Set or Delete)", a)
	}
}

func validateGlobalSpec(errs *fieldErrors, s *GlobalNetworkPolicySpec) {
	validatePolicySpec(errs, "spec", s.Tier, s.Selector, s.ServiceAccountSelector, s.NamespaceSelector, s.Types, s.Ingress, s.Egress, false)
	if s.DoNotTrack && s.PreDNAT {
		errs.add("spec.preDNAT", "preDNAT and doNotTrack cannot both be true")
	}
	if s.PreDNAT && len(s.Egress) > 0 {
		errs.add("spec.egress", "a preDNAT policy cannot have egress rules")
	}
	if s.PreDNAT && hasType(s.Types, PolicyTypeEgress) {
		errs.add("spec.types", "a preDNAT policy cannot have type Egress")
	}
	if (s.DoNotTrack || s.PreDNAT) && !s.ApplyOnForward {
		errs.add("spec.applyOnForward", "applyOnForward must be true when preDNAT or doNotTrack is")
	}
}

func hasType(types []PolicyType, t PolicyType) bool {
	for _, x := range types {
		if x == t {
			return true
		}
	}
	return false
}

func validatePolicySpec(errs *fieldErrors, path, tier, sel, saSel, nsSel string, types []PolicyType, ingress, egress []Rule, namespaced bool) {
	if tier != "" {
		for _, msg := range validation.IsDNS1123Label(tier) {
			errs.add(path+".tier", "invalid tier name %q: %s", tier, msg)
		}
	}
	validateSelector(errs, path+".selector", sel, false)
	validateSelector(errs, path+".serviceAccountSelector", saSel, false)
	validateSelector(errs, path+".namespaceSelector", nsSel, false)
	seen := map[PolicyType]bool{}
	for i, t := range types {
		switch t {
		case PolicyTypeIngress, PolicyTypeEgress:
			if seen[t] {
				errs.add(fmt.Sprintf("%s.types[%d]", path, i), "type %s given twice", t)
			}
			seen[t] = true
		default:
			errs.add(fmt.Sprintf("%s.types[%d]", path, i), "unknown policy type %q (want Ingress or Egress)", t)
		}
	}
	validateRules(errs, path+".ingress", ingress, true, !namespaced)
	validateRules(errs, path+".egress", egress, false, !namespaced)
}

// validateSelector checks that s parses; global() is only meaningful in a
// rule's namespaceSelector.
func validateSelector(errs *fieldErrors, path, s string, allowGlobal bool) {
	if s == "" {
		return
	}
	if _, err := selector.Parse(s); err != nil {
		errs.add(path, "invalid selector: %v", err)
		return
	}
	if !allowGlobal && containsOutsideQuotes(s, "global(") {
		errs.add(path, "global() can only be used in a rule's namespaceSelector")
	}
}

func validateRules(errs *fieldErrors, path string, rules []Rule, ingress, global bool) {
	for i := range rules {
		validateRule(errs, fmt.Sprintf("%s[%d]", path, i), &rules[i], ingress, global)
	}
}

// protocolHasPorts reports whether rules with ports may use the protocol:
// TCP, UDP or SCTP, as Calico's Protocol.SupportsPorts.
func protocolHasPorts(n uint8) bool { return n == 6 || n == 17 || n == 132 }

// validateRule checks one rule of a policy or profile. global is true for
// GlobalNetworkPolicy rules, whose services must name their namespace.
func validateRule(errs *fieldErrors, path string, r *Rule, ingress, global bool) {
	switch r.Action {
	case Allow, Deny, Log, Pass:
	case "":
		errs.add(path+".action", "missing action (want Allow, Deny, Log or Pass)")
	default:
		errs.add(path+".action", "unknown action %q (want Allow, Deny, Log or Pass)", r.Action)
	}
	ipVersion := 0
	if r.IPVersion != nil {
		ipVersion = *r.IPVersion
		if ipVersion != 4 && ipVersion != 6 {
			errs.add(path+".ipVersion", "ipVersion %d: want 4 or 6", ipVersion)
			ipVersion = 0
		}
	}
	proto, protoOK := checkProtocol(errs, path+".protocol", r.Protocol)
	notProto, notProtoOK := checkProtocol(errs, path+".notProtocol", r.NotProtocol)
	for _, p := range []struct {
		field string
		num   uint8
		ok    bool
	}{{"protocol", proto, protoOK}, {"notProtocol", notProto, notProtoOK}} {
		if !p.ok {
			continue
		}
		if p.num == 1 && ipVersion == 6 {
			errs.add(path+"."+p.field, "protocol ICMP needs ipVersion 4 (use ICMPv6 for IPv6)")
		}
		if p.num == 58 && ipVersion == 4 {
			errs.add(path+"."+p.field, "protocol ICMPv6 needs ipVersion 6 (use ICMP for IPv4)")
		}
	}
	isICMP := protoOK && (proto == 1 || proto == 58)
	checkICMP(errs, path+".icmp", r.ICMP, r.Protocol != nil, isICMP)
	checkICMP(errs, path+".notICMP", r.NotICMP, r.Protocol != nil, isICMP)

	// A rule matches one IP version: its nets must agree with each other
	// and with ipVersion.
	var seen4, seen6 bool
	for _, e := range []struct {
		field string
		er    *EntityRule
	}{{"source", &r.Source}, {"destination", &r.Destination}} {
		ep := path + "." + e.field
		validateEntity(errs, ep, e.er, e.field == "destination", ingress)
		for _, nf := range []struct {
			name    string
			nets    []string
			negated bool
		}{{"nets", e.er.Nets, false}, {"notNets", e.er.NotNets, true}} {
			v4, v6 := validateNets(errs, ep+"."+nf.name, nf.nets, ipVersion, nf.negated)
			if v4 && seen6 || v6 && seen4 || v4 && v6 {
				errs.add(ep+"."+nf.name, "a rule cannot mix IPv4 and IPv6 nets; write one rule per IP version")
			}
			seen4, seen6 = seen4 || v4, seen6 || v6
		}
		for _, pf := range []struct {
			name  string
			ports []Port
		}{{"ports", e.er.Ports}, {"notPorts", e.er.NotPorts}} {
			if len(pf.ports) == 0 {
				continue
			}
			switch {
			case r.Protocol == nil:
				// Named ports alone may go without protocol: each endpoint's
				// port says which protocol it is.
				if !allNamed(pf.ports) {
					errs.add(ep+"."+pf.name, "numeric ports need a protocol on the rule: add `protocol: TCP` (or UDP, SCTP)")
				}
			case protoOK && !protocolHasPorts(proto):
				errs.add(ep+"."+pf.name, "ports need protocol TCP, UDP or SCTP on the rule, not %s", r.Protocol)
			}
		}
	}
	// Services: a source on ingress, a destination on egress.
	if ingress && r.Destination.Services != nil {
		errs.add(path+".destination.services", "services are not allowed in an ingress rule's destination")
	}
	if !ingress && r.Source.Services != nil {
		errs.add(path+".source.services", "services are not allowed in an egress rule's source")
	}
	if global {
		for _, e := range []struct {
			field string
			s     *ServiceMatch
		}{{"source", r.Source.Services}, {"destination", r.Destination.Services}} {
			if e.s != nil && e.s.Namespace == "" {
				errs.add(path+"."+e.field+".services.namespace", "a global policy must name the service's namespace")
			}
		}
	}
	if r.HTTP != nil {
		hp := path + ".http"
		if r.Action != Allow {
			errs.add(hp, "an http match is only valid on Allow rules")
		}
		if !ingress {
			errs.add(hp, "an http match is not allowed in egress rules")
		}
		if r.Protocol != nil && !(protoOK && proto == 6) {
			errs.add(hp, "an http match needs protocol TCP or no protocol")
		}
		for i, p := range r.HTTP.Paths {
			if (p.Exact == "") == (p.Prefix == "") {
				errs.add(fmt.Sprintf("%s.paths[%d]", hp, i), "give exactly one of exact and prefix")
			}
		}
	}
}

func allNamed(ports []Port) bool {
	for _, p := range ports {
		if p.Name == "" {
			return false
		}
	}
	return true
}

func checkProtocol(errs *fieldErrors, path string, p *Protocol) (uint8, bool) {
	if p == nil {
		return 0, false
	}
	n, ok := p.Number()
	if ok {
		return n, true
	}
	if p.Name != "" {
		hint := ""
		for _, name := range protocolNames() {
			if strings.EqualFold(name, p.Name) {
				hint = fmt.Sprintf(" (did you mean %s?)", name)
			}
		}
		errs.add(path, "unknown protocol %q%s: want TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255", p.Name, hint)
	} else {
		errs.add(path, "protocol %d out of range 1-255", p.Num)
	}
	return 0, false
}

func checkICMP(errs *fieldErrors, path string, f *ICMPFields, hasProto, isICMP bool) {
	if f == nil {
		return
	}
	if !isICMP {
		if hasProto {
			errs.add(path, "ICMP fields need protocol ICMP or ICMPv6 on the rule")
		} else {
			errs.add(path, "ICMP fields need a protocol on the rule: add `protocol: ICMP` (or ICMPv6)")
		}
	}
	if f.Type != nil && (*f.Type < 0 || *f.Type > 254) {
		errs.add(path+".type", "ICMP type %d out of range 0-254", *f.Type)
	}
	if f.Code != nil {
		if *f.Code < 0 || *f.Code > 255 {
			errs.add(path+".code", "ICMP code %d out of range 0-255", *f.Code)
		}
		if f.Type == nil {
			errs.add(path+".code", "an ICMP code needs an ICMP type")
		}
	}
}

func validateEntity(errs *fieldErrors, path string, e *EntityRule, dest, ingress bool) {
	validateSelector(errs, path+".selector", e.Selector, false)
	validateSelector(errs, path+".notSelector", e.NotSelector, false)
	validateSelector(errs, path+".namespaceSelector", e.NamespaceSelector, true)
	if ns := strings.TrimSpace(e.NamespaceSelector); ns != "global()" && containsOutsideQuotes(ns, "global(") {
		errs.add(path+".namespaceSelector", "global() cannot be combined with other selectors")
	}
	validatePorts(errs, path+".ports", e.Ports)
	validatePorts(errs, path+".notPorts", e.NotPorts)
	if sa := e.ServiceAccounts; sa != nil {
		validateSelector(errs, path+".serviceAccounts.selector", sa.Selector, false)
		for i, n := range sa.Names {
			for _, msg := range validation.IsDNS1123Subdomain(n) {
				errs.add(fmt.Sprintf("%s.serviceAccounts.names[%d]", path, i), "invalid service account name %q: %s", n, msg)
			}
		}
	}
	if s := e.Services; s != nil {
		sp := path + ".services"
		if s.Name == "" {
			errs.add(sp+".name", "missing service name")
		}
		if e.Selector != "" || e.NotSelector != "" || e.NamespaceSelector != "" || len(e.Nets) > 0 || len(e.NotNets) > 0 || e.ServiceAccounts != nil {
			errs.add(sp, "services cannot be combined with selector, notSelector, namespaceSelector, nets, notNets or serviceAccounts")
		}
		if dest && (len(e.Ports) > 0 || len(e.NotPorts) > 0) {
			errs.add(sp, "destination services cannot be combined with ports or notPorts")
		}
	}
	if len(e.Domains) > 0 {
		dp := path + ".domains"
		switch {
		case !dest:
			errs.add(dp, "domains are only valid in a rule's destination")
		case ingress:
			errs.add(dp, "domains are only valid in egress rules")
		}
		if len(e.Nets) > 0 || len(e.NotNets) > 0 || e.Selector != "" || e.NotSelector != "" || e.NamespaceSelector != "" || e.ServiceAccounts != nil || e.Services != nil {
			errs.add(dp, "domains cannot be combined with nets, notNets, selector, notSelector, namespaceSelector, serviceAccounts or services")
		}
		validateDomains(errs, dp, e.Domains)
	}
}

func validateDomains(errs *fieldErrors, path string, domains []string) {
	for i, d := range domains {
		if msg := domainProblem(d); msg != "" {
			errs.add(fmt.Sprintf("%s[%d]", path, i), "invalid domain %q: %s", d, msg)
		}
	}
}

// domainProblem checks a DNS name or a pattern with * wildcards (*.a.com,
// xmr.*.com, pool*.a.com); "" when it is fine.
func domainProblem(d string) string {
	if d == "" {
		return "empty"
	}
	if len(d) > 253 {
		return "longer than 253 characters"
	}
	for _, label := range strings.Split(strings.TrimSuffix(d, "."), ".") {
		if label == "" {
			return "empty label"
		}
		if len(label) > 63 {
			return "label longer than 63 characters"
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '*' || c == '_') {
				if c >= 'A' && c <= 'Z' {
					return "use lower case"
				}
				return fmt.Sprintf("character %q not allowed", c)
			}
		}
	}
	return ""
}

// validateNets checks CIDRs and reports which IP versions they hold.
func validateNets(errs *fieldErrors, path string, nets []string, ipVersion int, negated bool) (v4, v6 bool) {
	for i, n := range nets {
		np := fmt.Sprintf("%s[%d]", path, i)
		p, err := parseNet(n)
		if err != nil {
			errs.add(np, "invalid CIDR %q", n)
			continue
		}
		is4 := p.Addr().Is4()
		v4, v6 = v4 || is4, v6 || !is4
		if ipVersion == 4 && !is4 || ipVersion == 6 && is4 {
			errs.add(np, "%s is not an IPv%d net, but the rule has ipVersion %d", n, ipVersion, ipVersion)
		}
		if negated && p.Bits() == 0 {
			errs.add(np, "%s in notNets excludes every address, so the rule can never match", n)
		}
	}
	return v4, v6
}

// parseNet reads a CIDR or a single address (as Calico accepts) and masks
// it to its network.
func parseNet(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		bits := p.Bits() - unmapBits(p.Addr())
		if bits < 0 {
			return netip.Prefix{}, fmt.Errorf("invalid prefix %s", s)
		}
		return netip.PrefixFrom(p.Addr().Unmap(), bits).Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

func validatePorts(errs *fieldErrors, path string, ports []Port) {
	for i, p := range ports {
		pp := fmt.Sprintf("%s[%d]", path, i)
		if p.Name != "" {
			for _, msg := range validation.IsValidPortName(p.Name) {
				errs.add(pp, "invalid port %q: not a number, a min:max range or a valid port name (%s)", p.Name, msg)
			}
			continue
		}
		if p.Min < 1 || p.Min > 65535 {
			errs.add(pp, "port %d out of range 1-65535", p.Min)
		}
		if p.Max != p.Min && (p.Max < 1 || p.Max > 65535) {
			errs.add(pp, "port %d out of range 1-65535", p.Max)
		}
		if p.Max < p.Min {
			errs.add(pp, "port range %d:%d has its first port after its last", p.Min, p.Max)
		}
	}
}

func validateK8sSpec(errs *fieldErrors, path string, s *networkingv1.NetworkPolicySpec) {
	validateLabelSelector(errs, path+".podSelector", &s.PodSelector)
	for i, t := range s.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			errs.add(fmt.Sprintf("%s.policyTypes[%d]", path, i), "unknown policy type %q (want Ingress or Egress)", t)
		}
	}
	for i, r := range s.Ingress {
		rp := fmt.Sprintf("%s.ingress[%d]", path, i)
		validateK8sPorts(errs, rp+".ports", r.Ports)
		validateK8sPeers(errs, rp+".from", r.From)
	}
	for i, r := range s.Egress {
		rp := fmt.Sprintf("%s.egress[%d]", path, i)
		validateK8sPorts(errs, rp+".ports", r.Ports)
		validateK8sPeers(errs, rp+".to", r.To)
	}
}

func validateK8sPorts(errs *fieldErrors, path string, ports []networkingv1.NetworkPolicyPort) {
	for i, p := range ports {
		pp := fmt.Sprintf("%s[%d]", path, i)
		if p.Protocol != nil {
			switch *p.Protocol {
			case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
			default:
				errs.add(pp+".protocol", "unknown protocol %q (want TCP, UDP or SCTP)", *p.Protocol)
			}
		}
		if p.Port != nil {
			if p.Port.Type == 0 {
				for _, msg := range validation.IsValidPortNum(int(p.Port.IntVal)) {
					errs.add(pp+".port", "port %d: %s", p.Port.IntVal, msg)
				}
			} else {
				for _, msg := range validation.IsValidPortName(p.Port.StrVal) {
					errs.add(pp+".port", "invalid port name %q: %s", p.Port.StrVal, msg)
				}
			}
		}
		if p.EndPort != nil {
			switch {
			case p.Port == nil:
				errs.add(pp+".endPort", "endPort needs port")
			case p.Port.Type != 0:
				errs.add(pp+".endPort", "endPort cannot be used with a named port")
			case *p.EndPort < p.Port.IntVal:
				errs.add(pp+".endPort", "endPort %d is before port %d", *p.EndPort, p.Port.IntVal)
			case *p.EndPort > 65535:
				errs.add(pp+".endPort", "endPort %d out of range 1-65535", *p.EndPort)
			}
		}
	}
}

func validateK8sPeers(errs *fieldErrors, path string, peers []networkingv1.NetworkPolicyPeer) {
	for i, p := range peers {
		pp := fmt.Sprintf("%s[%d]", path, i)
		if p.IPBlock != nil {
			if p.PodSelector != nil || p.NamespaceSelector != nil {
				errs.add(pp, "ipBlock cannot be combined with podSelector or namespaceSelector")
			}
			cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
			if err != nil {
				errs.add(pp+".ipBlock.cidr", "invalid CIDR %q", p.IPBlock.CIDR)
			}
			for j, ex := range p.IPBlock.Except {
				ep := fmt.Sprintf("%s.ipBlock.except[%d]", pp, j)
				e, err := netip.ParsePrefix(ex)
				if err != nil {
					errs.add(ep, "invalid CIDR %q", ex)
					continue
				}
				if cidr.IsValid() && (!cidr.Masked().Contains(e.Addr()) || e.Bits() <= cidr.Bits() || e.Addr().Is4() != cidr.Addr().Is4()) {
					errs.add(ep, "%s is not strictly inside the ipBlock cidr %s", ex, p.IPBlock.CIDR)
				}
			}
			continue
		}
		if p.PodSelector == nil && p.NamespaceSelector == nil {
			errs.add(pp, "a peer needs podSelector, namespaceSelector or ipBlock")
		}
		validateLabelSelector(errs, pp+".podSelector", p.PodSelector)
		validateLabelSelector(errs, pp+".namespaceSelector", p.NamespaceSelector)
	}
}

func validateLabelSelector(errs *fieldErrors, path string, s *metav1.LabelSelector) {
	if s == nil {
		return
	}
	validateLabels(errs, path+".matchLabels", s.MatchLabels)
	for i, e := range s.MatchExpressions {
		ep := fmt.Sprintf("%s.matchExpressions[%d]", path, i)
		for _, msg := range validation.IsQualifiedName(e.Key) {
			errs.add(ep+".key", "invalid label key %q: %s", e.Key, msg)
		}
		switch e.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(e.Values) == 0 {
				errs.add(ep+".values", "operator %s needs values", e.Operator)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(e.Values) > 0 {
				errs.add(ep+".values", "operator %s takes no values", e.Operator)
			}
		default:
			errs.add(ep+".operator", "unknown operator %q (want In, NotIn, Exists or DoesNotExist)", e.Operator)
		}
		for j, v := range e.Values {
			for _, msg := range validation.IsValidLabelValue(v) {
				errs.add(fmt.Sprintf("%s.values[%d]", ep, j), "invalid label value %q: %s", v, msg)
			}
		}
	}
}

// DefaultTierName is the tier of policies that name none.
const DefaultTierName = "default"

// DefaultTierOrder is the order of the default tier, as in Calico.
const DefaultTierOrder = 1_000_000.0

func validateTier(errs *fieldErrors, t *Tier) {
	switch t.Spec.DefaultAction {
	case "", Deny, Pass:
	default:
		errs.add("spec.defaultAction", "unknown default action %q (want Deny or Pass)", t.Spec.DefaultAction)
	}
	if t.Name == DefaultTierName {
		if t.Spec.Order != nil && *t.Spec.Order != DefaultTierOrder {
			errs.add("spec.order", "the default tier's order is fixed at %d", int(DefaultTierOrder))
		}
		if t.Spec.DefaultAction == Pass {
			errs.add("spec.defaultAction", "the default tier's default action must be Deny")
		}
	}
}

func validateNetworkSet(errs *fieldErrors, labels map[string]string, s *NetworkSetSpec) {
	if _, ok := labels[LabelNamespace]; ok {
		errs.add("metadata.labels["+LabelNamespace+"]", "%s is set by Calyx from the namespace; remove it", LabelNamespace)
	}
	validateNets(errs, "spec.nets", s.Nets, 0, false)
	validateDomains(errs, "spec.allowedEgressDomains", s.AllowedEgressDomains)
}

func validateHostEndpoint(errs *fieldErrors, s *HostEndpointSpec) {
	if s.Node == "" {
		errs.add("spec.node", "missing node")
	}
	if s.InterfaceName == "" && len(s.ExpectedIPs) == 0 {
		errs.add("spec", "give interfaceName or expectedIPs (or both)")
	}
	if s.InterfaceName != "" && s.InterfaceName != "*" && !isInterfaceName(s.InterfaceName) {
		errs.add("spec.interfaceName", "invalid interface name %q: want up to 15 of a-z, A-Z, 0-9, '_', '.', '-', or \"*\" for all", s.InterfaceName)
	}
	for i, ip := range s.ExpectedIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			errs.add(fmt.Sprintf("spec.expectedIPs[%d]", i), "invalid IP address %q", ip)
		}
	}
	for i, p := range s.Ports {
		pp := fmt.Sprintf("spec.ports[%d]", i)
		for _, msg := range validation.IsValidPortName(p.Name) {
			errs.add(pp+".name", "invalid port name %q: %s", p.Name, msg)
		}
		if n, ok := p.Protocol.Number(); !ok || !protocolHasPorts(n) {
			errs.add(pp+".protocol", "protocol %s: want TCP, UDP or SCTP", p.Protocol)
		}
		if p.Port == 0 {
			errs.add(pp+".port", "port 0 out of range 1-65535")
		}
	}
}

func isInterfaceName(s string) bool {
	if len(s) > 15 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func validateIPPool(errs *fieldErrors, s *IPPoolSpec) {
	linkLocal4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{169, 254}), 16)
	linkLocal6 := netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfe, 0x80}), 10)
	p, err := netip.ParsePrefix(s.CIDR)
	switch {
	case err != nil:
		errs.add("spec.cidr", "invalid CIDR %q", s.CIDR)
	case p.Masked() != p:
		errs.add("spec.cidr", "CIDR %s is not strictly masked: write %s", s.CIDR, p.Masked())
	case p.Overlaps(linkLocal4) || p.Overlaps(linkLocal6):
		errs.add("spec.cidr", "CIDR %s overlaps the link-local range", s.CIDR)
	}
	if s.BlockSize != 0 && err == nil {
		lo, hi := 20, 32
		if p.Addr().Is6() {
			lo, hi = 116, 128
		}
		if s.BlockSize < lo || s.BlockSize > hi {
			errs.add("spec.blockSize", "block size %d out of range %d-%d", s.BlockSize, lo, hi)
		} else if s.BlockSize < p.Bits() {
			errs.add("spec.blockSize", "block size %d is larger than the pool /%d", s.BlockSize, p.Bits())
		}
	}
	for _, m := range []struct {
		field string
		mode  EncapMode
	}{{"vxlanMode", s.VXLANMode}, {"ipipMode", s.IPIPMode}} {
		switch m.mode {
		case "", EncapNever, EncapAlways, EncapCrossSubnet:
		default:
			errs.add("spec."+m.field, "unknown mode %q (want Never, Always or CrossSubnet)", m.mode)
		}
	}
	if on(s.VXLANMode) && on(s.IPIPMode) {
		errs.add("spec", "vxlanMode and ipipMode cannot both be enabled")
	}
	if err == nil && p.Addr().Is6() && on(s.IPIPMode) {
		errs.add("spec.ipipMode", "IP-in-IP is not supported for IPv6 pools")
	}
	validateSelector(errs, "spec.nodeSelector", s.NodeSelector, false)
	for i, u := range s.AllowedUses {
		switch u {
		case IPPoolUseWorkload, IPPoolUseTunnel, IPPoolUseLoadBalancer:
		default:
			errs.add(fmt.Sprintf("spec.allowedUses[%d]", i), "unknown use %q (want Workload, Tunnel or LoadBalancer)", u)
		}
	}
	switch s.AssignmentMode {
	case "", "Automatic", "Manual":
	default:
		errs.add("spec.assignmentMode", "unknown assignment mode %q (want Automatic or Manual)", s.AssignmentMode)
	}
}

func on(m EncapMode) bool { return m == EncapAlways || m == EncapCrossSubnet }

func validateFelix(errs *fieldErrors, s *FelixConfigurationSpec) {
	oneOf := func(field, v string, allowed ...string) {
		if v == "" {
			return
		}
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		errs.add("spec."+field, "unknown value %q (want %s)", v, strings.Join(allowed, ", "))
	}
	oneOf("defaultEndpointToHostAction", s.DefaultEndpointToHostAction, "Drop", "Accept", "Return")
	oneOf("nftablesMode", s.NFTablesMode, "Enabled", "Disabled", "Auto")
	oneOf("iptablesBackend", s.IptablesBackend, "Legacy", "NFT", "Auto")
	oneOf("logSeverityScreen", s.LogSeverityScreen, "Trace", "Debug", "Info", "Warning", "Error", "Fatal")
	if p := s.WireguardListeningPort; p != nil && (*p < 1 || *p > 65535) {
		errs.add("spec.wireguardListeningPort", "port %d out of range 1-65535", *p)
	}
	for _, f := range []struct {
		field string
		ports *[]ProtoPort
	}{{"failsafeInboundHostPorts", s.FailsafeInboundHostPorts}, {"failsafeOutboundHostPorts", s.FailsafeOutboundHostPorts}} {
		if f.ports == nil {
			continue
		}
		for i, p := range *f.ports {
			pp := fmt.Sprintf("spec.%s[%d]", f.field, i)
			if n, ok := ProtocolFromName(p.Protocol).Number(); !ok || !protocolHasPorts(n) {
				errs.add(pp+".protocol", "protocol %q: want TCP, UDP or SCTP", p.Protocol)
			}
			if p.Port == 0 {
				errs.add(pp+".port", "port 0 out of range 1-65535")
			}
			if p.Net != "" {
				if _, err := parseNet(p.Net); err != nil {
					errs.add(pp+".net", "invalid CIDR %q", p.Net)
				}
			}
		}
	}
}

func validatePod(errs *fieldErrors, p *corev1.Pod) {
	for i, ip := range p.Status.PodIPs {
		if _, err := netip.ParseAddr(ip.IP); err != nil {
			errs.add(fmt.Sprintf("status.podIPs[%d].ip", i), "invalid IP address %q", ip.IP)
		}
	}
	if p.Status.PodIP != "" {
		if _, err := netip.ParseAddr(p.Status.PodIP); err != nil {
			errs.add("status.podIP", "invalid IP address %q", p.Status.PodIP)
		}
	}
	for i, c := range p.Spec.Containers {
		for j, port := range c.Ports {
			if port.Name == "" {
				continue
			}
			for _, msg := range validation.IsValidPortName(port.Name) {
				errs.add(fmt.Sprintf("spec.containers[%d].ports[%d].name", i, j), "invalid port name %q: %s", port.Name, msg)
			}
		}
	}
}

// containsOutsideQuotes reports whether sub occurs in s outside quoted
// strings.
func containsOutsideQuotes(s, sub string) bool {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			if c == quote {
				quote = 0
			}
			continue
		}
		if c == '"' || c == '\'' {
			quote = c
			continue
		}
		if strings.HasPrefix(s[i:], sub) && (i == 0 || !isIdentByte(s[i-1])) {
			return true
		}
	}
	return false
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '/'
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

func sortStrings(s []string) { sort.Strings(s) }

package compile

import (
	"cmp"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/calyxnet/calyx/policy"
	"github.com/calyxnet/calyx/selector"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Severity says how sure Lint is that a finding is a mistake.
type Severity uint8

const (
	// SeverityInfo is worth knowing but usually intended.
	SeverityInfo Severity = iota + 1
	// SeverityWarning is probably not what the author meant.
	SeverityWarning
	// SeverityError is certainly wrong: Calico would refuse or misapply it.
	SeverityError
)

// String returns "info", "warning" or "error".
func (s Severity) String() string {
	switch s {
	case SeverityInfo:
		return "info"
	case SeverityWarning:
		return "warning"
	case SeverityError:
		return "error"
	}
	return "unknown"
}

// MarshalText writes the severity as String does, so JSON output reads
// "warning" rather than a number.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding codes: stable names a caller (or a CI filter) can branch on.
const (
	// CodeUnknownTier: a policy names a tier no Tier object defines
	// (error; Calico refuses such a policy).
	CodeUnknownTier = "unknown-tier"
	// CodeShadowedRule: an earlier rule of the same policy with a final
	// action (Allow, Deny, Pass) matches everything this rule matches, and
	// acts differently: this rule never takes effect (warning).
	CodeShadowedRule = "shadowed-rule"
	// CodeRedundantRule: as CodeShadowedRule, but the earlier rule has the
	// same action: this rule can be deleted without changing anything
	// (info).
	CodeRedundantRule = "redundant-rule"
	// CodeRuleNeverMatches: the rule's own conditions contradict each other
	// (every net is excluded by notNets, or no IP version is left), so it
	// never matches (warning).
	CodeRuleNeverMatches = "rule-never-matches"
	// CodePolicySelectsNothing: the policy's selector picks no endpoint of
	// the input (warning).
	CodePolicySelectsNothing = "policy-selects-nothing"
	// CodeSelectorMatchesNothing: a rule's source or destination selector
	// picks no endpoint and no network set of the input (warning).
	CodeSelectorMatchesNothing = "selector-matches-nothing"
	// CodeImplicitDeny: a policy with only Log or Deny rules in a direction
	// makes its tier apply to the endpoints it selects, so everything it
	// does not deny meets the tier's end-of-tier deny (warning).
	CodeImplicitDeny = "implicit-end-of-tier-deny"
	// CodePolicyNeverEvaluated: for every endpoint the policy applies to
	// in a direction, an earlier tier decides every packet (it has no Pass
	// rule and ends in Deny), so the policy is never reached (warning).
	CodePolicyNeverEvaluated = "policy-never-evaluated"
	// CodeStagedChangesVerdicts: enforcing a staged policy would change
	// the verdict of some pod-to-pod connections (warning).
	CodeStagedChangesVerdicts = "staged-changes-verdicts"
	// CodeStagedDeleteMissing: a staged Delete names a policy that does
	// not exist (warning).
	CodeStagedDeleteMissing = "staged-delete-missing"
	// CodeNamedPortMatchesNothing: no endpoint the rule's side picks
	// declares the named port with the rule's protocol, so the port
	// condition matches nothing (warning).
	CodeNamedPortMatchesNothing = "named-port-matches-nothing"
	// CodeOverlappingNets: two nets of one list overlap (info).
	CodeOverlappingNets = "overlapping-nets"
	// CodeHTTPNotEnforced: the rule has an http match, which the L3/L4
	// dataplanes do not enforce: the rule acts as if it were absent
	// (warning).
	CodeHTTPNotEnforced = "http-not-enforced"
	// CodeServicesNotEnforced: the rule matches on a Kubernetes Service,
	// which Calyx does not resolve yet: the compiler leaves the rule out
	// (warning).
	CodeServicesNotEnforced = "services-not-enforced"
	// CodeHostKnobNotRendered: a GlobalNetworkPolicy sets doNotTrack,
	// preDNAT or applyOnForward, which Calyx reads but does not render:
	// the policy is enforced as ordinary host endpoint policy on the
	// node's own traffic, after connection tracking and DNAT, and never on
	// forwarded traffic (warning).
	CodeHostKnobNotRendered = "host-knob-not-rendered"
	// CodeDomainsNeedDNS: the rule matches on domains, whose addresses are
	// known only once DNS answers fill the set: until then the rule
	// matches nothing (info).
	CodeDomainsNeedDNS = "domains-need-dns"
)

// Finding is one thing Lint has to say about the input.
type Finding struct {
	// Severity is Info, Warning or Error.
	Severity Severity
	// Code is one of the Code… constants.
	Code string
	// Message says what is wrong and what to do about it.
	Message string
	// Position is where the finding points: the field's line when known,
	// else the rule's or the object's.
	Position policy.Position
	// Field is the field path in the source object, such as
	// spec.egress[0].destination.nets[1]; empty for the object as a whole.
	Field string
	// Object names the object: kind, then namespace/name (for converted
	// Kubernetes policies, the name as written).
	Object string
}

// String formats the finding as
// source:line: severity: Object: field: message [code].
func (f Finding) String() string {
	var b strings.Builder
	if s := f.Position.String(); s != "" {
		b.WriteString(s)
		b.WriteString(": ")
	}
	b.WriteString(f.Severity.String())
	b.WriteString(": ")
	if f.Object != "" {
		b.WriteString(f.Object)
		b.WriteString(": ")
	}
	if f.Field != "" {
		b.WriteString(f.Field)
		b.WriteString(": ")
	}
	b.WriteString(f.Message)
	b.WriteString(" [")
	b.WriteString(f.Code)
	b.WriteString("]")
	return b.String()
}

// Flow is the first packet of a connection between two pods, as Lint asks
// a Judge to decide it.
type Flow struct {
	// From and To are the pods' keys ("namespace/name").
	From, To string
	// Src and Dst are the addresses; Protocol and DstPort the probe.
	Src, Dst netip.Addr
	Protocol uint8
	DstPort  uint16
}

// A Judge returns, for a Ruleset, a function deciding whether a Flow is
// allowed. Lint takes it as a parameter because the reference interpreter
// (backend/model) imports this package; a caller wires it in:
//
//	judge := func(rs *compile.Ruleset) func(compile.Flow) bool {
//		idx := model.NewIndex(rs)
//		return func(f compile.Flow) bool {
//			return idx.Allowed(model.Packet{Src: f.Src, Dst: f.Dst,
//				Protocol: f.Protocol, SrcPort: 40000, DstPort: f.DstPort})
//		}
//	}
type Judge func(rs *Ruleset) func(Flow) bool

// LintOptions tunes Lint.
type LintOptions struct {
	// Judge enables the staged-policy check: each staged policy is applied
	// as if enforced (Set upserts its enforced counterpart, Delete removes
	// it), the result compiled for the same node as the Ruleset, and every
	// pod-to-pod connection on every port the pods declare is judged both
	// ways. nil skips the check.
	Judge Judge
	// MaxListed bounds how many examples (endpoints, changed connections) a
	// message lists; 0 means 5.
	MaxListed int
}

// Lint reports what is suspicious in the policy of set. rs must be
// compiled from set (compile.New(set, node).Compile()); Lint reads from it
// which policies apply to which endpoints, so with the virtual node "" the
// checks that depend on that (the end-of-tier surprise, rules an earlier
// policy decides) judge the whole cluster, and with a node's Ruleset only
// that node's endpoints; selector checks always judge the whole input.
// Checks that need endpoints (selectors that pick nothing) run only when
// set holds at least one endpoint, so a directory of policies alone is
// linted on its structure. Lint never modifies set or rs.
//
// The checks, each with its Code… constant:
//   - a policy in a tier that does not exist (error);
//   - a rule shadowed (different action) or made redundant (same action)
//     by an earlier rule with a final action and a match that provably
//     includes this rule's: an earlier rule of the same policy and
//     direction, or of an earlier policy of the same tier that applies to
//     every endpoint of the input this rule's policy applies to. The match
//     comparison is syntactic and conservative (selectors must be equal,
//     nets contained, port ranges covered), so it never reports a rule that
//     can take effect;
//   - a rule whose own conditions exclude every packet;
//   - a policy whose selector picks no endpoint, a rule selector that picks
//     no endpoint and no network set, a named port no endpoint the rule
//     picks declares;
//   - a Log- or Deny-only policy (at least one rule, no Allow or Pass, no
//     unconditional Deny) in a tier that ends in Deny: it makes the tier
//     apply, so all other traffic of the endpoints it selects is denied at
//     the end of the tier (Calico's classic surprise). When the input has
//     endpoints, only those for which no other policy of the tier applies
//     are reported, as they are the ones it changes;
//   - a policy never evaluated in a direction because, for every endpoint
//     it applies to, an earlier tier with no Pass rule that ends in Deny
//     decides every packet;
//   - staged policies that would change verdicts (with opts.Judge), or
//     stage the deletion of a policy that does not exist;
//   - overlapping nets within one nets or notNets list;
//   - a GlobalNetworkPolicy with doNotTrack, preDNAT or applyOnForward,
//     which the dataplanes do not render yet;
//   - rules with http (not enforced at L3/L4), services (left out by the
//     compiler) or domains (matching only once DNS fills the set).
//
// Findings are sorted by source, line, document, severity (most severe
// first), code, object, field and message; the same input always gives
// the same list.
func Lint(set *policy.Set, rs *Ruleset, opts LintOptions) []Finding {
	if opts.MaxListed <= 0 {
		opts.MaxListed = 5
	}
	l := &linter{set: set, rs: rs, opts: opts, selMatches: map[string]bool{}}
	l.prepare()
	all := append(set.Policies(), set.StagedPolicies()...)
	for _, p := range all {
		l.lintTier(p)
		l.lintSelector(p)
		l.lintHostKnobs(p)
		for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
			if !p.Applies(d) {
				continue
			}
			rules := p.Rules(d)
			for i := range rules {
				l.lintRule(p, d, rules, i)
			}
		}
	}
	for _, p := range set.Policies() {
		for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
			l.lintImplicitDeny(p, d)
		}
	}
	l.lintUnreachedTiers()
	for _, p := range set.StagedPolicies() {
		l.lintStaged(p)
	}
	sortFindings(l.out)
	return l.out
}

type linter struct {
	set  *policy.Set
	rs   *Ruleset
	opts LintOptions
	out  []Finding

	// Flattened labels of every endpoint (in set.Endpoints() order) and
	// network set, for selectors.
	eps      []*policy.Endpoint
	epLabels []selector.Set
	// Distinct label sets of endpoints and of network sets: pods of one
	// workload share theirs, so selectors are tried once per workload.
	uniqueEP, uniqueNet []selector.Set
	// selMatches caches, by canonical selector, whether it picks anything.
	selMatches map[string]bool
	tiers      map[string]*policy.TierInfo
	byID       map[PolicyID]*policy.Policy
	// applied maps a compiled policy to the endpoints it applies to in rs;
	// tierOrder lists each tier's enforced policies in evaluation order.
	applied   map[PolicyID]map[string]struct{}
	appliedTo map[*policy.Policy][2]map[string]struct{} // by policy.Direction
	// selSets maps a canonical selector to its set of addresses in rs.
	selSets   map[string]*IPSet
	tierOrder map[string][]*policy.Policy
}

func (l *linter) prepare() {
	for _, ep := range l.set.Endpoints() {
		l.eps = append(l.eps, ep)
		l.epLabels = append(l.epLabels, l.set.EndpointLabels(ep))
	}
	for _, ns := range l.set.NetworkSets() {
		l.uniqueNet = append(l.uniqueNet, l.set.NetworkSetLabels(ns))
	}
	l.uniqueEP = distinctLabels(l.epLabels)
	l.uniqueNet = distinctLabels(l.uniqueNet)
	l.tiers = map[string]*policy.TierInfo{}
	for _, t := range l.set.Tiers() {
		l.tiers[t.Name] = t
	}
	l.byID = map[PolicyID]*policy.Policy{}
	l.tierOrder = map[string][]*policy.Policy{}
	for _, p := range l.set.Policies() {
		for _, d := range []Direction{Ingress, Egress} {
			l.byID[policyID(d, p.Tier, displayName(p))] = p
		}
		l.tierOrder[p.Tier] = append(l.tierOrder[p.Tier], p)
	}
	l.applied = map[PolicyID]map[string]struct{}{}
	for key, ep := range l.rs.Endpoints {
		for _, dp := range []*DirectionPolicy{&ep.Ingress, &ep.Egress} {
			for _, t := range dp.Tiers {
				for _, id := range t.Policies {
					if l.applied[id] == nil {
						l.applied[id] = map[string]struct{}{}
					}
					l.applied[id][key] = struct{}{}
				}
			}
		}
	}
	l.selSets = map[string]*IPSet{}
	for _, st := range l.rs.Sets {
		if st.Kind == SetNets && !st.Literal && st.Selector != "" {
			l.selSets[st.Selector] = st
		}
	}
	l.appliedTo = map[*policy.Policy][2]map[string]struct{}{}
	for _, p := range l.set.Policies() {
		var by [2]map[string]struct{}
		for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
			by[d] = l.applied[policyID(irDirection(d), p.Tier, displayName(p))]
		}
		l.appliedTo[p] = by
	}
}

func (l *linter) add(sev Severity, code string, p *policy.Policy, pos policy.Position, field, format string, args ...any) {
	if pos.Source == "" && pos.Line == 0 {
		pos = p.Position
	}
	l.out = append(l.out, Finding{Severity: sev, Code: code, Message: fmt.Sprintf(format, args...),
		Position: pos, Field: field, Object: objectName(p)})
}

// objectName names a policy as its author wrote it.
func objectName(p *policy.Policy) string {
	k := objectKey(p)
	name := k.Name
	if k.Namespace != "" {
		name = k.Namespace + "/" + name
	}
	return string(k.Kind) + " " + name
}

// objectKey returns the key of the object a policy was normalised from
// (converted Kubernetes policies carry Calico's knp.default. prefix).
func objectKey(p *policy.Policy) policy.ObjectKey {
	name := p.Name
	if isK8s(p) {
		name = strings.TrimPrefix(name, policy.K8sPolicyNamePrefix)
	}
	return policy.ObjectKey{Kind: p.Kind, Namespace: p.Namespace, Name: name}
}

// origin returns the policy's decode origin (nil when not decoded).
func (l *linter) origin(p *policy.Policy) *policy.Origin {
	return l.set.Origin(objectKey(p))
}

// fieldPos returns the position of the first of fields that the source
// document has, else fallback.
func (l *linter) fieldPos(p *policy.Policy, fallback policy.Position, fields ...string) policy.Position {
	o := l.origin(p)
	if o == nil {
		return fallback
	}
	for _, f := range fields {
		// Field paths of List items start with the item's own path, which
		// Origin.At resolves relative to the item.
		if strings.HasPrefix(f, "items[") {
			if _, rest, ok := strings.Cut(f, "]."); ok {
				f = rest
			}
		}
		if pos := o.At(f); pos.Line != o.Line {
			return pos
		}
	}
	return fallback
}

func isK8s(p *policy.Policy) bool {
	return p.Kind == policy.KindK8sNetworkPolicy || p.Kind == policy.KindStagedKubernetesNetworkPolicy
}

// lintTier: a policy must live in a tier that exists.
func (l *linter) lintTier(p *policy.Policy) {
	if _, ok := l.tiers[p.Tier]; ok {
		return
	}
	l.add(SeverityError, CodeUnknownTier, p, l.fieldPos(p, p.Position, "spec.tier"), "spec.tier",
		"tier %q does not exist: Calico refuses the policy; add a Tier named %q or fix the name", p.Tier, p.Tier)
}

// distinctLabels returns each label set once, in first-seen order.
func distinctLabels(sets []selector.Set) []selector.Set {
	seen := map[string]bool{}
	var out []selector.Set
	var b strings.Builder
	for _, s := range sets {
		b.Reset()
		for _, k := range sortedKeys(s) {
			b.WriteString(k)
			b.WriteByte(0)
			b.WriteString(s[k])
			b.WriteByte(0)
		}
		if key := b.String(); !seen[key] {
			seen[key] = true
			out = append(out, s)
		}
	}
	return out
}

func (l *linter) hasEndpoints() bool { return len(l.epLabels) > 0 }

// picksAnything reports whether sel matches an endpoint (or, with nets, a
// network set) of the input.
func (l *linter) picksAnything(sel *selector.Selector, nets bool) bool {
	key := sel.String()
	if nets {
		key = "n:" + key
	}
	if v, ok := l.selMatches[key]; ok {
		return v
	}
	// The compiler has the members of every rule selector's set: any
	// member is an endpoint's or network set's address.
	if s := l.selSets[sel.String()]; nets && s != nil && len(s.Nets) > 0 {
		l.selMatches[key] = true
		return true
	}
	found := false
	for _, lbl := range l.uniqueEP {
		if sel.Matches(lbl) {
			found = true
			break
		}
	}
	if !found && nets {
		for _, lbl := range l.uniqueNet {
			if sel.Matches(lbl) {
				found = true
				break
			}
		}
	}
	l.selMatches[key] = found
	return found
}

// declaresPort reports whether an endpoint sel picks (any endpoint when
// sel is nil) has the named port with protocol proto.
func (l *linter) declaresPort(sel *selector.Selector, name string, proto uint8) bool {
	key := fmt.Sprintf("p:%d:%s:%s", proto, name, sel)
	if v, ok := l.selMatches[key]; ok {
		return v
	}
	found := false
	for i, ep := range l.eps {
		for _, np := range ep.Ports {
			if np.Name == name && np.Protocol == proto && (sel == nil || sel.Matches(l.epLabels[i])) {
				found = true
				break
			}
		}
		if found {
			break
		}
	}
	l.selMatches[key] = found
	return found
}

// lintSelector: a policy that selects no endpoint does nothing.
func (l *linter) lintSelector(p *policy.Policy) {
	if !l.hasEndpoints() {
		return
	}
	// The virtual node's Ruleset already says which endpoints each
	// enforced policy applies to.
	if by, ok := l.appliedTo[p]; ok && l.rs.Node == "" {
		if len(by[policy.Ingress]) > 0 || len(by[policy.Egress]) > 0 {
			return
		}
	} else if l.picksAnything(p.Selector, false) {
		return
	}
	field := "spec.selector"
	if isK8s(p) {
		field = "spec.podSelector"
	}
	l.add(SeverityWarning, CodePolicySelectsNothing, p, l.fieldPos(p, p.Position, field), field,
		"the policy selects no endpoint of the input (selector %s): it has no effect", p.Selector)
}

// lintHostKnobs warns about the GlobalNetworkPolicy host endpoint knobs
// the dataplanes do not render. Namespaced policies carry ApplyOnForward
// implicitly (they never select host endpoints) and are left alone.
func (l *linter) lintHostKnobs(p *policy.Policy) {
	if p.Kind != policy.KindGlobalNetworkPolicy {
		return
	}
	for _, k := range []struct {
		set   bool
		field string
		what  string
	}{
		{p.DoNotTrack, "spec.doNotTrack", "it is enforced after connection tracking, like any host endpoint policy, and its flows are tracked"},
		{p.PreDNAT, "spec.preDNAT", "it is enforced after DNAT, on the node's own traffic only"},
		{p.ApplyOnForward, "spec.applyOnForward", "forwarded traffic is not judged by host endpoint policy; only the node's own traffic is"},
	} {
		if k.set {
			l.add(SeverityWarning, CodeHostKnobNotRendered, p, l.fieldPos(p, p.Position, k.field), k.field,
				"Calyx does not render %s yet: %s", k.field, k.what)
		}
	}
}

// sideField returns the path of a rule's source or destination.
func sideField(p *policy.Policy, r *policy.RuleInfo, side string) string {
	if isK8s(p) {
		return r.Field
	}
	return r.Field + "." + side
}

func (l *linter) lintRule(p *policy.Policy, d policy.Direction, rules []policy.RuleInfo, i int) {
	r := &rules[i]
	rulePos := r.Position
	if rulePos.Source == "" {
		rulePos = p.Position
	}
	if r.HTTP != nil {
		l.add(SeverityWarning, CodeHTTPNotEnforced, p, l.fieldPos(p, rulePos, r.Field+".http"), r.Field+".http",
			"the http match is not enforced by the L3/L4 dataplanes: this %s rule applies to every request its other conditions match", r.Action)
	}
	for _, side := range []struct {
		name string
		m    *policy.Match
	}{{"source", &r.Source}, {"destination", &r.Destination}} {
		field := sideField(p, r, side.name)
		if side.m.Service != nil {
			l.add(SeverityWarning, CodeServicesNotEnforced, p, l.fieldPos(p, rulePos, field+".services"), field+".services",
				"matching on Service %s/%s is not enforced yet: the compiler leaves this %s rule out, so it never matches",
				side.m.Service.Namespace, side.m.Service.Name, r.Action)
		}
		if len(side.m.Domains) > 0 {
			l.add(SeverityInfo, CodeDomainsNeedDNS, p, l.fieldPos(p, rulePos, field+".domains"), field+".domains",
				"domains %s are enforced only once DNS answers fill their address set: until a pod resolves them, this %s rule matches nothing",
				strings.Join(side.m.Domains, ", "), r.Action)
		}
		if side.m.Selector != nil && l.hasEndpoints() && !l.picksAnything(side.m.Selector, true) {
			l.add(SeverityWarning, CodeSelectorMatchesNothing, p,
				l.fieldPos(p, rulePos, field+".selector", field+".namespaceSelector", field+".serviceAccounts", field), field,
				"the %s selector %s matches no endpoint and no network set of the input: this %s rule matches nothing",
				side.name, side.m.Selector, r.Action)
		}
		if l.hasEndpoints() {
			for _, name := range side.m.NamedPorts {
				if !l.declaresPort(side.m.Selector, name, r.Protocol) {
					l.add(SeverityWarning, CodeNamedPortMatchesNothing, p, l.fieldPos(p, rulePos, field+".ports", field), field+".ports",
						"no endpoint this rule's %s picks declares a %s port named %q: the port condition matches nothing",
						side.name, ProtocolName(r.Protocol), name)
				}
			}
		}
		l.lintNets(p, r, rulePos, field, "nets", side.m.Nets)
		l.lintNets(p, r, rulePos, field, "notNets", side.m.NotNets)
	}
	v4, v6 := ruleVersions(r)
	switch {
	case !v4 && !v6:
		l.add(SeverityWarning, CodeRuleNeverMatches, p, rulePos, r.Field,
			"the rule's ipVersion and nets leave no IP version it could apply to: it never matches")
		return
	case excludedNets(&r.Source, v4, v6) || excludedNets(&r.Destination, v4, v6):
		l.add(SeverityWarning, CodeRuleNeverMatches, p, rulePos, r.Field,
			"every net of the rule is inside one of its notNets: it never matches")
		return
	}
	if r.Source.Service != nil || r.Destination.Service != nil {
		return
	}
	for j := 0; j < i; j++ {
		e := &rules[j]
		if !finalAction(e.Action) || !covers(e, r) {
			continue
		}
		code, sev, what := CodeShadowedRule, SeverityWarning, "never takes effect"
		if e.Action == r.Action {
			code, sev, what = CodeRedundantRule, SeverityInfo, "is redundant"
		}
		l.add(sev, code, p, rulePos, r.Field,
			"this %s rule %s: the earlier %s rule %s matches every packet it matches", r.Action, what, e.Action, e.Field)
		return
	}
	l.lintShadowedByPolicy(p, d, r, rulePos)
}

// lintShadowedByPolicy reports a rule that an earlier policy of the same
// tier decides first for every endpoint the rule's policy applies to in the
// input (the usual cause: an allow policy without order after a deny-all
// that has one, or that sorts first by name).
func (l *linter) lintShadowedByPolicy(q *policy.Policy, d policy.Direction, r *policy.RuleInfo, rulePos policy.Position) {
	if q.Staged {
		return
	}
	eps := l.appliedTo[q][d]
	if len(eps) == 0 {
		return
	}
	var someEP string
	for k := range eps {
		someEP = k
		break
	}
	for _, p := range l.tierOrder[q.Tier] {
		if p == q {
			return
		}
		if !p.Applies(d) {
			continue
		}
		peps := l.appliedTo[p][d]
		if _, ok := peps[someEP]; !ok || len(peps) < len(eps) {
			continue
		}
		superset := true
		for k := range eps {
			if _, ok := peps[k]; !ok {
				superset = false
				break
			}
		}
		if !superset {
			continue
		}
		rules := p.Rules(d)
		for i := range rules {
			e := &rules[i]
			if !finalAction(e.Action) || !covers(e, r) {
				continue
			}
			code, sev, what := CodeShadowedRule, SeverityWarning, "never takes effect"
			advice := "; give this policy a lower order if it should decide first"
			if e.Action == r.Action {
				code, sev, what, advice = CodeRedundantRule, SeverityInfo, "is redundant", ""
			}
			l.add(sev, code, q, rulePos, r.Field,
				"this %s rule %s: %s comes earlier in tier %q, applies to every endpoint this policy does (%s), and its %s rule %s matches every packet this rule matches%s",
				r.Action, what, objectName(p), q.Tier, plural(len(eps), "endpoint"), e.Action, e.Field, advice)
			return
		}
	}
}

func irDirection(d policy.Direction) Direction {
	if d == policy.Egress {
		return Egress
	}
	return Ingress
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// lintNets reports nets of one list that overlap an earlier one.
func (l *linter) lintNets(p *policy.Policy, r *policy.RuleInfo, rulePos policy.Position, side, list string, nets []netip.Prefix) {
	for j := 1; j < len(nets); j++ {
		for i := 0; i < j; i++ {
			a, b := nets[i].Masked(), nets[j].Masked()
			if !a.Overlaps(b) {
				continue
			}
			field := fmt.Sprintf("%s.%s[%d]", side, list, j)
			other := fmt.Sprintf("%s[%d]", list, i)
			if isK8s(p) {
				field = fmt.Sprintf("%s.ipBlock.except[%d]", r.Field, j)
				other = fmt.Sprintf("except[%d]", i)
			}
			what := "overlaps"
			switch {
			case a == b:
				what = "duplicates"
			case b.Bits() >= a.Bits():
				what = "is inside"
			case a.Bits() > b.Bits():
				what = "contains"
			}
			l.add(SeverityInfo, CodeOverlappingNets, p, l.fieldPos(p, rulePos, field), field,
				"%s %s %s %s: one of them is redundant, or a mask is wrong", nets[j], what, other, nets[i])
			break
		}
	}
}

// lintImplicitDeny reports Log- or Deny-only policies that switch on their
// tier's end-of-tier deny.
func (l *linter) lintImplicitDeny(p *policy.Policy, d policy.Direction) {
	if !p.Applies(d) || deliberate(p, d) {
		return
	}
	if t, ok := l.tiers[p.Tier]; ok && t.DefaultAction == policy.Pass {
		return
	}
	cd := irDirection(d)
	id := policyID(cd, p.Tier, displayName(p))
	field := "spec." + d.String()
	kinds := "Deny"
	if onlyLog(p, d) {
		kinds = "Log"
	} else if hasAction(p, d, policy.Log) {
		kinds = "Log and Deny"
	}
	advice := fmt.Sprintf("end its %s rules with `action: Pass` if the rest should go on to the next tier, or put it in a tier whose defaultAction is Pass", d)
	if len(l.rs.Endpoints) == 0 {
		l.add(SeverityWarning, CodeImplicitDeny, p, l.fieldPos(p, p.Position, field), field,
			"the policy has only %s rules for %s: it makes tier %q apply to the %s of every endpoint it selects, so all their other %s traffic is denied at the end of the tier; %s",
			kinds, d, p.Tier, d, d, advice)
		return
	}
	var victims []string
	for _, key := range sortedKeys(l.rs.Endpoints) {
		dp := &l.rs.Endpoints[key].Ingress
		if cd == Egress {
			dp = &l.rs.Endpoints[key].Egress
		}
		for _, t := range dp.Tiers {
			if t.EndAction != ActionDeny || !slices.Contains(t.Policies, id) {
				continue
			}
			alone := true
			for _, other := range t.Policies {
				if op := l.byID[other]; op != nil && deliberate(op, d) {
					alone = false
					break
				}
			}
			if alone {
				victims = append(victims, key)
			}
		}
	}
	if len(victims) == 0 {
		return
	}
	l.add(SeverityWarning, CodeImplicitDeny, p, l.fieldPos(p, p.Position, field), field,
		"the policy has only %s rules for %s: it makes tier %q apply to the %s of %s, so all their other %s traffic is denied at the end of the tier; %s",
		kinds, d, p.Tier, d, l.list(victims, "endpoint"), d, advice)
}

// lintUnreachedTiers reports policies that no packet reaches: on every
// endpoint they apply to, an earlier tier decides everything.
func (l *linter) lintUnreachedTiers() {
	// A tier decides every packet when it ends in Deny and none of its
	// policies (for that endpoint and direction) can Pass.
	passes := func(id PolicyID) bool {
		if pol := l.rs.Policies[id]; pol != nil {
			for i := range pol.Rules {
				if pol.Rules[i].Action == ActionPass {
					return true
				}
			}
		}
		return false
	}
	type count struct {
		applied, unreached int
		by                 map[string]bool // the deciding tiers
	}
	counts := map[PolicyID]*count{}
	for _, key := range sortedKeys(l.rs.Endpoints) {
		ep := l.rs.Endpoints[key]
		for _, dp := range []*DirectionPolicy{&ep.Ingress, &ep.Egress} {
			decider := ""
			for _, t := range dp.Tiers {
				for _, id := range t.Policies {
					c := counts[id]
					if c == nil {
						c = &count{by: map[string]bool{}}
						counts[id] = c
					}
					c.applied++
					if decider != "" {
						c.unreached++
						c.by[decider] = true
					}
				}
				if decider != "" || t.EndAction != ActionDeny {
					continue
				}
				decider = t.Tier
				for _, id := range t.Policies {
					if passes(id) {
						decider = ""
						break
					}
				}
			}
		}
	}
	for _, id := range sortedKeys(counts) {
		c := counts[id]
		p := l.byID[id]
		if p == nil || c.applied == 0 || c.unreached != c.applied {
			continue
		}
		d := policy.Ingress
		if l.rs.Policies[id] != nil && l.rs.Policies[id].Direction == Egress {
			d = policy.Egress
		}
		tiers := make([]string, 0, len(c.by))
		for t := range c.by {
			tiers = append(tiers, fmt.Sprintf("%q", t))
		}
		slices.Sort(tiers)
		field := "spec." + d.String()
		l.add(SeverityWarning, CodePolicyNeverEvaluated, p, l.fieldPos(p, p.Position, field, "spec.types"), field,
			"the policy is never evaluated for %s: on every endpoint it applies to (%s), tier %s comes first, has no Pass rule and ends in Deny, so it decides every packet; add a Pass rule there for the traffic this tier should judge",
			d, plural(c.applied, "endpoint"), strings.Join(tiers, ", "))
	}
}

// list formats up to MaxListed items: "2 endpoints (a, b)".
func (l *linter) list(items []string, noun string) string {
	n := len(items)
	shown := items
	more := ""
	if n > l.opts.MaxListed {
		shown = items[:l.opts.MaxListed]
		more = fmt.Sprintf(", and %d more", n-l.opts.MaxListed)
	}
	if n != 1 {
		noun += "s"
	}
	return fmt.Sprintf("%d %s (%s%s)", n, noun, strings.Join(shown, ", "), more)
}

// deliberate reports whether a policy's rules for d decide on purpose:
// it has no rules (the "deny all" idiom), an Allow or Pass rule, or a Deny
// rule that matches everything.
func deliberate(p *policy.Policy, d policy.Direction) bool {
	rules := p.Rules(d)
	if len(rules) == 0 {
		return true
	}
	for i := range rules {
		r := &rules[i]
		if r.Action == policy.Allow || r.Action == policy.Pass {
			return true
		}
		if r.Action == policy.Deny && matchesAll(r) {
			return true
		}
	}
	return false
}

func onlyLog(p *policy.Policy, d policy.Direction) bool {
	for _, r := range p.Rules(d) {
		if r.Action != policy.Log {
			return false
		}
	}
	return true
}

func hasAction(p *policy.Policy, d policy.Direction, a policy.Action) bool {
	for _, r := range p.Rules(d) {
		if r.Action == a {
			return true
		}
	}
	return false
}

func finalAction(a policy.Action) bool {
	return a == policy.Allow || a == policy.Deny || a == policy.Pass
}

// matchesAll reports whether a rule has no condition at all.
func matchesAll(r *policy.RuleInfo) bool {
	return r.Protocol == 0 && r.NotProtocol == 0 && r.ICMP == nil && r.NotICMP == nil && r.IPVersion == 0 &&
		r.HTTP == nil && emptyMatch(&r.Source) && emptyMatch(&r.Destination)
}

func emptyMatch(m *policy.Match) bool {
	return len(m.Nets) == 0 && len(m.NotNets) == 0 && m.Selector.IsAll() && m.NotSelector == nil &&
		len(m.Ports) == 0 && len(m.NamedPorts) == 0 && len(m.NotPorts) == 0 && len(m.NotNamedPorts) == 0 &&
		len(m.Domains) == 0 && m.Service == nil
}

// excludedNets reports whether every net of m (of the versions) lies in
// one of its notNets, so the side matches no address.
func excludedNets(m *policy.Match, v4, v6 bool) bool {
	nets := netsOf(m.Nets, v4, v6)
	if len(nets) == 0 {
		return false
	}
	not := netsOf(m.NotNets, v4, v6)
	for _, n := range nets {
		if !insideAny(n, not) {
			return false
		}
	}
	return true
}

// inside reports whether inner ⊆ outer.
func inside(inner, outer netip.Prefix) bool {
	return outer.Addr().BitLen() == inner.Addr().BitLen() && outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

func insideAny(inner netip.Prefix, outers []netip.Prefix) bool {
	for _, o := range outers {
		if inside(inner, o) {
			return true
		}
	}
	return false
}

// covers reports whether every packet b matches is provably matched by a.
// It is conservative: false when in doubt.
func covers(a, b *policy.RuleInfo) bool {
	av4, av6 := ruleVersions(a)
	bv4, bv6 := ruleVersions(b)
	if (bv4 && !av4) || (bv6 && !av6) || (!bv4 && !bv6) {
		return false
	}
	if a.Source.Service != nil || a.Destination.Service != nil {
		return false
	}
	if a.HTTP != nil && (b.HTTP == nil || !reflect.DeepEqual(a.HTTP, b.HTTP)) {
		return false
	}
	if a.Protocol != 0 && a.Protocol != b.Protocol {
		return false
	}
	if a.NotProtocol != 0 && b.NotProtocol != a.NotProtocol && (b.Protocol == 0 || b.Protocol == a.NotProtocol) {
		return false
	}
	if a.ICMP != nil && (b.ICMP == nil || b.ICMP.Type != a.ICMP.Type ||
		(a.ICMP.Code != nil && (b.ICMP.Code == nil || *b.ICMP.Code != *a.ICMP.Code))) {
		return false
	}
	if a.NotICMP != nil && !icmpExcluded(a.NotICMP, b) {
		return false
	}
	bPorts := b.Protocol != 0 && portProtocol(b.Protocol) || hasPortMatch(&b.Source) || hasPortMatch(&b.Destination)
	return coversPeer(&a.Source, &b.Source, a.Protocol, b.Protocol, bv4, bv6, bPorts) &&
		coversPeer(&a.Destination, &b.Destination, a.Protocol, b.Protocol, bv4, bv6, bPorts)
}

// icmpExcluded reports whether no packet b matches has the ICMP type/code
// not excludes.
func icmpExcluded(not *policy.ICMPMatch, b *policy.RuleInfo) bool {
	if b.NotICMP != nil && b.NotICMP.Type == not.Type && (not.Code == nil && b.NotICMP.Code == nil ||
		not.Code != nil && b.NotICMP.Code == nil ||
		not.Code != nil && b.NotICMP.Code != nil && *not.Code == *b.NotICMP.Code) {
		return true
	}
	if b.ICMP != nil && (b.ICMP.Type != not.Type || not.Code != nil && b.ICMP.Code != nil && *b.ICMP.Code != *not.Code) {
		return true
	}
	return b.Protocol != 0 && b.Protocol != 1 && b.Protocol != 58
}

func portProtocol(p uint8) bool { return p == 6 || p == 17 || p == 132 || p == 136 }

func hasPortMatch(m *policy.Match) bool {
	return len(m.Ports) > 0 || len(m.NamedPorts) > 0 || len(m.NotPorts) > 0 || len(m.NotNamedPorts) > 0
}

func sameSelector(a, b *selector.Selector) bool {
	if a.IsAll() || b.IsAll() {
		return a.IsAll() && b.IsAll()
	}
	return a.String() == b.String()
}

// coversPeer reports whether every (address, port) b's side matches is
// matched by a's side. bPorts says b's packets always carry ports.
func coversPeer(a, b *policy.Match, aProto, bProto uint8, v4, v6, bPorts bool) bool {
	if a.Service != nil || b.Service != nil {
		return false
	}
	bNets := netsOf(b.Nets, v4, v6)
	if aNets := netsOf(a.Nets, v4, v6); len(a.Nets) > 0 {
		if len(bNets) == 0 {
			return false
		}
		for _, n := range bNets {
			if !insideAny(n, aNets) {
				return false
			}
		}
	}
	bNot := netsOf(b.NotNets, v4, v6)
	for _, n := range netsOf(a.NotNets, v4, v6) {
		if insideAny(n, bNot) {
			continue
		}
		disjoint := len(bNets) > 0
		for _, bn := range bNets {
			if bn.Overlaps(n) {
				disjoint = false
				break
			}
		}
		if !disjoint {
			return false
		}
	}
	if !a.Selector.IsAll() && !sameSelector(a.Selector, b.Selector) {
		return false
	}
	if a.NotSelector != nil && (b.NotSelector == nil || a.NotSelector.String() != b.NotSelector.String()) {
		return false
	}
	if len(a.Domains) > 0 {
		if len(b.Domains) == 0 {
			return false
		}
		for _, d := range b.Domains {
			if !slices.Contains(a.Domains, d) {
				return false
			}
		}
	}
	if len(a.Ports) > 0 || len(a.NamedPorts) > 0 {
		if len(b.Ports) == 0 && len(b.NamedPorts) == 0 {
			return false
		}
		merged := mergeRanges(a.Ports)
		for _, r := range b.Ports {
			if !rangeInside(r, merged) {
				return false
			}
		}
		for _, n := range b.NamedPorts {
			// A named port resolves on the endpoints this side's selector
			// picks, with the rule's protocol.
			if !slices.Contains(a.NamedPorts, n) || aProto != bProto || !(a.Selector.IsAll() || sameSelector(a.Selector, b.Selector)) {
				return false
			}
		}
	}
	if len(a.NotPorts) > 0 || len(a.NotNamedPorts) > 0 {
		if !bPorts {
			return false
		}
		bNotMerged := mergeRanges(b.NotPorts)
		for _, r := range a.NotPorts {
			if rangeInside(r, bNotMerged) {
				continue
			}
			if len(b.Ports) == 0 || len(b.NamedPorts) > 0 {
				return false
			}
			for _, br := range b.Ports {
				if br.Min <= r.Max && r.Min <= br.Max {
					return false
				}
			}
		}
		for _, n := range a.NotNamedPorts {
			if !slices.Contains(b.NotNamedPorts, n) || aProto != bProto || !(b.Selector.IsAll() || sameSelector(a.Selector, b.Selector)) {
				return false
			}
		}
	}
	return true
}

func rangeInside(r policy.PortRange, merged []PortRange) bool {
	for _, m := range merged {
		if m.Min <= r.Min && r.Max <= m.Max {
			return true
		}
	}
	return false
}

// Staged policies.

// lintStaged compiles the set with the staged policy enforced and reports
// the connections whose verdict changes.
func (l *linter) lintStaged(p *policy.Policy) {
	key := objectKey(p)
	obj, ok := l.set.Get(key)
	if !ok {
		return
	}
	enforced, target := enforcedForm(obj)
	if target.Kind == "" {
		return
	}
	if p.StagedAction == policy.StagedActionDelete {
		if _, exists := l.set.Get(target); !exists {
			l.add(SeverityWarning, CodeStagedDeleteMissing, p, l.fieldPos(p, p.Position, "spec.stagedAction"), "spec.stagedAction",
				"the staged deletion names %s, which does not exist: it would change nothing", target)
			return
		}
	}
	if l.opts.Judge == nil {
		return
	}
	flows := podFlows(l.set)
	if len(flows) == 0 {
		return
	}
	staged := policy.NewSet()
	for _, o := range l.set.Objects() {
		k := policy.KeyOf(o)
		if k == target {
			continue
		}
		if _, err := staged.UpsertAt(o, l.set.Origin(k)); err != nil {
			return
		}
	}
	if p.StagedAction != policy.StagedActionDelete {
		if _, err := staged.UpsertAt(enforced, l.set.Origin(key)); err != nil {
			return
		}
	}
	after, err := New(staged, l.rs.Node).Compile()
	if err != nil {
		return
	}
	before, now := l.opts.Judge(l.rs), l.opts.Judge(after)
	var changed []string
	for _, f := range flows {
		was, is := before(f), now(f)
		if was == is {
			continue
		}
		changed = append(changed, fmt.Sprintf("%s → %s %d/%s %s→%s", f.From, f.To, f.DstPort, ProtocolName(f.Protocol), verdictWord(was), verdictWord(is)))
	}
	if len(changed) == 0 {
		return
	}
	verb := "enforcing it"
	if p.StagedAction == policy.StagedActionDelete {
		verb = "deleting " + target.String()
	}
	l.add(SeverityWarning, CodeStagedChangesVerdicts, p, p.Position, "",
		"%s would change the verdict of %s", verb, l.list(changed, "connection"))
}

func verdictWord(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

// enforcedForm returns the enforced object a staged one stands for, and
// the key of the enforced policy it sets or deletes.
func enforcedForm(obj policy.Object) (policy.Object, policy.ObjectKey) {
	switch o := obj.(type) {
	case *policy.StagedNetworkPolicy:
		np := &policy.NetworkPolicy{ObjectMeta: *o.ObjectMeta.DeepCopy(), Spec: o.Spec.NetworkPolicySpec}
		np.APIVersion, np.Kind = policy.CalicoAPIVersion, string(policy.KindNetworkPolicy)
		return np, policy.KeyOf(np)
	case *policy.StagedGlobalNetworkPolicy:
		gnp := &policy.GlobalNetworkPolicy{ObjectMeta: *o.ObjectMeta.DeepCopy(), Spec: o.Spec.GlobalNetworkPolicySpec}
		gnp.APIVersion, gnp.Kind = policy.CalicoAPIVersion, string(policy.KindGlobalNetworkPolicy)
		return gnp, policy.KeyOf(gnp)
	case *policy.StagedKubernetesNetworkPolicy:
		knp := &networkingv1.NetworkPolicy{ObjectMeta: *o.ObjectMeta.DeepCopy(), Spec: o.Spec.NetworkPolicySpec}
		knp.APIVersion, knp.Kind = policy.K8sNetworkingAPIVersion, "NetworkPolicy"
		return knp, policy.KeyOf(knp)
	}
	return nil, policy.ObjectKey{}
}

// podFlows lists a connection for every ordered pair of distinct pods and
// every port/protocol any pod declares, in probe, source, destination
// order; the source address is the first of the destination's family.
func podFlows(set *policy.Set) []Flow {
	type probe struct {
		proto uint8
		port  uint16
	}
	type pod struct {
		key   string
		addrs []netip.Addr
	}
	var pods []pod
	seen := map[probe]bool{}
	var probes []probe
	for _, ep := range set.Endpoints() {
		if ep.Kind != policy.KindPod {
			continue
		}
		pd := pod{key: ep.Key()}
		for _, a := range ep.IPs {
			pd.addrs = append(pd.addrs, a.Unmap())
		}
		slices.SortFunc(pd.addrs, netip.Addr.Compare)
		pods = append(pods, pd)
		obj, _ := set.Get(policy.ObjectKey{Kind: policy.KindPod, Namespace: ep.Namespace, Name: ep.Name})
		if k8s, ok := obj.(*corev1.Pod); ok {
			for _, cp := range policy.PodPorts(k8s) {
				pr := probe{proto: cp.Protocol, port: cp.Port}
				if !seen[pr] {
					seen[pr] = true
					probes = append(probes, pr)
				}
			}
		}
	}
	slices.SortFunc(probes, func(a, b probe) int {
		return cmp.Or(strings.Compare(ProtocolName(a.proto), ProtocolName(b.proto)), cmp.Compare(a.port, b.port))
	})
	var flows []Flow
	for _, pr := range probes {
		for _, from := range pods {
			for _, to := range pods {
				if from.key == to.key || len(to.addrs) == 0 {
					continue
				}
				dst := to.addrs[0]
				for _, src := range from.addrs {
					if src.Is4() == dst.Is4() {
						flows = append(flows, Flow{From: from.key, To: to.key, Src: src, Dst: dst, Protocol: pr.proto, DstPort: pr.port})
						break
					}
				}
			}
		}
	}
	return flows
}

func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			strings.Compare(a.Position.Source, b.Position.Source),
			cmp.Compare(a.Position.Line, b.Position.Line),
			cmp.Compare(a.Position.Doc, b.Position.Doc),
			-cmp.Compare(a.Severity, b.Severity),
			strings.Compare(a.Code, b.Code),
			strings.Compare(a.Object, b.Object),
			strings.Compare(a.Field, b.Field),
			strings.Compare(a.Message, b.Message),
		)
	})
}

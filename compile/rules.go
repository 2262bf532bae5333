package compile

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/calyxnet/calyx/policy"
	"github.com/calyxnet/calyx/selector"
)

// DefaultAllowProfile is the built-in profile Calico gives host endpoints
// that should allow everything no policy decides.
const DefaultAllowProfile = "projectcalico-default-allow"

// setID derives a set's ID from its definition: a letter for the kind
// (n: selector nets, l: literal nets, p: named ports, d: domains) and 20 hex
// digits of SHA-256 over the definition. 21 characters keep room for a
// backend prefix and family suffix within ipset's 31-character names.
func setID(s *IPSet) SetID {
	h := sha256.New()
	var kind byte
	switch {
	case s.Kind == SetNamedPorts:
		kind = 'p'
		h.Write([]byte(s.Selector + "\x00" + s.PortName + "\x00" + strconv.Itoa(int(s.Protocol))))
	case s.Kind == SetDomains:
		kind = 'd'
		h.Write([]byte(strings.Join(s.Domains, "\x00")))
	case s.Literal:
		kind = 'l'
		for _, n := range s.Nets {
			h.Write([]byte(n.String() + "\x00"))
		}
	default:
		kind = 'n'
		h.Write([]byte(s.Selector))
	}
	return SetID(string(kind) + hex.EncodeToString(h.Sum(nil)[:10]))
}

// policyID names a compiled policy: direction, tier and display name.
func policyID(d Direction, tier, name string) PolicyID {
	prefix := "in:"
	if d == Egress {
		prefix = "out:"
	}
	return PolicyID(prefix + tier + "/" + name)
}

func displayName(p *policy.Policy) string {
	if p.Namespace == "" {
		return p.Name
	}
	return p.Namespace + "/" + p.Name
}

// compilePolicy compiles both directions of a policy, acquiring the sets
// its rules use.
func (c *Compiler) compilePolicy(ps *policyState) error {
	p := ps.pol
	name := displayName(p)
	for di, d := range []Direction{Ingress, Egress} {
		pd := policy.Ingress
		if d == Egress {
			pd = policy.Egress
		}
		if !p.Applies(pd) {
			continue
		}
		out := &Policy{ID: policyID(d, p.Tier, name), Direction: d, Tier: p.Tier, Name: name}
		origin := Origin{Tier: p.Tier, Policy: name, Kind: string(p.Kind)}
		for i := range p.Rules(pd) {
			r := &p.Rules(pd)[i]
			o := origin
			o.Index, o.Path = i, r.Field
			if r.Position.Source != "" {
				o.Source = r.Position.String()
			} else if p.Position.Source != "" {
				o.Source = p.Position.String()
			}
			rule, ok := c.compileRule(r, o, &ps.sets)
			if ok {
				out.Rules = append(out.Rules, rule)
			}
		}
		if !c.noOptimize {
			out.Rules = dropShadowed(out.Rules)
		}
		ps.ids[di] = out.ID
		ps.compact[di] = out
	}
	return nil
}

// compileRule turns one normalised rule into IR, acquiring its sets (their
// IDs are appended to refs). It reports false for a rule that can never
// match, which is then left out (as Calico renders nothing for it).
func (c *Compiler) compileRule(r *policy.RuleInfo, o Origin, refs *[]SetID) (Rule, bool) {
	v4, v6 := ruleVersions(r)
	if !v4 && !v6 {
		return Rule{}, false
	}
	if r.Source.Service != nil || r.Destination.Service != nil {
		// Service matches need the Service's endpoints, which Calyx does
		// not track yet: the rule matches nothing (lint says so).
		return Rule{}, false
	}
	rule := Rule{Action: action(r.Action), Origin: o}
	m := &rule.Match
	m.Protocol, m.NotProtocol = r.Protocol, r.NotProtocol
	switch {
	case v4 && !v6:
		m.IPVersion = 4
	case v6 && !v4:
		m.IPVersion = 6
	}
	m.ICMP = icmp(r.ICMP)
	m.NotICMP = icmp(r.NotICMP)
	c.compilePeer(&m.Src, &r.Source, r.Protocol, v4, v6, refs)
	c.compilePeer(&m.Dst, &r.Destination, r.Protocol, v4, v6, refs)
	return rule, true
}

func (c *Compiler) compilePeer(pm *PeerMatch, m *policy.Match, proto uint8, v4, v6 bool, refs *[]SetID) {
	acquire := func(def IPSet, sel *selector.Selector) SetID {
		id := c.acquireSet(def, sel)
		*refs = append(*refs, id)
		return id
	}
	if nets := literalNets(m.Nets, v4, v6); len(nets) > 0 {
		pm.Sets = append(pm.Sets, acquire(IPSet{Kind: SetNets, Literal: true, Nets: nets}, nil))
	}
	if m.Selector != nil {
		pm.Sets = append(pm.Sets, acquire(IPSet{Kind: SetNets, Selector: m.Selector.String()}, m.Selector))
	}
	if len(m.Domains) > 0 {
		doms := slices.Clone(m.Domains)
		slices.Sort(doms)
		pm.Sets = append(pm.Sets, acquire(IPSet{Kind: SetDomains, Domains: slices.Compact(doms)}, nil))
	}
	if nets := literalNets(m.NotNets, v4, v6); len(nets) > 0 {
		pm.NotSets = append(pm.NotSets, acquire(IPSet{Kind: SetNets, Literal: true, Nets: nets}, nil))
	}
	if m.NotSelector != nil {
		pm.NotSets = append(pm.NotSets, acquire(IPSet{Kind: SetNets, Selector: m.NotSelector.String()}, m.NotSelector))
	}
	pm.Ports = mergeRanges(m.Ports)
	pm.NotPorts = mergeRanges(m.NotPorts)
	// A named port resolves on the endpoints this side of the rule picks
	// (all of them when it picks none in particular).
	portSel := m.Selector
	if portSel == nil {
		portSel = selector.All()
	}
	named := func(names []string) []SetID {
		var ids []SetID
		for _, n := range sortedUnique(names) {
			ids = append(ids, acquire(IPSet{Kind: SetNamedPorts, Selector: portSel.String(), PortName: n, Protocol: proto}, portSel))
		}
		return ids
	}
	pm.NamedPorts = named(m.NamedPorts)
	pm.NotNamedPorts = named(m.NotNamedPorts)
}

// literalNets returns the canonical (masked, sorted, de-duplicated) nets of
// the IP versions the rule applies to.
func literalNets(nets []netip.Prefix, v4, v6 bool) []netip.Prefix {
	out := netsOf(nets, v4, v6)
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

// ruleVersions returns the IP versions a rule applies to, as the compiler
// narrows them: its ipVersion, and every non-empty list of nets must keep
// a net of the version.
func ruleVersions(r *policy.RuleInfo) (v4, v6 bool) {
	v4, v6 = r.IPVersion != 6, r.IPVersion != 4
	for _, nets := range [][]netip.Prefix{r.Source.Nets, r.Source.NotNets, r.Destination.Nets, r.Destination.NotNets} {
		if len(nets) == 0 {
			continue
		}
		has4, has6 := false, false
		for _, n := range nets {
			if n.Addr().Unmap().Is4() {
				has4 = true
			} else {
				has6 = true
			}
		}
		v4, v6 = v4 && has4, v6 && has6
	}
	return v4, v6
}

// netsOf returns the canonical nets of the given versions.
func netsOf(nets []netip.Prefix, v4, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range nets {
		n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-unmapShift(n)).Masked()
		if (n.Addr().Is4() && v4) || (n.Addr().Is6() && v6) {
			out = append(out, n)
		}
	}
	return out
}

// unmapShift is how many bits an IPv4-mapped IPv6 prefix loses when
// unmapped.
func unmapShift(n netip.Prefix) int {
	if n.Addr().Is4In6() && n.Bits() >= 96 {
		return 96
	}
	return 0
}

// mergeRanges sorts port ranges and merges those that overlap or touch.
func mergeRanges(in []policy.PortRange) []PortRange {
	if len(in) == 0 {
		return nil
	}
	out := make([]PortRange, 0, len(in))
	for _, r := range in {
		out = append(out, PortRange{Min: r.Min, Max: r.Max})
	}
	slices.SortFunc(out, func(a, b PortRange) int {
		if a.Min != b.Min {
			return int(a.Min) - int(b.Min)
		}
		return int(a.Max) - int(b.Max)
	})
	merged := out[:1]
	for _, r := range out[1:] {
		last := &merged[len(merged)-1]
		if int(r.Min) <= int(last.Max)+1 {
			last.Max = max(last.Max, r.Max)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func icmp(m *policy.ICMPMatch) *ICMPMatch {
	if m == nil {
		return nil
	}
	out := &ICMPMatch{Type: m.Type}
	if m.Code != nil {
		code := *m.Code
		out.Code = &code
	}
	return out
}

func action(a policy.Action) Action {
	switch a {
	case policy.Allow:
		return ActionAllow
	case policy.Pass:
		return ActionPass
	case policy.Log:
		return ActionLog
	}
	return ActionDeny
}

// Profiles.

// acquireProfiles returns the profile policy IDs of an endpoint (ingress
// ones first), creating the compiled profiles on first use.
func (c *Compiler) acquireProfiles(ep *policy.Endpoint) []PolicyID {
	var names []string
	if ep.Kind == policy.KindPod {
		// Calico gives every pod its namespace's profile, which allows
		// everything no policy decided.
		names = []string{policy.NamespaceParentID(ep.Namespace)}
	} else {
		names = ep.Profiles
	}
	var ids []PolicyID
	for _, d := range []Direction{Ingress, Egress} {
		for _, name := range names {
			id := policyID(d, "profile", name)
			ps, ok := c.profiles[id]
			if !ok {
				pol, refs := c.compileProfile(d, name, ep.Kind == policy.KindPod)
				if pol == nil {
					continue
				}
				ps = &profileState{pol: pol, sets: refs}
				c.profiles[id] = ps
				c.dirty.policies[id] = struct{}{}
			}
			ps.refs++
			ids = append(ids, id)
		}
	}
	return ids
}

func (c *Compiler) releaseProfiles(ids []PolicyID) {
	for _, id := range ids {
		ps := c.profiles[id]
		if ps == nil {
			continue
		}
		if ps.refs--; ps.refs <= 0 {
			for _, sid := range ps.sets {
				c.releaseSet(sid)
			}
			delete(c.profiles, id)
			c.dirty.policies[id] = struct{}{}
		}
	}
}

// recompileProfile follows a change of the Profile object name: its
// compiled rules are refreshed, and the endpoints that name it are rebuilt
// (a Profile that appears or disappears changes their profile lists).
func (c *Compiler) recompileProfile(name string) {
	if name == DefaultAllowProfile {
		return
	}
	var ids []PolicyID
	for _, d := range []Direction{Ingress, Egress} {
		id := policyID(d, "profile", name)
		ids = append(ids, id)
		ps, ok := c.profiles[id]
		if !ok {
			continue
		}
		for _, sid := range ps.sets {
			c.releaseSet(sid)
		}
		c.dirty.policies[id] = struct{}{}
		pol, refs := c.compileProfile(d, name, false)
		if pol == nil {
			delete(c.profiles, id)
			continue
		}
		ps.pol, ps.sets = pol, refs
	}
	for key, es := range c.endpoints {
		if es.ep.Kind == policy.KindHostEndpoint && slices.Contains(es.ep.Profiles, name) {
			es.profiles = slices.DeleteFunc(es.profiles, func(id PolicyID) bool {
				_, still := c.profiles[id]
				return slices.Contains(ids, id) && !still
			})
			c.dirty.endpoints[key] = struct{}{}
		}
	}
}

// compileProfile compiles one direction of a profile: a namespace's
// allow-all, the built-in default-allow, or a Profile object's rules.
func (c *Compiler) compileProfile(d Direction, name string, namespace bool) (*Policy, []SetID) {
	id := policyID(d, "profile", name)
	display := "profile:" + name
	allowAll := &Policy{ID: id, Direction: d, Name: display, Rules: []Rule{{
		Action: ActionAllow, Origin: Origin{Policy: display, Kind: "Profile", Index: -1},
	}}}
	if namespace || name == DefaultAllowProfile {
		return allowAll, nil
	}
	prof := c.set.Profile(name)
	if prof == nil {
		return nil, nil
	}
	rules := prof.Ingress
	if d == Egress {
		rules = prof.Egress
	}
	out := &Policy{ID: id, Direction: d, Name: display}
	var refs []SetID
	for i := range rules {
		r := &rules[i]
		o := Origin{Policy: display, Kind: "Profile", Index: i, Path: r.Field}
		if r.Position.Source != "" {
			o.Source = r.Position.String()
		}
		if rule, ok := c.compileRule(r, o, &refs); ok {
			out.Rules = append(out.Rules, rule)
		}
	}
	return out, refs
}

// settings reads the node's FelixConfiguration (Calico's defaults where
// unset).
func (c *Compiler) settings() Settings {
	fc := c.set.FelixConfig(c.node)
	s := Settings{DefaultEndpointToHostAction: ActionDeny, LogPrefix: "calyx"}
	in, out := defaultFailsafeInbound, defaultFailsafeOutbound
	if fc.FailsafeInboundHostPorts != nil {
		in = *fc.FailsafeInboundHostPorts
	}
	if fc.FailsafeOutboundHostPorts != nil {
		out = *fc.FailsafeOutboundHostPorts
	}
	s.FailsafeInbound = protoPorts(in)
	s.FailsafeOutbound = protoPorts(out)
	switch strings.ToLower(fc.DefaultEndpointToHostAction) {
	case "accept":
		s.DefaultEndpointToHostAction = ActionAllow
	case "return":
		s.DefaultEndpointToHostAction = ActionPass
	}
	if fc.LogPrefix != "" {
		s.LogPrefix = fc.LogPrefix
	}
	return s
}

// Calico's default fail-safe ports: SSH, DHCP, BGP, etcd, Typha and the
// Kubernetes API inbound; DNS, DHCP, BGP, etcd, Typha and the API outbound.
var (
	defaultFailsafeInbound = []policy.ProtoPort{
		{Protocol: "TCP", Port: 22}, {Protocol: "UDP", Port: 68}, {Protocol: "TCP", Port: 179},
		{Protocol: "TCP", Port: 2379}, {Protocol: "TCP", Port: 2380}, {Protocol: "TCP", Port: 5473},
		{Protocol: "TCP", Port: 6443}, {Protocol: "TCP", Port: 6666}, {Protocol: "TCP", Port: 6667},
	}
	defaultFailsafeOutbound = []policy.ProtoPort{
		{Protocol: "UDP", Port: 53}, {Protocol: "UDP", Port: 67}, {Protocol: "TCP", Port: 179},
		{Protocol: "TCP", Port: 2379}, {Protocol: "TCP", Port: 2380}, {Protocol: "TCP", Port: 5473},
		{Protocol: "TCP", Port: 6443}, {Protocol: "TCP", Port: 6666}, {Protocol: "TCP", Port: 6667},
	}
)

func protoPorts(in []policy.ProtoPort) []ProtoPort {
	out := make([]ProtoPort, 0, len(in))
	for _, p := range in {
		pp := ProtoPort{Port: p.Port}
		switch strings.ToUpper(p.Protocol) {
		case "UDP":
			pp.Protocol = 17
		case "SCTP":
			pp.Protocol = 132
		default:
			pp.Protocol = 6
		}
		if p.Net != "" {
			if n, err := netip.ParsePrefix(p.Net); err == nil {
				pp.Net = n.Masked()
			}
		}
		out = append(out, pp)
	}
	return out
}

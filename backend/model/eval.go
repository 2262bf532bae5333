package model

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/calyxnet/calyx/compile"
)

// Index is a Ruleset prepared for fast evaluation: endpoints by address,
// set members in hash maps. It is read-only after NewIndex and safe for
// concurrent use.
type Index struct {
	rs     *compile.Ruleset
	byAddr map[netip.Addr]*compile.Endpoint
	sets   map[compile.SetID]*setIndex
}

type setIndex struct {
	addrs    map[netip.Addr]struct{}
	prefixes []netip.Prefix // members wider than one address
	ports    map[compile.PortMember]struct{}
}

func (s *setIndex) containsAddr(a netip.Addr) bool {
	if _, ok := s.addrs[a]; ok {
		return true
	}
	for _, p := range s.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// NewIndex prepares rs for evaluation. rs must not change afterwards.
func NewIndex(rs *compile.Ruleset) *Index {
	idx := &Index{
		rs:     rs,
		byAddr: make(map[netip.Addr]*compile.Endpoint),
		sets:   make(map[compile.SetID]*setIndex, len(rs.Sets)),
	}
	for _, key := range sortedKeys(rs.Endpoints) {
		ep := rs.Endpoints[key]
		for _, a := range ep.Addrs {
			// Two endpoints claiming one address is an IPAM bug; the first
			// key in sorted order wins so the result is deterministic.
			if _, dup := idx.byAddr[a.Unmap()]; !dup {
				idx.byAddr[a.Unmap()] = ep
			}
		}
	}
	for id, s := range rs.Sets {
		si := &setIndex{addrs: make(map[netip.Addr]struct{}), ports: make(map[compile.PortMember]struct{}, len(s.Ports))}
		for _, n := range s.Nets {
			if n.IsSingleIP() {
				si.addrs[n.Addr().Unmap()] = struct{}{}
			} else {
				si.prefixes = append(si.prefixes, n)
			}
		}
		for _, p := range s.Ports {
			p.Addr = p.Addr.Unmap()
			si.ports[p] = struct{}{}
		}
		idx.sets[id] = si
	}
	return idx
}

// Ruleset returns the Ruleset the index was built from.
func (x *Index) Ruleset() *compile.Ruleset { return x.rs }

// Endpoint returns the endpoint that owns addr, if any.
func (x *Index) Endpoint(addr netip.Addr) (*compile.Endpoint, bool) {
	ep, ok := x.byAddr[addr.Unmap()]
	return ep, ok
}

// Allowed reports the decision for p without building a trace.
func (x *Index) Allowed(p Packet) bool {
	return x.judge(p, nil)
}

// Verdict judges p and explains the decision.
func (x *Index) Verdict(p Packet) Verdict {
	v := Verdict{Packet: p}
	v.Allowed = x.judge(p, &v.Steps)
	return v
}

func (x *Index) judge(p Packet, trace *[]Step) bool {
	p.Src, p.Dst = p.Src.Unmap(), p.Dst.Unmap()
	src, srcOK := x.byAddr[p.Src]
	dst, dstOK := x.byAddr[p.Dst]
	if srcOK && dstOK && src == dst {
		record(trace, Step{Kind: StepSelf, Endpoint: src.Key, Allowed: true})
		return true
	}
	// Host endpoint policy governs the node's traffic with the world
	// outside it. Traffic between a node and its own workloads passes
	// through their veths, never a host interface: the workload's policy
	// (and the endpoint-to-host action) decides it, as in Calico.
	if srcOK && dstOK && src.Node == dst.Node {
		if src.Kind == compile.HostEndpoint && dst.Kind == compile.WorkloadEndpoint {
			srcOK = false
		} else if dst.Kind == compile.HostEndpoint && src.Kind == compile.WorkloadEndpoint {
			dstOK = false
		}
	}
	if srcOK && !x.direction(src, compile.Egress, &p, trace) {
		return false
	}
	if dstOK && !x.direction(dst, compile.Ingress, &p, trace) {
		return false
	}
	if !srcOK && !dstOK {
		record(trace, Step{Kind: StepNoEndpoint, Allowed: true})
	}
	return true
}

func record(trace *[]Step, s Step) {
	if trace != nil {
		*trace = append(*trace, s)
	}
}

// direction evaluates one direction of one endpoint.
func (x *Index) direction(ep *compile.Endpoint, dir compile.Direction, p *Packet, trace *[]Step) bool {
	dp := &ep.Egress
	if dir == compile.Ingress {
		dp = &ep.Ingress
	}
	if x.failsafe(ep, dir, p) {
		record(trace, Step{Kind: StepFailsafe, Direction: dir, Endpoint: ep.Key, Allowed: true})
		return true
	}
tiers:
	for _, tier := range dp.Tiers {
		for _, pid := range tier.Policies {
			switch x.policy(ep, dir, tier.Tier, pid, StepRule, p, trace) {
			case compile.ActionAllow:
				return true
			case compile.ActionDeny:
				return false
			case compile.ActionPass:
				continue tiers
			}
		}
		record(trace, Step{Kind: StepEndOfTier, Direction: dir, Endpoint: ep.Key, Tier: tier.Tier,
			Action: tier.EndAction, Allowed: false})
		if tier.EndAction != compile.ActionPass {
			return false
		}
	}
	if len(dp.Tiers) == 0 {
		record(trace, Step{Kind: StepNoPolicy, Direction: dir, Endpoint: ep.Key})
	}
	for _, pid := range dp.Profiles {
		switch x.policy(ep, dir, "", pid, StepProfileRule, p, trace) {
		case compile.ActionAllow:
			return true
		case compile.ActionDeny:
			return false
		}
	}
	record(trace, Step{Kind: StepProfilesEnd, Direction: dir, Endpoint: ep.Key, Action: compile.ActionDeny})
	return false
}

// policy walks one policy's rules and returns the action of the first
// matching rule that ends the walk (Allow, Deny or Pass), or 0 when none
// does. Log rules are recorded and passed over, and so is Pass in a
// profile (profiles have no next tier to pass to).
func (x *Index) policy(ep *compile.Endpoint, dir compile.Direction, tier string, pid compile.PolicyID, kind StepKind, p *Packet, trace *[]Step) compile.Action {
	pol := x.rs.Policies[pid]
	for i := range pol.Rules {
		r := &pol.Rules[i]
		matched := x.matches(&r.Match, p)
		if trace != nil {
			*trace = append(*trace, Step{Kind: kind, Direction: dir, Endpoint: ep.Key, Tier: tier,
				Policy: pol.Name, PolicyID: pid, Rule: i, Origin: r.Origin, Action: r.Action, Matched: matched})
		}
		if !matched || r.Action == compile.ActionLog || (kind == StepProfileRule && r.Action == compile.ActionPass) {
			continue
		}
		return r.Action
	}
	return 0
}

// failsafe reports whether p uses a fail-safe port of a host endpoint.
func (x *Index) failsafe(ep *compile.Endpoint, dir compile.Direction, p *Packet) bool {
	if ep.Kind != compile.HostEndpoint || !hasPorts(p.Protocol) {
		return false
	}
	list, port, peer := x.rs.Settings.FailsafeOutbound, p.DstPort, p.Dst
	if dir == compile.Ingress {
		list, port, peer = x.rs.Settings.FailsafeInbound, p.DstPort, p.Src
	}
	for _, f := range list {
		if f.Protocol == p.Protocol && f.Port == port && (!f.Net.IsValid() || f.Net.Contains(peer)) {
			return true
		}
	}
	return false
}

func (x *Index) matches(m *compile.Match, p *Packet) bool {
	if m.Protocol != 0 && m.Protocol != p.Protocol {
		return false
	}
	if m.NotProtocol != 0 && m.NotProtocol == p.Protocol {
		return false
	}
	if m.IPVersion != 0 && m.IPVersion != family(p.Src) {
		return false
	}
	if m.ICMP != nil && !icmpMatches(m.ICMP, p) {
		return false
	}
	if m.NotICMP != nil && icmpMatches(m.NotICMP, p) {
		return false
	}
	return x.peerMatches(&m.Src, p.Src, p.Protocol, p.SrcPort) &&
		x.peerMatches(&m.Dst, p.Dst, p.Protocol, p.DstPort)
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

func icmpMatches(im *compile.ICMPMatch, p *Packet) bool {
	if !isICMP(p.Protocol) || p.ICMPType != im.Type {
		return false
	}
	return im.Code == nil || *im.Code == p.ICMPCode
}

func (x *Index) peerMatches(pm *compile.PeerMatch, addr netip.Addr, proto uint8, port uint16) bool {
	for _, id := range pm.Sets {
		if !x.sets[id].containsAddr(addr) {
			return false
		}
	}
	for _, id := range pm.NotSets {
		if x.sets[id].containsAddr(addr) {
			return false
		}
	}
	if len(pm.Ports) > 0 || len(pm.NamedPorts) > 0 {
		if !hasPorts(proto) || !(inRanges(pm.Ports, port) || x.inPortSets(pm.NamedPorts, addr, proto, port)) {
			return false
		}
	}
	if len(pm.NotPorts) > 0 || len(pm.NotNamedPorts) > 0 {
		if !hasPorts(proto) || inRanges(pm.NotPorts, port) || x.inPortSets(pm.NotNamedPorts, addr, proto, port) {
			return false
		}
	}
	return true
}

func inRanges(rs []compile.PortRange, port uint16) bool {
	for _, r := range rs {
		if port >= r.Min && port <= r.Max {
			return true
		}
	}
	return false
}

func (x *Index) inPortSets(ids []compile.SetID, addr netip.Addr, proto uint8, port uint16) bool {
	m := compile.PortMember{Addr: addr, Protocol: proto, Port: port}
	for _, id := range ids {
		if _, ok := x.sets[id].ports[m]; ok {
			return true
		}
	}
	return false
}

// StepKind says what a trace step records.
type StepKind uint8

const (
	// StepRule: a policy rule was consulted (Matched says whether it matched).
	StepRule StepKind = iota + 1
	// StepEndOfTier: no rule of the tier decided; its end action applied.
	StepEndOfTier
	// StepNoPolicy: no policy of any tier applies to the endpoint in this
	// direction; its profiles decide.
	StepNoPolicy
	// StepProfileRule: a profile rule was consulted.
	StepProfileRule
	// StepProfilesEnd: no profile rule decided: the packet is denied.
	StepProfilesEnd
	// StepSelf: an endpoint talks to itself: always allowed.
	StepSelf
	// StepFailsafe: a host endpoint's fail-safe port: always allowed.
	StepFailsafe
	// StepNoEndpoint: neither address is an endpoint of the Ruleset.
	StepNoEndpoint
)

// Step is one step of a trace.
type Step struct {
	Kind      StepKind
	Direction compile.Direction
	Endpoint  string
	Tier      string
	Policy    string
	PolicyID  compile.PolicyID
	// Rule is the rule's index in the compiled policy.
	Rule    int
	Origin  compile.Origin
	Action  compile.Action
	Matched bool
	// Allowed is set on steps that decide by themselves (self, failsafe).
	Allowed bool
}

// String explains the step in one line.
func (s Step) String() string {
	switch s.Kind {
	case StepRule, StepProfileRule:
		what := "no match"
		if s.Matched {
			what = "MATCH → " + s.Action.String()
		}
		where := s.Origin.String()
		if s.Kind == StepProfileRule {
			where = "profile " + where
		}
		return fmt.Sprintf("%s %s: %s: %s", s.Endpoint, s.Direction, where, what)
	case StepEndOfTier:
		return fmt.Sprintf("%s %s: end of tier %q: %s", s.Endpoint, s.Direction, s.Tier, strings.ToLower(s.Action.String()))
	case StepNoPolicy:
		return fmt.Sprintf("%s %s: no policy applies: profiles decide", s.Endpoint, s.Direction)
	case StepProfilesEnd:
		return fmt.Sprintf("%s %s: no profile rule matched: deny", s.Endpoint, s.Direction)
	case StepSelf:
		return fmt.Sprintf("%s: traffic to itself: allow", s.Endpoint)
	case StepFailsafe:
		return fmt.Sprintf("%s %s: fail-safe port: allow", s.Endpoint, s.Direction)
	case StepNoEndpoint:
		return "neither address is an endpoint: no policy: allow"
	}
	return "unknown step"
}

// Verdict is the decision for a packet and the trace that led to it.
type Verdict struct {
	Packet  Packet
	Allowed bool
	Steps   []Step
}

// Decider returns the step that decided the verdict: the matching
// Allow/Deny rule, the end of tier, or the end of profiles.
func (v *Verdict) Decider() (Step, bool) {
	for i := len(v.Steps) - 1; i >= 0; i-- {
		s := v.Steps[i]
		switch {
		case (s.Kind == StepRule || s.Kind == StepProfileRule) && s.Matched &&
			(s.Action == compile.ActionAllow || s.Action == compile.ActionDeny):
			return s, true
		case s.Kind == StepEndOfTier && s.Action != compile.ActionPass,
			s.Kind == StepProfilesEnd, s.Kind == StepSelf, s.Kind == StepFailsafe, s.Kind == StepNoEndpoint:
			return s, true
		}
	}
	return Step{}, false
}

// String prints the packet, each step on its own line, then the decision.
func (v *Verdict) String() string {
	var b strings.Builder
	b.WriteString(v.Packet.String())
	b.WriteByte('\n')
	for _, s := range v.Steps {
		b.WriteString("  ")
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	if v.Allowed {
		b.WriteString("ALLOWED\n")
	} else {
		b.WriteString("DENIED\n")
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortStrings(s []string) []string {
	slices.Sort(s)
	return s
}

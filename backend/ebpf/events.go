package ebpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/calyxnet/calyx/compile"
)

// Event is one record of the ring buffer: a packet that met a Log rule
// (Action is compile.ActionLog), or, with flow events, the verdict on a
// new flow (compile.ActionAllow: the packet opened a conntrack entry) or
// on a denied packet (compile.ActionDeny). Packets of flows conntrack
// knows write no event.
type Event struct {
	// Rule names the rule that decided (Reason ReasonRule), or the tier
	// whose end denied (ReasonTierEnd: Rule.Tier, Index -1). Zero when
	// the backend does not know the ID (an event of a program it no
	// longer runs).
	Rule RuleRef
	// RuleID is the ID of what decided in the program.
	RuleID uint64
	// Action is compile.ActionLog, ActionAllow or ActionDeny; zero in
	// records of programs older than flow events.
	Action compile.Action
	// Reason says what decided the verdict.
	Reason Reason
	// Ifindex is the index of the interface whose program wrote the
	// event: the pod's host-side veth, or for a host endpoint the node's
	// interface.
	Ifindex int
	// Egress is true when the endpoint's egress policy judged the packet:
	// traffic from the pod (TCX ingress of its veth), or for a host
	// endpoint the node's traffic out of the interface (TCX egress);
	// false for its ingress policy, traffic to the endpoint.
	Egress bool
	// Protocol is the packet's IP protocol number (6 TCP, 17 UDP, 1 ICMP,
	// 58 ICMPv6, 132 SCTP ...); for an IPv6 packet, the one after its
	// extension headers. Zero for ReasonFailClosed.
	Protocol uint8
	// Src and Dst are the packet's addresses and ports (zero for
	// ReasonFailClosed: the deny-all program parses nothing).
	Src, Dst netip.AddrPort
}

// Reason says what decided an event's verdict.
type Reason uint8

const (
	// ReasonUnknown: an ID the backend does not know.
	ReasonUnknown Reason = iota
	// ReasonRule: a rule (Event.Rule names it; a Log rule's events too).
	ReasonRule
	// ReasonTierEnd: no rule of the tier decided and the tier ends in
	// deny (Event.Rule.Tier names it).
	ReasonTierEnd
	// ReasonProfilesEnd: no tier and no profile allowed.
	ReasonProfilesEnd
	// ReasonFailClosed: the interface is a workload interface no Apply
	// named yet; it runs the deny-all program.
	ReasonFailClosed
	// ReasonForgedSource: the pod sent from an address not its own.
	ReasonForgedSource
	// ReasonNodeDenied: an allowed packet to the node itself, dropped
	// because DefaultEndpointToHostAction is Deny.
	ReasonNodeDenied
	// ReasonFailsafe: a host endpoint's fail-safe port
	// (Settings.FailsafeInbound or FailsafeOutbound) allowed the flow.
	ReasonFailsafe
)

// String names the reason.
func (r Reason) String() string {
	switch r {
	case ReasonRule:
		return "rule"
	case ReasonTierEnd:
		return "end of tier"
	case ReasonProfilesEnd:
		return "end of profiles"
	case ReasonFailClosed:
		return "fail closed"
	case ReasonForgedSource:
		return "forged source"
	case ReasonNodeDenied:
		return "endpoint to host denied"
	case ReasonFailsafe:
		return "fail-safe port"
	}
	return "unknown"
}

// Fixed event IDs (rule IDs are odd, these even).
const (
	idForgedSource = 2
	idFailClosed   = 4
	idNodeDenied   = 6
	idFailsafe     = 8
)

// stepRef is what an event ID stands for.
type stepRef struct {
	reason Reason
	rule   RuleRef
	run    *runRef // a merged run: the rule is found from the packet
}

// runRef is a merged run's rules in order, with their names.
type runRef struct {
	rules []*compile.Rule
	refs  []RuleRef
	side  int
}

// resolver turns event IDs into names: the refs of the programs of the
// current and the previous plan, and the current sets.
type resolver struct {
	refs []map[string]map[uint64]stepRef
	sets map[compile.SetID]*compile.IPSet
}

func (r resolver) lookup(id uint64) (stepRef, bool) {
	switch id {
	case idForgedSource:
		return stepRef{reason: ReasonForgedSource}, true
	case idFailClosed:
		return stepRef{reason: ReasonFailClosed}, true
	case idNodeDenied:
		return stepRef{reason: ReasonNodeDenied}, true
	case idFailsafe:
		return stepRef{reason: ReasonFailsafe}, true
	}
	for _, byProg := range r.refs {
		for _, m := range byProg {
			if s, ok := m[id]; ok {
				return s, true
			}
		}
	}
	return stepRef{}, false
}

// String prints the event as a log line.
func (e Event) String() string {
	dir := "ingress"
	if e.Egress {
		dir = "egress"
	}
	what := "log"
	if e.Action == compile.ActionAllow || e.Action == compile.ActionDeny {
		what = e.Action.String()
	}
	switch e.Reason {
	case ReasonRule, ReasonUnknown:
		return fmt.Sprintf("%s %s %s rule %d (%s): %s -> %s proto %d", what, e.Rule.Policy, dir, e.Rule.Index, e.Rule.Tier, e.Src, e.Dst, e.Protocol)
	case ReasonTierEnd:
		return fmt.Sprintf("%s %s by the end of tier %s: %s -> %s proto %d", what, dir, e.Rule.Tier, e.Src, e.Dst, e.Protocol)
	}
	return fmt.Sprintf("%s %s: %s (interface %d): %s -> %s proto %d", what, dir, e.Reason, e.Ifindex, e.Src, e.Dst, e.Protocol)
}

// Event record layout (eventSize bytes): rule ID u64 | ifindex u32 |
// hook u8 | family u8 | protocol u8 | action u8 | sport be16 | dport be16
// | src [16] | dst [16] | unused.
const eventMinSize = 52

func decodeEvent(raw []byte, res resolver) (Event, error) {
	if len(raw) < eventMinSize {
		return Event{}, fmt.Errorf("ebpf: short event (%d bytes)", len(raw))
	}
	var e Event
	e.RuleID = binary.NativeEndian.Uint64(raw[0:])
	e.Ifindex = int(binary.NativeEndian.Uint32(raw[8:]))
	e.Egress = hook(raw[12]) == hookIngress
	fam := raw[13]
	e.Protocol = raw[14]
	e.Action = compile.Action(raw[15])
	sp, dp := binary.BigEndian.Uint16(raw[16:]), binary.BigEndian.Uint16(raw[18:])
	if fam == 4 || fam == 6 {
		e.Src = netip.AddrPortFrom(addrOf(fam, raw[20:]), sp)
		e.Dst = netip.AddrPortFrom(addrOf(fam, raw[36:]), dp)
	}
	if s, ok := res.lookup(e.RuleID); ok {
		e.Reason, e.Rule = s.reason, s.rule
		if s.run != nil {
			e.Rule = s.run.resolve(fam, e.Protocol, e.Src, e.Dst, res.sets)
		}
	}
	return e, nil
}

// resolve returns the first rule of the run that matches the packet: the
// one the model names. The run's lookup matched, so one does unless a
// set changed since (then the run's first rule is named).
func (r *runRef) resolve(fam, proto uint8, src, dst netip.AddrPort, sets map[compile.SetID]*compile.IPSet) RuleRef {
	for i, ru := range r.rules {
		m := &ru.Match
		if m.Protocol != 0 && m.Protocol != proto || m.IPVersion != 0 && m.IPVersion != fam {
			continue
		}
		if len(m.Dst.Ports) > 0 {
			in := false
			for _, p := range m.Dst.Ports {
				if dst.Port() >= p.Min && dst.Port() <= p.Max {
					in = true
					break
				}
			}
			if !in {
				continue
			}
		}
		ids, addr := m.Src.Sets, src.Addr()
		if r.side == 1 {
			ids, addr = m.Dst.Sets, dst.Addr()
		}
		if len(ids) > 0 {
			s := sets[ids[0]]
			if s == nil || !containsAddr(s.Nets, addr) {
				continue
			}
		}
		return r.refs[i]
	}
	if len(r.refs) > 0 {
		return r.refs[0]
	}
	return RuleRef{}
}

func containsAddr(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) || n.Addr().Is4In6() && n.Bits() == 128 && n.Addr().Unmap() == a {
			return true
		}
	}
	return false
}

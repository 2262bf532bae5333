//go:build linux

package ebpf

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/testgen"
)

// propertyWorld is the world the in-kernel property test draws from: the
// lab's standard pods and external addresses, without a lab.
func propertyWorld() *testgen.IRWorld {
	ports := []lab.Port{{Protocol: 6, Port: 80}, {Protocol: 17, Port: 53}, {Protocol: 6, Port: 443}}
	return conformance.WorldOf(lab.Spec{Pods: labtest.Pods(5, ports...), External: labtest.ExternalAddrs})
}

func reverse(p model.Packet) model.Packet {
	p.Src, p.Dst = p.Dst, p.Src
	p.SrcPort, p.DstPort = p.DstPort, p.SrcPort
	return p
}

// TestProgramsEqualModel is the spine of the eBPF dataplane's correctness:
// random Rulesets loaded as real programs, random packets run through them
// with BPF_PROG_TEST_RUN (the source's egress program, then the
// destination's ingress program), every verdict equal to the model's —
// including what conntrack makes of the rest of the flow: the SYN-ACK and
// ACK of an allowed handshake, UDP replies, ICMP echo replies and ICMP
// errors about an allowed flow pass; a denied flow's reverse is judged on
// its own; a later fragment passes exactly when its first fragment did.
func TestProgramsEqualModel(t *testing.T) {
	h := newHarness(t)
	w := propertyWorld()
	cases := 0
	rapid.Check(t, func(rt *rapid.T) {
		rs := testgen.IRRuleset(w).Draw(rt, "ruleset")
		h.apply(rs)
		check := func(what string, p *pkt, want bool) {
			cases++
			if got := h.verdict(p); got != want {
				v := h.idx.Verdict(p.Packet)
				rt.Fatalf("%s %s (flags %#x frag %d ext %v): ebpf allowed=%v, want %v\nmodel:\n%s\nruleset:\n%s",
					what, p.Packet, p.tcpFlags, p.fragment, p.ext, got, want, v.String(), rs)
			}
		}
		n := rapid.IntRange(100, 120).Draw(rt, "packets")
		for i := range n {
			mp := model.Packet(testgen.IRPacket(w).Draw(rt, "packet"))
			if mp.Protocol == 17 && rapid.IntRange(0, 4).Draw(rt, "sctp") == 0 {
				mp.Protocol = 132
			}
			p := &pkt{Packet: mp, ext: mp.Src.Is6() && rapid.Bool().Draw(rt, "ext"), fragID: uint32(i + 1)}
			h.flush()
			allowed := h.idx.Allowed(mp)
			rev := reverse(mp)
			switch mp.Protocol {
			case 6:
				p.tcpFlags = tcpSYN
				check("syn", p, allowed)
				if allowed {
					check("syn-ack", &pkt{Packet: rev, tcpFlags: tcpSYN | tcpACK, ext: p.ext}, true)
					check("ack", &pkt{Packet: mp, tcpFlags: tcpACK, ext: p.ext}, true)
					check("fin", &pkt{Packet: rev, tcpFlags: tcpFIN | tcpACK}, true)
				} else {
					check("reverse syn", &pkt{Packet: rev, tcpFlags: tcpSYN}, h.idx.Allowed(rev))
				}
			case 1, 58:
				check("icmp", p, allowed)
				echo, reply := uint8(8), uint8(0)
				if mp.Protocol == 58 {
					echo, reply = 128, 129
				}
				if mp.ICMPType == echo && allowed {
					r := rev
					r.ICMPType, r.ICMPCode = reply, 0
					check("echo reply", &pkt{Packet: r}, true)
				}
			default:
				frag := rapid.Bool().Draw(rt, "fragment")
				if frag {
					p.fragment = 1
				}
				check("first", p, allowed)
				if frag {
					later := *p
					later.fragment = 2
					check("later fragment", &later, allowed)
				}
				if allowed {
					check("reply", &pkt{Packet: rev}, true)
					e := model.Packet{Src: mp.Dst, Dst: mp.Src, Protocol: 1, ICMPType: 3, ICMPCode: 3}
					if mp.Src.Is6() {
						e.Protocol, e.ICMPType, e.ICMPCode = 58, 1, 4
					}
					inner := mp
					check("icmp error", &pkt{Packet: e, inner: &inner}, true)
				} else {
					h.flush()
					check("reverse", &pkt{Packet: rev}, h.idx.Allowed(rev))
				}
			}
		}
	})
	if cases < 10000 {
		t.Fatalf("only %d cases ran; want at least 10,000", cases)
	}
	t.Logf("%d (ruleset, packet) cases: ebpf == model", cases)
}

// runRuleset draws Rulesets made of the rule shapes that merge into LPM
// runs: one net set on one side with destination ports, with a protocol
// only, or with nothing else; runs cross policy boundaries, mix kinds and
// sides, and are cut by the other action.
func runRuleset(w *testgen.IRWorld) *rapid.Generator[*compile.Ruleset] {
	return rapid.Custom(func(t *rapid.T) *compile.Ruleset {
		b := testgen.NewIR()
		var keys []string
		for _, p := range w.Pods {
			b.Endpoint(p.Key, p.Interface, p.Addrs...)
			keys = append(keys, p.Key)
		}
		var sets []compile.SetID
		for i := range 2 {
			var members []string
			for _, k := range keys {
				if rapid.Bool().Draw(t, "member") {
					members = append(members, k)
				}
			}
			sets = append(sets, b.Selected(fmt.Sprintf("s%d", i), members...))
		}
		var all []netip.Addr
		for _, p := range w.Pods {
			all = append(all, p.Addrs...)
		}
		all = append(all, w.External...)
		for i := range 2 {
			a := rapid.SampledFrom(all).Draw(t, "netAddr")
			bits := a.BitLen() - rapid.IntRange(0, 8).Draw(t, "widen")
			n := netip.PrefixFrom(a, bits).Masked().String()
			id := b.Nets(n)
			s := b.RS.Sets[id]
			delete(b.RS.Sets, id)
			s.ID = compile.SetID(fmt.Sprintf("lit%d:%s", i, n))
			b.RS.Sets[s.ID] = s
			sets = append(sets, s.ID)
		}
		rule := func() compile.Rule {
			a := compile.ActionAllow
			if rapid.IntRange(0, 3).Draw(t, "deny") == 0 {
				a = compile.ActionDeny
			}
			var m compile.Match
			peer := compile.PeerMatch{Sets: []compile.SetID{rapid.SampledFrom(sets).Draw(t, "set")}}
			switch rapid.IntRange(0, 4).Draw(t, "side") {
			case 0, 1:
				m.Src = peer
			case 2, 3:
				m.Dst = peer
			default: // any address
			}
			switch rapid.IntRange(0, 2).Draw(t, "kind") {
			case 0:
				m.Protocol = rapid.SampledFrom([]uint8{6, 17, 132}).Draw(t, "proto")
				p := rapid.SampledFrom(w.Ports).Draw(t, "port")
				m.Dst.Ports = []compile.PortRange{{Min: p - uint16(rapid.IntRange(0, 2).Draw(t, "lo")), Max: p + uint16(rapid.IntRange(0, 2).Draw(t, "hi"))}}
			case 1:
				m.Protocol = rapid.SampledFrom([]uint8{1, 6, 17, 58, 132}).Draw(t, "proto")
			}
			if rapid.IntRange(0, 4).Draw(t, "ipv") == 0 {
				m.IPVersion = rapid.SampledFrom([]uint8{4, 6}).Draw(t, "ipVersion")
			}
			return testgen.Rule(a, m)
		}
		prof := b.AllowAllProfile()
		for pi, k := range keys {
			ep := b.RS.Endpoints[k]
			for _, dp := range []*compile.DirectionPolicy{&ep.Ingress, &ep.Egress} {
				nt := rapid.IntRange(0, 2).Draw(t, "tiers")
				for ti := range nt {
					var ids []compile.PolicyID
					for pj := range rapid.IntRange(1, 3).Draw(t, "policies") {
						var rules []compile.Rule
						for range rapid.IntRange(1, 5).Draw(t, "rules") {
							rules = append(rules, rule())
						}
						dir := compile.Ingress
						if dp == &ep.Egress {
							dir = compile.Egress
						}
						ids = append(ids, b.Policy(dir, fmt.Sprintf("t%d", ti), fmt.Sprintf("p%d-%d-%d", pi, ti, pj), rules...))
					}
					end := compile.ActionDeny
					if rapid.IntRange(0, 3).Draw(t, "endPass") == 0 {
						end = compile.ActionPass
					}
					dp.Tiers = append(dp.Tiers, compile.TierPolicies{Tier: fmt.Sprintf("t%d", ti), Policies: ids, EndAction: end})
				}
				if rapid.Bool().Draw(t, "profile") {
					dp.Profiles = []compile.PolicyID{prof}
				}
			}
		}
		return b.RS
	})
}

// TestRunsEqualModel: Rulesets of mergeable rules, where most of the
// policy is LPM runs, judge every first packet as the model does.
func TestRunsEqualModel(t *testing.T) {
	h := newHarness(t)
	w := propertyWorld()
	cases, runs := 0, 0
	rapid.Check(t, func(rt *rapid.T) {
		rs := runRuleset(w).Draw(rt, "ruleset")
		h.apply(rs)
		for _, ps := range h.plan.progs {
			runs += len(ps.runs)
		}
		for range 30 {
			mp := model.Packet(testgen.IRPacket(w).Draw(rt, "packet"))
			if mp.Protocol == 17 && rapid.IntRange(0, 4).Draw(rt, "sctp") == 0 {
				mp.Protocol = 132
			}
			h.flush()
			cases++
			want := h.idx.Allowed(mp)
			if got := h.verdict(&pkt{Packet: mp, tcpFlags: tcpSYN}); got != want {
				v := h.idx.Verdict(mp)
				rt.Fatalf("%s: ebpf allowed=%v, want %v\nmodel:\n%s\nruleset:\n%s", mp, got, want, v.String(), rs)
			}
		}
	})
	if runs == 0 {
		t.Fatalf("no rule merged into a run")
	}
	t.Logf("%d cases over %d runs: ebpf == model", cases, runs)
}

// TestMembershipChangesEqualModel: after each change of one set's members
// (a new value, every policy shared as the compiler shares them), the set
// map holds exactly the planned entries, no program was reloaded, and
// every verdict is the model's. This drives the incremental paths: set
// entries by difference, run entries rule by rule. Besides the net sets
// of runRuleset, a first tier on every ingress allows or denies TCP and
// UDP to a named port whose members (address, protocol, port) change too.
// (TestMembershipChangeReloadsNothing checks the same with a real Backend
// in a lab.)
func TestMembershipChangesEqualModel(t *testing.T) {
	h := newHarness(t)
	w := propertyWorld()
	var all []netip.Addr
	for _, p := range w.Pods {
		all = append(all, p.Addrs...)
	}
	all = append(all, w.External...)
	rapid.Check(t, func(rt *rapid.T) {
		rs := runRuleset(w).Draw(rt, "ruleset")
		named := compile.SetID("np:named")
		rs.Sets[named] = &compile.IPSet{ID: named, Kind: compile.SetNamedPorts, Selector: "all()", PortName: "named",
			Ports: namedPortMembers(rt, w)}
		pol := compile.PolicyID("in:np/named")
		act := compile.ActionAllow
		if rapid.Bool().Draw(rt, "namedDeny") {
			act = compile.ActionDeny
		}
		rule := testgen.Rule(act, compile.Match{Dst: compile.PeerMatch{NamedPorts: []compile.SetID{named}}})
		rule.Origin = compile.Origin{Tier: "np", Policy: "named", Kind: "GlobalNetworkPolicy"}
		rs.Policies[pol] = &compile.Policy{ID: pol, Direction: compile.Ingress, Tier: "np", Name: "named", Rules: []compile.Rule{rule}}
		for _, ep := range rs.Endpoints {
			ep.Ingress.Tiers = append([]compile.TierPolicies{{Tier: "np", Policies: []compile.PolicyID{pol}, EndAction: compile.ActionPass}}, ep.Ingress.Tiers...)
		}
		h.apply(rs)
		for range rapid.IntRange(1, 3).Draw(rt, "changes") {
			loaded := len(h.progs)
			next := *rs
			next.Sets = maps.Clone(rs.Sets)
			ids := slices.Sorted(maps.Keys(next.Sets))
			id := rapid.SampledFrom(ids).Draw(rt, "set")
			s := *next.Sets[id]
			if s.Kind == compile.SetNamedPorts {
				s.Ports = namedPortMembers(rt, w)
			} else {
				s.Nets = nil
				for _, a := range all {
					if rapid.Bool().Draw(rt, "member") {
						s.Nets = append(s.Nets, netip.PrefixFrom(a, a.BitLen()))
					}
				}
				slices.SortFunc(s.Nets, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
			}
			next.Sets[id] = &s
			rs = &next
			h.apply(rs)
			if len(h.progs) != loaded {
				rt.Fatalf("a membership change loaded %d programs", len(h.progs)-loaded)
			}
			lpm, np, err := readEntries(h.objs)
			if err != nil {
				rt.Fatal(err)
			}
			wantL, wantN := h.plan.flat()
			if len(lpm) != len(wantL) || len(np) != len(wantN) {
				rt.Fatalf("kernel holds %d+%d entries, plan %d+%d", len(lpm), len(np), len(wantL), len(wantN))
			}
			for k := range wantL {
				if _, ok := lpm[k]; !ok {
					rt.Fatalf("entry %s missing from the kernel", describeLPM(k))
				}
			}
			for range 10 {
				mp := model.Packet(testgen.IRPacket(w).Draw(rt, "packet"))
				h.flush()
				if got, want := h.verdict(&pkt{Packet: mp, tcpFlags: tcpSYN}), h.idx.Allowed(mp); got != want {
					v := h.idx.Verdict(mp)
					rt.Fatalf("%s: ebpf allowed=%v, want %v\n%s", mp, got, want, v.String())
				}
			}
		}
	})
}

// namedPortMembers draws the members of a named port: some of the pods'
// addresses, each with TCP or UDP and one of the world's ports.
func namedPortMembers(t *rapid.T, w *testgen.IRWorld) []compile.PortMember {
	var out []compile.PortMember
	for _, p := range w.Pods {
		for _, a := range p.Addrs {
			if rapid.Bool().Draw(t, "namedMember") {
				out = append(out, compile.PortMember{Addr: a, Protocol: rapid.SampledFrom([]uint8{6, 17}).Draw(t, "namedProto"),
					Port: rapid.SampledFrom(w.Ports).Draw(t, "namedPort")})
			}
		}
	}
	slices.SortFunc(out, func(a, b compile.PortMember) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if a.Protocol != b.Protocol {
			return int(a.Protocol) - int(b.Protocol)
		}
		return int(a.Port) - int(b.Port)
	})
	return out
}

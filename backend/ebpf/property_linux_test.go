//go:build linux

package ebpf

import (
	"testing"

	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/backend/model"
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

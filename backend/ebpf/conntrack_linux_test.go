//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
)

const (
	podA, podB = "ns0/pod0", "ns1/pod1"
)

var (
	a4, b4 = mustAddr("10.77.0.1"), mustAddr("10.77.0.2")
	a6, b6 = mustAddr("fd77::1"), mustAddr("fd77::2")
)

// oneWay is a Ruleset where pod A may open TCP 80, UDP 53, SCTP 9 and
// ping towards B, and B may open nothing towards A.
func oneWay() *compile.Ruleset {
	b := testgen.NewIR()
	b.Endpoint(podA, "calyxa000000001", a4, a6)
	b.Endpoint(podB, "calyxb000000002", b4, b6)
	sa, sb := b.Selected("a", podA), b.Selected("b", podB)
	out := b.Policy(compile.Egress, "default", "a-out",
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Sets: []compile.SetID{sb}, Ports: testgen.Ports(80)}}),
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 17, Dst: compile.PeerMatch{Ports: testgen.Ports(53)}}),
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 132, Dst: compile.PeerMatch{Ports: testgen.Ports(9)}}),
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 1}),
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 58}))
	in := b.Policy(compile.Ingress, "default", "b-in",
		testgen.Rule(compile.ActionAllow, compile.Match{Src: compile.PeerMatch{Sets: []compile.SetID{sa}}}))
	deny := []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny}}
	b.RS.Endpoints[podA].Egress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{out}, EndAction: compile.ActionDeny}}
	b.RS.Endpoints[podA].Ingress.Tiers = deny
	b.RS.Endpoints[podB].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{in}, EndAction: compile.ActionDeny}}
	b.RS.Endpoints[podB].Egress.Tiers = deny
	return b.RS
}

// allDenied is oneWay's endpoints with every direction denying: under it
// a packet passes only by conntrack, and a packet judged afresh is dropped.
func allDenied() *compile.Ruleset {
	rs := oneWay()
	for _, ep := range rs.Endpoints {
		ep.Ingress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny}}
		ep.Egress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny}}
	}
	return rs
}

// TestConntrack: replies, related ICMP errors, TCP states and timeouts,
// driven through the real programs.
func TestConntrack(t *testing.T) {
	h := newHarness(t)
	h.apply(oneWay())
	fwd := model.Packet{Src: a4, Dst: b4, Protocol: 6, SrcPort: 40000, DstPort: 80}
	rev := reverse(fwd)
	steps := []struct {
		// rs, when set, is applied before the step (conntrack stays).
		rs   *compile.Ruleset
		name string
		p    *pkt
		want bool
	}{
		{nil, "reply before any flow is denied", &pkt{Packet: rev, tcpFlags: tcpSYN | tcpACK}, false},
		{nil, "SYN allowed by policy", &pkt{Packet: fwd, tcpFlags: tcpSYN}, true},
		{nil, "SYN-ACK is a reply", &pkt{Packet: rev, tcpFlags: tcpSYN | tcpACK}, true},
		{nil, "ACK", &pkt{Packet: fwd, tcpFlags: tcpACK}, true},
		{nil, "data back", &pkt{Packet: rev, tcpFlags: tcpACK}, true},
		{nil, "a SYN from the responder is no reply", &pkt{Packet: rev, tcpFlags: tcpSYN}, false},
		// From here on policy denies everything: what passes, conntrack
		// passed; what is judged afresh is dropped.
		{allDenied(), "under deny-all, a SYN on the established flow rides on it", &pkt{Packet: fwd, tcpFlags: tcpSYN}, true},
		{nil, "RST from the responder", &pkt{Packet: rev, tcpFlags: tcpRST | tcpACK}, true},
		{nil, "after RST, data back within the close timeout", &pkt{Packet: rev, tcpFlags: tcpACK}, true},
		{nil, "after RST, data on within the close timeout", &pkt{Packet: fwd, tcpFlags: tcpACK}, true},
		{nil, "a new SYN on the reset flow is judged afresh (denied by deny-all)", &pkt{Packet: fwd, tcpFlags: tcpSYN}, false},
		{oneWay(), "a new SYN on the reset flow is judged afresh (allowed by the first policy)", &pkt{Packet: fwd, tcpFlags: tcpSYN}, true},
	}
	for _, s := range steps {
		if s.rs != nil {
			h.apply(s.rs)
		}
		if got := h.verdict(s.p); got != s.want {
			t.Errorf("%s: %s flags %#x: allowed=%v, want %v", s.name, s.p.Packet, s.p.tcpFlags, got, s.want)
		}
	}

	// FINs both ways make the flow closing: it still carries the last
	// ACKs, lives TCPClosing after its last packet (one FIN alone does
	// not shorten its life), and is then forgotten: its packets are
	// judged as new, as the model judges them.
	for _, first := range []string{"originator", "responder"} {
		t.Run("fin both ways, "+first+" first", func(t *testing.T) {
			h.apply(oneWay())
			h.flush()
			closer, other := fwd, rev
			if first == "responder" {
				closer, other = rev, fwd
			}
			for _, p := range []*pkt{{Packet: fwd, tcpFlags: tcpSYN}, {Packet: rev, tcpFlags: tcpSYN | tcpACK}, {Packet: fwd, tcpFlags: tcpACK}} {
				if !h.verdict(p) {
					t.Fatalf("handshake: %s flags %#x denied", p.Packet, p.tcpFlags)
				}
			}
			closing := DefaultTimeouts().TCPClosing
			denied := allDenied()
			h.apply(denied)
			for _, s := range []struct {
				name string
				age  time.Duration
				p    *pkt
				want bool
			}{
				{"first FIN", 0, &pkt{Packet: closer, tcpFlags: tcpFIN | tcpACK}, true},
				{"half-closed: data from the other side", 0, &pkt{Packet: other, tcpFlags: tcpACK}, true},
				{"half-closed: the closing timeout does not apply yet", closing + time.Second, &pkt{Packet: other, tcpFlags: tcpACK}, true},
				{"FIN from the other side", 0, &pkt{Packet: other, tcpFlags: tcpFIN | tcpACK}, true},
				{"closing: the last ACK passes", 0, &pkt{Packet: closer, tcpFlags: tcpACK}, true},
				{"closing: a packet within the closing timeout passes", closing - time.Second, &pkt{Packet: other, tcpFlags: tcpACK}, true},
				{"closing: a new SYN is judged afresh (denied)", 0, &pkt{Packet: fwd, tcpFlags: tcpSYN}, false},
				{"after the closing timeout the closer's ACK is judged (denied)", closing + time.Second, &pkt{Packet: closer, tcpFlags: tcpACK}, false},
				{"after the closing timeout the other's ACK is judged (denied)", 0, &pkt{Packet: other, tcpFlags: tcpACK}, false},
			} {
				h.age(s.age)
				if got := h.verdict(s.p); got != s.want {
					t.Errorf("%s: %s flags %#x: allowed=%v, want %v", s.name, s.p.Packet, s.p.tcpFlags, got, s.want)
				}
			}
			// Forgotten, the flow's packets are judged as new flows: by
			// the first policy the responder's ACK is denied and the
			// originator's allowed (and opens a flow again).
			rs := oneWay()
			h.apply(rs)
			for _, p := range []model.Packet{rev, fwd} {
				if got, want := h.verdict(&pkt{Packet: p, tcpFlags: tcpACK}), h.idx.Allowed(p); got != want {
					t.Errorf("forgotten flow, ACK %s: allowed=%v, model %v", p, got, want)
				}
			}
		})
	}

	t.Run("icmp errors about a tcp flow", func(t *testing.T) {
		h.apply(oneWay())
		for _, c := range []struct {
			name     string
			flow     model.Packet
			icmpErr  model.Packet
			otherTCP model.Packet
		}{
			{"ipv4 fragmentation needed", model.Packet{Src: a4, Dst: b4, Protocol: 6, SrcPort: 40100, DstPort: 80},
				model.Packet{Src: b4, Dst: a4, Protocol: 1, ICMPType: 3, ICMPCode: 4},
				model.Packet{Src: a4, Dst: b4, Protocol: 6, SrcPort: 40101, DstPort: 80}},
			{"ipv6 packet too big", model.Packet{Src: a6, Dst: b6, Protocol: 6, SrcPort: 40100, DstPort: 80},
				model.Packet{Src: b6, Dst: a6, Protocol: 58, ICMPType: 2},
				model.Packet{Src: a6, Dst: b6, Protocol: 6, SrcPort: 40101, DstPort: 80}},
		} {
			t.Run(c.name, func(t *testing.T) {
				h.flush()
				// Policy denies every packet from B to A: an error that
				// passes, passes as related.
				if h.idx.Allowed(c.icmpErr) {
					t.Fatalf("the model allows %s: the test would prove nothing", c.icmpErr)
				}
				if h.verdict(&pkt{Packet: c.icmpErr, inner: &c.flow}) {
					t.Errorf("ICMP error about a TCP flow that was never opened passed")
				}
				if !h.verdict(&pkt{Packet: c.flow, tcpFlags: tcpSYN}) {
					t.Fatalf("SYN denied")
				}
				if !h.verdict(&pkt{Packet: c.icmpErr, inner: &c.flow}) {
					t.Errorf("ICMP error about the open TCP flow denied")
				}
				if h.verdict(&pkt{Packet: c.icmpErr, inner: &c.otherTCP}) {
					t.Errorf("ICMP error about another TCP port passed")
				}
			})
		}
	})

	t.Run("udp reply and related ICMP error", func(t *testing.T) {
		h.flush()
		u := model.Packet{Src: a6, Dst: b6, Protocol: 17, SrcPort: 41000, DstPort: 53}
		icmpErr := model.Packet{Src: b6, Dst: a6, Protocol: 58, ICMPType: 1, ICMPCode: 4}
		unrelated := model.Packet{Src: a6, Dst: b6, Protocol: 17, SrcPort: 41001, DstPort: 53}
		if h.verdict(&pkt{Packet: icmpErr, inner: &u}) {
			t.Errorf("ICMPv6 error about no flow passed")
		}
		for _, c := range []struct {
			name string
			p    *pkt
			want bool
		}{
			{"request", &pkt{Packet: u}, true},
			{"reply", &pkt{Packet: reverse(u)}, true},
			{"ICMP error about the flow", &pkt{Packet: icmpErr, inner: &u}, true},
			{"ICMP error about another flow", &pkt{Packet: icmpErr, inner: &model.Packet{Src: b6, Dst: a6, Protocol: 17, SrcPort: 9, DstPort: 9}}, false},
			{"reply to a port with no flow", &pkt{Packet: reverse(unrelated)}, false},
		} {
			if got := h.verdict(c.p); got != c.want {
				t.Errorf("%s: allowed=%v, want %v", c.name, got, c.want)
			}
		}
	})

	t.Run("icmp echo", func(t *testing.T) {
		h.flush()
		req := model.Packet{Src: a4, Dst: b4, Protocol: 1, ICMPType: 8, SrcPort: 77}
		rep := model.Packet{Src: b4, Dst: a4, Protocol: 1, ICMPType: 0, SrcPort: 77}
		reqBack := model.Packet{Src: b4, Dst: a4, Protocol: 1, ICMPType: 8, SrcPort: 77}
		if h.verdict(&pkt{Packet: rep}) {
			t.Errorf("echo reply without request passed")
		}
		if !h.verdict(&pkt{Packet: req}) || !h.verdict(&pkt{Packet: rep}) {
			t.Errorf("echo request/reply denied")
		}
		if h.verdict(&pkt{Packet: reqBack}) {
			t.Errorf("an echo request from B rode on A's echo flow")
		}
	})

	t.Run("timeouts", func(t *testing.T) {
		for _, c := range []struct {
			name    string
			first   *pkt
			second  *pkt
			age     time.Duration
			allowed bool
		}{
			{"udp reply within timeout", &pkt{Packet: model.Packet{Src: a4, Dst: b4, Protocol: 17, SrcPort: 42000, DstPort: 53}},
				&pkt{Packet: model.Packet{Src: b4, Dst: a4, Protocol: 17, SrcPort: 53, DstPort: 42000}}, DefaultTimeouts().UDP - time.Second, true},
			{"udp reply after timeout", &pkt{Packet: model.Packet{Src: a4, Dst: b4, Protocol: 17, SrcPort: 42000, DstPort: 53}},
				&pkt{Packet: model.Packet{Src: b4, Dst: a4, Protocol: 17, SrcPort: 53, DstPort: 42000}}, DefaultTimeouts().UDP + time.Second, false},
			{"syn-ack within syn timeout", &pkt{Packet: fwd, tcpFlags: tcpSYN}, &pkt{Packet: rev, tcpFlags: tcpSYN | tcpACK}, DefaultTimeouts().TCPSynSent - time.Second, true},
			{"syn-ack after syn timeout", &pkt{Packet: fwd, tcpFlags: tcpSYN}, &pkt{Packet: rev, tcpFlags: tcpSYN | tcpACK}, DefaultTimeouts().TCPSynSent + time.Second, false},
			{"echo reply after icmp timeout", &pkt{Packet: model.Packet{Src: a4, Dst: b4, Protocol: 1, ICMPType: 8, SrcPort: 5}},
				&pkt{Packet: model.Packet{Src: b4, Dst: a4, Protocol: 1, ICMPType: 0, SrcPort: 5}}, DefaultTimeouts().ICMP + time.Second, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				h.flush()
				if !h.verdict(c.first) {
					t.Fatalf("first packet denied")
				}
				h.age(c.age)
				if got := h.verdict(c.second); got != c.allowed {
					t.Errorf("after %s: allowed=%v, want %v", c.age, got, c.allowed)
				}
			})
		}
		t.Run("established flow stays open an hour", func(t *testing.T) {
			h.flush()
			h.verdict(&pkt{Packet: fwd, tcpFlags: tcpSYN})
			h.verdict(&pkt{Packet: rev, tcpFlags: tcpSYN | tcpACK})
			h.age(DefaultTimeouts().TCPEstablished - time.Minute)
			if !h.verdict(&pkt{Packet: rev, tcpFlags: tcpACK}) {
				t.Errorf("established flow closed early")
			}
			h.age(DefaultTimeouts().TCPEstablished + time.Minute)
			if h.verdict(&pkt{Packet: rev, tcpFlags: tcpACK}) {
				t.Errorf("established flow outlived its timeout")
			}
		})
	})
}

// age makes every conntrack entry older by d.
func (h *harness) age(d time.Duration) {
	h.tb.Helper()
	m := h.objs.maps[refCT]
	var k [ctKeySize]byte
	var v [ctValSize]byte
	var keys [][ctKeySize]byte
	var vals [][ctValSize]byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	for i := range keys {
		ts := uint64(vals[i][0]) | uint64(vals[i][1])<<8 | uint64(vals[i][2])<<16 | uint64(vals[i][3])<<24 |
			uint64(vals[i][4])<<32 | uint64(vals[i][5])<<40 | uint64(vals[i][6])<<48 | uint64(vals[i][7])<<56
		ts -= uint64(d)
		for j := range 8 {
			vals[i][j] = byte(ts >> (8 * j))
		}
		if err := m.Put(keys[i], vals[i]); err != nil {
			h.tb.Fatalf("age: %v", err)
		}
	}
}

// TestPolicyChangeMidConnection: an established flow survives a policy
// change that denies it (as with the kernel conntrack of the nftables and
// iptables dataplanes); a new flow is judged by the new policy.
func TestPolicyChangeMidConnection(t *testing.T) {
	h := newHarness(t)
	rs := oneWay()
	h.apply(rs)
	fwd := model.Packet{Src: a4, Dst: b4, Protocol: 6, SrcPort: 40000, DstPort: 80}
	if !h.verdict(&pkt{Packet: fwd, tcpFlags: tcpSYN}) || !h.verdict(&pkt{Packet: reverse(fwd), tcpFlags: tcpSYN | tcpACK}) {
		t.Fatalf("handshake denied")
	}
	// B now admits nobody.
	rs.Endpoints[podB].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny}}
	h.apply(rs)
	if !h.verdict(&pkt{Packet: fwd, tcpFlags: tcpACK}) || !h.verdict(&pkt{Packet: reverse(fwd), tcpFlags: tcpACK}) {
		t.Errorf("established flow cut by the policy change")
	}
	other := fwd
	other.SrcPort = 40001
	if h.verdict(&pkt{Packet: other, tcpFlags: tcpSYN}) {
		t.Errorf("a new flow passed the new deny")
	}
}

// TestFragmentsAndHeaders: fragments, IPv6 extension headers, SCTP,
// neighbour discovery and non-IP traffic.
func TestFragmentsAndHeaders(t *testing.T) {
	h := newHarness(t)
	h.apply(oneWay())
	udp4 := model.Packet{Src: a4, Dst: b4, Protocol: 17, SrcPort: 43000, DstPort: 53}
	udp6 := model.Packet{Src: a6, Dst: b6, Protocol: 17, SrcPort: 43000, DstPort: 53}
	bad4 := model.Packet{Src: a4, Dst: b4, Protocol: 17, SrcPort: 43000, DstPort: 54}
	bad6 := model.Packet{Src: a6, Dst: b6, Protocol: 17, SrcPort: 43000, DstPort: 54}
	for _, c := range []struct {
		name string
		seq  []*pkt
		want []bool
	}{
		{"ipv4 later fragment of an allowed datagram", []*pkt{{Packet: udp4, fragment: 1, fragID: 7}, {Packet: udp4, fragment: 2, fragID: 7}}, []bool{true, true}},
		{"ipv4 first fragment judged on its ports", []*pkt{{Packet: bad4, fragment: 1, fragID: 8}, {Packet: bad4, fragment: 2, fragID: 8}}, []bool{false, false}},
		{"ipv4 later fragment alone", []*pkt{{Packet: udp4, fragment: 2, fragID: 9}}, []bool{false}},
		{"ipv4 later fragment of another datagram", []*pkt{{Packet: udp4, fragment: 1, fragID: 10}, {Packet: udp4, fragment: 2, fragID: 11}}, []bool{true, false}},
		{"ipv6 fragments behind extension headers", []*pkt{{Packet: udp6, fragment: 1, fragID: 12, ext: true}, {Packet: udp6, fragment: 2, fragID: 12, ext: true}}, []bool{true, true}},
		{"ipv6 first fragment judged on its ports", []*pkt{{Packet: bad6, fragment: 1, fragID: 13}, {Packet: bad6, fragment: 2, fragID: 13}}, []bool{false, false}},
		{"ipv6 extension headers are skipped", []*pkt{{Packet: udp6, ext: true}}, []bool{true}},
		{"sctp by port", []*pkt{{Packet: model.Packet{Src: a4, Dst: b4, Protocol: 132, SrcPort: 5000, DstPort: 9}}}, []bool{true}},
		{"sctp other port", []*pkt{{Packet: model.Packet{Src: a4, Dst: b4, Protocol: 132, SrcPort: 5000, DstPort: 10}}}, []bool{false}},
		{"neighbour solicitation from B passes", []*pkt{{Packet: model.Packet{Src: b6, Dst: a6, Protocol: 58, ICMPType: 135}, hopLimit: 255}}, []bool{true}},
		{"a forged one with a lower hop limit is judged", []*pkt{{Packet: model.Packet{Src: b6, Dst: a6, Protocol: 58, ICMPType: 135}}}, []bool{false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h.flush()
			for i, p := range c.seq {
				if got := h.verdict(p); got != c.want[i] {
					t.Errorf("packet %d (%s frag %d): allowed=%v, want %v", i, p.Packet, p.fragment, got, c.want[i])
				}
			}
		})
	}
	t.Run("arp passes, other ethertypes drop", func(t *testing.T) {
		prog := h.progs[h.plan.attach[attachKey{"calyxa000000001", hookIngress}]].entry
		for _, c := range []struct {
			ethertype uint16
			want      bool
		}{{0x0806, true}, {0x88cc, false}, {0x8100, false}} {
			f := make([]byte, 60)
			f[12], f[13] = byte(c.ethertype>>8), byte(c.ethertype)
			ret, err := prog.Run(&ebpf.RunOptions{Data: f})
			if err != nil {
				t.Fatal(err)
			}
			if got := int32(ret) != tcxDrop; got != c.want {
				t.Errorf("ethertype %#04x: allowed=%v, want %v", c.ethertype, got, c.want)
			}
		}
	})
}

// TestLogEvents: a Log rule writes a ring buffer event naming its policy
// and rule, and the packet goes on to the next rule.
func TestLogEvents(t *testing.T) {
	h := newHarness(t)
	b := testgen.NewIR()
	b.Endpoint(podA, "calyxa000000001", a4)
	b.Endpoint(podB, "calyxb000000002", b4)
	pol := b.Policy(compile.Ingress, "security", "audit",
		testgen.Rule(compile.ActionLog, compile.Match{Protocol: 6}),
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}))
	b.RS.Endpoints[podB].Ingress.Tiers = []compile.TierPolicies{{Tier: "security", Policies: []compile.PolicyID{pol}, EndAction: compile.ActionDeny}}
	b.RS.Endpoints[podA].Egress.Profiles = []compile.PolicyID{b.AllowAllProfile()}
	h.apply(b.RS)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	events := make(chan Event, 4)
	done := make(chan error, 1)
	go func() {
		done <- readEvents(ctx, h.objs.maps[refEvents], h.resolver, func(e Event) {
			if e.Action == compile.ActionLog {
				events <- e
				cancel()
			}
		})
	}()
	p := model.Packet{Src: a4, Dst: b4, Protocol: 6, SrcPort: 45000, DstPort: 80}
	if !h.verdict(&pkt{Packet: p, tcpFlags: tcpSYN}) {
		t.Fatalf("logged packet not allowed by the next rule")
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("read events: %v", err)
	}
	select {
	case e := <-events:
		if e.Rule.Policy != "audit" || e.Rule.Index != 0 || e.Rule.Tier != "security" {
			t.Errorf("event names %+v, want policy audit rule 0", e.Rule)
		}
		if e.Src.Addr() != a4 || e.Dst.Port() != 80 || e.Protocol != 6 || e.Egress {
			t.Errorf("event packet %s", e)
		}
	default:
		t.Fatalf("no event")
	}
}

// bigPolicy builds an endpoint whose ingress has n rules of one shape:
// "cidr+port" (Allow, a CIDR and a port each: one LPM lookup), "ports"
// (alternating Allow and Deny on distinct UDP ports, no addresses: one
// dispatch lookup), "distinct" (the same with a source port range, which
// nothing merges: checked one after the other across tail calls).
func bigPolicy(n int, shape string) (*compile.Ruleset, model.Packet) {
	b := testgen.NewIR()
	b.Endpoint(podA, "calyxa000000001", a4)
	b.Endpoint(podB, "calyxb000000002", b4)
	var rules []compile.Rule
	for i := range n {
		if shape == "cidr+port" {
			set := b.Nets(fmt.Sprintf("10.%d.%d.0/24", 100+i/256/256, i/256%256))
			rules = append(rules, testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6,
				Src: compile.PeerMatch{Sets: []compile.SetID{set}}, Dst: compile.PeerMatch{Ports: testgen.Ports(uint16(1000 + i%50000))}}))
			continue
		}
		a := compile.ActionDeny
		if i%2 == 1 {
			a = compile.ActionAllow
		}
		m := compile.Match{Protocol: 17, Dst: compile.PeerMatch{Ports: testgen.Ports(uint16(1000 + i%60000))}}
		if shape == "distinct" {
			m.Src.Ports = []compile.PortRange{{Min: 1024, Max: 65535}}
		}
		rules = append(rules, testgen.Rule(a, m))
	}
	last := b.Nets("10.77.0.1/32")
	rules = append(rules, testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6,
		Src: compile.PeerMatch{Sets: []compile.SetID{last}}, Dst: compile.PeerMatch{Ports: testgen.Ports(443)}}))
	pol := b.Policy(compile.Ingress, "default", "huge", rules...)
	b.RS.Endpoints[podB].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{pol}, EndAction: compile.ActionDeny}}
	b.RS.Endpoints[podA].Egress.Profiles = []compile.PolicyID{b.AllowAllProfile()}
	return b.RS, model.Packet{Src: a4, Dst: b4, Protocol: 6, SrcPort: 46000, DstPort: 443}
}

// TestFiftyThousandRules: an endpoint with 50,000 rules loads, in every
// shape, and the last rule still decides.
func TestFiftyThousandRules(t *testing.T) {
	for _, shape := range []string{"cidr+port", "ports", "distinct"} {
		t.Run(shape, func(t *testing.T) {
			h := newHarness(t)
			rs, last := bigPolicy(50000, shape)
			start := time.Now()
			h.apply(rs)
			ps := h.plan.progs[h.plan.attach[attachKey{"calyxb000000002", hookEgress}]]
			n := 0
			for _, c := range ps.chunks {
				n += len(c)
			}
			t.Logf("50,000 rules: %d chunks, %d instructions, %d lookups, loaded in %s", len(ps.chunks), n, len(ps.runs), time.Since(start))
			if shape != "distinct" && len(ps.runs) != 1 {
				t.Errorf("the rules became %d lookups, want 1", len(ps.runs))
			}
			if shape == "distinct" && len(ps.chunks) < 2 {
				t.Errorf("expected tail calls, got %d chunk", len(ps.chunks))
			}
			for _, p := range []model.Packet{
				last,
				{Src: a4, Dst: b4, Protocol: 6, SrcPort: 46000, DstPort: 444},
				{Src: a4, Dst: b4, Protocol: 17, SrcPort: 46000, DstPort: 1000},
				{Src: a4, Dst: b4, Protocol: 17, SrcPort: 46000, DstPort: 1001},
				{Src: a4, Dst: b4, Protocol: 17, SrcPort: 46000, DstPort: 1000 + 49999},
				{Src: a4, Dst: b4, Protocol: 17, SrcPort: 80, DstPort: 1001},
			} {
				h.flush()
				if got, want := h.verdict(&pkt{Packet: p, tcpFlags: tcpSYN}), h.idx.Allowed(p); got != want {
					t.Errorf("%s: allowed=%v, want %v", p, got, want)
				}
			}
		})
	}
}

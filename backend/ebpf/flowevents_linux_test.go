//go:build linux

package ebpf

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/testgen"
)

// eventReader reads a harness's ring buffer synchronously.
type eventReader struct {
	tb testing.TB
	rd *ringbuf.Reader
	h  *harness
}

func newEventReader(tb testing.TB, h *harness) *eventReader {
	rd, err := ringbuf.NewReader(h.objs.maps[refEvents])
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = rd.Close() })
	return &eventReader{tb: tb, rd: rd, h: h}
}

// drain returns every event written so far.
func (r *eventReader) drain() []Event {
	r.tb.Helper()
	var out []Event
	for {
		r.rd.SetDeadline(time.Now().Add(5 * time.Millisecond))
		rec, err := r.rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			r.tb.Fatalf("read events: %v", err)
		}
		e, err := decodeEvent(rec.RawSample, r.h.resolver())
		if err != nil {
			r.tb.Fatal(err)
		}
		out = append(out, e)
	}
}

// TestFlowEvents: the real programs (BPF_PROG_TEST_RUN) report the
// verdict on a new flow and on each denied packet, naming what decided:
// a rule (policy, tier, index), a rule of a merged run or of a dispatch
// (resolved to the first rule that matches, as the model says), the end
// of a tier, the end of the profiles, a forged source, the deny-all
// program; with the packet's addresses, ports, protocol, interface and
// direction. Packets of a known flow, both ways, report nothing.
func TestFlowEvents(t *testing.T) {
	h := newHarness(t)
	if !h.events {
		t.Fatal("flow events are off by default in the harness; this test expects the default on")
	}
	b := testgen.NewIR()
	b.Endpoint(podA, "calyxa000000001", a4, a6)
	b.Endpoint(podB, "calyxb000000002", b4, b6)
	far := b.Nets("10.9.0.0/16")
	sa := b.Selected("a", podA)
	guard := b.Policy(compile.Ingress, "security", "guard",
		testgen.Rule(compile.ActionDeny, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(23)}, Src: compile.PeerMatch{Ports: []compile.PortRange{{Min: 1, Max: 65535}}}}),
		testgen.Rule(compile.ActionPass, compile.Match{}))
	web := b.Policy(compile.Ingress, "default", "web",
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{sa}, Ports: []compile.PortRange{{Min: 1, Max: 65535}}}, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}),
		// A run: two CIDR+port rules, one LPM lookup.
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{far}}, Dst: compile.PeerMatch{Ports: testgen.Ports(443)}}),
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{sa}}, Dst: compile.PeerMatch{Ports: testgen.Ports(443)}}))
	dns := b.Policy(compile.Ingress, "default", "dns",
		// A dispatch: rules without addresses of both actions.
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 17, Dst: compile.PeerMatch{Ports: testgen.Ports(53)}}),
		testgen.Rule(compile.ActionDeny, compile.Match{Protocol: 17, Dst: compile.PeerMatch{Ports: testgen.Ports(54)}}))
	b.RS.Endpoints[podB].Ingress.Tiers = []compile.TierPolicies{
		{Tier: "security", Policies: []compile.PolicyID{guard}, EndAction: compile.ActionDeny},
		{Tier: "default", Policies: []compile.PolicyID{web, dns}, EndAction: compile.ActionDeny},
	}
	b.RS.Endpoints[podA].Egress.Profiles = []compile.PolicyID{b.AllowAllProfile()}
	onlySSH := b.Policy(compile.Ingress, "", "profile:ssh", testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(22)}}))
	b.RS.Endpoints[podA].Ingress.Profiles = []compile.PolicyID{onlySSH}
	h.apply(b.RS)
	rd := newEventReader(t, h)
	epA, epB := b.RS.Endpoints[podA], b.RS.Endpoints[podB]

	type want struct {
		action compile.Action
		reason Reason
		policy string
		tier   string
		index  int
	}
	check := func(name string, ep *compile.Endpoint, hk hook, p *pkt, allowed bool, w *want) {
		t.Helper()
		if got := h.run(ep, hk, p); got != allowed {
			t.Fatalf("%s: allowed=%v, want %v", name, got, allowed)
		}
		evs := rd.drain()
		if w == nil {
			if len(evs) != 0 {
				t.Errorf("%s: %d events, want none: %v", name, len(evs), evs)
			}
			return
		}
		if len(evs) != 1 {
			t.Fatalf("%s: %d events, want 1: %v", name, len(evs), evs)
		}
		e := evs[0]
		if e.Action != w.action || e.Reason != w.reason || e.Rule.Policy != w.policy || e.Rule.Tier != w.tier || e.Rule.Index != w.index {
			t.Errorf("%s: event %s (%+v), want %v %v policy %q tier %q rule %d", name, e, e.Rule, w.action, w.reason, w.policy, w.tier, w.index)
		}
		if w.reason == ReasonFailClosed {
			return
		}
		if e.Src != netip.AddrPortFrom(p.Src, p.SrcPort) || e.Dst != netip.AddrPortFrom(p.Dst, p.DstPort) || e.Protocol != p.Protocol {
			t.Errorf("%s: event packet %s -> %s proto %d, want %s", name, e.Src, e.Dst, e.Protocol, p.Packet)
		}
		if e.Egress != (hk == hookIngress) || e.Ifindex != 1 {
			t.Errorf("%s: event egress=%v ifindex %d", name, e.Egress, e.Ifindex)
		}
	}
	tcp := func(src, dst netip.Addr, sport, dport uint16, flags uint8) *pkt {
		return &pkt{Packet: model.Packet{Src: src, Dst: dst, Protocol: 6, SrcPort: sport, DstPort: dport}, tcpFlags: flags}
	}
	udp := func(src, dst netip.Addr, dport uint16) *pkt {
		return &pkt{Packet: model.Packet{Src: src, Dst: dst, Protocol: 17, SrcPort: 40000, DstPort: dport}}
	}

	// A new flow A -> B:80: allowed on A's egress by its profile, on B's
	// ingress by web rule 0; then the flow is known and silent both ways.
	syn := tcp(a4, b4, 41000, 80, tcpSYN)
	check("new flow, A's egress", epA, hookIngress, syn, true, &want{compile.ActionAllow, ReasonRule, "profile:allow-all", "", 0})
	check("new flow, B's ingress", epB, hookEgress, syn, true, &want{compile.ActionAllow, ReasonRule, "web", "default", 0})
	check("established, A's egress", epA, hookIngress, tcp(a4, b4, 41000, 80, tcpACK), true, nil)
	check("established, B's ingress", epB, hookEgress, tcp(a4, b4, 41000, 80, tcpACK), true, nil)
	check("reply, B's egress side", epB, hookIngress, tcp(b4, a4, 80, 41000, tcpSYN|tcpACK), true, nil)
	check("reply, A's ingress side", epA, hookEgress, tcp(b4, a4, 80, 41000, tcpSYN|tcpACK), true, nil)

	// Denied by a rule of the first tier; every denied packet reports.
	for range 2 {
		check("deny rule", epB, hookEgress, tcp(a4, b4, 41001, 23, tcpSYN), false, &want{compile.ActionDeny, ReasonRule, "guard", "security", 0})
	}
	// Passed to the default tier, matched by nothing: its end denies.
	check("end of tier", epB, hookEgress, tcp(a4, b4, 41002, 8080, tcpSYN), false, &want{compile.ActionDeny, ReasonTierEnd, "", "default", -1})
	// The run's lookup: the first rule whose set holds the source is 2.
	check("merged run", epB, hookEgress, tcp(a4, b4, 41003, 443, tcpSYN), true, &want{compile.ActionAllow, ReasonRule, "web", "default", 2})
	check("merged run, far", epB, hookEgress, tcp(mustAddr("10.9.3.4"), b4, 41003, 443, tcpSYN), true, &want{compile.ActionAllow, ReasonRule, "web", "default", 1})
	check("dispatch allow", epB, hookEgress, udp(a4, b4, 53), true, &want{compile.ActionAllow, ReasonRule, "dns", "default", 0})
	check("dispatch deny", epB, hookEgress, udp(a4, b4, 54), false, &want{compile.ActionDeny, ReasonRule, "dns", "default", 1})
	// A's ingress has only a profile for SSH: UDP falls off its end.
	check("end of profiles", epA, hookEgress, udp(b4, a4, 9), false, &want{compile.ActionDeny, ReasonProfilesEnd, "", "", -1})
	check("profile allow", epA, hookEgress, tcp(b6, a6, 41004, 22, tcpSYN), true, &want{compile.ActionAllow, ReasonRule, "profile:ssh", "", 0})
	// A sends from an address that is not its own.
	check("forged source", epA, hookIngress, tcp(mustAddr("10.77.0.99"), b4, 41005, 80, tcpSYN), false, &want{compile.ActionDeny, ReasonForgedSource, "", "", 0})

	// The deny-all program of an unknown workload interface.
	deny, err := h.objs.loadDenyAll(hookIngress, true)
	if err != nil {
		t.Fatal(err)
	}
	defer deny.Close()
	if ret, err := deny.Run(&ebpf.RunOptions{Data: frame(syn)}); err != nil || int32(ret) != tcxDrop {
		t.Fatalf("deny-all: %d, %v", ret, err)
	}
	evs := rd.drain()
	if len(evs) != 1 || evs[0].Reason != ReasonFailClosed || evs[0].Action != compile.ActionDeny || evs[0].Ifindex != 1 || !evs[0].Egress {
		t.Errorf("deny-all events: %v", evs)
	}
	if n, err := lostEvents(h.objs); err != nil || n != 0 {
		t.Errorf("lost events: %d, %v", n, err)
	}
}

// TestFlowEventsLost: with nobody reading, a full ring buffer drops
// events and counts them; verdicts do not change.
func TestFlowEventsLost(t *testing.T) {
	h := newHarness(t)
	b := testgen.NewIR()
	b.Endpoint(podA, "calyxa000000001", a4)
	b.Endpoint(podB, "calyxb000000002", b4)
	b.RS.Endpoints[podB].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny}}
	h.apply(b.RS)
	prog := h.progs[h.plan.attach[attachKey{"calyxb000000002", hookEgress}]].entry
	p := &pkt{Packet: model.Packet{Src: a4, Dst: b4, Protocol: 17, SrcPort: 40000, DstPort: 53}}
	// 256 KiB of 64-byte records (and 8-byte headers): about 3,640 fit.
	const runs = 5000
	ret, _, err := prog.Benchmark(frame(p), runs, nil)
	if err != nil || int32(ret) != tcxDrop {
		t.Fatalf("run: %d, %v", ret, err)
	}
	lost, err := lostEvents(h.objs)
	if err != nil {
		t.Fatal(err)
	}
	if lost == 0 || lost >= runs {
		t.Fatalf("%d of %d events lost; want some, not all", lost, runs)
	}
	rd := newEventReader(t, h)
	if got := len(rd.drain()); uint64(got)+lost != runs {
		t.Errorf("%d events read + %d lost, want %d", got, lost, runs)
	}
}

// TestReadEventsInLab: real traffic between two lab pods, read through
// Backend.ReadEvents. A TCP connection that policy allows reports one
// Allow per program it meets (its SYN: the pod's egress program and the
// peer's ingress program), naming the rule, with the pods' addresses,
// ports and interfaces; the rest of the connection, both ways, reports
// nothing. A denied connection attempt reports Deny by the end of the
// tier.
func TestReadEventsInLab(t *testing.T) {
	r := newRig(t, smallSpec())
	ctx := context.Background()
	spec := r.lab.Spec()
	p0, p1 := spec.Pods[0], spec.Pods[1]
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	web := b.Policy(compile.Ingress, "default", "web",
		testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}))
	b.RS.Endpoints[p1.Key()].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{web}, EndAction: compile.ActionDeny}}
	if err := r.b.Apply(ctx, b.RS); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var events []Event
	done := make(chan error, 1)
	go func() {
		done <- r.b.ReadEvents(rctx, func(e Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		})
	}()
	probes := []lab.Probe{
		{From: p0.Key(), To: p1.Key(), Src: p0.IPs[0], Dst: p1.IPs[0], Protocol: 6, SrcPort: 41000, DstPort: 80},
		{From: p0.Key(), To: p1.Key(), Src: p0.IPs[0], Dst: p1.IPs[0], Protocol: 6, SrcPort: 41001, DstPort: 443},
	}
	m, err := r.lab.Run(ctx, probes)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Allowed[0] || m.Allowed[1] {
		t.Fatalf("verdicts %v, want allowed then denied", m.Allowed)
	}
	time.Sleep(300 * time.Millisecond) // the reader polls every 100 ms
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadEvents: %v", err)
	}
	idx0, idx1 := r.ifindex(t, p0.Interface()), r.ifindex(t, p1.Interface())
	src80, dst80 := netip.AddrPortFrom(p0.IPs[0], 41000), netip.AddrPortFrom(p1.IPs[0], 80)
	src443, dst443 := netip.AddrPortFrom(p0.IPs[0], 41001), netip.AddrPortFrom(p1.IPs[0], 443)
	var allow0, allow1, deny int
	mu.Lock()
	defer mu.Unlock()
	for _, e := range events {
		switch {
		case e.Src == src80 && e.Dst == dst80 && e.Action == compile.ActionAllow && e.Ifindex == idx0 && e.Egress:
			allow0++
		case e.Src == src80 && e.Dst == dst80 && e.Action == compile.ActionAllow && e.Ifindex == idx1 && !e.Egress:
			allow1++
			if e.Reason != ReasonRule || e.Rule.Policy != "web" || e.Rule.Tier != "default" || e.Rule.Index != 0 {
				t.Errorf("allow event names %s %+v", e.Reason, e.Rule)
			}
		case e.Src == src443 && e.Dst == dst443 && e.Action == compile.ActionDeny && e.Ifindex == idx1:
			deny++
			if e.Reason != ReasonTierEnd || e.Rule.Tier != "default" {
				t.Errorf("deny event names %s %+v", e.Reason, e.Rule)
			}
		case e.Src == src443 && e.Dst == dst443 && e.Action == compile.ActionAllow && e.Ifindex == idx0:
			// pod0's egress allowed the attempt: fine.
		default:
			if e.Src.Port() == 41000 || e.Dst.Port() == 41000 || e.Src.Port() == 41001 || e.Dst.Port() == 41001 {
				t.Errorf("unexpected event %s", e)
			}
		}
	}
	if allow0 != 1 || allow1 != 1 || deny < 1 {
		t.Errorf("events: %d Allow on pod0's egress, %d on pod1's ingress, %d Deny; want 1, 1, at least 1 (all: %v)", allow0, allow1, deny, events)
	}
	if n, err := r.b.LostEvents(); err != nil || n != 0 {
		t.Errorf("lost events: %d, %v", n, err)
	}
}

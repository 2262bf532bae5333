//go:build linux

package ebpf

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"runtime/pprof"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// BenchmarkProgramRun: what one packet costs in the program, measured
// with BPF_PROG_TEST_RUN, for an ingress policy of n rules. The packet
// (UDP to a port no rule names) matches no rule and is denied at the end:
// the worst case, and no conntrack entry is made, so every run walks the
// whole policy.
// Shapes as bigPolicy builds them: "distinct" rules are checked one after
// the other across tail calls; "ports" (Allow and Deny on distinct ports)
// is one dispatch lookup; "cidr+port" (Allow, a CIDR and a port each) one
// LPM lookup. "established" is a packet of a flow conntrack already knows.
//
//	go test -run '^$' -bench ProgramRun -benchtime 20000x ./backend/ebpf
func BenchmarkProgramRun(b *testing.B) {
	for _, n := range []int{10, 1000, 50000} {
		for _, shape := range []string{"distinct", "ports", "cidr+port"} {
			b.Run(fmt.Sprintf("rules=%d/%s", n, shape), func(b *testing.B) {
				h := newHarness(b)
				rs, _ := bigPolicy(n, shape)
				h.apply(rs)
				prog := h.progs[h.plan.attach[attachKey{"calyxb000000002", hookEgress}]].entry
				// UDP to a port no rule names: every "distinct" rule
				// checks it all the way (same protocol, other port).
				p := &pkt{Packet: model.Packet{Src: a4, Dst: b4, Protocol: 17, SrcPort: 46000, DstPort: 444}}
				runBench(b, prog, frame(p), false)
			})
		}
	}
	b.Run("established", func(b *testing.B) {
		h := newHarness(b)
		rs, last := bigPolicy(1000, "distinct")
		h.apply(rs)
		prog := h.progs[h.plan.attach[attachKey{"calyxb000000002", hookEgress}]].entry
		p := &pkt{Packet: last, tcpFlags: tcpSYN}
		if !h.verdict(p) {
			b.Fatal("flow denied")
		}
		p.tcpFlags = tcpACK
		runBench(b, prog, frame(p), true)
	})
}

func runBench(b *testing.B, prog *ebpf.Program, data []byte, wantAllowed bool) {
	b.Helper()
	b.ResetTimer()
	ret, d, err := prog.Benchmark(data, b.N, b.ResetTimer)
	if err != nil {
		b.Fatal(err)
	}
	if got := int32(ret) != tcxDrop; got != wantAllowed {
		b.Fatalf("verdict allowed=%v, want %v", got, wantAllowed)
	}
	b.ReportMetric(float64(d.Nanoseconds()), "ns/packet")
}

// clusterRuleset: pods endpoints in 11 groups, policies spread over the
// groups, each allowing TCP from one of 50 selector sets on one port and
// from a literal /24 (the shape of the bench harness).
func clusterRuleset(pods, policies int) *compile.Ruleset {
	const groups, selectors = 11, 50
	rs := &compile.Ruleset{Sets: map[compile.SetID]*compile.IPSet{}, Policies: map[compile.PolicyID]*compile.Policy{}, Endpoints: map[string]*compile.Endpoint{}}
	allow := compile.PolicyID("profile:kns")
	rs.Policies[allow] = &compile.Policy{ID: allow, Name: "profile:kns", Rules: []compile.Rule{{Action: compile.ActionAllow}}}
	byGroup := make([][]compile.PolicyID, groups)
	for i := range policies {
		g := i % groups
		sel := compile.SetID(fmt.Sprintf("sel:%d", i%selectors))
		lit := compile.SetID(fmt.Sprintf("nets:10.%d.%d.0/24", 100+i/250, i%250))
		rs.Sets[lit] = &compile.IPSet{ID: lit, Kind: compile.SetNets, Literal: true,
			Nets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/250), byte(i % 250), 0}), 24)}}
		id := compile.PolicyID(fmt.Sprintf("in:g%d/p%d", g, i))
		port := uint16(1000 + i%1000)
		rs.Policies[id] = &compile.Policy{ID: id, Direction: compile.Ingress, Tier: "default", Name: string(id), Rules: []compile.Rule{
			{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{sel}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: port, Max: port}}}}},
			{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{lit}}}},
		}}
		byGroup[g] = append(byGroup[g], id)
	}
	for s := range selectors {
		id := compile.SetID(fmt.Sprintf("sel:%d", s))
		rs.Sets[id] = &compile.IPSet{ID: id, Kind: compile.SetNets}
	}
	for p := range pods {
		addBenchPod(rs, p, byGroup[p%groups])
	}
	return rs
}

func benchPodKey(p int) string { return fmt.Sprintf("ns%d/pod%d", p%11, p) }

func addBenchPod(rs *compile.Ruleset, p int, pols []compile.PolicyID) {
	key := benchPodKey(p)
	ep := &compile.Endpoint{Key: key, Kind: compile.WorkloadEndpoint, Interface: compile.WorkloadInterface(fmt.Sprintf("ns%d", p%11), fmt.Sprintf("pod%d", p)),
		Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 65, byte(p / 250), byte(1 + p%250)})}}
	if len(pols) > 0 {
		ep.Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: pols, EndAction: compile.ActionDeny}}
	}
	ep.Ingress.Profiles = []compile.PolicyID{"profile:kns"}
	ep.Egress.Profiles = []compile.PolicyID{"profile:kns"}
	rs.Endpoints[key] = ep
	sel := rs.Sets[compile.SetID(fmt.Sprintf("sel:%d", p%50))]
	s := *sel
	s.Nets = append(append([]netip.Prefix(nil), sel.Nets...), netip.PrefixFrom(ep.Addrs[0], 32))
	rs.Sets[s.ID] = &s
}

// BenchmarkApplyNewPod: one pod more on a node of 110 pods and 10,000
// policies, its veth created beforehand (outside the timer), enforced when
// Apply returns: the program is shared with its group, so the cost is one
// selector-set entry and two TCX links.
//
//	go test -run '^$' -bench ApplyNewPod -benchtime 20x ./backend/ebpf
func BenchmarkApplyNewPod(b *testing.B) {
	ns := netnstest.New(b, "cxebpfb-")
	ctx := context.Background()
	h, err := netlink.NewHandleAt(nlns.NsHandle(ns.Fd()))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	veth := func(name string) {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "p" + name[5:]}); err != nil {
			b.Fatal(err)
		}
		l, _ := h.LinkByName(name)
		_ = h.LinkSetUp(l)
	}
	rs := clusterRuleset(110, 10000)
	for _, ep := range rs.Endpoints {
		veth(ep.Interface)
	}
	be, err := New(ctx, backend.Options{NetNS: ns.Path(), Name: "bench-" + ns.Name()})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close(ctx)
	if err := be.Apply(ctx, rs); err != nil {
		b.Fatal(err)
	}
	if f := os.Getenv("EBPF_PROF"); f != "" {
		pf, _ := os.Create(f)
		_ = pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		more := *rs
		more.Endpoints = maps.Clone(rs.Endpoints)
		more.Sets = maps.Clone(rs.Sets)
		p := 110 + i
		var pols []compile.PolicyID
		for _, t := range rs.Endpoints[benchPodKey(p%11)].Ingress.Tiers {
			pols = append(pols, t.Policies...)
		}
		addBenchPod(&more, p, pols)
		veth(more.Endpoints[benchPodKey(p)].Interface)
		b.StartTimer()
		t0 := time.Now()
		if err := be.Apply(ctx, &more); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		took = append(took, time.Since(t0))
		st := be.LastApply()
		if st.ProgramsLoaded != 0 || st.LinksAttached != 2 {
			b.Fatalf("a new pod loaded %d programs and attached %d links; want 0 and 2", st.ProgramsLoaded, st.LinksAttached)
		}
		if i == 0 {
			b.Logf("+1 pod: %+v", st)
		}
		rs = &more
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "ns/apply-median")
}

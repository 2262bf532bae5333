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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/benchset"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/podnet"
	"github.com/calyxnet/calyx/internal/testgen"
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
// Each with flow events off and on (the default), in one run; with events
// on, every judged packet writes a Deny event, and the ring buffer is
// drained between batches of runs so that none is lost (runEvents).
//
//	go test -run '^$' -bench ProgramRun -benchtime 20000x ./backend/ebpf
func BenchmarkProgramRun(b *testing.B) {
	for _, n := range []int{10, 1000, 50000} {
		for _, shape := range []string{"distinct", "ports", "cidr+port"} {
			for _, events := range []bool{false, true} {
				b.Run(fmt.Sprintf("rules=%d/%s/events=%v", n, shape, events), func(b *testing.B) {
					h := newHarness(b)
					h.events = events
					rs, _ := bigPolicy(n, shape)
					h.apply(rs)
					prog := h.progs[h.plan.attach[attachKey{"calyxb000000002", hookEgress}]].entry
					// UDP to a port no rule names: every "distinct" rule
					// checks it all the way (same protocol, other port).
					p := &pkt{Packet: model.Packet{Src: a4, Dst: b4, Protocol: 17, SrcPort: 46000, DstPort: 444}}
					if events {
						runEvents(b, h, prog, frame(p), false)
					} else {
						runBench(b, prog, frame(p), false)
					}
				})
			}
		}
	}
	for _, events := range []bool{false, true} {
		b.Run(fmt.Sprintf("established/events=%v", events), func(b *testing.B) {
			h := newHarness(b)
			h.events = events
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
}

// runEvents is runBench for programs with flow events: batches of 2,000
// runs, the ring buffer drained after each outside the timer, so every
// event is written (a full buffer would measure the cheaper lost path).
// Every run must write exactly one event.
func runEvents(b *testing.B, h *harness, prog *ebpf.Program, data []byte, wantAllowed bool) {
	b.Helper()
	rd := newEventReader(b, h)
	rd.drain()
	const batch = 2000
	var total time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		b.StartTimer()
		ret, d, err := prog.Benchmark(data, n, nil)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if got := int32(ret) != tcxDrop; got != wantAllowed {
			b.Fatalf("verdict allowed=%v, want %v", got, wantAllowed)
		}
		total += d * time.Duration(n)
		if got := len(rd.drain()); got != n {
			b.Fatalf("%d events for %d runs", got, n)
		}
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/packet")
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
// policies, enforced when Apply returns. As the CNI plugin does, the
// pod's veth is created right before (a fresh pair: host side up, peer
// moved into the pod's namespace, addresses and routes, with
// podnet.Setup, outside the timer), then Apply registers the pod: timed
// is Apply, from its start to its return. The program is shared with its
// group, so the cost is one selector-set entry and the pod's two TCX
// links. With the link watcher (watch=true) the links were attached with
// deny-all when the veth appeared, and Apply switches them with
// Link.Update (if Apply starts while the watcher still attaches, it waits
// for it); without, Apply attaches them. Both in one run.
//
//	go test -run '^$' -bench ApplyNewPod -benchtime 20x ./backend/ebpf
func BenchmarkApplyNewPod(b *testing.B) {
	for _, watch := range []bool{true, false} {
		b.Run(fmt.Sprintf("watch=%v", watch), func(b *testing.B) { benchApplyNewPod(b, watch) })
	}
}

func benchApplyNewPod(b *testing.B, watch bool) {
	ns := netnstest.New(b, "cxebpfb-")
	ctx := context.Background()
	h, err := netlink.NewHandleAt(nlns.NsHandle(ns.Fd()))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	if err := podnet.PrepareNode(ctx, ns); err != nil {
		b.Fatal(err)
	}
	rs := clusterRuleset(110, 10000)
	for _, ep := range rs.Endpoints {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ep.Interface}, PeerName: "p" + ep.Interface[5:]}); err != nil {
			b.Fatal(err)
		}
	}
	be, err := New(ctx, backend.Options{NetNS: ns.Path(), Name: "bench-" + ns.Name()}, WithLinkWatch(watch))
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
	var took, waits, renders, ifaces, kernels []time.Duration
	updated := 0
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
		ep := more.Endpoints[benchPodKey(p)]
		podNS := netnstest.New(b, "cxebpfp-")
		if err := podnet.Setup(ctx, ns, podNS, podnet.Config{HostIfName: ep.Interface, Addrs: ep.Addrs}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		if err := be.Apply(ctx, &more); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		took = append(took, time.Since(t0))
		st := be.LastApply()
		waits, renders, ifaces, kernels = append(waits, st.Wait), append(renders, st.Render), append(ifaces, st.Interfaces), append(kernels, st.Load+st.Kernel)
		if st.ProgramsLoaded != 0 || st.LinksAttached+st.LinksUpdated != 2 {
			b.Fatalf("a new pod loaded %d programs, attached %d links and updated %d; want 0 and 2 in all", st.ProgramsLoaded, st.LinksAttached, st.LinksUpdated)
		}
		updated += st.LinksUpdated / 2
		if i == 0 {
			b.Logf("+1 pod: %+v", st)
		}
		rs = &more
		b.StartTimer()
	}
	b.StopTimer()
	med := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	b.ReportMetric(float64(med(took).Nanoseconds()), "ns/apply-median")
	b.ReportMetric(float64(updated)/float64(b.N), "updated/op")
	b.Logf("medians over %d: apply %v = wait %v + render %v + interfaces %v + load and kernel %v (+ the rest)", b.N, med(took), med(waits), med(renders), med(ifaces), med(kernels))
}

// BenchmarkFlowEvents: what flow events cost a packet that is judged
// (10 rules checked one after the other), in one run: events off; on,
// with the ring buffer drained between batches of 2,000 runs (every event
// written, none lost); on, with nobody reading (the ring buffer is full,
// every event is counted lost). "deny" is a TCP SYN no rule allows (the
// tier's end denies it); "allow" a TCP RST the last rule allows (an
// allowed RST makes no conntrack entry, so every run judges it afresh, as
// a new flow is judged).
//
//	go test -run '^$' -bench FlowEvents -benchtime 200000x ./backend/ebpf
func BenchmarkFlowEvents(b *testing.B) {
	for _, verdict := range []string{"deny", "allow"} {
		for _, mode := range []string{"off", "on", "on-full"} {
			b.Run(fmt.Sprintf("%s/events=%s", verdict, mode), func(b *testing.B) {
				h := newHarness(b)
				h.events = mode != "off"
				ir := testgen.NewIR()
				ir.Endpoint(podA, "calyxa000000001", a4)
				ir.Endpoint(podB, "calyxb000000002", b4)
				src := compile.PeerMatch{Ports: []compile.PortRange{{Min: 1, Max: 65535}}}
				var rules []compile.Rule
				for i := range 9 {
					rules = append(rules, testgen.Rule(compile.ActionDeny, compile.Match{Protocol: 6, Src: src, Dst: compile.PeerMatch{Ports: testgen.Ports(uint16(1000 + i))}}))
				}
				rules = append(rules, testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 6, Src: src, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}))
				pol := ir.Policy(compile.Ingress, "default", "bench", rules...)
				ir.RS.Endpoints[podB].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{pol}, EndAction: compile.ActionDeny}}
				h.apply(ir.RS)
				prog := h.progs[h.plan.attach[attachKey{"calyxb000000002", hookEgress}]].entry
				p := &pkt{Packet: model.Packet{Src: a4, Dst: b4, Protocol: 6, SrcPort: 46000, DstPort: 81}, tcpFlags: tcpSYN}
				if verdict == "allow" {
					p.DstPort, p.tcpFlags = 80, tcpRST|tcpACK
				}
				data := frame(p)
				if mode == "on" {
					runEvents(b, h, prog, data, verdict == "allow")
				} else {
					runBench(b, prog, data, verdict == "allow")
				}
				if mode != "off" {
					lost, _ := lostEvents(h.objs)
					b.ReportMetric(float64(lost)/float64(b.N), "lost/op")
				}
			})
		}
	}
}

// BenchmarkNewVeth: where a new pod's time goes in the kernel. "attach":
// TCX-attach a loaded trivial program to both hooks of a veth created
// just before (concurrently, as the backend does; each attach waits for
// an RCU grace period). "update": switch those links to another program
// with Link.Update (no grace period). "watch": from the veth's creation
// until the link watcher has both hooks covered. Medians per op.
//
//	go test -run '^$' -bench NewVeth -benchtime 20x ./backend/ebpf
func BenchmarkNewVeth(b *testing.B) {
	ns := netnstest.New(b, "cxveth-")
	h, err := netlink.NewHandleAt(nlns.NsHandle(ns.Fd()))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	objs, err := openObjects("")
	if err != nil {
		b.Fatal(err)
	}
	defer objs.close()
	var progs [2][2]*ebpf.Program // [variant][hook]
	for v := range progs {
		for hk := range progs[v] {
			if progs[v][hk], err = objs.loadDenyAll(hook(hk), v == 1); err != nil {
				b.Fatal(err)
			}
			defer progs[v][hk].Close()
		}
	}
	n := 0
	veth := func() int {
		n++
		name := fmt.Sprintf("calyxv%05d", n)
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: fmt.Sprintf("pv%05d", n)}); err != nil {
			b.Fatal(err)
		}
		l, err := h.LinkByName(name)
		if err != nil {
			b.Fatal(err)
		}
		return l.Attrs().Index
	}
	attach := func(idx int) [2]link.Link {
		var ls [2]link.Link
		var wg sync.WaitGroup
		for hk := range ls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := ns.Do(func() (err error) {
					ls[hk], err = link.AttachTCX(link.TCXOptions{Interface: idx, Program: progs[0][hk], Attach: attachType(hook(hk)), Anchor: link.Head()})
					return err
				})
				if err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		return ls
	}
	median := func(ds []time.Duration) float64 { slices.Sort(ds); return float64(ds[len(ds)/2].Nanoseconds()) }
	b.Run("attach", func(b *testing.B) {
		var took []time.Duration
		for range b.N {
			idx := veth()
			t0 := time.Now()
			ls := attach(idx)
			took = append(took, time.Since(t0))
			for _, l := range ls {
				_ = l.Close()
			}
		}
		b.ReportMetric(median(took), "ns/median")
	})
	b.Run("update", func(b *testing.B) {
		idx := veth()
		ls := attach(idx)
		defer func() {
			for _, l := range ls {
				_ = l.Close()
			}
		}()
		var took []time.Duration
		for i := range b.N {
			t0 := time.Now()
			for hk, l := range ls {
				if err := l.Update(progs[(i+1)%2][hk]); err != nil {
					b.Fatal(err)
				}
			}
			took = append(took, time.Since(t0))
		}
		b.ReportMetric(median(took), "ns/median")
	})
	b.Run("watch", func(b *testing.B) {
		be, err := New(context.Background(), backend.Options{NetNS: ns.Path(), Name: "veth-" + ns.Name()})
		if err != nil {
			b.Fatal(err)
		}
		defer be.Close(context.Background())
		var took []time.Duration
		for range b.N {
			t0 := time.Now()
			idx := veth()
			for {
				var res bool
				err := ns.Do(func() error {
					in, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: ebpf.AttachTCXIngress})
					if err != nil {
						return err
					}
					eg, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: ebpf.AttachTCXEgress})
					if err != nil {
						return err
					}
					res = len(in.Programs) == 1 && len(eg.Programs) == 1
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if res {
					break
				}
				time.Sleep(200 * time.Microsecond)
			}
			took = append(took, time.Since(t0))
		}
		b.ReportMetric(median(took), "ns/median")
	})
}

// BenchmarkEstablished: what a packet of an established TCP connection
// costs in each of the four programs a request and its response meet
// between the bench harness's two pods (go run ./bench -only traffic:
// its RR figure), for the harness's own configurations, built by the
// same code (benchset.Traffic with 10,000): "empty" (no policy), (a)
// 10,000 policies, (b) one policy of 10,000 rules, each with flow events
// on (the default) and off. The request meets the client's egress program
// (TCX ingress of its veth) and the server's ingress program (TCX egress
// of its veth); the response the server's egress and the client's
// ingress programs. Only the server's ingress program differs between
// the configurations. The connection is opened (SYN, SYN-ACK, ACK)
// through the programs first, so each packet is one conntrack hit (the
// reply direction: a miss, then the reverse hit).
//
// Every configuration is loaded at once (each with its own maps) and
// measured in rounds, interleaved, in alternating order; the figure is
// the median of the rounds, the ratio against "empty" with the same
// flow events setting, and against "empty" with events on. The programs
// and maps are hot in the cache here, as they are not in real traffic:
// this measures the instructions and lookups on the established path, not
// cache misses.
//
//	go test -run '^$' -bench Established -benchtime 400000x ./backend/ebpf
func BenchmarkEstablished(b *testing.B) {
	client := benchset.Pod{Key: "bench/client", Interface: compile.WorkloadInterface("bench", "client"), Addrs: []netip.Addr{mustAddr("10.66.0.1")}}
	server := benchset.Pod{Key: "bench/server", Interface: compile.WorkloadInterface("bench", "server"), Addrs: []netip.Addr{mustAddr("10.66.0.2")}}
	configs := benchset.Traffic(client, server, 10000)
	req := pkt{Packet: model.Packet{Src: client.Addrs[0], Dst: server.Addrs[0], Protocol: 6, SrcPort: 46000, DstPort: benchset.RRPort}}
	resp := pkt{Packet: model.Packet{Src: server.Addrs[0], Dst: client.Addrs[0], Protocol: 6, SrcPort: benchset.RRPort, DstPort: 46000}}
	// The four programs, in the order a round trip meets them.
	where := [4]struct {
		name  string
		iface string
		hk    hook
		p     *pkt
	}{
		{"client-egress", client.Interface, hookIngress, &req},
		{"server-ingress", server.Interface, hookEgress, &req},
		{"server-egress", server.Interface, hookIngress, &resp},
		{"client-ingress", client.Interface, hookEgress, &resp},
	}
	type setup struct {
		name   string
		base   int // index of the "empty" with the same events setting
		progs  [4]*ebpf.Program
		data   [4][]byte
		insns  int // instructions of the server's ingress program
		median [4]float64
	}
	var setups []*setup
	for _, events := range []bool{true, false} {
		base := len(setups)
		for _, cfg := range []string{benchset.Empty, benchset.Policies, benchset.Rules} {
			h := newHarness(b)
			h.events = events
			rs := configs[cfg]
			h.apply(rs)
			// Open the connection through the programs, as the kernel
			// would: SYN, SYN-ACK, ACK.
			for _, step := range []struct {
				p     pkt
				flags uint8
			}{{req, tcpSYN}, {resp, tcpSYN | tcpACK}, {req, tcpACK}} {
				p := step.p
				p.tcpFlags = step.flags
				if !h.verdict(&p) {
					b.Fatalf("%s: %v flags %#x denied", cfg, p.Packet, step.flags)
				}
			}
			s := &setup{name: fmt.Sprintf("%s/events=%v", cfg, map[bool]string{true: "on", false: "off"}[events]), base: base}
			for i, w := range where {
				l := h.progs[h.plan.attach[attachKey{w.iface, w.hk}]]
				if l == nil {
					b.Fatalf("%s: no program on %s %s", cfg, w.iface, w.hk)
				}
				s.progs[i] = l.entry
				p := *w.p
				p.tcpFlags = tcpACK
				s.data[i] = frame(&p)
			}
			s.insns = progInsns(h.plan.progs[h.plan.attach[attachKey{server.Interface, hookEgress}]])
			setups = append(setups, s)
		}
	}
	const rounds = 31
	batch := max(b.N/rounds, 1)
	samples := make([][4][]float64, len(setups))
	b.ResetTimer()
	for r := range rounds {
		order := make([]int, len(setups))
		for i := range order {
			order[i] = i
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, si := range order {
			s := setups[si]
			for i, prog := range s.progs {
				ret, d, err := prog.Benchmark(s.data[i], batch, nil)
				if err != nil {
					b.Fatal(err)
				}
				if int32(ret) != tcxNext {
					b.Fatalf("%s %s: verdict %d, want TCX_NEXT", s.name, where[i].name, int32(ret))
				}
				samples[si][i] = append(samples[si][i], float64(d.Nanoseconds()))
			}
		}
	}
	b.StopTimer()
	total := func(s *setup) float64 { return s.median[0] + s.median[1] + s.median[2] + s.median[3] }
	for si, s := range setups {
		for i := range s.median {
			s.median[i] = medianOf(samples[si][i])
		}
	}
	var w strings.Builder
	fmt.Fprintf(&w, "established TCP packet, ns per program (median of %d rounds of %d runs)\n", rounds, batch)
	fmt.Fprintf(&w, "%-30s %6s", "config", "insns")
	for _, wh := range where {
		fmt.Fprintf(&w, " %14s", wh.name)
	}
	fmt.Fprintf(&w, " %8s %10s %14s\n", "total", "x empty", "x empty/on")
	for si, s := range setups {
		fmt.Fprintf(&w, "%-30s %6d", s.name, s.insns)
		for _, m := range s.median {
			fmt.Fprintf(&w, " %14.0f", m)
		}
		ratio, ratioOn := total(setups[s.base])/total(s), total(setups[0])/total(s)
		fmt.Fprintf(&w, " %8.0f %10.3f %14.3f\n", total(s), ratio, ratioOn)
		b.ReportMetric(total(s), "ns/roundtrip:"+s.name)
		if si != s.base {
			b.ReportMetric(ratio, "x-empty:"+s.name)
		}
	}
	// The framework runs a benchmark with b.N = 1 first: a table of one
	// run per round says nothing and would crowd out the real one.
	if batch >= 100 {
		b.Log("ratios are packets per second against empty: above 1 is faster\n" + w.String())
	}
}

// progInsns counts the instructions of all chunks of a program.
func progInsns(ps *progSpec) int {
	n := 0
	for _, c := range ps.chunks {
		n += len(c)
	}
	return n
}

func medianOf(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/podnet"
)

// TestHostEndpointConformance runs the shared host endpoint scenarios one
// after another on the conformance lab: the node's traffic with the
// external namespace must be what the model says, pod traffic (forwarded
// or with the node) untouched by the host endpoint.
func TestHostEndpointConformance(t *testing.T) {
	r := newRig(t, conformance.Spec())
	for _, sc := range conformance.HostScenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			b := r.ir()
			conformance.WithAllowAllProfiles(b)
			sc.Build(b)
			m := r.conform(t, b.RS)
			nodeProbes, denied := 0, 0
			for i, p := range m.Probes {
				if p.From == lab.Node || p.To == lab.Node {
					nodeProbes++
					if !m.Allowed[i] {
						denied++
					}
				}
			}
			if nodeProbes == 0 {
				t.Fatalf("no probe of the node's own traffic")
			}
			t.Logf("%d probes, %d of the node's traffic, %d of them denied", len(m.Probes), nodeProbes, denied)
			// The host endpoint's programs run on the external interface.
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				if got := r.attached(t, lab.ExternalInterface, at); len(got) != 1 {
					t.Fatalf("%s %v: %d programs attached, want 1", lab.ExternalInterface, at, len(got))
				}
			}
		})
	}
}

// TestHostEndpointForwardedUntouched: a deny-all host endpoint on every
// interface ("*", no policy, no fail-safe port) cuts the node off from
// the external namespace but leaves traffic between the external
// namespace and the pods, which the node forwards, to the pods' policy;
// loopback and workload interfaces get no host endpoint program; Close
// leaves no link on the host interfaces.
func TestHostEndpointForwardedUntouched(t *testing.T) {
	r := newRig(t, conformance.Spec())
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	ep := &compile.Endpoint{Key: "host:node/all", Kind: compile.HostEndpoint, Interface: "*", Addrs: nodeAddrs(r)}
	b.RS.Endpoints[ep.Key] = ep
	m := r.conform(t, b.RS)
	forwarded, node := 0, 0
	for i, p := range m.Probes {
		switch {
		case p.From == lab.External && p.To != lab.Node, p.To == lab.External && p.From != lab.Node:
			forwarded++
			if !m.Allowed[i] {
				t.Errorf("forwarded %s denied", p.String())
			}
		case p.From == lab.Node || p.To == lab.Node:
			node++
			if m.Allowed[i] {
				t.Errorf("node traffic %s allowed by a deny-all host endpoint", p.String())
			}
		}
	}
	if forwarded == 0 || node == 0 {
		t.Fatalf("%d forwarded probes, %d of the node's traffic: the lab checks nothing", forwarded, node)
	}
	hostIfs := []string{lab.ExternalInterface, podnet.UplinkName}
	ats := []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress}
	for _, name := range hostIfs {
		for _, at := range ats {
			if got := r.attached(t, name, at); len(got) != 1 {
				t.Fatalf("%s %v: %d programs attached, want 1", name, at, len(got))
			}
		}
	}
	for _, at := range ats {
		if got := r.attached(t, "lo", at); len(got) != 0 {
			t.Fatalf("lo %v: %d programs attached, want none", at, len(got))
		}
	}
	dump, err := r.b.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dump), "link "+lab.ExternalInterface+"/ingress program ") ||
		!strings.Contains(string(dump), "(host:node/all)") {
		t.Fatalf("dump does not show the host endpoint's links:\n%s", dump)
	}

	// A named host endpoint wins for its interface; the wildcard one
	// keeps the others. (The model knows endpoints by address, not by
	// interface: the probes are checked here, not against it.)
	ctx := context.Background()
	named := &compile.Endpoint{Key: "host:node/ext", Kind: compile.HostEndpoint, Interface: lab.ExternalInterface}
	named.Ingress.Profiles = []compile.PolicyID{b.AllowAllProfile()}
	named.Egress.Profiles = []compile.PolicyID{b.AllowAllProfile()}
	b.RS.Endpoints[named.Key] = named
	if err := r.b.Apply(ctx, b.RS); err != nil {
		t.Fatal(err)
	}
	if err := r.noDrift(ctx); err != nil {
		t.Fatal(err)
	}
	var nodeProbes []lab.Probe
	for _, p := range r.lab.Probes() {
		if p.From == lab.Node || p.To == lab.Node {
			nodeProbes = append(nodeProbes, p)
		}
	}
	if err := r.lab.FlushConntrack(ctx); err != nil {
		t.Fatal(err)
	}
	m, err = r.lab.Run(ctx, nodeProbes)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range m.Probes {
		if !m.Allowed[i] {
			t.Errorf("node traffic %s denied although the named host endpoint allows all", p.String())
		}
	}
	if a, ok := r.b.links[attachKey{podnet.UplinkName, hookIngress}]; !ok || a.fp == r.b.links[attachKey{lab.ExternalInterface, hookIngress}].fp {
		t.Fatalf("the uplink should keep the wildcard endpoint's program, the external interface run the named one's")
	}

	if err := r.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, name := range hostIfs {
		for _, at := range ats {
			if got := r.attached(t, name, at); len(got) != 0 {
				t.Fatalf("after Close, %s %v: %d programs still attached", name, at, len(got))
			}
		}
	}
}

// TestHostEndpointMissingInterface: a host endpoint naming an interface
// the node does not have is not attached (and reported missing); once the
// interface exists, Reconcile attaches it.
func TestHostEndpointMissingInterface(t *testing.T) {
	r := newRig(t, conformance.Spec())
	ctx := context.Background()
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	const name = "cxlater0"
	ep := &compile.Endpoint{Key: "host:node/later", Kind: compile.HostEndpoint, Interface: name, Addrs: nodeAddrs(r)}
	b.RS.Endpoints[ep.Key] = ep
	if err := r.b.Apply(ctx, b.RS); err != nil {
		t.Fatal(err)
	}
	if st := r.b.LastApply(); len(st.MissingInterfaces) != 1 || st.MissingInterfaces[0] != name {
		t.Fatalf("missing interfaces %v, want [%s]", st.MissingInterfaces, name)
	}
	if err := r.noDrift(ctx); err != nil {
		t.Fatalf("a missing host interface is drift: %v", err)
	}
	addDummy(t, r, name)
	d, err := r.b.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.LinksReattached != 2 {
		t.Fatalf("Reconcile after the interface appeared: %s; want 2 links attached", d)
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		if got := r.attached(t, name, at); len(got) != 1 {
			t.Fatalf("%s %v: %d programs attached, want 1", name, at, len(got))
		}
	}
}

// TestHostEndpointInvalid: a host endpoint naming something Linux would
// not take as an interface name is refused.
func TestHostEndpointInvalid(t *testing.T) {
	for _, name := range []string{"eth0/1", "eth0:1", "a very long interface name", ".."} {
		rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{}, Policies: map[compile.PolicyID]*compile.Policy{},
			Sets: map[compile.SetID]*compile.IPSet{}}
		rs.Endpoints["host:n/a"] = &compile.Endpoint{Key: "host:n/a", Kind: compile.HostEndpoint, Interface: name}
		if _, err := Render(rs); !errors.Is(err, ErrInvalidRuleset) {
			t.Errorf("%q: %v, want ErrInvalidRuleset", name, err)
		}
	}
}

// TestHostEndpointsByAddressAndStar: several host endpoints without an
// interface name share the host interfaces, one TCX link each: one known
// by its (IPv6) address judges the node's IPv6 traffic, the "*" one the
// rest; a second "*" endpoint is ignored, and a named one on a workload
// interface gets nothing.
func TestHostEndpointsByAddressAndStar(t *testing.T) {
	r := newRig(t, conformance.Spec())
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	var v4, v6 []netip.Addr
	for _, a := range nodeAddrs(r) {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	allow := b.AllowAllProfile()
	star := &compile.Endpoint{Key: "host:node/a-star", Kind: compile.HostEndpoint, Interface: "*", Addrs: v4}
	star.Ingress.Profiles = []compile.PolicyID{allow} // egress: deny
	byAddr := &compile.Endpoint{Key: "host:node/b-v6", Kind: compile.HostEndpoint, Addrs: v6}
	byAddr.Egress.Profiles = []compile.PolicyID{allow} // ingress: deny
	ignored := &compile.Endpoint{Key: "host:node/c-star", Kind: compile.HostEndpoint, Interface: "*"}
	onPod := &compile.Endpoint{Key: "host:node/d-pod", Kind: compile.HostEndpoint, Interface: r.lab.Spec().Pods[0].Interface()}
	for _, ep := range []*compile.Endpoint{star, byAddr, ignored, onPod} {
		b.RS.Endpoints[ep.Key] = ep
	}
	m := r.conform(t, b.RS)
	allowed := map[bool]int{}
	for i, p := range m.Probes {
		if p.From == lab.Node || p.To == lab.Node {
			allowed[m.Allowed[i]]++
		}
	}
	if allowed[true] == 0 || allowed[false] == 0 {
		t.Fatalf("node probes allowed/denied: %v; want both", allowed)
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		if got := r.attached(t, lab.ExternalInterface, at); len(got) != 2 {
			t.Fatalf("%s %v: %d programs attached, want 2", lab.ExternalInterface, at, len(got))
		}
	}
	// Which of the two links runs first is not defined; each must leave
	// the other's addresses alone. The egress programs, run on packets the
	// node sent (no FIB lookup on egress):
	run := func(iface string, src, dst netip.Addr) bool {
		a, ok := r.b.links[attachKey{iface, hookEgress}]
		if !ok {
			t.Fatalf("no link %s/egress", iface)
		}
		p := &pkt{Packet: model.Packet{Src: src, Dst: dst, Protocol: 6, SrcPort: 40001, DstPort: 80}, tcpFlags: tcpSYN}
		return hostRun(t, r.b.progs[a.fp], p, 0)
	}
	ext4, ext6 := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8:77::7")
	if run(lab.ExternalInterface, v4[0], ext4) || !run(lab.ExternalInterface, v6[0], ext6) {
		t.Errorf("the \"*\" endpoint's egress program should deny the node's IPv4 traffic and leave its IPv6 address alone")
	}
	if !run(lab.ExternalInterface+":1", v4[0], ext4) || !run(lab.ExternalInterface+":1", v6[0], ext6) {
		t.Errorf("the IPv6 endpoint's egress program should leave IPv4 alone and allow IPv6")
	}
	dump, err := r.b.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dump), "link "+lab.ExternalInterface+":1/ingress program ") ||
		!strings.Contains(string(dump), "(host:node/b-v6)") || strings.Contains(string(dump), "host:node/c-star") {
		t.Fatalf("dump does not show the two host endpoints' links:\n%s", dump)
	}
}

// hostRun runs a host endpoint program with BPF_PROG_TEST_RUN; iif is the
// interface the packet arrived on (0: the node sent it). It reports
// whether the packet passes.
func hostRun(t *testing.T, l *loaded, p *pkt, iif uint32) bool {
	t.Helper()
	var ctx [11]uint32 // struct __sk_buff up to ifindex
	ctx[skbIngressIfindex/4] = iif
	ret, err := l.entry.Run(&ebpf.RunOptions{Data: frame(p), Context: ctx})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return int32(ret) != tcxDrop
}

// TestHostEndpointFailsafePrograms runs host endpoint programs without
// policy (deny) on crafted packets: fail-safe ports with and without a
// net, both families, both hooks; packets the node did not originate
// pass the egress program untouched. BPF_PROG_TEST_RUN runs on the
// loopback device: destinations in 127.0.0.0/8 and ::1 are the node's.
func TestHostEndpointFailsafePrograms(t *testing.T) {
	h := newHarness(t)
	rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{}, Policies: map[compile.PolicyID]*compile.Policy{},
		Sets: map[compile.SetID]*compile.IPSet{}}
	rs.Settings.FailsafeInbound = []compile.ProtoPort{
		{Protocol: 6, Port: 22},
		{Protocol: 17, Port: 53, Net: netip.MustParsePrefix("203.0.113.0/24")},
		{Protocol: 6, Port: 2222, Net: netip.MustParsePrefix("2001:db8:1::/48")},
		{Protocol: 6, Port: 2223, Net: netip.MustParsePrefix("198.51.100.128/25")},
	}
	rs.Settings.FailsafeOutbound = []compile.ProtoPort{
		{Protocol: 17, Port: 53},
		{Protocol: 6, Port: 443, Net: netip.MustParsePrefix("198.51.100.0/24")},
	}
	named := &compile.Endpoint{Key: "host:node/eth0", Kind: compile.HostEndpoint, Interface: "eth0"}
	byAddr := &compile.Endpoint{Key: "host:node/addr", Kind: compile.HostEndpoint, Interface: "",
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}}
	rs.Endpoints[named.Key] = named
	rs.Endpoints[byAddr.Key] = byAddr
	h.apply(rs)
	prog := func(ak attachKey) *loaded {
		fp, ok := h.plan.attach[ak]
		if !ok {
			for _, ha := range h.plan.hostAny {
				if ak.iface == "" && ha.hook == ak.hook {
					fp, ok = ha.fp, true
				}
			}
		}
		if !ok || h.progs[fp] == nil {
			t.Fatalf("no program for %s", ak)
		}
		return h.progs[fp]
	}
	in, out := prog(attachKey{"eth0", hookIngress}), prog(attachKey{"eth0", hookEgress})
	addrIn, addrOut := prog(attachKey{"", hookIngress}), prog(attachKey{"", hookEgress})
	a := netip.MustParseAddr
	tcp := func(src, dst string, dport uint16) *pkt {
		return &pkt{Packet: model.Packet{Src: a(src), Dst: a(dst), Protocol: 6, SrcPort: 40000, DstPort: dport}, tcpFlags: tcpSYN}
	}
	udp := func(src, dst string, dport uint16) *pkt {
		return &pkt{Packet: model.Packet{Src: a(src), Dst: a(dst), Protocol: 17, SrcPort: 40000, DstPort: dport}}
	}
	cases := []struct {
		name string
		l    *loaded
		p    *pkt
		iif  uint32
		want bool
	}{
		{"in tcp 22, any source", in, tcp("192.0.2.9", "127.0.0.1", 22), 1, true},
		{"in tcp 22 over IPv6", in, tcp("2001:db8::9", "::1", 22), 1, true},
		{"in udp 22: wrong protocol", in, udp("192.0.2.9", "127.0.0.1", 22), 1, false},
		{"in tcp 23", in, tcp("192.0.2.9", "127.0.0.1", 23), 1, false},
		{"in udp 53 from its net", in, udp("203.0.113.77", "127.0.0.1", 53), 1, true},
		{"in udp 53 from outside its net", in, udp("203.0.114.77", "127.0.0.1", 53), 1, false},
		{"in tcp 2222 from its IPv6 net", in, tcp("2001:db8:1:ffff::5", "::1", 2222), 1, true},
		{"in tcp 2222 from outside its IPv6 net", in, tcp("2001:db8:2::5", "::1", 2222), 1, false},
		{"in tcp 2222 over IPv4: the net is IPv6", in, tcp("192.0.2.9", "127.0.0.1", 2222), 1, false},
		{"in tcp 2223 from the /25", in, tcp("198.51.100.200", "127.0.0.1", 2223), 1, true},
		{"in tcp 2223 from the other half", in, tcp("198.51.100.100", "127.0.0.1", 2223), 1, false},
		{"out udp 53 anywhere", out, udp("127.0.0.1", "192.0.2.9", 53), 0, true},
		{"out tcp 443 to its net", out, tcp("127.0.0.1", "198.51.100.3", 443), 0, true},
		{"out tcp 443 elsewhere", out, tcp("127.0.0.1", "198.51.101.3", 443), 0, false},
		{"out tcp 80", out, tcp("127.0.0.1", "192.0.2.9", 80), 0, false},
		{"out tcp 80 forwarded: untouched", out, tcp("10.77.0.1", "192.0.2.9", 80), 5, true},
		{"out inbound fail-safe port is not outbound", out, tcp("127.0.0.1", "192.0.2.9", 22), 0, false},
		{"by address: in to its address", addrIn, tcp("192.0.2.9", "127.0.0.1", 80), 1, false},
		{"by address: in fail-safe", addrIn, tcp("192.0.2.9", "127.0.0.1", 22), 1, true},
		{"by address: in to another local address", addrIn, tcp("192.0.2.9", "127.0.0.2", 80), 1, true},
		{"by address: in to its IPv6 address", addrIn, tcp("2001:db8::9", "::1", 80), 1, false},
		{"by address: out from its address", addrOut, tcp("127.0.0.1", "192.0.2.9", 80), 0, false},
		{"by address: out from another address", addrOut, tcp("127.0.0.2", "192.0.2.9", 80), 0, true},
		{"by address: out forwarded from its address", addrOut, tcp("127.0.0.1", "192.0.2.9", 80), 5, true},
	}
	for _, c := range cases {
		h.flush()
		if got := hostRun(t, c.l, c.p, c.iif); got != c.want {
			t.Errorf("%s: passes=%v, want %v", c.name, got, c.want)
		}
	}
	// The model agrees where it speaks (the node's own traffic of the
	// named endpoint, whose addresses it knows here).
	named.Addrs = []netip.Addr{a("127.0.0.1"), a("::1")}
	delete(rs.Endpoints, byAddr.Key)
	idx := model.NewIndex(rs)
	for _, c := range cases {
		if c.l != in && c.l != out || c.iif != 0 && c.l == out {
			continue
		}
		if got := idx.Allowed(c.p.Packet); got != c.want {
			t.Errorf("%s: model says %v, the program %v", c.name, got, c.want)
		}
	}
}

// addDummy adds a veth pair name / name+"p" to the lab's node namespace.
func addDummy(t *testing.T, r *rig, name string) {
	t.Helper()
	h, err := netlink.NewHandleAt(nlns.NsHandle(r.lab.NodeNS().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h, err := netlink.NewHandleAt(nlns.NsHandle(r.lab.NodeNS().Fd()))
		if err != nil {
			return
		}
		defer h.Close()
		if l, err := h.LinkByName(name); err == nil {
			_ = h.LinkDel(l)
		}
	})
}

// nodeAddrs are the lab node's addresses.
func nodeAddrs(r *rig) []netip.Addr {
	spec := r.lab.Spec()
	return spec.Nodes()
}

// TestHostEndpointLifecycle: host endpoint links are pinned and adopted
// like the pods' (a restarted backend re-applying the same Ruleset
// changes nothing), repaired by Reconcile when detached from outside, and
// removed when the host endpoint goes.
func TestHostEndpointLifecycle(t *testing.T) {
	r := newRig(t, conformance.Spec())
	ctx := context.Background()
	build := func(withHost bool) *compile.Ruleset {
		b := r.ir()
		conformance.WithAllowAllProfiles(b)
		if withHost {
			b.RS.Settings.FailsafeInbound = []compile.ProtoPort{{Protocol: 6, Port: 22}}
			ep := &compile.Endpoint{Key: "host:node/all", Kind: compile.HostEndpoint, Interface: "*", Addrs: nodeAddrs(r)}
			b.RS.Endpoints[ep.Key] = ep
		}
		return b.RS
	}
	r.conform(t, build(true))
	hostLinks := func(b *Backend) int {
		n := 0
		for ak := range b.links {
			if isHostInterface(ak.iface) {
				n++
			}
		}
		return n
	}
	// cxext0, cxuplink and its peer, both hooks.
	if n := hostLinks(r.b); n != 6 {
		t.Fatalf("%d host interface links, want 6", n)
	}

	// The agent dies: descriptors close, pins stay; a new backend adopts.
	r.b.mu.Lock()
	r.b.release()
	r.b.closed = true
	r.b.mu.Unlock()
	b2, err := New(ctx, backend.Options{NetNS: r.lab.NodeNS().Path(), Name: r.lab.ID()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close(ctx) })
	r.b = b2
	if n := hostLinks(b2); n != 6 {
		t.Fatalf("adopted %d host interface links, want 6", n)
	}
	r.conform(t, build(true))
	if st := b2.LastApply(); st.ProgramsLoaded+st.LinksAttached+st.LinksUpdated+st.LinksDetached != 0 {
		t.Errorf("re-applying the same Ruleset after a restart changed programs or links: %+v", st)
	}

	// Detach the external interface's ingress link from outside.
	info, err := b2.links[attachKey{lab.ExternalInterface, hookIngress}].link.Info()
	if err != nil {
		t.Fatal(err)
	}
	other, err := link.NewFromID(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Detach(); err != nil {
		t.Fatal(err)
	}
	_ = other.Close()
	d, err := b2.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.LinksReattached != 1 {
		t.Fatalf("drift %s; want the host link re-attached", d)
	}
	r.conform(t, build(true))

	// The host endpoint goes: so do its links.
	r.conform(t, build(false))
	if n := hostLinks(b2); n != 0 {
		t.Fatalf("%d host interface links left after the host endpoint went", n)
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		if got := r.attached(t, lab.ExternalInterface, at); len(got) != 0 {
			t.Fatalf("%s %v: %d programs attached after the host endpoint went", lab.ExternalInterface, at, len(got))
		}
	}
}

// BenchmarkHostEndpointProgram: what one packet costs in a host
// endpoint's programs (BPF_PROG_TEST_RUN, in a namespace of its own with
// forwarding on and a route to 10.99.0.0/16), next to a workload's
// program with the same policy. "judged" packets are the node's own and
// are denied at the end of the policy (no conntrack entry: every run
// judges); "forwarded" ones pass unjudged: on ingress after conntrack
// missed and a FIB lookup, on egress as packets of a flow conntrack knows
// (the first run enters it).
//
//	go test -run '^$' -bench HostEndpointProgram -benchtime 200000x ./backend/ebpf
func BenchmarkHostEndpointProgram(b *testing.B) {
	h := newHarness(b)
	ns := netnstest.New(b, "cxhb")
	for _, kv := range [][2]string{{"net/ipv4/ip_forward", "1"}, {"net/ipv6/conf/all/forwarding", "1"}} {
		if err := ns.WriteSysctl(kv[0], kv[1]); err != nil {
			b.Fatal(err)
		}
	}
	nl, err := netlink.NewHandleAt(nlns.NsHandle(ns.Fd()))
	if err != nil {
		b.Fatal(err)
	}
	defer nl.Close()
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bx0"}, PeerName: "bx0p"}); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"lo", "bx0", "bx0p"} {
		l, err := nl.LinkByName(name)
		if err != nil {
			b.Fatal(err)
		}
		if err := nl.LinkSetUp(l); err != nil {
			b.Fatal(err)
		}
		if name == "bx0" {
			addr, _ := netlink.ParseAddr("10.98.0.1/16")
			if err := nl.AddrAdd(l, addr); err != nil {
				b.Fatal(err)
			}
			_, dst, _ := net.ParseCIDR("10.99.0.0/16")
			if err := nl.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: net.ParseIP("10.98.0.2")}); err != nil {
				b.Fatal(err)
			}
		}
	}
	rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{}, Policies: map[compile.PolicyID]*compile.Policy{},
		Sets: map[compile.SetID]*compile.IPSet{}}
	rs.Settings.FailsafeInbound = []compile.ProtoPort{{Protocol: 6, Port: 22}, {Protocol: 17, Port: 68}}
	rs.Settings.FailsafeOutbound = []compile.ProtoPort{{Protocol: 17, Port: 53}, {Protocol: 17, Port: 67}}
	pol := &compile.Policy{ID: "allow-web", Name: "allow-web", Tier: "default"}
	for i := range 10 {
		pol.Rules = append(pol.Rules, r0(compile.ActionAllow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: uint16(8000 + 2*i), Max: uint16(8000 + 2*i)}}}}))
		// Not a run: each rule checks a source port too.
		pol.Rules[i].Match.Src.Ports = []compile.PortRange{{Min: 1, Max: 1023}}
	}
	rs.Policies[pol.ID] = pol
	tiers := []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{pol.ID}, EndAction: compile.ActionDeny}}
	host := &compile.Endpoint{Key: "host:node/eth0", Kind: compile.HostEndpoint, Interface: "eth0"}
	host.Ingress.Tiers, host.Egress.Tiers = tiers, tiers
	pod := &compile.Endpoint{Key: "ns/pod", Kind: compile.WorkloadEndpoint, Interface: "calyxbench0", Addrs: []netip.Addr{netip.MustParseAddr("10.77.0.1")}}
	pod.Ingress.Tiers = tiers
	rs.Endpoints[host.Key], rs.Endpoints[pod.Key] = host, pod
	h.apply(rs)
	prog := func(ak attachKey) *ebpf.Program { return h.progs[h.plan.attach[ak]].entry }
	udp := func(src, dst string) []byte {
		return frame(&pkt{Packet: model.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: 17, SrcPort: 46000, DstPort: 444}})
	}
	for _, c := range []struct {
		name  string
		prog  *ebpf.Program
		data  []byte
		iif   uint32
		allow bool
	}{
		{"host-ingress/judged", prog(attachKey{"eth0", hookIngress}), udp("192.0.2.9", "127.0.0.1"), 1, false},
		{"host-ingress/forwarded", prog(attachKey{"eth0", hookIngress}), udp("192.0.2.9", "10.99.0.1"), 1, true},
		{"host-egress/judged", prog(attachKey{"eth0", hookEgress}), udp("127.0.0.1", "192.0.2.9"), 0, false},
		{"host-egress/forwarded", prog(attachKey{"eth0", hookEgress}), udp("10.77.0.1", "192.0.2.9"), 7, true},
		{"workload-ingress/judged", prog(attachKey{"calyxbench0", hookEgress}), udp("192.0.2.9", "10.77.0.1"), 1, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			var ctx [11]uint32
			ctx[skbIngressIfindex/4] = c.iif
			var ret uint32
			b.ResetTimer()
			start := time.Now()
			err := ns.Do(func() (err error) {
				ret, err = c.prog.Run(&ebpf.RunOptions{Data: c.data, Context: ctx, Repeat: uint32(b.N)})
				return err
			})
			d := time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			if got := int32(ret) != tcxDrop; got != c.allow {
				b.Fatalf("passes=%v, want %v", got, c.allow)
			}
			b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "ns/packet")
		})
	}
}

// TestHostEndpointMasqueradedPodTraffic: pod traffic to the external
// namespace that the node source-NATs to its own address stays the pods'
// business under a deny-all "*" host endpoint. Its packets leave with the
// node's address (TCX egress runs after POSTROUTING) but arrived on the
// pod's veth, and its replies come back to the node's address (TCX ingress
// runs before conntrack undoes the NAT): the host endpoint's programs must
// let both pass, while still denying the node's own traffic.
func TestHostEndpointMasqueradedPodTraffic(t *testing.T) {
	netnstest.RequireBinary(t, "nft")
	r := newRig(t, conformance.Spec())
	ctx := context.Background()
	node := r.lab.NodeNS()
	table := "calyxsnat" + r.lab.ID()
	var v4, v6 netip.Addr
	for _, a := range nodeAddrs(r) {
		if a.Is4() {
			v4 = a
		} else {
			v6 = a
		}
	}
	script := fmt.Sprintf(`table ip %[1]s {
	chain post { type nat hook postrouting priority srcnat; oifname %[2]q ip saddr 10.77.0.0/16 counter snat to %[3]s; }
}
table ip6 %[1]s {
	chain post { type nat hook postrouting priority srcnat; oifname %[2]q ip6 saddr fd77::/64 counter snat to %[4]s; }
}
`, table, lab.ExternalInterface, v4, v6)
	nft := func(stdin string, args ...string) (string, error) {
		var out []byte
		err := node.Do(func() error {
			cmd := exec.Command("nft", args...)
			cmd.Stdin = strings.NewReader(stdin)
			var err error
			out, err = cmd.CombinedOutput()
			return err
		})
		return string(out), err
	}
	if out, err := nft(script, "-f", "-"); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() {
		_, _ = nft("", "delete", "table", "ip", table)
		_, _ = nft("", "delete", "table", "ip6", table)
	})
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	ep := &compile.Endpoint{Key: "host:node/all", Kind: compile.HostEndpoint, Interface: "*", Addrs: nodeAddrs(r)}
	b.RS.Endpoints[ep.Key] = ep
	if err := r.b.Apply(ctx, b.RS); err != nil {
		t.Fatal(err)
	}
	var probes []lab.Probe
	for _, p := range r.lab.Probes() {
		if p.To == lab.External && p.From != lab.Node || p.From == lab.Node && p.To == lab.External {
			probes = append(probes, p)
		}
	}
	if err := r.lab.FlushConntrack(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := r.lab.Run(ctx, probes)
	if err != nil {
		t.Fatal(err)
	}
	pods := 0
	for i, p := range m.Probes {
		if p.From == lab.Node {
			if m.Allowed[i] {
				t.Errorf("%s allowed: the deny-all host endpoint should judge the node's own traffic", p.String())
			}
			continue
		}
		pods++
		if !m.Allowed[i] {
			t.Errorf("%s denied: source-NATed pod traffic is not the host endpoint's", p.String())
		}
	}
	if pods == 0 {
		t.Fatal("no pod -> external probe")
	}
	// The NAT did happen (both families).
	for _, fam := range []string{"ip", "ip6"} {
		out, err := nft("", "list", "table", fam, table)
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		if strings.Contains(out, "packets 0 ") || !strings.Contains(out, "packets ") {
			t.Fatalf("the %s source NAT rule saw no packet:\n%s", fam, out)
		}
	}
}

// TestHostEndpointEvents: a host endpoint's programs report like a pod's,
// with the endpoint's direction (Egress for the node's traffic out) and
// ReasonFailsafe for a fail-safe port; traffic they leave alone
// (forwarded) reports nothing.
func TestHostEndpointEvents(t *testing.T) {
	h := newHarness(t)
	if !h.events {
		t.Fatal("flow events are off by default in the harness")
	}
	rd := newEventReader(t, h)
	rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{}, Policies: map[compile.PolicyID]*compile.Policy{},
		Sets: map[compile.SetID]*compile.IPSet{}}
	rs.Settings.FailsafeInbound = []compile.ProtoPort{{Protocol: 6, Port: 22}}
	ep := &compile.Endpoint{Key: "host:node/eth0", Kind: compile.HostEndpoint, Interface: "eth0"}
	rs.Endpoints[ep.Key] = ep
	h.apply(rs)
	in, out := h.progs[h.plan.attach[attachKey{"eth0", hookIngress}]], h.progs[h.plan.attach[attachKey{"eth0", hookEgress}]]
	a := netip.MustParseAddr
	tcp := func(src, dst string, dport uint16) *pkt {
		return &pkt{Packet: model.Packet{Src: a(src), Dst: a(dst), Protocol: 6, SrcPort: 40000, DstPort: dport}, tcpFlags: tcpSYN}
	}
	for _, c := range []struct {
		name   string
		l      *loaded
		p      *pkt
		iif    uint32
		action compile.Action // 0: no event
		reason Reason
		egress bool
	}{
		{"fail-safe", in, tcp("192.0.2.9", "127.0.0.1", 22), 1, compile.ActionAllow, ReasonFailsafe, false},
		{"denied in", in, tcp("192.0.2.9", "127.0.0.1", 23), 1, compile.ActionDeny, ReasonProfilesEnd, false},
		{"denied out", out, tcp("127.0.0.1", "192.0.2.9", 80), 0, compile.ActionDeny, ReasonProfilesEnd, true},
		{"forwarded out", out, tcp("10.77.0.1", "192.0.2.9", 80), 5, 0, 0, false},
	} {
		h.flush()
		hostRun(t, c.l, c.p, c.iif)
		evs := rd.drain()
		if c.action == 0 {
			if len(evs) != 0 {
				t.Errorf("%s: events %v, want none", c.name, evs)
			}
			continue
		}
		if len(evs) != 1 {
			t.Errorf("%s: %d events, want 1: %v", c.name, len(evs), evs)
			continue
		}
		e := evs[0]
		if e.Action != c.action || e.Reason != c.reason || e.Egress != c.egress || e.Dst.Port() != c.p.DstPort {
			t.Errorf("%s: event %+v (%s); want action %v, reason %v, egress %v", c.name, e, e, c.action, c.reason, c.egress)
		}
	}
}

// TestHostEndpointModelEqualsKernel: random Rulesets with a host endpoint
// (named, "*" or by address) taking random pods' directions and random
// fail-safe ports agree with the model in the lab, one Apply after the
// other.
func TestHostEndpointModelEqualsKernel(t *testing.T) {
	r := newRig(t, conformance.Spec())
	conformance.HostModelEqualsKernel(t, conformance.Spec(), r.lab, r.b, r.noDrift, 25)
}

// TestHostEndpointLimitsLoad: at the limits of what a host endpoint
// program compares inline (addresses, fail-safe ports), next to a big
// policy, the programs pass the verifier.
func TestHostEndpointLimitsLoad(t *testing.T) {
	h := newHarness(t)
	rs := limitRuleset(maxHostAddrs, maxFailsafe)
	big, _ := bigPolicy(2000, "distinct")
	for id, p := range big.Policies {
		rs.Policies[id] = p
	}
	for id, s := range big.Sets {
		rs.Sets[id] = s
	}
	rs.Endpoints["host:n/a"].Ingress = big.Endpoints[podB].Ingress
	// A "*" endpoint leaves those addresses to the other: it compares
	// them too.
	star := &compile.Endpoint{Key: "host:n/0-star", Kind: compile.HostEndpoint, Interface: "*", Ingress: big.Endpoints[podB].Ingress}
	rs.Endpoints[star.Key] = star
	h.apply(rs)
	for _, ha := range h.plan.hostAny {
		t.Logf("%s: %d chunks", ha.hook, len(h.plan.progs[ha.fp].chunks))
	}
}

//go:build linux

package ebpf

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
)

// membership is the members of the sets membershipRuleset's policy uses.
type membership struct {
	// src, dst and admin are the members of the three net sets.
	src, dst, admin []netip.Prefix
	// http is the members of the named port "http".
	http []compile.PortMember
}

// membershipRuleset: every pod may send anything; every pod admits
//
//	TCP 80 from set src and TCP 443 from set admin (two rules that merge
//	into one LPM run: the run's entries are made from the sets' members),
//	TCP 443 from set src to set dst (two set lookups in the program),
//	TCP to its named port "http" (a named-port lookup),
//
// and denies the rest. The sets' IDs and definitions never change, only
// their members, as the compiler emits a change of pod labels or
// addresses.
func membershipRuleset(r *rig, m membership) *compile.Ruleset {
	b := r.ir()
	src := compile.SetID("sel:role == client")
	dst := compile.SetID("sel:role == server")
	admin := compile.SetID("sel:role == admin")
	http := compile.SetID("np:http/6:all()")
	b.RS.Sets[src] = &compile.IPSet{ID: src, Kind: compile.SetNets, Selector: "role == client", Nets: slices.Clone(m.src)}
	b.RS.Sets[dst] = &compile.IPSet{ID: dst, Kind: compile.SetNets, Selector: "role == server", Nets: slices.Clone(m.dst)}
	b.RS.Sets[admin] = &compile.IPSet{ID: admin, Kind: compile.SetNets, Selector: "role == admin", Nets: slices.Clone(m.admin)}
	b.RS.Sets[http] = &compile.IPSet{ID: http, Kind: compile.SetNamedPorts, Selector: "all()", PortName: "http", Protocol: 6,
		Ports: slices.Clone(m.http)}
	pol := b.Policy(compile.Ingress, "default", "members",
		r0(compile.ActionAllow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{src}},
			Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: 80, Max: 80}}}}),
		r0(compile.ActionAllow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{admin}},
			Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: 443, Max: 443}}}}),
		r0(compile.ActionAllow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{src}},
			Dst: compile.PeerMatch{Sets: []compile.SetID{dst}, Ports: []compile.PortRange{{Min: 443, Max: 443}}}}),
		r0(compile.ActionAllow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{NamedPorts: []compile.SetID{http}}}))
	prof := b.AllowAllProfile()
	for _, ep := range b.RS.Endpoints {
		ep.Egress.Profiles = []compile.PolicyID{prof}
		ep.Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{pol}, EndAction: compile.ActionDeny}}
	}
	return b.RS
}

// TestMembershipChangeReloadsNothing: with a real Backend in a lab,
// changing the members of a net set (addresses and CIDRs, both families,
// down to none) and of a named-port set writes set entries and nothing
// else: Apply loads and frees no program, attaches, updates and detaches
// no link, every pod's hooks run the very programs (by kernel ID) they ran
// before, and the matrix observed in the lab is the model's after every
// change. Each change alters the model's matrix, so a backend that
// ignored it would fail the matrix check, and one that reloaded to apply
// it would fail the others.
func TestMembershipChangeReloadsNothing(t *testing.T) {
	spec := lab.Spec{Pods: labtest.Pods(3, tcp80, tcp443), External: labtest.ExternalAddrs, ExternalPorts: []lab.Port{tcp80}}
	r := newRig(t, spec)
	pods := r.lab.Spec().Pods
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
	hosts := func(i int) []netip.Prefix {
		var out []netip.Prefix
		for _, a := range pods[i].IPs {
			out = append(out, host(a))
		}
		return out
	}
	http := func(port uint16, addrs ...netip.Addr) []compile.PortMember {
		var out []compile.PortMember
		for _, a := range addrs {
			out = append(out, compile.PortMember{Addr: a, Protocol: 6, Port: port})
		}
		return out
	}
	sortNets := func(ns []netip.Prefix) []netip.Prefix {
		slices.SortFunc(ns, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		return ns
	}
	sortPorts := func(ms []compile.PortMember) []compile.PortMember {
		slices.SortFunc(ms, func(a, b compile.PortMember) int { return a.Addr.Compare(b.Addr) })
		return ms
	}
	ext := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:77::/64")}
	start := membership{src: hosts(0), dst: hosts(1), admin: hosts(2), http: http(80, pods[2].IPs...)}
	nets := membership{src: sortNets(append(hosts(0), ext...)), dst: sortNets(append(hosts(1), hosts(2)...)),
		admin: ext[:1], http: start.http}
	ports := nets
	ports.http = sortPorts(append(http(443, pods[2].IPs...), http(80, pods[1].IPs...)...))
	steps := []struct {
		name string
		m    membership
	}{
		{"start", start},
		{"net sets: the external CIDRs join src, pod2 joins dst, admin becomes the external IPv4 CIDR", nets},
		{"named ports: pod2's http moves to 443, pod1 gets http on 80", ports},
		{"every set empty", membership{}},
		{"one family only: src an IPv6 CIDR, the rest IPv4", membership{
			src: []netip.Prefix{netip.MustParsePrefix("fd77::/64")}, dst: []netip.Prefix{host(pods[0].IPs[0])},
			admin: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}, http: http(80, pods[0].IPs[0])}},
		{"back to the start", start},
	}

	// programs lists the kernel IDs of the programs on both hooks of
	// every pod's interface.
	programs := func() map[string][]ebpf.ProgramID {
		out := map[string][]ebpf.ProgramID{}
		for i := range pods {
			iface := pods[i].Interface()
			out[iface+" ingress"] = r.attached(t, iface, ebpf.AttachTCXIngress)
			out[iface+" egress"] = r.attached(t, iface, ebpf.AttachTCXEgress)
		}
		return out
	}
	probes := spec.Probes(20000)
	var before map[string][]ebpf.ProgramID
	var prev *lab.Matrix
	for i, s := range steps {
		rs := membershipRuleset(r, s.m)
		want := lab.Expected(rs, probes)
		if prev != nil && slices.Equal(want.Allowed, prev.Allowed) {
			t.Fatalf("step %q does not change the model's matrix: it would prove nothing", s.name)
		}
		prev = want
		r.conform(t, rs)
		st := r.b.LastApply()
		if i == 0 {
			if st.ProgramsLoaded == 0 || st.LinksAttached == 0 {
				t.Fatalf("first Apply loaded %d programs and attached %d links", st.ProgramsLoaded, st.LinksAttached)
			}
			before = programs()
			r.b.mu.Lock()
			runs := 0
			for _, ps := range r.b.cur.progs {
				runs += len(ps.runs)
			}
			r.b.mu.Unlock()
			if runs == 0 {
				t.Fatalf("no rule merged into a run: the run entries' path is not tested")
			}
			continue
		}
		t.Logf("%s: %d entries added, %d deleted", s.name, st.EntriesAdded, st.EntriesDeleted)
		if st.ProgramsLoaded != 0 || st.ProgramsFreed != 0 {
			t.Errorf("%s: Apply loaded %d programs and freed %d; a membership change must load none", s.name, st.ProgramsLoaded, st.ProgramsFreed)
		}
		if st.LinksAttached+st.LinksUpdated+st.LinksDetached != 0 {
			t.Errorf("%s: Apply attached %d links, updated %d, detached %d; want none", s.name, st.LinksAttached, st.LinksUpdated, st.LinksDetached)
		}
		if st.EntriesAdded+st.EntriesDeleted == 0 {
			t.Errorf("%s: Apply changed no map entry", s.name)
		}
		for hk, ids := range programs() {
			if !slices.Equal(ids, before[hk]) {
				t.Errorf("%s: %s runs programs %v, before the change %v", s.name, hk, ids, before[hk])
			}
		}
	}
}

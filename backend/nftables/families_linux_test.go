//go:build linux

package nftables

import (
	"context"
	"maps"
	"math/bits"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
)

// famFilter keeps the addresses of some families: "4", "6", "46" or "".
type famFilter string

func (f famFilter) keeps(a netip.Addr) bool {
	if a.Unmap().Is4() {
		return strings.Contains(string(f), "4")
	}
	return strings.Contains(string(f), "6")
}

// famState says which families of each set of familyScenario have members.
type famState struct {
	name           string
	src, not, port famFilter
}

// famStates walk every set through one family, both, the other and none,
// and back.
var famStates = []famState{
	{"v4 only", "4", "4", "4"},
	{"v6 appears in the selector", "46", "4", "4"},
	{"v6 appears in the port, not in the exclusion", "46", "4", "46"},
	{"v6 appears everywhere", "46", "46", "46"},
	{"v4 leaves", "6", "6", "6"},
	{"all empty", "", "", ""},
	{"v4 again", "4", "4", "46"},
}

// familyScenario fills b (holding pod0..pod3) with one ingress policy of
// pod0: allow TCP from the pods of src (pod1, pod2) but not those of not
// (pod2), to pod0's named port http; each set keeps only the members
// st lets through.
func familyScenario(b *testgen.IR, st famState) (src, not, port compile.SetID) {
	src, not = b.Selected("app == 'client'", pod1, pod2), b.Selected("app == 'bad'", pod2)
	port = b.NamedPort("http", 6, 80, pod0)
	filterNets := func(id compile.SetID, f famFilter) {
		s := b.RS.Sets[id]
		var keep []netip.Prefix
		for _, n := range s.Nets {
			if f.keeps(n.Addr()) {
				keep = append(keep, n)
			}
		}
		s.Nets = keep
	}
	filterNets(src, st.src)
	filterNets(not, st.not)
	ps := b.RS.Sets[port]
	var keep []compile.PortMember
	for _, m := range ps.Ports {
		if st.port.keeps(m.Addr) {
			keep = append(keep, m)
		}
	}
	ps.Ports = keep
	p := b.Policy(compile.Ingress, "default", "web", testgen.Rule(allow, compile.Match{Protocol: 6,
		Src: compile.PeerMatch{Sets: sets(src), NotSets: sets(not)}, Dst: compile.PeerMatch{NamedPorts: sets(port)}}))
	b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("default", deny, p))
	return src, not, port
}

func famIR() *testgen.IR {
	b := testgen.NewIR()
	for i, key := range []string{pod0, pod1, pod2, pod3} {
		b.Endpoint(key, compile.WorkloadInterface(strings.Split(key, "/")[0], strings.Split(key, "/")[1]),
			netip.AddrFrom4([4]byte{10, 77, 0, byte(i + 1)}), netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x77, 15: byte(i + 1)}))
	}
	return b
}

// TestEmptyFamilyHasNoSet: a set gets a kernel set only for a family it
// has members of, and rules read the family it lacks as an empty set would
// be read: never in it.
func TestEmptyFamilyHasNoSet(t *testing.T) {
	b := famIR()
	src, not, port := familyScenario(b, famStates[0])
	d, err := render(b.RS)
	require.NoError(t, err)
	for _, name := range []string{setName(src, 4), setName(not, 4), namedPortSetName(port, 4)} {
		require.Contains(t, d.sets, name)
	}
	for _, name := range []string{setName(src, 6), setName(not, 6), namedPortSetName(port, 6)} {
		require.NotContains(t, d.sets, name)
	}
	text := d.text("x")
	require.NotContains(t, text, "ip6 saddr @", "no IPv6 peer can match: no IPv6 rule")
	require.Contains(t, text, "ip saddr @"+setName(src, 4))
	require.Contains(t, text, "ip saddr != @"+setName(not, 4))

	// IPv6 members in the selector only: the IPv6 rule appears, and does
	// not look IPv6 peers up in the (empty) exclusion.
	b = famIR()
	familyScenario(b, famState{"", "46", "4", "46"})
	d, err = render(b.RS)
	require.NoError(t, err)
	text = d.text("x")
	require.Contains(t, text, "ip6 saddr @"+setName(src, 6))
	require.NotContains(t, text, "ip6 saddr != @")
	require.Contains(t, d.sets, namedPortSetName(port, 6))

	// Nothing in either family: no set, no rule reads one.
	b = famIR()
	familyScenario(b, famState{"", "", "", ""})
	d, err = render(b.RS)
	require.NoError(t, err)
	for name := range d.sets {
		require.False(t, strings.HasPrefix(name, "s-") || strings.HasPrefix(name, "np-"), name)
	}
}

// TestCachedRenderFollowsFamilies: the policies keep their values while
// their sets gain and lose families; a cached render must still equal a
// fresh one (the cache finds policies and tier chains by pointer), also
// after a render that refused the Ruleset.
func TestCachedRenderFollowsFamilies(t *testing.T) {
	b := famIR()
	familyScenario(b, famStates[0])
	pols, eps := b.RS.Policies, b.RS.Endpoints
	cache := newRenderCache()
	for _, st := range append(famStates, famStates...) {
		nb := famIR()
		familyScenario(nb, st)
		// First refused (a policy reads a set the Ruleset lacks), with the
		// new set values: the cache must not forget what changed.
		bad := maps.Clone(pols)
		bad["in:default/bad"] = &compile.Policy{ID: "in:default/bad", Direction: compile.Ingress, Tier: "default", Name: "bad",
			Rules: []compile.Rule{testgen.Rule(allow, compile.Match{Src: compile.PeerMatch{Sets: sets("no-such-set")}})}}
		_, err := renderCached(&compile.Ruleset{Sets: nb.RS.Sets, Policies: bad, Endpoints: eps}, cache)
		require.ErrorIs(t, err, ErrInvalidRuleset)
		// The same policy and endpoint values, new set values.
		rs := &compile.Ruleset{Sets: nb.RS.Sets, Policies: pols, Endpoints: eps}
		got, err := renderCached(rs, cache)
		require.NoError(t, err, st.name)
		want, err := render(rs)
		require.NoError(t, err, st.name)
		require.Equal(t, want.text("x"), got.text("x"), st.name)
	}
}

// TestFamiliesAppearAndDisappear applies the states one after the other:
// each Apply must enforce what the model says (IPv4 and IPv6 probes) and
// leave the kernel as planned, with kernel sets only for families with
// members that a rule reads; a change within a family that has members stays a change of
// elements.
func TestFamiliesAppearAndDisappear(t *testing.T) {
	r := newRig(t, conformanceSpec())
	ctx := context.Background()
	build := func(st famState) (*compile.Ruleset, [3]compile.SetID) {
		b := r.ir()
		prof := b.AllowAllProfile()
		for _, ep := range b.RS.Endpoints {
			ep.Ingress.Profiles = []compile.PolicyID{prof}
			ep.Egress.Profiles = []compile.PolicyID{prof}
		}
		src, not, port := familyScenario(b, st)
		return b.RS, [3]compile.SetID{src, not, port}
	}
	ns, table := r.lab.NodeNS().Name(), r.b.Table()
	for _, st := range famStates {
		t.Run(st.name, func(t *testing.T) {
			rs, ids := build(st)
			r.conform(t, rs)
			listed := nft(t, ns, "list", "sets", "inet")
			for i, f := range []famFilter{st.src, st.not, st.port} {
				for _, fam := range []uint8{4, 6} {
					name := setName(ids[i], fam)
					if i == 2 {
						name = namedPortSetName(ids[i], fam)
					}
					a := netip.AddrFrom4([4]byte{10, 0, 0, 1})
					if fam == 6 {
						a = netip.IPv6Loopback()
					}
					// A set exists for a family it has members of, if a
					// rule reads it: the rule of a family exists if the
					// peers and the named port have members of it.
					want := f.keeps(a) && st.src.keeps(a) && st.port.keeps(a)
					require.Equal(t, want, strings.Contains(listed, "set "+name+" "), "%s in table %s:\n%s", name, table, listed)
				}
			}
		})
	}
	t.Run("a member of a family with members is an element", func(t *testing.T) {
		rs, _ := build(famStates[0])
		require.NoError(t, r.b.Apply(ctx, rs))
		rs, ids := build(famStates[0])
		s := rs.Sets[ids[0]]
		s.Nets = append(s.Nets, netip.MustParsePrefix("10.77.0.4/32"))
		require.NoError(t, r.b.Apply(ctx, rs))
		st := r.b.LastApply()
		require.Zero(t, st.ChainsAdded+st.ChainsRewritten+st.ChainsDeleted+st.SetsAdded+st.SetsDeleted, "%+v", st)
		require.Equal(t, 2, st.ElementsAdded, "an interval: start and end")
		r.conform(t, rs)
	})
	t.Run("a foreign set of a missing family is drift", func(t *testing.T) {
		rs, ids := build(famStates[0])
		r.conform(t, rs)
		name := setName(ids[0], 6)
		nft(t, ns, "add", "set", "inet", table, name, "{ type ipv6_addr; flags interval; }")
		nft(t, ns, "add", "element", "inet", table, name, "{ fd77::3 }")
		dr, err := r.b.Reconcile(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, dr.SetsDeleted, "%s", dr)
		r.b.forgetVerified()
		again, err := r.b.Reconcile(ctx)
		require.NoError(t, err)
		require.True(t, again.Empty(), "second reconcile found %s", again)
		require.NotContains(t, nft(t, ns, "list", "sets", "inet"), "set "+name+" ")
	})
}

// setFamilies (used when a set has no cache entry) says what renderSet
// says.
func TestSetFamiliesAgreesWithRenderSet(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, s := range []*compile.IPSet{
		{ID: "a", Kind: compile.SetNets},
		{ID: "b", Kind: compile.SetNets, Nets: pfx("10.0.0.1/32")},
		{ID: "c", Kind: compile.SetNets, Nets: pfx("fd00::/64", "::ffff:10.0.0.0/104")},
		{ID: "d", Kind: compile.SetNets, Nets: pfx("::ffff:10.0.0.1/128")},
		{ID: "e", Kind: compile.SetNets, Literal: true, Nets: pfx("10.0.0.0/8")},
		{ID: "f", Kind: compile.SetNets, Literal: true, Nets: pfx("1.0.0.0/8", "2.0.0.0/8", "3.0.0.0/8", "4.0.0.0/8", "5.0.0.0/8")},
		{ID: "g", Kind: compile.SetNamedPorts, Ports: []compile.PortMember{{Addr: netip.MustParseAddr("fd00::1"), Protocol: 6, Port: 80}}},
		{ID: "h", Kind: compile.SetNamedPorts},
	} {
		made, fams := renderSet(s)
		require.Equal(t, fams, setFamilies(s), s.ID)
		if !inlined(s) {
			require.Len(t, made, bits.OnesCount8(uint8(fams)), s.ID)
		}
	}
}

// TestUnreadSetHasNoKernelSet: a set of the Ruleset that no rule of the
// node reads (the policies of other nodes' pods) gets no kernel set, and
// its members changing sends nothing; once a rule reads it, it is created
// in the batch that adds the rule, and enforced.
func TestUnreadSetHasNoKernelSet(t *testing.T) {
	r := newRig(t, conformanceSpec())
	ctx := context.Background()
	build := func(members []string, read bool) (*compile.Ruleset, compile.SetID) {
		rs := baseline(r)
		b := &testgen.IR{RS: rs}
		id := b.Selected("app == 'elsewhere'", members...)
		if read {
			p := b.Policy(compile.Egress, "default", "out", testgen.Rule(allow, compile.Match{Dst: compile.PeerMatch{Sets: sets(id)}}))
			rs.Endpoints[pod3].Egress.Tiers = tiers(tier("default", deny, p))
		}
		return rs, id
	}
	rs, id := build([]string{pod2}, false)
	r.conform(t, rs)
	for _, fam := range []uint8{4, 6} {
		require.NotContains(t, r.b.cur.sets, setName(id, fam))
	}
	rs, _ = build([]string{pod1, pod2}, false)
	require.NoError(t, r.b.Apply(ctx, rs))
	require.Zero(t, r.b.LastApply().Messages(), "%+v", r.b.LastApply())

	rs, _ = build([]string{pod1}, true)
	r.conform(t, rs)
	st := r.b.LastApply()
	require.Equal(t, 2, st.SetsAdded, "%+v", st)
	listed := nft(t, r.lab.NodeNS().Name(), "list", "sets", "inet")
	for _, fam := range []uint8{4, 6} {
		require.Contains(t, listed, "set "+setName(id, fam)+" ")
	}

	// Read no more: gone, with the rule.
	rs, _ = build([]string{pod1}, false)
	r.conform(t, rs)
	require.Equal(t, 2, r.b.LastApply().SetsDeleted)
}

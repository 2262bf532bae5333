//go:build linux

package iptables

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/compile"
)

// bigRuleset: pods in 11 groups, each policy applying to one group with
// two Allow rules (a shared selector set and a literal net), like the
// bench harness's node.
func bigRuleset(pods, policies int) *compile.Ruleset {
	rs := &compile.Ruleset{Sets: map[compile.SetID]*compile.IPSet{}, Policies: map[compile.PolicyID]*compile.Policy{}, Endpoints: map[string]*compile.Endpoint{}}
	allow := compile.PolicyID("profile:kns")
	rs.Policies[allow] = &compile.Policy{ID: allow, Rules: []compile.Rule{{Action: compile.ActionAllow}}}
	groups := make([][]compile.PolicyID, 11)
	for i := range policies {
		sel := compile.SetID(fmt.Sprintf("sel:a%d", i%50))
		rs.Sets[sel] = &compile.IPSet{ID: sel, Kind: compile.SetNets, Nets: []netip.Prefix{netip.MustParsePrefix("10.65.0.1/32")}}
		lit := compile.SetID(fmt.Sprintf("nets:%d", i))
		rs.Sets[lit] = &compile.IPSet{ID: lit, Kind: compile.SetNets, Literal: true,
			Nets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/250), byte(i % 250), 0}), 24)}}
		id := compile.PolicyID(fmt.Sprintf("in:p%d", i))
		rs.Policies[id] = &compile.Policy{ID: id, Rules: []compile.Rule{
			{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{sel}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: 80, Max: 80}}}}},
			{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{lit}}}}}}
		groups[i%11] = append(groups[i%11], id)
	}
	for p := range pods {
		addBenchPod(rs, p, groups[p%11])
	}
	return rs
}

func addBenchPod(rs *compile.Ruleset, p int, pols []compile.PolicyID) {
	ns, name := fmt.Sprintf("ns%d", p%11), fmt.Sprintf("pod%d", p)
	ep := &compile.Endpoint{Key: ns + "/" + name, Kind: compile.WorkloadEndpoint, Interface: compile.WorkloadInterface(ns, name),
		Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 65, byte(p / 250), byte(1 + p%250)})}}
	ep.Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: pols, EndAction: compile.ActionDeny}}
	ep.Ingress.Profiles = []compile.PolicyID{"profile:kns"}
	ep.Egress.Profiles = []compile.PolicyID{"profile:kns"}
	rs.Endpoints[ep.Key] = ep
}

// BenchmarkApplyPlusPod10k: the Go side of adding one pod to a node of
// 110 pods and 10,000 policies (render with the cache, diff, restore
// input), with the commands going to a recording fake.
func BenchmarkApplyPlusPod10k(b *testing.B) {
	base := bigRuleset(110, 10000)
	be, _ := fakeBackend()
	ctx := context.Background()
	if err := be.Apply(ctx, base); err != nil {
		b.Fatal(err)
	}
	withPod := *base
	withPod.Endpoints = maps.Clone(base.Endpoints)
	addBenchPod(&withPod, 110, base.Endpoints["ns0/pod0"].Ingress.Tiers[0].Policies)
	b.ResetTimer()
	for i := range b.N {
		rs := base
		if i%2 == 0 {
			rs = &withPod
		}
		if err := be.Apply(ctx, rs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTierCacheSeesChangedPolicy: endpoints keep their tier lists (same
// slices) while one policy changes value: the cached tier must not be
// reused, and the render must equal a fresh one.
func TestTierCacheSeesChangedPolicy(t *testing.T) {
	base := bigRuleset(22, 50)
	cache := newRenderCache()
	n := newNaming("c")
	if _, err := render(base, n, cache); err != nil {
		t.Fatal(err)
	}
	cache.commit()
	changed := *base
	changed.Policies = maps.Clone(base.Policies)
	old := base.Policies["in:p7"]
	p := *old
	p.Rules = []compile.Rule{{Action: compile.ActionDeny, Match: compile.Match{Protocol: 17}}}
	changed.Policies["in:p7"] = &p
	cached, err := render(&changed, n, cache)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := render(&changed, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(cached.dump()) != string(fresh.dump()) {
		t.Fatal("the cached render kept the old policy")
	}
	if !strings.Contains(string(cached.dump()), "-p udp") {
		t.Fatal("the changed policy is not rendered")
	}
}

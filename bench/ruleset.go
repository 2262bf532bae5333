package main

import (
	"fmt"
	"net/netip"

	"github.com/calyxnet/calyx/compile"
)

// clusterRuleset builds a node of pods endpoints and policies policies.
// Policy i is namespaced in group i%groups and applies (ingress) to the
// pods of that group; its two rules allow TCP from a selector set shared
// by many policies, and from a literal net. Pods are grouped like the
// namespaces of a real node, so endpoints of one group share chains.
func clusterRuleset(pods, policies int) *compile.Ruleset {
	const groups = 11
	const selectors = 50
	rs := &compile.Ruleset{
		Sets:      map[compile.SetID]*compile.IPSet{},
		Policies:  map[compile.PolicyID]*compile.Policy{},
		Endpoints: map[string]*compile.Endpoint{},
	}
	allow := compile.PolicyID("profile:kns")
	rs.Policies[allow] = &compile.Policy{ID: allow, Name: "profile:kns", Rules: []compile.Rule{{Action: compile.ActionAllow}}}
	byGroup := make([][]compile.PolicyID, groups)
	for i := range policies {
		g := i % groups
		sel := compile.SetID(fmt.Sprintf("sel:app == 'a%d'", i%selectors))
		lit := compile.SetID(fmt.Sprintf("nets:10.%d.%d.0/24", 100+i/250, i%250))
		if _, ok := rs.Sets[lit]; !ok {
			rs.Sets[lit] = &compile.IPSet{ID: lit, Kind: compile.SetNets, Literal: true,
				Nets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/250), byte(i % 250), 0}), 24)}}
		}
		id := compile.PolicyID(fmt.Sprintf("in:default/g%d/p%d", g, i))
		port := uint16(1000 + i%1000)
		rs.Policies[id] = &compile.Policy{ID: id, Direction: compile.Ingress, Tier: "default", Name: fmt.Sprintf("g%d/p%d", g, i),
			Rules: []compile.Rule{
				{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{sel}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: port, Max: port}}}}},
				{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{lit}}}},
			}}
		byGroup[g] = append(byGroup[g], id)
	}
	members := make([][]netip.Prefix, selectors)
	for p := range pods {
		addPod(rs, p, byGroup[p%groups], allow)
		members[p%selectors] = append(members[p%selectors], podPrefix(p))
	}
	for s := range selectors {
		id := compile.SetID(fmt.Sprintf("sel:app == 'a%d'", s))
		rs.Sets[id] = &compile.IPSet{ID: id, Kind: compile.SetNets, Selector: fmt.Sprintf("app == 'a%d'", s), Nets: members[s]}
	}
	return rs
}

func podAddr(p int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 65, byte(p / 250), byte(1 + p%250)})
}

func podPrefix(p int) netip.Prefix { return netip.PrefixFrom(podAddr(p), 32) }

func addPod(rs *compile.Ruleset, p int, policies []compile.PolicyID, profile compile.PolicyID) {
	ns, name := fmt.Sprintf("ns%d", p%11), fmt.Sprintf("pod%d", p)
	ep := &compile.Endpoint{Key: ns + "/" + name, Kind: compile.WorkloadEndpoint, Interface: compile.WorkloadInterface(ns, name),
		Addrs: []netip.Addr{podAddr(p)}}
	if len(policies) > 0 {
		ep.Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: policies, EndAction: compile.ActionDeny}}
	}
	ep.Ingress.Profiles = []compile.PolicyID{profile}
	ep.Egress.Profiles = []compile.PolicyID{profile}
	rs.Endpoints[ep.Key] = ep
}

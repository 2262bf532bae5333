// Package benchset builds the Rulesets the bench harness (go run ./bench)
// measures, so that a dataplane's own benchmarks can run exactly the
// programs and entries the harness's traffic figures come from.
package benchset

import (
	"fmt"
	"net/netip"

	"github.com/calyxnet/calyx/compile"
)

// Ports the traffic pair's server listens on: iperf3 and the
// request/response (RR and CRR) server.
const (
	IperfPort = 5201
	RRPort    = 7000
)

// Names of the traffic configurations Traffic returns.
const (
	Empty    = "empty"          // the pair's two endpoints, no policy
	Policies = "a-10k-policies" // (a) a node of many policies
	Rules    = "b-10k-rules"    // (b) one policy of many rules
)

// Profile is the allow-all profile every endpoint ends with.
const Profile compile.PolicyID = "profile:kns"

// Pod is an endpoint of the measured pair.
type Pod struct {
	Key       string // "namespace/name"
	Interface string // host side of the pod's veth
	Addrs     []netip.Addr
}

// Cluster builds a node of pods endpoints and policies policies. Policy i
// is namespaced in group i%11 and applies (ingress) to the pods of that
// group; its two rules allow TCP from a selector set shared by many
// policies (one of 50), and from a literal net. Pods are grouped like the
// namespaces of a real node, so endpoints of one group share chains.
func Cluster(pods, policies int) *compile.Ruleset {
	const groups = 11
	const selectors = 50
	rs := newRuleset()
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
		ns, name := fmt.Sprintf("ns%d", p%groups), fmt.Sprintf("pod%d", p)
		AddPod(rs, Pod{Key: ns + "/" + name, Interface: compile.WorkloadInterface(ns, name), Addrs: []netip.Addr{PodAddr(p)}}, byGroup[p%groups])
		members[p%selectors] = append(members[p%selectors], netip.PrefixFrom(PodAddr(p), 32))
	}
	for s := range selectors {
		id := compile.SetID(fmt.Sprintf("sel:app == 'a%d'", s))
		rs.Sets[id] = &compile.IPSet{ID: id, Kind: compile.SetNets, Selector: fmt.Sprintf("app == 'a%d'", s), Nets: members[s]}
	}
	return rs
}

// PodAddr is the address of pod p of Cluster's node.
func PodAddr(p int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 65, byte(p / 250), byte(1 + p%250)})
}

func newRuleset() *compile.Ruleset {
	rs := &compile.Ruleset{Sets: map[compile.SetID]*compile.IPSet{}, Policies: map[compile.PolicyID]*compile.Policy{}, Endpoints: map[string]*compile.Endpoint{}}
	rs.Policies[Profile] = &compile.Policy{ID: Profile, Name: string(Profile), Rules: []compile.Rule{{Action: compile.ActionAllow}}}
	return rs
}

// AddPod adds p to rs as a workload endpoint with the ingress policies
// (one tier, "default", ending in deny; none: no tier) and the allow-all
// profile both ways.
func AddPod(rs *compile.Ruleset, p Pod, ingress []compile.PolicyID) {
	ep := &compile.Endpoint{Key: p.Key, Kind: compile.WorkloadEndpoint, Interface: p.Interface, Addrs: p.Addrs}
	if len(ingress) > 0 {
		ep.Ingress.Tiers = []compile.TierPolicies{{Tier: "default", Policies: ingress, EndAction: compile.ActionDeny}}
	}
	ep.Ingress.Profiles = []compile.PolicyID{Profile}
	ep.Egress.Profiles = []compile.PolicyID{Profile}
	rs.Endpoints[p.Key] = ep
}

// Traffic returns the configurations the per-packet figures compare, all
// with the pair (client, server) as endpoints and the server's ingress
// the only policed direction:
//
//   - Empty: no policy, the profile allows.
//   - Policies, case (a): Cluster(110, n) plus the pair, with 10 policies
//     on the server's ingress, the last allowing the client on every port.
//   - Rules, case (b): one policy of n Allow rules (a distinct /32 and
//     port each) whose last rule admits the client on IperfPort and
//     RRPort.
func Traffic(client, server Pod, n int) map[string]*compile.Ruleset {
	empty := newRuleset()
	AddPod(empty, client, nil)
	AddPod(empty, server, nil)

	a := Cluster(110, n)
	addPoliciesCase(a, client, server)
	b := newRuleset()
	addRulesCase(b, client, server, n)
	return map[string]*compile.Ruleset{Empty: empty, Policies: a, Rules: b}
}

// addPoliciesCase adds the pair of case (a) to a Cluster: the client, and
// the server with 10 ingress policies, the last allowing the client (a
// set of its address, "sel:role == 'client'") on every port.
func addPoliciesCase(rs *compile.Ruleset, client, server Pod) {
	pair := compile.SetID("sel:role == 'client'")
	rs.Sets[pair] = &compile.IPSet{ID: pair, Kind: compile.SetNets, Selector: "role == 'client'", Nets: []netip.Prefix{netip.PrefixFrom(client.Addrs[0], 32)}}
	var pairPols []compile.PolicyID
	for i := range 10 {
		id := compile.PolicyID(fmt.Sprintf("in:default/pair/p%d", i))
		m := compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{"sel:app == 'a1'"}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: uint16(2000 + i), Max: uint16(2000 + i)}}}}
		if i == 9 {
			m = compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{pair}}}
		}
		rs.Policies[id] = &compile.Policy{ID: id, Direction: compile.Ingress, Tier: "default", Name: fmt.Sprintf("pair/p%d", i),
			Rules: []compile.Rule{{Action: compile.ActionAllow, Match: m}}}
		pairPols = append(pairPols, id)
	}
	AddPod(rs, client, nil)
	AddPod(rs, server, pairPols)
}

// addRulesCase adds the pair of case (b): the client, and the server with
// one ingress policy ("in:default/big") of n Allow rules, a distinct /32
// of 172.16.0.0/12 and port each, whose last admits the client on
// IperfPort and RRPort only.
func addRulesCase(rs *compile.Ruleset, client, server Pod, n int) {
	var rules []compile.Rule
	for i := range n {
		var pfx netip.Prefix
		port := uint16(10000 + i%50000)
		if i == n-1 {
			pfx, port = netip.PrefixFrom(client.Addrs[0], 32), 0
		} else {
			pfx = netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(i/65536), byte(i / 256), byte(i)}), 32)
		}
		id := compile.SetID("nets:" + pfx.String())
		rs.Sets[id] = &compile.IPSet{ID: id, Kind: compile.SetNets, Literal: true, Nets: []netip.Prefix{pfx}}
		m := compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{id}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: port, Max: port}}}}
		if port == 0 {
			m.Dst.Ports = []compile.PortRange{{Min: IperfPort, Max: IperfPort}, {Min: RRPort, Max: RRPort}}
		}
		rules = append(rules, compile.Rule{Action: compile.ActionAllow, Match: m, Origin: compile.Origin{Policy: "big", Index: i}})
	}
	big := compile.PolicyID("in:default/big")
	rs.Policies[big] = &compile.Policy{ID: big, Direction: compile.Ingress, Tier: "default", Name: "big", Rules: rules}
	AddPod(rs, client, nil)
	AddPod(rs, server, []compile.PolicyID{big})
}

// Pair is a client and the server it sends to.
type Pair struct {
	Client, Server Pod
}

// Paired returns one Ruleset holding every traffic configuration at once,
// each on its own pair of pods, so that a harness can alternate between
// them without reprogramming the dataplane: a Cluster(110, n) node; the
// empty pairs, no policy on either side (Empty); pair a with case (a)'s
// policies on its server (Policies); pair b with case (b)'s one policy of
// n rules on its server (Rules). The pairs' addresses must be distinct and
// outside the node's pods (10.65.0.0/16) and the policies' literal nets
// (10.100.0.0 on, one /24 per policy; 172.16.0.0/12), or a policy would
// match another pair's client.
func Paired(empty []Pair, a, b Pair, n int) *compile.Ruleset {
	rs := Cluster(110, n)
	for _, p := range empty {
		AddPod(rs, p.Client, nil)
		AddPod(rs, p.Server, nil)
	}
	addPoliciesCase(rs, a.Client, a.Server)
	addRulesCase(rs, b.Client, b.Server, n)
	return rs
}

package testgen

import (
	"fmt"
	"net/netip"
	"slices"

	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/compile"
)

// IRPod is an endpoint random Rulesets are built around.
type IRPod struct {
	Key       string
	Interface string
	Addrs     []netip.Addr
	// Ports are the ports the pod serves, as (protocol, port).
	Ports []compile.PortMember
}

// IRWorld is what random Rulesets talk about: the node's pods, addresses
// outside them, and the ports and source ports probes use.
type IRWorld struct {
	Pods []IRPod
	// External are addresses that belong to no endpoint.
	External []netip.Addr
	// Ports are destination ports worth matching (the served ones).
	Ports []uint16
	// SrcPortMin and SrcPortMax bound the source ports packets use.
	SrcPortMin, SrcPortMax uint16
}

// IRRuleset generates random Rulesets over w: sets picking random pods and
// literal nets (IPv4 and IPv6, some covering external addresses), named
// ports, policies in two tiers with Allow, Deny, Pass and Log rules
// matching protocols, IP versions, ICMP, sets and not-sets, ports, ranges,
// not-ports and named ports on either side, and endpoints with random
// tiers, end actions and profiles.
func IRRuleset(w *IRWorld) *rapid.Generator[*compile.Ruleset] {
	return rapid.Custom(func(t *rapid.T) *compile.Ruleset {
		g := &irGen{t: t, w: w, b: NewIR()}
		return g.ruleset()
	})
}

type irGen struct {
	t    *rapid.T
	w    *IRWorld
	b    *IR
	nets []compile.SetID // address sets
	nps  []compile.SetID // named-port sets
}

func (g *irGen) ruleset() *compile.Ruleset {
	for _, p := range g.w.Pods {
		g.b.Endpoint(p.Key, p.Interface, p.Addrs...)
	}
	g.b.RS.Settings.LogPrefix = "calyx: "
	nSel := rapid.IntRange(0, 3).Draw(g.t, "selectorSets")
	for i := range nSel {
		g.nets = append(g.nets, g.selectorSet(i))
	}
	nLit := rapid.IntRange(0, 3).Draw(g.t, "literalSets")
	for i := range nLit {
		g.nets = append(g.nets, g.literalSet(i))
	}
	nNP := rapid.IntRange(0, 2).Draw(g.t, "namedPortSets")
	for i := range nNP {
		g.nps = append(g.nps, g.namedPortSet(i))
	}
	tiers := []string{"security", "default"}
	type pol struct {
		id   compile.PolicyID
		dir  compile.Direction
		tier string
	}
	var pols []pol
	nPol := rapid.IntRange(0, 6).Draw(g.t, "policies")
	for i := range nPol {
		dir := compile.Direction(rapid.IntRange(1, 2).Draw(g.t, "dir"))
		tier := rapid.SampledFrom(tiers).Draw(g.t, "tier")
		nRules := rapid.IntRange(0, 4).Draw(g.t, "rules")
		var rules []compile.Rule
		for range nRules {
			rules = append(rules, g.rule())
		}
		id := g.b.Policy(dir, tier, fmt.Sprintf("p%d", i), rules...)
		pols = append(pols, pol{id, dir, tier})
	}
	allow := g.b.AllowAllProfile()
	deny := compile.PolicyID("profile:deny-web")
	g.b.RS.Policies[deny] = &compile.Policy{ID: deny, Name: "profile:deny-web", Rules: []compile.Rule{
		{Action: compile.ActionDeny, Match: compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: Ports(80)}}},
		{Action: compile.ActionPass, Match: compile.Match{Protocol: 17}},
		{Action: compile.ActionAllow},
	}}
	profiles := [][]compile.PolicyID{{allow}, {allow}, {deny}, nil, {deny, allow}}
	for _, p := range g.w.Pods {
		ep := g.b.RS.Endpoints[p.Key]
		for _, dir := range []compile.Direction{compile.Ingress, compile.Egress} {
			dp := &ep.Ingress
			if dir == compile.Egress {
				dp = &ep.Egress
			}
			for _, tier := range tiers {
				var ids []compile.PolicyID
				for _, pl := range pols {
					if pl.dir == dir && pl.tier == tier && rapid.Bool().Draw(g.t, "applies") {
						ids = append(ids, pl.id)
					}
				}
				if len(ids) == 0 {
					continue
				}
				end := compile.ActionDeny
				if rapid.IntRange(0, 3).Draw(g.t, "endPass") == 0 {
					end = compile.ActionPass
				}
				dp.Tiers = append(dp.Tiers, compile.TierPolicies{Tier: tier, Policies: ids, EndAction: end})
			}
			dp.Profiles = rapid.SampledFrom(profiles).Draw(g.t, "profiles")
		}
	}
	return g.b.RS
}

func (g *irGen) selectorSet(i int) compile.SetID {
	var keys []string
	for _, p := range g.w.Pods {
		if rapid.Bool().Draw(g.t, "member") {
			keys = append(keys, p.Key)
		}
	}
	return g.b.Selected(fmt.Sprintf("sel%d", i), keys...)
}

// literalSet draws nets around the world's addresses: exact addresses,
// covering prefixes of random length, and unrelated nets.
func (g *irGen) literalSet(i int) compile.SetID {
	var all []netip.Addr
	for _, p := range g.w.Pods {
		all = append(all, p.Addrs...)
	}
	all = append(all, g.w.External...)
	n := rapid.IntRange(1, 3).Draw(g.t, "nets")
	var cidrs []string
	for range n {
		a := rapid.SampledFrom(all).Draw(g.t, "netAddr")
		bits := a.BitLen() - rapid.IntRange(0, 4).Draw(g.t, "widen")
		if rapid.IntRange(0, 5).Draw(g.t, "wide") == 0 {
			bits = a.BitLen() / 2
		}
		cidrs = append(cidrs, netip.PrefixFrom(a, bits).Masked().String())
	}
	id := g.b.Nets(cidrs...)
	// Distinct IDs even for equal contents drawn twice.
	s := g.b.RS.Sets[id]
	delete(g.b.RS.Sets, id)
	s.ID = compile.SetID(fmt.Sprintf("lit%d:%s", i, id))
	g.b.RS.Sets[s.ID] = s
	return s.ID
}

func (g *irGen) namedPortSet(i int) compile.SetID {
	proto := rapid.SampledFrom([]uint8{6, 17}).Draw(g.t, "npProto")
	var members []compile.PortMember
	for _, p := range g.w.Pods {
		if !rapid.Bool().Draw(g.t, "npMember") {
			continue
		}
		var served []uint16
		for _, pm := range p.Ports {
			if pm.Protocol == proto {
				served = append(served, pm.Port)
			}
		}
		if len(served) == 0 {
			continue
		}
		port := rapid.SampledFrom(served).Draw(g.t, "npPort")
		for _, a := range p.Addrs {
			members = append(members, compile.PortMember{Addr: a, Protocol: proto, Port: port})
		}
	}
	slices.SortFunc(members, comparePortMember)
	id := compile.SetID(fmt.Sprintf("np%d", i))
	g.b.RS.Sets[id] = &compile.IPSet{ID: id, Kind: compile.SetNamedPorts, Selector: fmt.Sprintf("np%d", i),
		PortName: fmt.Sprintf("port%d", i), Protocol: proto, Ports: members}
	return id
}

func (g *irGen) rule() compile.Rule {
	action := rapid.SampledFrom([]compile.Action{compile.ActionAllow, compile.ActionAllow, compile.ActionDeny,
		compile.ActionPass, compile.ActionLog}).Draw(g.t, "action")
	var m compile.Match
	switch rapid.IntRange(0, 9).Draw(g.t, "proto") {
	case 0, 1, 2:
	case 3, 4:
		m.Protocol = 6
	case 5, 6:
		m.Protocol = 17
	case 7:
		m.Protocol = 1
	case 8:
		m.NotProtocol = rapid.SampledFrom([]uint8{6, 17}).Draw(g.t, "notProto")
	case 9:
		m.Protocol = 58
	}
	if rapid.IntRange(0, 5).Draw(g.t, "ipv") == 0 {
		m.IPVersion = rapid.SampledFrom([]uint8{4, 6}).Draw(g.t, "ipVersion")
	}
	if rapid.IntRange(0, 7).Draw(g.t, "icmp") == 0 {
		m.ICMP = g.icmp()
	}
	if rapid.IntRange(0, 7).Draw(g.t, "notIcmp") == 0 {
		m.NotICMP = g.icmp()
	}
	m.Src = g.peer(true)
	m.Dst = g.peer(false)
	return Rule(action, m)
}

func (g *irGen) icmp() *compile.ICMPMatch {
	im := &compile.ICMPMatch{Type: rapid.SampledFrom([]uint8{0, 3, 8, 128, 129}).Draw(g.t, "icmpType")}
	if rapid.Bool().Draw(g.t, "icmpCode") {
		c := uint8(rapid.IntRange(0, 3).Draw(g.t, "code"))
		im.Code = &c
	}
	return im
}

func (g *irGen) peer(src bool) compile.PeerMatch {
	var pm compile.PeerMatch
	pick := func(from []compile.SetID, label string) []compile.SetID {
		if len(from) == 0 || rapid.IntRange(0, 2).Draw(g.t, label) != 0 {
			return nil
		}
		return []compile.SetID{rapid.SampledFrom(from).Draw(g.t, label+"Set")}
	}
	pm.Sets = pick(g.nets, "sets")
	pm.NotSets = pick(g.nets, "notSets")
	if src {
		if rapid.IntRange(0, 5).Draw(g.t, "srcPorts") == 0 {
			pm.Ports = g.ranges(g.w.SrcPortMin, g.w.SrcPortMax)
		}
		return pm
	}
	if rapid.IntRange(0, 2).Draw(g.t, "ports") == 0 {
		pm.Ports = g.portRanges()
	}
	pm.NamedPorts = pick(g.nps, "namedPorts")
	if rapid.IntRange(0, 4).Draw(g.t, "notPorts") == 0 {
		pm.NotPorts = g.portRanges()
	}
	pm.NotNamedPorts = pick(g.nps, "notNamedPorts")
	return pm
}

// portRanges draws ranges that hit, straddle or miss the world's ports.
func (g *irGen) portRanges() []compile.PortRange {
	n := rapid.IntRange(1, 3).Draw(g.t, "nRanges")
	var out []compile.PortRange
	for range n {
		p := rapid.SampledFrom(g.w.Ports).Draw(g.t, "port")
		switch rapid.IntRange(0, 3).Draw(g.t, "shape") {
		case 0, 1:
			out = append(out, compile.PortRange{Min: p, Max: p})
		case 2:
			lo := p - uint16(rapid.IntRange(0, 20).Draw(g.t, "below"))
			out = append(out, compile.PortRange{Min: lo, Max: p + uint16(rapid.IntRange(0, 20).Draw(g.t, "above"))})
		case 3:
			out = append(out, compile.PortRange{Min: p + 1, Max: p + 1 + uint16(rapid.IntRange(0, 5).Draw(g.t, "miss"))})
		}
	}
	return out
}

func (g *irGen) ranges(lo, hi uint16) []compile.PortRange {
	a := uint16(rapid.IntRange(int(lo), int(hi)).Draw(g.t, "srcLo"))
	b := uint16(rapid.IntRange(int(a), int(hi)).Draw(g.t, "srcHi"))
	return []compile.PortRange{{Min: a, Max: b}}
}

// IRPacket generates first packets between the world's addresses: TCP,
// UDP, ICMP and ICMPv6, from source ports in the world's range to its ports.
func IRPacket(w *IRWorld) *rapid.Generator[IRPacketT] {
	return rapid.Custom(func(t *rapid.T) IRPacketT {
		var all []netip.Addr
		for _, p := range w.Pods {
			all = append(all, p.Addrs...)
		}
		all = append(all, w.External...)
		src := rapid.SampledFrom(all).Draw(t, "src")
		var same []netip.Addr
		for _, a := range all {
			if a.Is4() == src.Is4() {
				same = append(same, a)
			}
		}
		p := IRPacketT{Src: src, Dst: rapid.SampledFrom(same).Draw(t, "dst")}
		switch rapid.IntRange(0, 3).Draw(t, "proto") {
		case 0:
			p.Protocol = 6
		case 1:
			p.Protocol = 17
		default:
			p.Protocol = 1
			if src.Is6() {
				p.Protocol = 58
			}
			p.ICMPType = rapid.SampledFrom([]uint8{0, 3, 8, 128, 129}).Draw(t, "type")
			p.ICMPCode = uint8(rapid.IntRange(0, 3).Draw(t, "code"))
			return p
		}
		p.SrcPort = uint16(rapid.IntRange(int(w.SrcPortMin), int(w.SrcPortMax)).Draw(t, "sport"))
		p.DstPort = rapid.SampledFrom(w.Ports).Draw(t, "dport")
		return p
	})
}

// IRPacketT is a generated first packet (the fields of model.Packet, kept
// here so testgen does not depend on a backend).
type IRPacketT struct {
	Src, Dst           netip.Addr
	Protocol           uint8
	SrcPort, DstPort   uint16
	ICMPType, ICMPCode uint8
}

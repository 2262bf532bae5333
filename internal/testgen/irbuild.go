package testgen

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/calyxnet/calyx/compile"
)

// IR builds compile.Rulesets by hand for dataplane tests: scenarios that
// read like the policies they stand for, without the compiler.
type IR struct {
	RS *compile.Ruleset
}

// NewIR returns an empty builder.
func NewIR() *IR {
	return &IR{RS: &compile.Ruleset{
		Sets:      map[compile.SetID]*compile.IPSet{},
		Policies:  map[compile.PolicyID]*compile.Policy{},
		Endpoints: map[string]*compile.Endpoint{},
	}}
}

// Nets adds a literal nets set and returns its ID.
func (b *IR) Nets(cidrs ...string) compile.SetID {
	var nets []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a := netip.MustParseAddr(c)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		nets = append(nets, p.Masked())
	}
	id := compile.SetID(fmt.Sprintf("nets:%v", cidrs))
	b.RS.Sets[id] = &compile.IPSet{ID: id, Kind: compile.SetNets, Literal: true, Nets: canonicalNets(nets)}
	return id
}

// Selected adds a selector set holding the addresses of the given
// endpoints (by key) and returns its ID. Endpoints must be added first.
func (b *IR) Selected(selector string, keys ...string) compile.SetID {
	var nets []netip.Prefix
	for _, k := range keys {
		ep, ok := b.RS.Endpoints[k]
		if !ok {
			panic("testgen: unknown endpoint " + k)
		}
		for _, a := range ep.Addrs {
			nets = append(nets, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	id := compile.SetID("sel:" + selector)
	b.RS.Sets[id] = &compile.IPSet{ID: id, Kind: compile.SetNets, Selector: selector, Nets: canonicalNets(nets)}
	return id
}

// NamedPort adds a named-port set: port name on protocol proto of the given
// endpoints, each at the given port number.
func (b *IR) NamedPort(name string, proto uint8, port uint16, keys ...string) compile.SetID {
	var members []compile.PortMember
	for _, k := range keys {
		for _, a := range b.RS.Endpoints[k].Addrs {
			members = append(members, compile.PortMember{Addr: a, Protocol: proto, Port: port})
		}
	}
	slices.SortFunc(members, comparePortMember)
	id := compile.SetID(fmt.Sprintf("np:%s/%d:%v", name, proto, keys))
	b.RS.Sets[id] = &compile.IPSet{ID: id, Kind: compile.SetNamedPorts, Selector: fmt.Sprint(keys), PortName: name, Protocol: proto, Ports: members}
	return id
}

func comparePortMember(a, b compile.PortMember) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if a.Protocol != b.Protocol {
		return int(a.Protocol) - int(b.Protocol)
	}
	return int(a.Port) - int(b.Port)
}

func canonicalNets(nets []netip.Prefix) []netip.Prefix {
	slices.SortFunc(nets, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(nets)
}

// Endpoint adds a workload endpoint with no policy (its profiles decide;
// it has none until Profile is called, so it denies).
func (b *IR) Endpoint(key, iface string, addrs ...netip.Addr) *compile.Endpoint {
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, func(x, y netip.Addr) int { return x.Compare(y) })
	ep := &compile.Endpoint{Key: key, Kind: compile.WorkloadEndpoint, Interface: iface, Addrs: addrs}
	b.RS.Endpoints[key] = ep
	return ep
}

// Policy adds a compiled policy and returns its ID.
func (b *IR) Policy(dir compile.Direction, tier, name string, rules ...compile.Rule) compile.PolicyID {
	prefix := "in:"
	if dir == compile.Egress {
		prefix = "out:"
	}
	id := compile.PolicyID(prefix + tier + "/" + name)
	for i := range rules {
		rules[i].Origin = compile.Origin{Tier: tier, Policy: name, Kind: "GlobalNetworkPolicy", Index: i}
	}
	b.RS.Policies[id] = &compile.Policy{ID: id, Direction: dir, Tier: tier, Name: name, Rules: rules}
	return id
}

// AllowAllProfile adds (once) a profile that allows everything, as
// Kubernetes namespaces have, and returns its ID.
func (b *IR) AllowAllProfile() compile.PolicyID {
	id := compile.PolicyID("profile:allow-all")
	if _, ok := b.RS.Policies[id]; !ok {
		b.RS.Policies[id] = &compile.Policy{ID: id, Name: "profile:allow-all",
			Rules: []compile.Rule{{Action: compile.ActionAllow, Origin: compile.Origin{Policy: "profile:allow-all", Kind: "Profile", Index: -1}}}}
	}
	return id
}

// Rule returns a rule with the given action and match.
func Rule(a compile.Action, m compile.Match) compile.Rule { return compile.Rule{Action: a, Match: m} }

// Ports returns port ranges: Ports(80) or Ports(80, 80, 8000, 8080) as
// min/max pairs when given an even count above one.
func Ports(ps ...uint16) []compile.PortRange {
	if len(ps) == 1 {
		return []compile.PortRange{{Min: ps[0], Max: ps[0]}}
	}
	var out []compile.PortRange
	for i := 0; i+1 < len(ps); i += 2 {
		out = append(out, compile.PortRange{Min: ps[i], Max: ps[i+1]})
	}
	return out
}

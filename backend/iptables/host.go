package iptables

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/calyxnet/calyx/compile"
)

// hostSet is the Ruleset's host endpoints, grouped the way their
// selection rules are written: named interfaces first (a named endpoint
// wins over "*"), then the endpoints known by their addresses, then the
// one for every interface.
type hostSet struct {
	named  []*compile.Endpoint // one per interface, by interface name
	byAddr []*compile.Endpoint // Interface "", by key
	star   *compile.Endpoint   // Interface "*"
}

// hostEndpoints sorts the Ruleset's host endpoints into a hostSet. Where
// two endpoints claim the same interface (or both claim "*"), the first
// by key is used. An endpoint named after a workload interface never
// sees a packet (the node's traffic with its pods is the pods' business)
// and gets no rule.
func (r *renderer) hostEndpoints() hostSet {
	// Walked unsorted (10,000 pods on a big node): only the few host
	// endpoints are sorted.
	var hosts []*compile.Endpoint
	for _, ep := range r.rs.Endpoints {
		if ep.Kind == compile.HostEndpoint {
			hosts = append(hosts, ep)
		}
	}
	slices.SortFunc(hosts, func(a, b *compile.Endpoint) int { return cmp.Compare(a.Key, b.Key) })
	var hs hostSet
	seen := map[string]bool{}
	for _, ep := range hosts {
		key := ep.Key
		switch iface := ep.Interface; {
		case iface == "*":
			if hs.star == nil {
				hs.star = ep
			}
		case iface == "":
			hs.byAddr = append(hs.byAddr, ep)
		case !validInterface(iface):
			if r.v == 4 { // once, not per family
				r.errs = append(r.errs, fmt.Sprintf("host endpoint %s: invalid interface name %q", key, iface))
			}
		case strings.HasPrefix(iface, compile.InterfacePrefix) || seen[iface]:
		default:
			seen[iface] = true
			hs.named = append(hs.named, ep)
		}
	}
	slices.SortFunc(hs.named, func(a, b *compile.Endpoint) int { return cmp.Compare(a.Interface, b.Interface) })
	return hs
}

// validInterface reports whether name is an interface name iptables takes
// literally: up to 15 letters, digits, '_', '.' or '-' (a '+' would be a
// wildcard).
func validInterface(name string) bool {
	if name == "" || len(name) > 15 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// hostDispatch builds the chain (kind "hi" for ingress, "ho" for egress)
// that calyx-in or calyx-out goes to with a packet of the node's own,
// neither from nor to a workload interface, and returns its name; "" when
// no host endpoint applies in this family (the packet is then left alone).
// A packet of a host endpoint goes on to that endpoint's h- chain; any
// other returns to the built-in chain untouched. Endpoints named by
// interface apply in both families whatever their addresses; one known
// by its addresses only in the families of its addresses.
func (r *renderer) hostDispatch(hs hostSet, kind string, dir compile.Direction) string {
	side, addrFlag := "-i", "-d"
	if dir == compile.Egress {
		side, addrFlag = "-o", "-s"
	}
	var bodies []string
	for _, ep := range hs.named {
		bodies = append(bodies, side+" "+ep.Interface+" -g "+r.hostChain(ep, dir))
	}
	var rest []string
	for _, ep := range hs.byAddr {
		for _, a := range ep.Addrs {
			a = a.Unmap()
			if fam(a) != r.v {
				continue
			}
			rest = append(rest, addrFlag+" "+netip.PrefixFrom(a, a.BitLen()).String()+" -g "+r.hostChain(ep, dir))
		}
	}
	if hs.star != nil {
		rest = append(rest, "-g "+r.hostChain(hs.star, dir))
	}
	if len(rest) > 0 {
		// Loopback is no host endpoint's, unless named.
		bodies = append(bodies, side+" lo -j RETURN")
		bodies = append(bodies, rest...)
	}
	if len(bodies) == 0 {
		return ""
	}
	name := r.n.top(kind)
	r.addChain(name, bodies)
	return name
}

// hostChain renders one direction of a host endpoint: neighbour discovery
// (IPv6), conntrack, the fail-safe ports, then the endpoint's e- chain,
// which returns only when the packet is allowed. Endpoints with equal
// policy share the chain.
func (r *renderer) hostChain(ep *compile.Endpoint, dir compile.Direction) string {
	dp := &ep.Egress
	if dir == compile.Ingress {
		dp = &ep.Ingress
	}
	bodies := r.ndp()
	bodies = append(bodies, established+" -j ACCEPT", invalid+" -j DROP")
	bodies = append(bodies, r.failsafe(dir)...)
	bodies = append(bodies, "-j "+r.endpointChain(ep.Key, dir, dp), ifAccepted+" -j ACCEPT", "-j DROP")
	return r.contentChain("h", bodies)
}

// failsafe returns the rules accepting the fail-safe ports of a
// direction in this family: per protocol and net, the ports in multiport
// chunks; an entry's net (the source inbound, the destination outbound)
// is written inline, and an entry whose net is of the other family does
// not apply. Protocols without ports match nothing, as in the model.
func (r *renderer) failsafe(dir compile.Direction) []string {
	list, flag := r.rs.Settings.FailsafeInbound, "-s"
	if dir == compile.Egress {
		list, flag = r.rs.Settings.FailsafeOutbound, "-d"
	}
	type group struct {
		proto uint8
		net   netip.Prefix // invalid: any peer
	}
	ports := map[group][]compile.PortRange{}
	for _, f := range list {
		if !slices.Contains(portProtos, f.Protocol) {
			continue
		}
		g := group{proto: f.Protocol}
		if f.Net.IsValid() {
			p := f.Net
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
			}
			if fam(p.Addr()) != r.v {
				continue
			}
			if p.Bits() > 0 {
				g.net = p.Masked()
			}
		}
		ports[g] = append(ports[g], compile.PortRange{Min: f.Port, Max: f.Port})
	}
	groups := make([]group, 0, len(ports))
	for g := range ports {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b group) int {
		if c := cmp.Compare(a.proto, b.proto); c != 0 {
			return c
		}
		if a.net.IsValid() != b.net.IsValid() {
			if a.net.IsValid() {
				return 1
			}
			return -1
		}
		if c := a.net.Addr().Compare(b.net.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.net.Bits(), b.net.Bits())
	})
	var out []string
	for _, g := range groups {
		head := ""
		if g.net.IsValid() {
			head = flag + " " + g.net.String() + " "
		}
		for _, c := range portChunks(ports[g]) {
			out = append(out, head+"-p "+protoName(g.proto, r.v)+" -m multiport --dports "+c+" -j ACCEPT")
		}
	}
	return out
}

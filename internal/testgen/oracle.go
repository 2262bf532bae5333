package testgen

import (
	"net/netip"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/policy"
	"github.com/calyxnet/calyx/selector"
)

// Oracle is a second, independent evaluator of policy: it judges packets
// straight from the normalised policy model (policy.Set), without the
// compiler or its IR, by walking Calico's semantics as written in
// DESIGN.md. Property tests compare it with compile + backend/model.
//
// It is deliberately naive (linear scans, no indexes): it must be obviously
// right, not fast.
type Oracle struct {
	set      *policy.Set
	eps      []*policy.Endpoint
	labels   map[*policy.Endpoint]selector.Set
	netsets  []*policy.NetworkSetInfo
	nsLabels map[*policy.NetworkSetInfo]selector.Set
	policies []*policy.Policy
	tierPass map[string]bool
}

// NewOracle prepares an oracle over set (every endpoint of the cluster).
func NewOracle(set *policy.Set) *Oracle {
	o := &Oracle{set: set, labels: map[*policy.Endpoint]selector.Set{}, nsLabels: map[*policy.NetworkSetInfo]selector.Set{}, tierPass: map[string]bool{}}
	o.eps = set.Endpoints()
	for _, ep := range o.eps {
		o.labels[ep] = set.EndpointLabels(ep)
	}
	o.netsets = set.NetworkSets()
	for _, ns := range o.netsets {
		o.nsLabels[ns] = set.NetworkSetLabels(ns)
	}
	o.policies = set.Policies()
	for _, t := range set.Tiers() {
		o.tierPass[t.Name] = t.DefaultAction == policy.Pass
	}
	return o
}

// Allowed judges the first packet of a flow.
func (o *Oracle) Allowed(p model.Packet) bool {
	src, dst := o.endpointAt(p.Src), o.endpointAt(p.Dst)
	if src != nil && src == dst {
		return true
	}
	// A node and its own pods talk over the pods' veths: no host
	// endpoint's policy is in the way.
	if src != nil && dst != nil && src.Node == dst.Node {
		switch {
		case src.Kind == policy.KindHostEndpoint && dst.Kind == policy.KindPod:
			src = nil
		case dst.Kind == policy.KindHostEndpoint && src.Kind == policy.KindPod:
			dst = nil
		}
	}
	if src != nil && !o.direction(src, policy.Egress, p) {
		return false
	}
	if dst != nil && !o.direction(dst, policy.Ingress, p) {
		return false
	}
	return true
}

func (o *Oracle) endpointAt(a netip.Addr) *policy.Endpoint {
	for _, ep := range o.eps {
		for _, ip := range ep.IPs {
			if ip.Unmap() == a.Unmap() {
				return ep
			}
		}
	}
	return nil
}

func (o *Oracle) direction(ep *policy.Endpoint, d policy.Direction, p model.Packet) bool {
	if ep.Kind == policy.KindHostEndpoint && failsafe(d, p) {
		return true
	}
	var applying []*policy.Policy
	for _, pol := range o.policies {
		if pol.Applies(d) && pol.Selector.Matches(o.labels[ep]) {
			applying = append(applying, pol)
		}
	}
	for i := 0; i < len(applying); {
		tier := applying[i].Tier
		verdict, decided := 0, false // 1 allow, -1 deny, 0 pass
	tier:
		for ; i < len(applying) && applying[i].Tier == tier; i++ {
			for _, r := range applying[i].Rules(d) {
				if !o.ruleMatches(&r, p) {
					continue
				}
				switch r.Action {
				case policy.Allow:
					verdict, decided = 1, true
					break tier
				case policy.Deny:
					verdict, decided = -1, true
					break tier
				case policy.Pass:
					decided = true
					break tier
				}
			}
		}
		// Skip the rest of this tier (after a decision or a pass).
		for i < len(applying) && applying[i].Tier == tier {
			i++
		}
		switch {
		case verdict == 1:
			return true
		case verdict == -1:
			return false
		case !decided && !o.tierPass[tier]:
			return false // end of tier: deny
		}
	}
	// Profiles: a pod's namespace profile allows everything; a host
	// endpoint's profiles are walked in order, the first Allow or Deny
	// deciding; the built-in default-allow profile allows everything.
	if ep.Kind == policy.KindPod {
		return true
	}
	for _, name := range ep.Profiles {
		if name == "projectcalico-default-allow" {
			return true
		}
		prof := o.set.Profile(name)
		if prof == nil {
			continue
		}
		rules := prof.Ingress
		if d == policy.Egress {
			rules = prof.Egress
		}
		for _, r := range rules {
			if !o.ruleMatches(&r, p) {
				continue
			}
			switch r.Action {
			case policy.Allow:
				return true
			case policy.Deny:
				return false
			}
		}
	}
	return false
}

// failsafe reports whether a host endpoint's packet uses one of Calico's
// default fail-safe ports (inbound: SSH, DHCP, BGP, etcd, Typha, the
// Kubernetes API; outbound: DNS, DHCP, BGP, etcd, Typha, the API).
func failsafe(d policy.Direction, p model.Packet) bool {
	type pp struct {
		proto uint8
		port  uint16
	}
	in := []pp{{6, 22}, {17, 68}, {6, 179}, {6, 2379}, {6, 2380}, {6, 5473}, {6, 6443}, {6, 6666}, {6, 6667}}
	out := []pp{{17, 53}, {17, 67}, {6, 179}, {6, 2379}, {6, 2380}, {6, 5473}, {6, 6443}, {6, 6666}, {6, 6667}}
	list := in
	if d == policy.Egress {
		list = out
	}
	for _, f := range list {
		if f.proto == p.Protocol && f.port == p.DstPort {
			return true
		}
	}
	return false
}

func (o *Oracle) ruleMatches(r *policy.RuleInfo, p model.Packet) bool {
	is4 := p.Src.Unmap().Is4()
	if r.IPVersion == 4 && !is4 || r.IPVersion == 6 && is4 {
		return false
	}
	// Calico renders a rule per IP version and leaves it out of a version
	// for which one of its lists of nets holds nothing.
	for _, nets := range [][]netip.Prefix{r.Source.Nets, r.Source.NotNets, r.Destination.Nets, r.Destination.NotNets} {
		if len(nets) == 0 {
			continue
		}
		found := false
		for _, n := range nets {
			if n.Addr().Unmap().Is4() == is4 {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	if r.Protocol != 0 && r.Protocol != p.Protocol {
		return false
	}
	if r.NotProtocol != 0 && r.NotProtocol == p.Protocol {
		return false
	}
	icmpPkt := p.Protocol == 1 || p.Protocol == 58
	if r.ICMP != nil && !(icmpPkt && icmpIs(r.ICMP, p)) {
		return false
	}
	if r.NotICMP != nil && icmpPkt && icmpIs(r.NotICMP, p) {
		return false
	}
	return o.sideMatches(&r.Source, p.Src, p.SrcPort, p.Protocol) &&
		o.sideMatches(&r.Destination, p.Dst, p.DstPort, p.Protocol)
}

func icmpIs(m *policy.ICMPMatch, p model.Packet) bool {
	return m.Type == p.ICMPType && (m.Code == nil || *m.Code == p.ICMPCode)
}

func (o *Oracle) sideMatches(m *policy.Match, addr netip.Addr, port uint16, proto uint8) bool {
	addr = addr.Unmap()
	if len(m.Nets) > 0 && !anyContains(m.Nets, addr) {
		return false
	}
	if anyContains(m.NotNets, addr) {
		return false
	}
	if m.Selector != nil && !o.selected(m.Selector, addr) {
		return false
	}
	if m.NotSelector != nil && o.selected(m.NotSelector, addr) {
		return false
	}
	if len(m.Domains) > 0 || m.Service != nil {
		return false // no DNS answers and no Service endpoints are known
	}
	ported := proto == 6 || proto == 17 || proto == 132 || proto == 136
	if len(m.Ports) > 0 || len(m.NamedPorts) > 0 {
		if !ported || !(inPortRanges(m.Ports, port) || o.namedPort(m, m.NamedPorts, addr, proto, port)) {
			return false
		}
	}
	if len(m.NotPorts) > 0 || len(m.NotNamedPorts) > 0 {
		if !ported || inPortRanges(m.NotPorts, port) || o.namedPort(m, m.NotNamedPorts, addr, proto, port) {
			return false
		}
	}
	return true
}

func anyContains(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if netip.PrefixFrom(n.Addr().Unmap(), n.Bits()).Contains(a) {
			return true
		}
	}
	return false
}

func inPortRanges(rs []policy.PortRange, port uint16) bool {
	for _, r := range rs {
		if port >= r.Min && port <= r.Max {
			return true
		}
	}
	return false
}

// selected reports whether addr belongs to an endpoint, or falls in a
// network set, whose labels sel matches.
func (o *Oracle) selected(sel *selector.Selector, addr netip.Addr) bool {
	for _, ep := range o.eps {
		for _, ip := range ep.IPs {
			if ip.Unmap() == addr && sel.Matches(o.labels[ep]) {
				return true
			}
		}
	}
	for _, ns := range o.netsets {
		if anyContains(ns.Nets, addr) && sel.Matches(o.nsLabels[ns]) {
			return true
		}
	}
	return false
}

// namedPort reports whether addr is an endpoint picked by the side's
// selector (any endpoint when it has none) with one of the named ports,
// of the packet's protocol, on port.
func (o *Oracle) namedPort(m *policy.Match, names []string, addr netip.Addr, proto uint8, port uint16) bool {
	for _, ep := range o.eps {
		owns := false
		for _, ip := range ep.IPs {
			owns = owns || ip.Unmap() == addr
		}
		if !owns || (m.Selector != nil && !m.Selector.Matches(o.labels[ep])) {
			continue
		}
		for _, np := range ep.Ports {
			for _, n := range names {
				if np.Name == n && np.Protocol == proto && np.Port == port {
					return true
				}
			}
		}
	}
	return false
}

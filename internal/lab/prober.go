package lab

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/reach"
)

// Prober answers reachability probes from what a dataplane did in a lab:
// NewProber builds a lab of the parties (each serving every probed port,
// so a connection that gets through is answered), applies the Ruleset with
// the backend, observes every probe once, and Probe reads the observed
// matrix. It is how `calyxctl reach --dataplane nftables|…` prints what
// the kernel does, in the same formats as the model.
//
// Pods become the lab's pods, external parties the external namespace's
// addresses, and a host endpoint the node itself: its expected IPs are the
// node's addresses, and the external namespace hangs off the node by the
// endpoint's interface (ExternalInterface for "*" or an endpoint known by
// its addresses), so the node's traffic with the outside crosses the
// interface it would cross on a real node; the other interfaces its host
// endpoints name are there too, without carrier (Spec.NodeLinks). The node
// then holds only its own host endpoints: another node's would claim its
// interfaces.
type Prober struct {
	observed map[probeKey]bool
}

// probeKey is a probe's first packet: the party a probe comes from and
// goes to is the one holding its addresses.
type probeKey struct {
	src, dst netip.Addr
	proto    uint8
	port     uint16
}

// NewProber runs the lab once for the parties and probes under rs with the
// backend open opens. Probes must be TCP or UDP. At most one party may be
// a host endpoint, and then the others must all be external: the lab is
// one node, whose traffic with its own pods is the pods' policy's.
func NewProber(ctx context.Context, rs *compile.Ruleset, pods []reach.Pod, probes []reach.Probe, open backend.Factory, opts Options) (*Prober, error) {
	var ports []Port
	for _, pr := range probes {
		if pr.Protocol != 6 && pr.Protocol != 17 {
			return nil, fmt.Errorf("%w: the lab probes TCP and UDP only, not %s", ErrInvalidSpec, pr)
		}
		ports = append(ports, Port{Protocol: pr.Protocol, Port: pr.Port})
	}
	spec := Spec{}
	var hosts []*reach.Pod
	for i := range pods {
		p := &pods[i]
		switch p.Kind {
		case reach.KindHost:
			hosts = append(hosts, p)
		case reach.KindExternal:
			spec.External = append(spec.External, p.Addrs...)
			spec.ExternalPorts = ports
		default:
			spec.Pods = append(spec.Pods, Pod{Namespace: p.Namespace, Name: p.Name, IPs: p.Addrs, Ports: ports})
		}
	}
	switch {
	case len(hosts) > 1:
		return nil, fmt.Errorf("%w: the lab holds one host endpoint at a time, not %d", ErrInvalidSpec, len(hosts))
	case len(hosts) == 1:
		h := hosts[0]
		if len(spec.Pods) > 0 {
			return nil, fmt.Errorf("%w: host endpoint %s: the lab probes a host endpoint with external addresses only", ErrInvalidSpec, h.ID())
		}
		if len(h.Addrs) == 0 {
			return nil, fmt.Errorf("%w: host endpoint %s has no expected IPs to probe", ErrInvalidSpec, h.ID())
		}
		var err error
		if rs, spec.ExternalLink, err = hostNode(rs, h); err != nil {
			return nil, err
		}
		spec.NodeLinks = otherHostInterfaces(rs, spec.ExternalLink)
		spec.NodeAddrs, spec.NodePorts = h.Addrs, ports
	case len(spec.External) > 0:
		// Forwarded traffic enters where the node's own does: on its host
		// endpoint's interface, which must then let it through unjudged.
		spec.ExternalLink = firstNamedHostInterface(rs)
		spec.NodeAddrs = nodeAddrsAvoiding(spec.External)
	}
	m, err := Reach(ctx, spec, rs, open, opts)
	if err != nil {
		return nil, err
	}
	pr := &Prober{observed: map[probeKey]bool{}}
	for i, p := range m.Probes {
		pr.observed[probeKey{p.Src.Unmap(), p.Dst.Unmap(), p.Protocol, p.DstPort}] = m.Allowed[i]
	}
	return pr, nil
}

// Probe reports what the lab observed for the connection's first packet
// (reach.FirstPacket); a pair the lab could not probe (no address of the
// destination's family) is denied, as the model's prober reports it.
func (p *Prober) Probe(_ context.Context, from, to *reach.Pod, probe reach.Probe) (bool, error) {
	pkt, ok := reach.FirstPacket(from, to, probe)
	if !ok {
		return false, nil
	}
	return p.observed[probeKey{pkt.Src.Unmap(), pkt.Dst.Unmap(), pkt.Protocol, pkt.DstPort}], nil
}

// hostNode returns the Ruleset of h's node, which the lab's node plays:
// rs without the host endpoints of other nodes (never rs itself changed),
// and the interface the external namespace is to hang off. It fails where
// the node's own host endpoints would take h's traffic from it: another
// endpoint claiming the same interface name, or the external link.
func hostNode(rs *compile.Ruleset, h *reach.Pod) (*compile.Ruleset, string, error) {
	key := reach.HostPrefix + h.Name
	self, ok := rs.Endpoints[key]
	if !ok || self.Kind != compile.HostEndpoint {
		return nil, "", fmt.Errorf("%w: host endpoint %s is not in the Ruleset", ErrInvalidSpec, h.ID())
	}
	link := ExternalInterface
	named := self.Interface != "" && self.Interface != "*"
	if named {
		link = self.Interface
		if err := externalLinkProblem(link); err != nil {
			return nil, "", fmt.Errorf("%w: host endpoint %s: %w", ErrInvalidSpec, h.ID(), err)
		}
	}
	out := *rs
	out.Endpoints = make(map[string]*compile.Endpoint, len(rs.Endpoints))
	var rivals []*compile.Endpoint
	for k, ep := range rs.Endpoints {
		if ep.Kind == compile.HostEndpoint && ep.Node != self.Node {
			continue
		}
		out.Endpoints[k] = ep
		if ep.Kind == compile.HostEndpoint && k != key {
			rivals = append(rivals, ep)
		}
	}
	slices.SortFunc(rivals, func(a, b *compile.Endpoint) int { return cmp.Compare(a.Key, b.Key) })
	for _, o := range rivals {
		// The dataplanes give an interface to the first endpoint by key
		// naming it, and "*" to the first "*" endpoint.
		switch {
		case o.Interface == link && (o.Key < key || !named):
			return nil, "", fmt.Errorf("%w: host endpoint %s: %s of the same node takes interface %s", ErrInvalidSpec, h.ID(), o.Key, link)
		case self.Interface == "*" && o.Interface == "*" && o.Key < key:
			return nil, "", fmt.Errorf("%w: host endpoint %s: %s of the same node is the node's \"*\" endpoint", ErrInvalidSpec, h.ID(), o.Key)
		}
	}
	return &out, link, nil
}

// nodeAddrsAvoiding returns nil (the default node addresses) unless an
// address the user asked about is one of them; then addresses below the
// defaults that are not taken.
func nodeAddrsAvoiding(taken []netip.Addr) []netip.Addr {
	clash := false
	for _, a := range defaultNodeAddrs {
		clash = clash || slices.Contains(taken, a)
	}
	if !clash {
		return nil
	}
	var out []netip.Addr
	for _, a := range defaultNodeAddrs {
		for slices.Contains(taken, a) {
			a = a.Prev()
		}
		out = append(out, a)
	}
	return out
}

// otherHostInterfaces returns, sorted, the interfaces rs's host endpoints
// name that the lab can build, but link.
func otherHostInterfaces(rs *compile.Ruleset, link string) []string {
	var out []string
	for _, ep := range rs.Endpoints {
		if ep.Kind != compile.HostEndpoint || ep.Interface == "" || ep.Interface == "*" || ep.Interface == link || externalLinkProblem(ep.Interface) != nil {
			continue
		}
		out = append(out, ep.Interface)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// firstNamedHostInterface returns the interface of the first host
// endpoint by key that names one the lab can build, or "" (the default
// external interface).
func firstNamedHostInterface(rs *compile.Ruleset) string {
	best, link := "", ""
	for k, ep := range rs.Endpoints {
		if ep.Kind != compile.HostEndpoint || ep.Interface == "" || ep.Interface == "*" || externalLinkProblem(ep.Interface) != nil {
			continue
		}
		if link == "" || k < best {
			best, link = k, ep.Interface
		}
	}
	return link
}

package lab

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/podnet"
)

// External is the From/To name of the external namespace in probes.
const External = "external"

// ExternalInterface is the node-side interface of the external namespace.
const ExternalInterface = "cxext0"

// Node is the From/To name of the node itself in probes.
const Node = "node"

// Default node addresses: documentation ranges, never routed anywhere.
var defaultNodeAddrs = []netip.Addr{netip.MustParseAddr("192.0.2.254"), netip.MustParseAddr("2001:db8:ffff::fe")}

// Errors callers branch on.
var (
	// ErrNotSupported is returned where network namespaces are missing.
	ErrNotSupported = errors.New("lab: not supported on this system")
	// ErrInvalidSpec is returned by New for a spec it cannot build.
	ErrInvalidSpec = errors.New("lab: invalid spec")
)

// Port is a port a pod's containers declare; the lab runs a server on it.
type Port struct {
	// Protocol is 6 (TCP) or 17 (UDP).
	Protocol uint8
	Port     uint16
}

// String prints "TCP:80".
func (p Port) String() string {
	return compile.ProtocolName(p.Protocol) + ":" + strconv.Itoa(int(p.Port))
}

// Pod is one pod of the lab.
type Pod struct {
	Namespace, Name string
	// IPs are the pod's addresses (IPv4 and/or IPv6).
	IPs []netip.Addr
	// Ports are served inside the pod.
	Ports []Port
}

// Key returns "namespace/name", the pod's endpoint key.
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Interface returns the pod's host-side interface name.
func (p *Pod) Interface() string { return compile.WorkloadInterface(p.Namespace, p.Name) }

// Spec is what a lab holds.
type Spec struct {
	Pods []Pod
	// External are the addresses of the external namespace; none means no
	// external namespace.
	External []netip.Addr
	// ExternalPorts are served in the external namespace.
	ExternalPorts []Port
	// ExternalLink is the name of the external namespace's interface in
	// the node: ExternalInterface when empty. Naming it after a host
	// endpoint's interface ("eth0") makes the node's traffic with the
	// outside cross that endpoint's interface, as on a real node.
	ExternalLink string
	// NodeLinks are further interfaces of the node, carrier-less like its
	// uplink: the interfaces its other host endpoints name, so a
	// dataplane finds every interface it is told about, as on a real node.
	NodeLinks []string
	// NodeAddrs are the node's own addresses; defaults are used when empty.
	NodeAddrs []netip.Addr
	// NodePorts are served in the node's own namespace, on every address.
	// When there are any, probes run between the node and the external
	// namespace both ways (traffic a host endpoint's policy judges);
	// traffic between the node and its pods is left to the backends' own
	// tests.
	NodePorts []Port
}

// ExternalIf returns the node-side name of the external namespace's
// interface: ExternalLink, or ExternalInterface.
func (s *Spec) ExternalIf() string {
	if s.ExternalLink != "" {
		return s.ExternalLink
	}
	return ExternalInterface
}

// Nodes returns the node's addresses: NodeAddrs, or the defaults.
func (s *Spec) Nodes() []netip.Addr {
	if len(s.NodeAddrs) > 0 {
		return s.NodeAddrs
	}
	return defaultNodeAddrs
}

// Validate reports every problem of the spec.
func (s *Spec) Validate() error {
	var errs []error
	seenKey := map[string]bool{}
	seenIP := map[netip.Addr]string{}
	seenIf := map[string]string{}
	claim := func(owner string, a netip.Addr) {
		if !a.IsValid() {
			errs = append(errs, fmt.Errorf("%s: invalid address", owner))
			return
		}
		if o, dup := seenIP[a.Unmap()]; dup {
			errs = append(errs, fmt.Errorf("%s: address %s already belongs to %s", owner, a, o))
		}
		seenIP[a.Unmap()] = owner
	}
	ports := func(owner string, ps []Port) {
		for _, p := range ps {
			if p.Protocol != 6 && p.Protocol != 17 {
				errs = append(errs, fmt.Errorf("%s: port %s: protocol must be TCP or UDP", owner, p))
			}
			if p.Port == 0 {
				errs = append(errs, fmt.Errorf("%s: port 0", owner))
			}
		}
	}
	for i := range s.Pods {
		p := &s.Pods[i]
		key := p.Key()
		if p.Namespace == "" || p.Name == "" {
			errs = append(errs, fmt.Errorf("pods[%d]: namespace and name are required", i))
		}
		if seenKey[key] {
			errs = append(errs, fmt.Errorf("pods[%d]: duplicate pod %s", i, key))
		}
		seenKey[key] = true
		if o, dup := seenIf[p.Interface()]; dup {
			errs = append(errs, fmt.Errorf("pods[%d]: interface %s collides with %s", i, p.Interface(), o))
		}
		seenIf[p.Interface()] = key
		if len(p.IPs) == 0 {
			errs = append(errs, fmt.Errorf("pods[%d] %s: no IPs", i, key))
		}
		for _, a := range p.IPs {
			claim(key, a)
		}
		ports(key, p.Ports)
	}
	for _, a := range s.External {
		claim(External, a)
	}
	if s.ExternalLink != "" {
		if err := externalLinkProblem(s.ExternalLink); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", External, err))
		}
	}
	links := map[string]bool{}
	if len(s.External) > 0 {
		links[s.ExternalIf()] = true
	}
	for i, name := range s.NodeLinks {
		if err := externalLinkProblem(name); err != nil {
			errs = append(errs, fmt.Errorf("nodeLinks[%d]: %w", i, err))
		}
		if links[name] {
			errs = append(errs, fmt.Errorf("nodeLinks[%d]: interface %q twice", i, name))
		}
		links[name] = true
	}
	ports(External, s.ExternalPorts)
	for _, a := range s.Nodes() {
		claim(Node, a)
	}
	ports(Node, s.NodePorts)
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, errors.Join(errs...))
	}
	return nil
}

// Options tune a lab.
type Options struct {
	// ProbeTimeout bounds one probe; 1s when zero. A denied probe always
	// takes this long, so it bounds a whole parallel round too.
	ProbeTimeout time.Duration
	// Parallel is how many probes run at once; 256 when zero.
	Parallel int
}

func (o *Options) timeout() time.Duration {
	if o.ProbeTimeout <= 0 {
		return time.Second
	}
	return o.ProbeTimeout
}

func (o *Options) parallel() int {
	if o.Parallel <= 0 {
		return 256
	}
	return o.Parallel
}

// Probe is one attempt to reach a port.
type Probe struct {
	// From and To name the source and destination: a pod key or External.
	From, To string
	Src, Dst netip.Addr
	// Protocol is 6 (TCP) or 17 (UDP).
	Protocol         uint8
	SrcPort, DstPort uint16
}

// Packet is the first packet of the probe's flow, for the model.
func (p *Probe) Packet() model.Packet {
	return model.Packet{Src: p.Src, Dst: p.Dst, Protocol: p.Protocol, SrcPort: p.SrcPort, DstPort: p.DstPort}
}

// String prints "from -> to dst:port/PROTO".
func (p *Probe) String() string {
	return fmt.Sprintf("%s -> %s %s/%s", p.From, p.To, netip.AddrPortFrom(p.Dst, p.DstPort), compile.ProtocolName(p.Protocol))
}

// Probes returns every probe of the spec: from every pod and the external
// namespace to every address of every other pod or the external namespace
// (and to itself) on each declared port, between the node and the external
// namespace when the node serves ports, from the source's address of the
// same family. Source ports are assigned from base upwards.
func (s *Spec) Probes(base uint16) []Probe {
	type party struct {
		name  string
		ips   []netip.Addr
		ports []Port
	}
	var parties []party
	for i := range s.Pods {
		parties = append(parties, party{s.Pods[i].Key(), s.Pods[i].IPs, s.Pods[i].Ports})
	}
	if len(s.External) > 0 {
		parties = append(parties, party{External, s.External, s.ExternalPorts})
	}
	if len(s.NodePorts) > 0 {
		parties = append(parties, party{Node, s.Nodes(), s.NodePorts})
	}
	var out []Probe
	sport := base
	for _, from := range parties {
		for _, to := range parties {
			if from.name == Node && to.name == Node {
				continue
			}
			if (from.name == Node || to.name == Node) && from.name != External && to.name != External {
				continue // node <-> pod: not this lab's business
			}
			for _, dst := range to.ips {
				src, ok := sameFamily(from.ips, dst)
				if !ok {
					continue
				}
				for _, port := range to.ports {
					// Never bind a source port the source serves on.
					for served(from.ports, sport) {
						sport++
					}
					out = append(out, Probe{From: from.name, To: to.name, Src: src, Dst: dst,
						Protocol: port.Protocol, SrcPort: sport, DstPort: port.Port})
					sport++
					if sport < base || sport == 0 {
						sport = base
					}
				}
			}
		}
	}
	return out
}

func sameFamily(ips []netip.Addr, dst netip.Addr) (netip.Addr, bool) {
	for _, a := range ips {
		if a.Unmap().Is4() == dst.Unmap().Is4() {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// Matrix is the outcome of a set of probes: observed in the lab, or
// expected from the model.
type Matrix struct {
	Probes  []Probe
	Allowed []bool
}

// Expected returns what the model says each probe's flow should do under
// rs.
func Expected(rs *compile.Ruleset, probes []Probe) *Matrix {
	idx := model.NewIndex(rs)
	m := &Matrix{Probes: slices.Clone(probes), Allowed: make([]bool, len(probes))}
	for i := range probes {
		m.Allowed[i] = idx.Allowed(probes[i].Packet())
	}
	return m
}

// Diff lists the probes on which m and other disagree, one line each
// ("ns/a -> ns/b 10.0.0.2:80/TCP: got allowed, want denied"). Both must
// hold the same probes in the same order.
func (m *Matrix) Diff(want *Matrix) []string {
	var out []string
	word := func(b bool) string {
		if b {
			return "allowed"
		}
		return "denied"
	}
	if len(m.Probes) != len(want.Probes) {
		return []string{fmt.Sprintf("different probes: %d vs %d", len(m.Probes), len(want.Probes))}
	}
	for i := range m.Probes {
		if m.Probes[i] != want.Probes[i] {
			out = append(out, fmt.Sprintf("probe %d differs: %s vs %s", i, m.Probes[i].String(), want.Probes[i].String()))
			continue
		}
		if m.Allowed[i] != want.Allowed[i] {
			out = append(out, fmt.Sprintf("%s: got %s, want %s", m.Probes[i].String(), word(m.Allowed[i]), word(want.Allowed[i])))
		}
	}
	return out
}

// String prints the matrix as a table: one row per source, one column per
// destination address and port; "+" allowed, "." denied, " " not probed.
func (m *Matrix) String() string {
	type col struct {
		to    string
		dst   netip.Addr
		proto uint8
		port  uint16
	}
	var rows []string
	var cols []col
	rowIdx := map[string]int{}
	colIdx := map[col]int{}
	for _, p := range m.Probes {
		if _, ok := rowIdx[p.From]; !ok {
			rowIdx[p.From] = len(rows)
			rows = append(rows, p.From)
		}
		c := col{p.To, p.Dst, p.Protocol, p.DstPort}
		if _, ok := colIdx[c]; !ok {
			colIdx[c] = len(cols)
			cols = append(cols, c)
		}
	}
	cells := make([][]byte, len(rows))
	for i := range cells {
		cells[i] = []byte(strings.Repeat(" ", len(cols)))
	}
	for i, p := range m.Probes {
		ch := byte('.')
		if m.Allowed[i] {
			ch = '+'
		}
		cells[rowIdx[p.From]][colIdx[col{p.To, p.Dst, p.Protocol, p.DstPort}]] = ch
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r))
	}
	var b strings.Builder
	for j, c := range cols {
		fmt.Fprintf(&b, "%*s  %d = %s %s/%s\n", width, "", j, c.to,
			netip.AddrPortFrom(c.dst, c.port), compile.ProtocolName(c.proto))
	}
	fmt.Fprintf(&b, "%*s  ", width, "")
	for j := range cols {
		b.WriteString(strconv.Itoa(j % 10))
	}
	b.WriteByte('\n')
	for i, r := range rows {
		fmt.Fprintf(&b, "%*s  %s\n", width, r, cells[i])
	}
	return b.String()
}

// PodsFromRuleset returns one pod per workload endpoint of rs ("namespace/
// name" keys), with the endpoint's addresses and the given ports, sorted by
// key: the lab for a Ruleset when nothing better says what pods serve.
func PodsFromRuleset(rs *compile.Ruleset, ports []Port) ([]Pod, error) {
	var pods []Pod
	for _, k := range slices.Sorted(maps.Keys(rs.Endpoints)) {
		ep := rs.Endpoints[k]
		if ep.Kind != compile.WorkloadEndpoint {
			continue
		}
		ns, name, ok := strings.Cut(ep.Key, "/")
		if !ok {
			return nil, fmt.Errorf("%w: endpoint key %q is not namespace/name", ErrInvalidSpec, ep.Key)
		}
		p := Pod{Namespace: ns, Name: name, IPs: slices.Clone(ep.Addrs), Ports: slices.Clone(ports)}
		if ep.Interface != "" && ep.Interface != p.Interface() {
			return nil, fmt.Errorf("%w: endpoint %s has interface %s, the lab derives %s", ErrInvalidSpec, ep.Key, ep.Interface, p.Interface())
		}
		pods = append(pods, p)
	}
	return pods, nil
}

// nodeLinkPeer begins the names of the peers of Spec.NodeLinks, which
// stay down in the node namespace.
const nodeLinkPeer = "cxnl"

// externalLinkProblem says why name cannot be the external namespace's
// interface in the node: not a kernel interface name, a workload's, the
// loopback or the node's uplink.
func externalLinkProblem(name string) error {
	if len(name) > 15 || strings.ContainsAny(name, "/ :*") || name == "." || name == ".." {
		return fmt.Errorf("interface %q: not an interface name", name)
	}
	switch {
	case strings.HasPrefix(name, compile.InterfacePrefix):
		return fmt.Errorf("interface %q: a workload's name", name)
	case name == "lo" || strings.HasPrefix(name, podnet.UplinkName) || strings.HasPrefix(name, nodeLinkPeer):
		return fmt.Errorf("interface %q: the lab's node has its own", name)
	}
	return nil
}

func served(ports []Port, p uint16) bool {
	for _, x := range ports {
		if x.Port == p {
			return true
		}
	}
	return false
}

// Package reach computes and prints reachability matrices: for every probe
// (port and protocol) and every ordered pair of pods, whether a new
// connection from the first to the second is allowed.
//
// Besides pods, a run may hold host endpoints (the node's own traffic
// through one of its interfaces) and addresses outside the cluster: see
// Kind. They are named "host:NAME" and by their address.
//
// The matrix is computed by a Prober: the model (what policy means) or a
// lab (what a dataplane observably does); both print in the same formats so
// they can be compared line by line.
package reach

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/policy"
	corev1 "k8s.io/api/core/v1"
)

// Pod is one party of a reachability run: a pod, or (by Kind) a host
// endpoint or an address outside the cluster.
type Pod struct {
	// Kind is what the party is; the zero value is a pod.
	Kind Kind
	// Namespace and Name name a pod; a host endpoint has only its Name
	// (the HostEndpoint's), an external party its address as Name.
	Namespace, Name string
	// Addrs are the party's addresses: a pod's, a host endpoint's
	// expected IPs, an external party's one address.
	Addrs []netip.Addr
	// Ports are the ports its containers (a host endpoint: its spec.ports)
	// declare.
	Ports []Port
	// Node is the node a host endpoint belongs to.
	Node string
	// Interface is a host endpoint's interfaceName: an interface, "*" for
	// every interface of the node, or "" when its expected IPs say which
	// traffic is its.
	Interface string
}

// Kind says what a party of a run is.
type Kind uint8

const (
	// KindPod is a pod: a workload endpoint.
	KindPod Kind = iota
	// KindHost is a host endpoint: the node's own traffic (to and from its
	// expected IPs) through its interface. Traffic the node forwards to or
	// from its pods is not the host endpoint's.
	KindHost
	// KindExternal is an address outside the cluster: no endpoint of the
	// input has it, so only the other side's policy judges.
	KindExternal
)

// HostPrefix begins the ID of a host endpoint: "host:NAME".
const HostPrefix = "host:"

// ID returns "namespace/name" for a pod, "host:NAME" for a host endpoint
// (the key the compiler gives it) and the address for an external party.
func (p *Pod) ID() string {
	switch p.Kind {
	case KindHost:
		return HostPrefix + p.Name
	case KindExternal:
		return p.Name
	}
	return p.Namespace + "/" + p.Name
}

// ExternalParty returns the party for an address outside the cluster.
func ExternalParty(a netip.Addr) Pod {
	a = a.Unmap()
	return Pod{Kind: KindExternal, Name: a.String(), Addrs: []netip.Addr{a}}
}

// Port is a declared container port.
type Port struct {
	Name     string
	Protocol uint8
	Port     uint16
}

// Probe is one port and protocol to test between every pair.
type Probe struct {
	Port     uint16
	Protocol uint8
}

// String prints "80/TCP".
func (p Probe) String() string {
	return strconv.Itoa(int(p.Port)) + "/" + compile.ProtocolName(p.Protocol)
}

// ParseProbe parses "80/TCP", "53/udp" or "80" (TCP).
func ParseProbe(s string) (Probe, error) {
	port, proto, found := strings.Cut(s, "/")
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return Probe{}, fmt.Errorf("probe %q: port must be 1-65535", s)
	}
	p := Probe{Port: uint16(n), Protocol: 6}
	if found {
		switch strings.ToUpper(proto) {
		case "TCP":
		case "UDP":
			p.Protocol = 17
		case "SCTP":
			p.Protocol = 132
		default:
			return Probe{}, fmt.Errorf("probe %q: protocol must be TCP, UDP or SCTP", s)
		}
	}
	return p, nil
}

// DeclaredProbes returns every distinct port/protocol the pods declare,
// sorted by protocol name, then port.
func DeclaredProbes(pods []Pod) []Probe {
	seen := map[Probe]bool{}
	var out []Probe
	for _, p := range pods {
		for _, port := range p.Ports {
			pr := Probe{Port: port.Port, Protocol: port.Protocol}
			if !seen[pr] {
				seen[pr] = true
				out = append(out, pr)
			}
		}
	}
	slices.SortFunc(out, func(a, b Probe) int {
		if c := strings.Compare(compile.ProtocolName(a.Protocol), compile.ProtocolName(b.Protocol)); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return out
}

// Prober answers whether one connection would be (or was) allowed.
type Prober interface {
	// Probe reports whether a new connection from one pod to another on
	// probe is allowed.
	Probe(ctx context.Context, from, to *Pod, probe Probe) (bool, error)
}

// Matrix is the result of a run.
type Matrix struct {
	Probes []Probe
	// Pods are sorted by ID; the matrix is Allowed[probe][from][to].
	Pods    []Pod
	Allowed [][][]bool
}

// Result is one entry of the JSON output.
type Result struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	Allowed  bool   `json:"allowed"`
}

// Results lists the matrix in probe order, then source, then destination.
func (m *Matrix) Results() []Result {
	out := make([]Result, 0, len(m.Probes)*len(m.Pods)*len(m.Pods))
	for pi, pr := range m.Probes {
		for fi := range m.Pods {
			for ti := range m.Pods {
				out = append(out, Result{From: m.Pods[fi].ID(), To: m.Pods[ti].ID(), Port: int(pr.Port),
					Protocol: compile.ProtocolName(pr.Protocol), Allowed: m.Allowed[pi][fi][ti]})
			}
		}
	}
	return out
}

// WriteJSON writes {"results":[…]}.
func (m *Matrix) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	return enc.Encode(struct {
		Results []Result `json:"results"`
	}{m.Results()})
}

// WriteTable writes, for each probe, a heading line and the Kubernetes
// netpol truth-table layout: a header row "-" and the destinations, then a
// row per source; "." is allowed, "X" denied; cells separated by tabs.
func (m *Matrix) WriteTable(w io.Writer) error {
	var b strings.Builder
	ids := make([]string, len(m.Pods))
	for i := range m.Pods {
		ids[i] = m.Pods[i].ID()
	}
	for pi, pr := range m.Probes {
		if pi > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s\n", pr)
		b.WriteString("-\t" + strings.Join(ids, "\t") + "\n")
		for fi, from := range ids {
			b.WriteString(from)
			for ti := range ids {
				if m.Allowed[pi][fi][ti] {
					b.WriteString("\t.")
				} else {
					b.WriteString("\tX")
				}
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Run probes every ordered pair of pods for every probe, in parallel.
// Pods are sorted by ID in the result.
func Run(ctx context.Context, p Prober, pods []Pod, probes []Probe, parallel int) (*Matrix, error) {
	pods = slices.Clone(pods)
	slices.SortFunc(pods, func(a, b Pod) int { return strings.Compare(a.ID(), b.ID()) })
	m := &Matrix{Probes: probes, Pods: pods, Allowed: make([][][]bool, len(probes))}
	for pi := range probes {
		m.Allowed[pi] = make([][]bool, len(pods))
		for fi := range pods {
			m.Allowed[pi][fi] = make([]bool, len(pods))
		}
	}
	if parallel <= 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	// One job per (probe, source row) keeps the channel traffic small for
	// large matrices.
	type job struct{ pi, fi int }
	jobs := make(chan job)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				for ti := range pods {
					ok, err := p.Probe(ctx, &pods[j.fi], &pods[ti], probes[j.pi])
					if err != nil {
						errOnce.Do(func() { firstErr = err; cancel() })
						break
					}
					m.Allowed[j.pi][j.fi][ti] = ok
				}
			}
		}()
	}
send:
	for pi := range probes {
		for fi := range pods {
			select {
			case jobs <- job{pi, fi}:
			case <-ctx.Done():
				break send
			}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// ModelProber judges probes with the reference model.
type ModelProber struct {
	Index *model.Index
}

// Probe builds the first packet of the connection and judges it. The
// destination address is the pod's first address; the source address is
// the source pod's first address of the same family (no such address: the
// connection cannot be made, so it is reported denied).
func (m ModelProber) Probe(_ context.Context, from, to *Pod, probe Probe) (bool, error) {
	pkt, ok := FirstPacket(from, to, probe)
	if !ok {
		return false, nil
	}
	return m.Index.Allowed(pkt), nil
}

// FirstPacket returns the packet that opens a probe's connection: from the
// source's first address of the destination's family to the destination's
// first address, from an ephemeral source port. From an external party
// (one address) it goes to the destination's first address of that
// address's family: the question asked is about that client.
func FirstPacket(from, to *Pod, probe Probe) (model.Packet, bool) {
	if len(to.Addrs) == 0 {
		return model.Packet{}, false
	}
	dst := to.Addrs[0]
	if from.Kind == KindExternal && len(from.Addrs) > 0 {
		for _, a := range to.Addrs {
			if a.Unmap().Is4() == from.Addrs[0].Unmap().Is4() {
				dst = a
				break
			}
		}
	}
	for _, src := range from.Addrs {
		if src.Is4() == dst.Is4() {
			return model.Packet{Src: src, Dst: dst, Protocol: probe.Protocol, SrcPort: 40000, DstPort: probe.Port}, true
		}
	}
	return model.Packet{}, false
}

// HostsFromSet returns the host endpoints of a policy set, sorted by name,
// with their expected IPs (sorted), interface, node and the ports their
// spec.ports declare.
func HostsFromSet(set *policy.Set) []Pod {
	var hosts []Pod
	for _, ep := range set.Endpoints() {
		if ep.Kind != policy.KindHostEndpoint {
			continue
		}
		h := Pod{Kind: KindHost, Name: ep.Name, Node: ep.Node, Interface: ep.InterfaceName}
		for _, a := range ep.IPs {
			h.Addrs = append(h.Addrs, a.Unmap())
		}
		slices.SortFunc(h.Addrs, netip.Addr.Compare)
		h.Addrs = slices.Compact(h.Addrs)
		for _, p := range ep.Ports {
			h.Ports = append(h.Ports, Port{Name: p.Name, Protocol: p.Protocol, Port: p.Port})
		}
		hosts = append(hosts, h)
	}
	return hosts
}

// FindHost returns the host endpoint ref names among hosts: "NAME" (the
// HostEndpoint's name), "NODE/INTERFACE" (the endpoint of that node with
// that interfaceName, which may be "*"), or "NODE" when no HostEndpoint
// has that name and the node has exactly one.
func FindHost(hosts []Pod, ref string) (Pod, error) {
	node, iface, byIface := strings.Cut(ref, "/")
	pick := func(match func(h *Pod) bool) []Pod {
		var found []Pod
		for i := range hosts {
			if match(&hosts[i]) {
				found = append(found, hosts[i])
			}
		}
		return found
	}
	var found []Pod
	if byIface {
		found = pick(func(h *Pod) bool { return h.Node == node && h.Interface == iface })
	} else if found = pick(func(h *Pod) bool { return h.Name == ref }); len(found) == 0 {
		found = pick(func(h *Pod) bool { return h.Node == ref })
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		var names []string
		for _, h := range found {
			names = append(names, h.Name)
		}
		return Pod{}, fmt.Errorf("host endpoint %q: %d match (%s): name one", ref, len(found), strings.Join(names, ", "))
	case byIface:
		return Pod{}, fmt.Errorf("host endpoint %q: no HostEndpoint in the input has node %q and interfaceName %q", ref, node, iface)
	}
	return Pod{}, fmt.Errorf("host endpoint %q: no HostEndpoint of that name or node in the input", ref)
}

// PodsFromSet returns the pods (workload endpoints) of a policy set, with
// their addresses and every port their containers declare, named or not.
func PodsFromSet(set *policy.Set) []Pod {
	var pods []Pod
	for _, ep := range set.Endpoints() {
		if ep.Kind != policy.KindPod {
			continue
		}
		p := Pod{Namespace: ep.Namespace, Name: ep.Name}
		for _, a := range ep.IPs {
			p.Addrs = append(p.Addrs, a.Unmap())
		}
		slices.SortFunc(p.Addrs, netip.Addr.Compare)
		obj, ok := set.Get(policy.ObjectKey{Kind: policy.KindPod, Namespace: ep.Namespace, Name: ep.Name})
		if pod, isPod := obj.(*corev1.Pod); ok && isPod {
			for _, cp := range policy.PodPorts(pod) {
				p.Ports = append(p.Ports, Port{Name: cp.Name, Protocol: cp.Protocol, Port: cp.Port})
			}
		}
		pods = append(pods, p)
	}
	return pods
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/ebpf"
	"github.com/calyxnet/calyx/backend/iptables"
	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/backend/nftables"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/reach"
	"github.com/calyxnet/calyx/policy"
	"github.com/calyxnet/calyx/selector"
)

// dataplane is one way `reach` can answer probes: the model says what the
// policy means; lab-backed dataplanes (nftables, iptables, eBPF) apply the
// Ruleset in network namespaces and probe for real. Adding one is adding an
// entry to dataplanes.
type dataplane struct {
	name  string
	about string
	// open returns a prober for rs over pods and probes, and a function
	// releasing whatever it set up.
	open func(ctx context.Context, rs *compile.Ruleset, pods []reach.Pod, probes []reach.Probe) (reach.Prober, func() error, error)
}

// dataplanes lists the dataplanes reach supports, the default first.
func dataplanes() []dataplane {
	return []dataplane{{
		name:  model.Name,
		about: "the reference interpreter: what the policy means",
		open: func(_ context.Context, rs *compile.Ruleset, _ []reach.Pod, _ []reach.Probe) (reach.Prober, func() error, error) {
			return reach.ModelProber{Index: model.NewIndex(rs)}, func() error { return nil }, nil
		},
	},
		labDataplane(nftables.Name, "nftables in a network-namespace lab (needs root): what the kernel does", nftables.Open),
		labDataplane(iptables.Name, "iptables and ipset in a network-namespace lab (needs root): what the kernel does", iptables.Open),
		labDataplane(ebpf.Name, "eBPF programs on TCX in a network-namespace lab (needs root, Linux 6.6+): what the kernel does", ebpf.Open),
	}
}

// labDataplane probes for real: the Ruleset is applied with the backend in
// a lab of network namespaces holding the pods.
func labDataplane(name, about string, open backend.Factory) dataplane {
	return dataplane{name: name, about: about,
		open: func(ctx context.Context, rs *compile.Ruleset, pods []reach.Pod, probes []reach.Probe) (reach.Prober, func() error, error) {
			p, err := lab.NewProber(ctx, rs, pods, probes, open, lab.Options{})
			if err != nil {
				return nil, nil, err
			}
			return p, func() error { return nil }, nil
		}}
}

func dataplaneNames() []string {
	var names []string
	for _, d := range dataplanes() {
		names = append(names, d.name)
	}
	return names
}

func findDataplane(name string) (dataplane, error) {
	for _, d := range dataplanes() {
		if d.name == name {
			return d, nil
		}
	}
	return dataplane{}, fmt.Errorf("unknown dataplane %q: supported: %s", name, strings.Join(dataplaneNames(), ", "))
}

// newReachCmd wires `calyxctl reach`.
func newReachCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var (
		files, probeFlags []string
		from, to, output  string
		dpName            string
	)
	var dpHelp strings.Builder
	for _, d := range dataplanes() {
		fmt.Fprintf(&dpHelp, "\n  %-10s %s", d.name, d.about)
	}
	cmd := &cobra.Command{
		Use:   "reach -f PATH... [--probe PORT/PROTO]... [--from SELECTOR|host:NAME|IP] [--to SELECTOR|host:NAME|IP] [-o table|json]",
		Short: "Print which pods can open connections to which, for every probe",
		Long: `reach reads namespaces, pods and policies (every kind calyxctl reads: Calico
and Kubernetes policies, tiers, network sets …), compiles them, and prints,
for every probe (port and protocol), whether a new connection from each pod
to each other pod is allowed. Pods are named namespace/name and sorted.

Without --probe, every distinct port/protocol the destination pods declare
is probed. --from and --to keep the sources and destinations whose labels
(their own, the implicit projectcalico.org/* ones and the pcns./pcsa.
labels of their namespace and service account) match a Calico selector.

Host endpoints (Calico host protection): --from or --to may instead name
one host endpoint, host:NAME (the HostEndpoint of that name),
host:NODE/INTERFACE (the one of that node with that interfaceName, "*"
included) or host:NODE (the node's only one), or one address outside the
cluster, an IP address. A host
endpoint stands for the node's own traffic through its interface, to and
from its expectedIPs (as for pods, a probe goes to the destination's first
address from the source's first address of that family; from an external
address, to the destination's first address of its family): the fail-safe
ports, then its policy and profiles judge it; a lab dataplane builds the
node with the endpoint's interface and addresses. It is probed with an
external address only: the node's traffic with its own pods is the pods'
policy's.
An external address is probed with a host endpoint, or with pods (traffic
the node forwards, which only the pods' policy judges). Such rows and
columns print as host:NAME and as the address. Without --probe, a host
endpoint is probed on the ports its spec.ports declare; an external
destination needs --probe.

-o table prints the Kubernetes netpol truth-table layout: one block per
probe, "." allowed, "X" denied, rows are sources, columns destinations.
-o json prints {"results":[{"from","to","port","protocol","allowed"}, …]}
in probe order, then source, then destination.

Dataplanes (--dataplane):` + dpHelp.String() + `

Exit codes: 0 success, 1 invalid input, 2 bad flags or unreadable input.`,
		Example: `  calyxctl reach -f examples/ecommerce
  calyxctl reach -f examples/ecommerce --probe 8080/TCP --from "app == 'frontend'" -o json
  calyxctl reach -f cluster/ --from 203.0.113.9 --to host:node1/eth0 --probe 22/TCP
  calyxctl reach -f cluster/ --from host:node1-eth0 --to 198.51.100.7 --probe 443/TCP --dataplane nftables`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return exitError{code: exitUsage, err: fmt.Errorf("-o %q: want table or json", output)}
			}
			dp, err := findDataplane(dpName)
			if err != nil {
				return exitError{code: exitUsage, err: err}
			}
			var probes []reach.Probe
			for _, f := range probeFlags {
				p, err := reach.ParseProbe(f)
				if err != nil {
					return exitError{code: exitUsage, err: fmt.Errorf("--probe: %w", err)}
				}
				if !slices.Contains(probes, p) {
					probes = append(probes, p)
				}
			}
			fromEnd, err := parseReachEnd("--from", from)
			if err != nil {
				return err
			}
			toEnd, err := parseReachEnd("--to", to)
			if err != nil {
				return err
			}
			if err := checkReachEnds(fromEnd, toEnd); err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			in, err := loadInput(ctx, files, stdin, stderr, true)
			if err != nil {
				return err
			}
			rs, err := compile.New(in.set, "").Compile()
			if err != nil {
				return exitError{code: exitFindings, err: err}
			}
			var all []reach.Pod
			if fromEnd.kind == reach.KindPod || toEnd.kind == reach.KindPod {
				all = reach.PodsFromSet(in.set)
				if len(all) == 0 {
					return exitError{code: exitUsage, err: fmt.Errorf("no pods in the input: reach needs Pod objects (with their IPs) to probe between")}
				}
			}
			var idx *model.Index
			if fromEnd.kind != reach.KindPod || toEnd.kind != reach.KindPod {
				idx = model.NewIndex(rs)
			}
			srcs, err := fromEnd.resolve(in.set, idx, all)
			if err != nil {
				return err
			}
			dsts, err := toEnd.resolve(in.set, idx, all)
			if err != nil {
				return err
			}
			if len(probes) == 0 {
				probes = reach.DeclaredProbes(dsts)
			}
			if len(probes) == 0 {
				if toEnd.kind != reach.KindPod {
					return exitError{code: exitUsage, err: fmt.Errorf("--to %s declares no ports: pass --probe PORT/PROTO", dsts[0].ID())}
				}
				return exitError{code: exitUsage, err: fmt.Errorf("the pods declare no container ports: pass --probe PORT/PROTO")}
			}
			prober, closeDP, err := dp.open(ctx, rs, unionPods(srcs, dsts), probes)
			if err != nil {
				return fmt.Errorf("dataplane %s: %w", dp.name, err)
			}
			defer closeDP()
			m, err := reach.Run(ctx, prober, unionPods(srcs, dsts), probes, 0)
			if err != nil {
				return fmt.Errorf("dataplane %s: %w", dp.name, err)
			}
			view := newMatrixView(m, srcs, dsts)
			if output == "json" {
				return view.writeJSON(stdout)
			}
			return view.writeTable(stdout)
		},
	}
	addFileFlag(cmd, &files)
	cmd.Flags().StringSliceVar(&probeFlags, "probe", nil, "port/protocol to probe, e.g. 80/TCP or 53/UDP (repeatable; default: every port the pods declare)")
	cmd.Flags().StringVar(&from, "from", "", "Calico selector over the source pods' labels (default: all pods), or host:NAME, host:NODE/INTERFACE or an external IP")
	cmd.Flags().StringVar(&to, "to", "", "Calico selector over the destination pods' labels (default: all pods), or host:NAME, host:NODE/INTERFACE or an external IP")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&dpName, "dataplane", dataplanes()[0].name, "what answers the probes: "+strings.Join(dataplaneNames(), ", "))
	return cmd
}

// reachEnd is what --from or --to names: pods by selector (every pod
// when none is given), one host endpoint ("host:NAME" or
// "host:NODE/INTERFACE"), or one address outside the cluster.
type reachEnd struct {
	flag, expr string
	kind       reach.Kind
	sel        *selector.Selector
	addr       netip.Addr
}

// parseReachEnd reads --from or --to. A host endpoint or an address is
// never a valid selector, so every selector means what it meant before.
func parseReachEnd(flag, expr string) (reachEnd, error) {
	e := reachEnd{flag: flag, expr: expr}
	if ref, ok := strings.CutPrefix(expr, reach.HostPrefix); ok {
		if ref == "" || strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") {
			return e, exitError{code: exitUsage, err: fmt.Errorf("%s %q: want host:NAME, host:NODE/INTERFACE or host:NODE", flag, expr)}
		}
		e.kind = reach.KindHost
		return e, nil
	}
	if a, err := netip.ParseAddr(expr); err == nil {
		a = a.Unmap()
		if !a.IsGlobalUnicast() {
			return e, exitError{code: exitUsage, err: fmt.Errorf("%s %s: an external address must be a unicast address, not loopback, link-local or multicast", flag, expr)}
		}
		e.kind, e.addr = reach.KindExternal, a
		return e, nil
	}
	sel, err := parseSelectorFlag(flag, expr)
	e.sel = sel
	return e, err
}

// checkReachEnds refuses pairs no dataplane lab can hold, so the model
// never answers what the kernel cannot be asked: a host endpoint is
// probed with external addresses only (a node's traffic with its own
// pods is the pods' policy's, and the lab is one node), and two external
// addresses have nothing between them to judge.
func checkReachEnds(from, to reachEnd) error {
	bad := func(why string) error {
		return exitError{code: exitUsage, err: fmt.Errorf("--from %q --to %q: %s", from.expr, to.expr, why)}
	}
	switch {
	case from.kind == reach.KindHost && to.kind == reach.KindHost:
		return bad("two host endpoints: probe a host endpoint with an external address")
	case (from.kind == reach.KindHost || to.kind == reach.KindHost) && (from.kind == reach.KindPod || to.kind == reach.KindPod):
		return bad("a host endpoint with pods: probe a host endpoint with an external address (a node's traffic with its own pods is judged by the pods' policy)")
	case from.kind == reach.KindExternal && to.kind == reach.KindExternal:
		return bad("two external addresses: no policy lies between them")
	}
	return nil
}

// resolve returns the parties the end names. all holds the input's pods
// (needed only for a selector); idx tells whose addresses are whose, and
// a host endpoint's must be its own, an external address nobody's, or
// the model would judge another endpoint than the one named.
func (e *reachEnd) resolve(set *policy.Set, idx *model.Index, all []reach.Pod) ([]reach.Pod, error) {
	usage := func(format string, args ...any) error {
		return exitError{code: exitUsage, err: fmt.Errorf("%s %s: %s", e.flag, e.expr, fmt.Sprintf(format, args...))}
	}
	switch e.kind {
	case reach.KindHost:
		h, err := reach.FindHost(reach.HostsFromSet(set), strings.TrimPrefix(e.expr, reach.HostPrefix))
		if err != nil {
			return nil, exitError{code: exitUsage, err: fmt.Errorf("%s: %w", e.flag, err)}
		}
		if len(h.Addrs) == 0 {
			return nil, usage("the host endpoint has no expectedIPs: reach probes a host endpoint at its addresses")
		}
		if other, a, ok := sharedAddr(idx.Ruleset(), h); ok {
			return nil, usage("its address %s is also endpoint %s's: which policy judges it is ambiguous", a, other)
		}
		return []reach.Pod{h}, nil
	case reach.KindExternal:
		if ep, ok := idx.Endpoint(e.addr); ok {
			return nil, usage("the address of endpoint %s, not an external one: name it by selector or host:NAME", ep.Key)
		}
		return []reach.Pod{reach.ExternalParty(e.addr)}, nil
	}
	pods := filterPods(set, all, e.sel)
	if len(pods) == 0 {
		return nil, exitError{code: exitUsage, err: fmt.Errorf("no pod matches %s %q", e.flag, e.expr)}
	}
	return pods, nil
}

// sharedAddr returns another endpoint of rs (the first by key) holding
// one of h's addresses. The model gives an address to the first endpoint
// by key, a dataplane to the endpoint its interface or address rule finds
// first: only an address nobody else holds means the same to both.
func sharedAddr(rs *compile.Ruleset, h reach.Pod) (string, netip.Addr, bool) {
	best, addr := "", netip.Addr{}
	for key, ep := range rs.Endpoints {
		if key == h.ID() || (best != "" && key > best) {
			continue
		}
		for _, a := range ep.Addrs {
			if slices.Contains(h.Addrs, a.Unmap()) {
				best, addr = key, a.Unmap()
				break
			}
		}
	}
	return best, addr, best != ""
}

func parseSelectorFlag(flag, expr string) (*selector.Selector, error) {
	if expr == "" {
		return nil, nil
	}
	s, err := selector.Parse(expr)
	if err != nil {
		return nil, exitError{code: exitUsage, err: fmt.Errorf("%s: %w", flag, err)}
	}
	return s, nil
}

// filterPods keeps the pods whose flattened labels match sel (all when sel
// is nil).
func filterPods(set *policy.Set, pods []reach.Pod, sel *selector.Selector) []reach.Pod {
	if sel == nil {
		return pods
	}
	eps := map[string]*policy.Endpoint{}
	for _, ep := range set.Endpoints() {
		eps[ep.Key()] = ep
	}
	var out []reach.Pod
	for _, p := range pods {
		if ep := eps[p.ID()]; ep != nil && sel.Matches(set.EndpointLabels(ep)) {
			out = append(out, p)
		}
	}
	return out
}

// unionPods returns the pods of a and b, each once.
func unionPods(a, b []reach.Pod) []reach.Pod {
	seen := map[string]bool{}
	var out []reach.Pod
	for _, list := range [][]reach.Pod{a, b} {
		for _, p := range list {
			if !seen[p.ID()] {
				seen[p.ID()] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// matrixView is the part of a matrix to print: the chosen sources (rows)
// and destinations (columns), both sorted by pod name.
type matrixView struct {
	m          *reach.Matrix
	rows, cols []int // indexes into m.Pods
}

func newMatrixView(m *reach.Matrix, srcs, dsts []reach.Pod) *matrixView {
	want := func(list []reach.Pod) map[string]bool {
		out := map[string]bool{}
		for _, p := range list {
			out[p.ID()] = true
		}
		return out
	}
	isSrc, isDst := want(srcs), want(dsts)
	v := &matrixView{m: m}
	for i := range m.Pods {
		id := m.Pods[i].ID()
		if isSrc[id] {
			v.rows = append(v.rows, i)
		}
		if isDst[id] {
			v.cols = append(v.cols, i)
		}
	}
	return v
}

// writeTable prints the netpol truth-table layout, as reach.Matrix's
// WriteTable does for the full square.
func (v *matrixView) writeTable(w io.Writer) error {
	var b strings.Builder
	for pi, pr := range v.m.Probes {
		if pi > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(pr.String())
		b.WriteString("\n-")
		for _, c := range v.cols {
			b.WriteString("\t" + v.m.Pods[c].ID())
		}
		b.WriteByte('\n')
		for _, r := range v.rows {
			b.WriteString(v.m.Pods[r].ID())
			for _, c := range v.cols {
				if v.m.Allowed[pi][r][c] {
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

// writeJSON prints {"results":[…]} in probe, source, destination order,
// byte for byte as reach.Matrix's WriteJSON (whose reach.Result fields it
// spells in order), but streamed: a million pairs are neither held as
// values nor encoded by reflection one by one.
func (v *matrixView) writeJSON(w io.Writer) error {
	quoted := make([]string, len(v.m.Pods))
	for i := range v.m.Pods {
		b, err := json.Marshal(v.m.Pods[i].ID())
		if err != nil {
			return err
		}
		quoted[i] = string(b)
	}
	bw := bufio.NewWriter(w)
	bw.WriteString(`{"results":[`)
	sep := ""
	for pi, pr := range v.m.Probes {
		proto, err := json.Marshal(compile.ProtocolName(pr.Protocol))
		if err != nil {
			return err
		}
		tail := `,"port":` + strconv.Itoa(int(pr.Port)) + `,"protocol":` + string(proto) + `,"allowed":`
		for _, r := range v.rows {
			for _, c := range v.cols {
				bw.WriteString(sep)
				bw.WriteString(`{"from":`)
				bw.WriteString(quoted[r])
				bw.WriteString(`,"to":`)
				bw.WriteString(quoted[c])
				bw.WriteString(tail)
				bw.WriteString(strconv.FormatBool(v.m.Allowed[pi][r][c]))
				bw.WriteByte('}')
				sep = ","
			}
		}
	}
	bw.WriteString("]}\n")
	return bw.Flush()
}

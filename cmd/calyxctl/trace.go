package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/reach"
)

// newTraceCmd wires `calyxctl trace`.
func newTraceCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var (
		files          []string
		from, to, port string
	)
	cmd := &cobra.Command{
		Use:   "trace -f PATH... --from NS/POD|host:NAME|IP --to NS/POD|host:NAME|IP --port PORT/PROTO",
		Short: "Explain, step by step, why a connection is allowed or denied",
		Long: `trace builds the first packet of a connection and walks it through the
policy as the reference model does: the source's egress, then the
destination's ingress; in each, every tier, policy and rule consulted, the
rule that decided, or the implicit end-of-tier deny, or the profiles when no
policy applies. It ends with the verdict and what decided it.

--from and --to name pods as namespace/name, or host endpoints as
host:NAME, host:NODE/INTERFACE or host:NODE (as in reach; the host
endpoint's first expected IP of the other side's family is used). Either may
instead be an IP address outside the input; the other side must then be a
pod or a host endpoint. The source port is 40000.

Exit codes: 0 when the trace is printed (allowed or denied), 1 invalid
input, 2 bad flags, unknown pods or unreadable input.`,
		Example: `  calyxctl trace -f examples/ecommerce --from shop/frontend --to shop/api-gateway --port 8080/TCP
  calyxctl trace -f examples/ecommerce --from shop/database --to 203.0.113.7 --port 443/TCP
  calyxctl trace -f cluster/ --from 203.0.113.9 --to host:node1/eth0 --port 22/TCP`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" || port == "" {
				return exitError{code: exitUsage, err: fmt.Errorf("trace needs --from, --to and --port")}
			}
			probe, err := reach.ParseProbe(port)
			if err != nil {
				return exitError{code: exitUsage, err: fmt.Errorf("--port: %w", err)}
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
			pods := map[string]*reach.Pod{}
			for _, p := range reach.PodsFromSet(in.set) {
				pods[p.ID()] = &p
			}
			hosts := reach.HostsFromSet(in.set)
			src, err := traceEnd("--from", from, pods, hosts)
			if err != nil {
				return err
			}
			dst, err := traceEnd("--to", to, pods, hosts)
			if err != nil {
				return err
			}
			if src.pod == nil && dst.pod == nil {
				return exitError{code: exitUsage, err: fmt.Errorf("--from or --to must name a pod (namespace/name) or a host endpoint (host:NAME)")}
			}
			pkt, err := tracePacket(src, dst, probe)
			if err != nil {
				return exitError{code: exitUsage, err: err}
			}
			v := model.NewIndex(rs).Verdict(pkt)
			_, err = io.WriteString(stdout, explain(&v, src, dst))
			return err
		},
	}
	addFileFlag(cmd, &files)
	cmd.Flags().StringVar(&from, "from", "", "source: a pod as namespace/name, a host endpoint as host:NAME, or an IP address")
	cmd.Flags().StringVar(&to, "to", "", "destination: a pod as namespace/name, a host endpoint as host:NAME, or an IP address")
	cmd.Flags().StringVar(&port, "port", "", "destination port and protocol, e.g. 8080/TCP")
	return cmd
}

// traceEndpoint is one end of a traced connection: a pod, a host endpoint
// (pod then holds it) or an address.
type traceEndpoint struct {
	name string
	pod  *reach.Pod
	addr netip.Addr
}

func traceEnd(flag, v string, pods map[string]*reach.Pod, hosts []reach.Pod) (traceEndpoint, error) {
	if a, err := netip.ParseAddr(v); err == nil {
		return traceEndpoint{name: a.Unmap().String(), addr: a.Unmap()}, nil
	}
	if ref, ok := strings.CutPrefix(v, reach.HostPrefix); ok {
		h, err := reach.FindHost(hosts, ref)
		if err != nil {
			return traceEndpoint{}, exitError{code: exitUsage, err: fmt.Errorf("%s: %w", flag, err)}
		}
		if len(h.Addrs) == 0 {
			return traceEndpoint{}, exitError{code: exitUsage, err: fmt.Errorf("%s %q: the host endpoint has no expectedIPs", flag, v)}
		}
		return traceEndpoint{name: h.ID(), pod: &h}, nil
	}
	if !strings.Contains(v, "/") {
		return traceEndpoint{}, exitError{code: exitUsage, err: fmt.Errorf("%s %q: want namespace/name, host:NAME or an IP address", flag, v)}
	}
	p, ok := pods[v]
	if !ok {
		return traceEndpoint{}, exitError{code: exitUsage, err: fmt.Errorf("%s %q: no such pod in the input", flag, v)}
	}
	if len(p.Addrs) == 0 {
		return traceEndpoint{}, exitError{code: exitUsage, err: fmt.Errorf("%s %q: the pod has no IP address (status.podIPs)", flag, v)}
	}
	return traceEndpoint{name: v, pod: p}, nil
}

// tracePacket builds the first packet as reach does (reach.FirstPacket):
// to the destination's first address (from an address, its first one of
// that address's family), from the source's first address of that family.
func tracePacket(src, dst traceEndpoint, probe reach.Probe) (model.Packet, error) {
	party := func(e traceEndpoint) *reach.Pod {
		if e.pod != nil {
			return e.pod
		}
		p := reach.ExternalParty(e.addr)
		return &p
	}
	pkt, ok := reach.FirstPacket(party(src), party(dst), probe)
	if !ok {
		return model.Packet{}, fmt.Errorf("%s and %s have no addresses of one family", src.name, dst.name)
	}
	return pkt, nil
}

// explain prints the trace grouped by direction, then the verdict.
func explain(v *model.Verdict, src, dst traceEndpoint) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s → %s %d/%s\n", src.name, dst.name, v.Packet.DstPort, compile.ProtocolName(v.Packet.Protocol))
	fmt.Fprintf(&b, "packet: %s\n", v.Packet)

	judged := map[compile.Direction]bool{}
	for _, st := range v.Steps {
		judged[st.Direction] = true
	}
	// A pod to itself, or two addresses outside the input: one step says
	// it all; otherwise say which side had no policy to judge it.
	whole := len(v.Steps) > 0 && v.Steps[0].Direction == 0
	if !whole && !judged[compile.Egress] {
		fmt.Fprintf(&b, "\negress of %s: not judged (%s is not an endpoint of the input)\n", src.name, src.name)
	}
	var dir compile.Direction
	endpoint, tier := "", ""
	for _, s := range v.Steps {
		if s.Direction == 0 {
			fmt.Fprintf(&b, "\n%s\n", s)
			continue
		}
		if dir != s.Direction || endpoint != s.Endpoint {
			dir, endpoint, tier = s.Direction, s.Endpoint, ""
			fmt.Fprintf(&b, "\n%s of %s:\n", s.Direction, s.Endpoint)
		}
		switch s.Kind {
		case model.StepRule:
			if s.Tier != tier {
				tier = s.Tier
				fmt.Fprintf(&b, "  tier %s:\n", tier)
			}
			fmt.Fprintf(&b, "    %s\n", stepLine(s))
		case model.StepEndOfTier:
			fmt.Fprintf(&b, "    %s\n", stepLine(s))
		case model.StepProfileRule:
			if tier != "\x00profiles" {
				tier = "\x00profiles"
				b.WriteString("  profiles:\n")
			}
			fmt.Fprintf(&b, "    %s\n", stepLine(s))
		default:
			fmt.Fprintf(&b, "  %s\n", stepLine(s))
		}
	}
	if !whole && !judged[compile.Ingress] {
		if dst.pod == nil {
			fmt.Fprintf(&b, "\ningress of %s: not judged (%s is not an endpoint of the input)\n", dst.name, dst.name)
		} else if !v.Allowed {
			fmt.Fprintf(&b, "\ningress of %s: not judged (egress already denied)\n", dst.name)
		}
	}
	verdict := "DENIED"
	if v.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(&b, "\nverdict: %s\n", verdict)
	if d, ok := v.Decider(); ok {
		fmt.Fprintf(&b, "decided by: %s\n", d)
	}
	return b.String()
}

// stepLine is a step without the endpoint and direction its section
// header already gives.
func stepLine(s model.Step) string {
	line := s.String()
	return strings.TrimPrefix(line, s.Endpoint+" "+s.Direction.String()+": ")
}

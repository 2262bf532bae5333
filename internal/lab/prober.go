package lab

import (
	"context"
	"fmt"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/reach"
)

// Prober answers reachability probes from what a dataplane did in a lab:
// NewProber builds a lab of the pods (each serving every probed port, so a
// connection that gets through is answered), applies the Ruleset with the
// backend, observes every probe once, and Probe reads the observed matrix.
// It is how `calyxctl reach --dataplane nftables|…` prints what the kernel
// does, in the same formats as the model.
type Prober struct {
	observed map[probeKey]bool
}

type probeKey struct {
	from, to string
	proto    uint8
	port     uint16
}

// NewProber runs the lab once for pods and probes under rs with the backend
// open opens. Probes must be TCP or UDP.
func NewProber(ctx context.Context, rs *compile.Ruleset, pods []reach.Pod, probes []reach.Probe, open backend.Factory, opts Options) (*Prober, error) {
	var ports []Port
	for _, pr := range probes {
		if pr.Protocol != 6 && pr.Protocol != 17 {
			return nil, fmt.Errorf("%w: the lab probes TCP and UDP only, not %s", ErrInvalidSpec, pr)
		}
		ports = append(ports, Port{Protocol: pr.Protocol, Port: pr.Port})
	}
	spec := Spec{}
	for _, p := range pods {
		spec.Pods = append(spec.Pods, Pod{Namespace: p.Namespace, Name: p.Name, IPs: p.Addrs, Ports: ports})
	}
	m, err := Reach(ctx, spec, rs, open, opts)
	if err != nil {
		return nil, err
	}
	pr := &Prober{observed: map[probeKey]bool{}}
	first := map[string]string{} // the destination address reach probes: the pod's first
	for _, p := range pods {
		if len(p.Addrs) > 0 {
			first[p.ID()] = p.Addrs[0].Unmap().String()
		}
	}
	for i, p := range m.Probes {
		if first[p.To] != p.Dst.Unmap().String() {
			continue
		}
		pr.observed[probeKey{p.From, p.To, p.Protocol, p.DstPort}] = m.Allowed[i]
	}
	return pr, nil
}

// Probe reports what the lab observed for the connection; a pair the lab
// could not probe (no address of the destination's family) is denied, as
// the model's prober reports it.
func (p *Prober) Probe(_ context.Context, from, to *reach.Pod, probe reach.Probe) (bool, error) {
	return p.observed[probeKey{from.ID(), to.ID(), probe.Protocol, probe.Port}], nil
}

package conformance

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/testgen"
)

func specIR(spec lab.Spec) *testgen.IR {
	b := testgen.NewIR()
	for i := range spec.Pods {
		p := &spec.Pods[i]
		b.Endpoint(p.Key(), p.Interface(), p.IPs...)
	}
	return b
}

// Every host endpoint scenario must, by the model, deny some and allow
// some of the node's probes in each direction, and change no probe that
// does not involve the node: otherwise it proves nothing about a
// dataplane's host endpoint support.
func TestHostScenariosDecideNodeProbes(t *testing.T) {
	spec := Spec()
	probes := spec.Probes(20000)
	base := specIR(spec)
	WithAllowAllProfiles(base)
	before := lab.Expected(base.RS, probes)
	for _, sc := range HostScenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			b := specIR(spec)
			WithAllowAllProfiles(b)
			sc.Build(b)
			require.Contains(t, b.RS.Endpoints, HostEndpointKey)
			m := lab.Expected(b.RS, probes)
			var in, out [2]int // denied, allowed
			for i, p := range m.Probes {
				ok := 0
				if m.Allowed[i] {
					ok = 1
				}
				switch {
				case p.To == lab.Node:
					in[ok]++
				case p.From == lab.Node:
					out[ok]++
				default:
					require.Equal(t, before.Allowed[i], m.Allowed[i], "%s: not the node's traffic", p.String())
				}
			}
			require.Positive(t, in[0], "some probe to the node denied")
			require.Positive(t, in[1], "some probe to the node allowed")
			require.Positive(t, out[0]+out[1], "probes from the node")
			t.Logf("to node: %d denied, %d allowed; from node: %d denied, %d allowed", in[0], in[1], out[0], out[1])
		})
	}
}

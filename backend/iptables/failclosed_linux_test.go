//go:build linux

package iptables

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
)

// TestUnknownInterfaceDropped: a pod whose calyx interface is in no
// endpoint (not programmed yet) can neither send nor receive, even though
// every programmed endpoint allows everything.
func TestUnknownInterfaceDropped(t *testing.T) {
	r := newRig(t, conformance.Spec())
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	delete(b.RS.Endpoints, "ns0/pod2")
	ctx := context.Background()
	require.NoError(t, r.b.Apply(ctx, b.RS))
	m, err := r.lab.Observe(ctx)
	require.NoError(t, err)
	for i, p := range m.Probes {
		unknown := p.From == "ns0/pod2" || p.To == "ns0/pod2"
		if p.From == p.To {
			continue // never leaves the pod
		}
		if unknown {
			require.False(t, m.Allowed[i], "%s: the unprogrammed pod must be cut off", p.String())
		}
	}
	// And the others still talk.
	var others []lab.Probe
	for _, p := range m.Probes {
		if p.From != "ns0/pod2" && p.To != "ns0/pod2" && p.From != p.To {
			others = append(others, p)
		}
	}
	got, err := r.lab.Run(ctx, others)
	require.NoError(t, err)
	got, err = r.lab.Recheck(ctx, got, lab.Expected(b.RS, others))
	require.NoError(t, err)
	require.Empty(t, got.Diff(lab.Expected(b.RS, others)))
}

//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
)

// Reach is what `calyxctl reach --dataplane NAME` runs: it builds a lab for
// spec, opens a backend with open on the lab's node namespace, applies rs,
// probes every pair and removes everything again. It returns the observed
// matrix; Expected(rs, observed.Probes) gives the model's for comparison.
func Reach(ctx context.Context, spec Spec, rs *compile.Ruleset, open backend.Factory, opts Options) (m *Matrix, err error) {
	l, err := New(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, l.Close()) }()
	b, err := open(ctx, backend.Options{NetNS: l.NodeNS().Path(), Name: l.ID()})
	if err != nil {
		return nil, fmt.Errorf("lab: open dataplane: %w", err)
	}
	defer func() { err = errors.Join(err, b.Close(ctx)) }()
	if err := b.Apply(ctx, rs); err != nil {
		return nil, fmt.Errorf("lab: apply: %w", err)
	}
	m, err = l.Observe(ctx)
	if err != nil {
		return nil, err
	}
	// Give slow-but-allowed probes a second chance, so a loaded machine
	// does not print denials the dataplane never made.
	return l.Recheck(ctx, m, Expected(rs, m.Probes))
}

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/calyxnet/calyx/backend"
)

// benchRepair measures what the agent's periodic drift check costs: a
// Repair of a node programmed with each size, when nothing drifted (the
// common case), as a median of c.reps Repairs of one programmed node.
func benchRepair(ctx context.Context, c *config, d dataplane, out io.Writer) error {
	fmt.Fprintf(out, "== drift check (Repair, no drift) of a node of %d pods (%s, medians of %d)\n", c.pods, d.name, c.reps)
	for _, n := range c.sizes {
		b, done, err := freshBackend(ctx, d, "r")
		if err != nil {
			return err
		}
		r, ok := b.(backend.Repairer)
		if !ok {
			done()
			return fmt.Errorf("%s does not repair drift", d.name)
		}
		if err := b.Apply(ctx, clusterRuleset(c.pods, n)); err != nil {
			done()
			return fmt.Errorf("%d policies: %w", n, err)
		}
		var times []time.Duration
		for range c.reps {
			start := time.Now()
			drift, err := r.Repair(ctx)
			times = append(times, time.Since(start))
			if err != nil {
				done()
				return fmt.Errorf("%d policies: repair: %w", n, err)
			}
			if !drift.Empty() {
				done()
				return fmt.Errorf("%d policies: drift right after Apply: %s", n, drift)
			}
		}
		done()
		fmt.Fprintf(out, "%-28s %12v\n", fmt.Sprintf("%d policies", n), median(times).Round(time.Microsecond))
	}
	return nil
}

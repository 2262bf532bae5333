package resource_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/calyxnet/calyx/internal/datastore/memory"
	"github.com/calyxnet/calyx/internal/resource"
	"github.com/calyxnet/calyx/policy"
)

// What `calyxctl apply --dry-run=server` prints: the change to each
// object, and what it does to the dataplane and to reachability.
func ExampleSimulate() {
	ctx := context.Background()
	current, _ := policy.Decode(strings.NewReader(cluster), "cluster.yaml")
	s, _ := memory.New(current...)
	objs, _ := policy.Decode(strings.NewReader(denyDB), "policy.yaml")

	changes, _ := resource.Plan(ctx, s, resource.OpApply, objs, resource.Options{})
	for _, c := range changes {
		fmt.Println(c.Key, c.Action)
	}
	eff, _ := resource.Simulate(ctx, current, changes, resource.SimulateOptions{})
	fmt.Print(eff.Reach[0], "\n", eff.Reach[1], "\n")
	// Output:
	// NetworkPolicy shop/db-isolated created
	// - shop/web -> shop/db 80/TCP
	// - shop/web -> shop/db 5432/TCP
}

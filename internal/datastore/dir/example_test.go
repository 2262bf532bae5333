package dir_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/policy"
)

// A directory of YAML as a datastore: read what is there, write a new
// object (into a file of its own), watch.
func ExampleOpen() {
	root, _ := os.MkdirTemp("", "calyx-example-")
	defer os.RemoveAll(root)
	os.WriteFile(filepath.Join(root, "baseline.yaml"), []byte(`
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: default-deny}
spec: {selector: all(), types: [Ingress, Egress]}
`), 0o644)

	ctx := context.Background()
	s, err := dir.Open(ctx, root, dir.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	gns := &policy.GlobalNetworkSet{}
	gns.Name = "mining-pools"
	gns.Spec.Nets = []string{"198.51.100.0/24"}
	if _, err := s.Create(ctx, gns); err != nil {
		fmt.Println(err)
		return
	}

	ch, _ := s.Watch(ctx)
	for ev := range ch {
		if ev.Type == datastore.EventSynced {
			break
		}
		fmt.Println(ev.Key, "from", filepath.Base(ev.Source))
	}
	// Output:
	// GlobalNetworkPolicy default-deny from baseline.yaml
	// GlobalNetworkSet mining-pools from globalnetworkset.mining-pools.yaml
}

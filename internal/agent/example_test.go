package agent_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/agent/agenttest"
	"github.com/calyxnet/calyx/policy"
)

// An agent over an in-memory datastore and the reference model: once the
// store is in sync, the node's Ruleset is applied, and the model judges
// packets as the kernel would.
func Example() {
	objs, _ := policy.Decode(strings.NewReader(`apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.2}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: api-http, namespace: shop}
spec:
  selector: app == 'api'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
`), "example")
	store, _ := agenttest.NewMemStore(objs...)
	dataplane := model.New()
	a, err := agent.New(agent.Config{Node: "node-a", Store: store, Backend: dataplane})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for !a.NodeStatus().Ready {
		time.Sleep(time.Millisecond)
	}

	for _, port := range []uint16{80, 22} {
		v := dataplane.Verdict(model.Packet{Src: mustAddr("10.0.0.9"), Dst: mustAddr("10.0.0.2"), Protocol: 6, SrcPort: 40000, DstPort: port})
		fmt.Printf("TCP %d to shop/api allowed: %v\n", port, v.Allowed)
	}
	_, applied := a.Ruleset()
	fmt.Println("interface:", applied.Endpoints["shop/api"].Interface == compile.WorkloadInterface("shop", "api"))

	cancel() // the dataplane keeps enforcing after the agent stops
	fmt.Println("stopped:", <-done)
	// Output:
	// TCP 80 to shop/api allowed: true
	// TCP 22 to shop/api allowed: false
	// interface: true
	// stopped: <nil>
}

package endpointapi_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/calyxnet/calyx/internal/endpointapi"
)

// The agent serves the socket; the CNI plugin registers a pod's endpoint
// and waits until its policy is enforced.
func Example() {
	dir, _ := os.MkdirTemp("", "endpointapi")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "endpoint.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agent := &endpointapi.Memory{Program: func(context.Context, endpointapi.Endpoint) error {
		time.Sleep(10 * time.Millisecond) // compile and apply the node's policy
		return nil
	}}
	go func() { _ = endpointapi.NewServer(agent, nil).Serve(ctx, ln) }()

	c := endpointapi.NewClient(sock)
	ep := endpointapi.Endpoint{ID: "k8s-pod-network.c0ffee", Namespace: "shop", Pod: "api", ContainerID: "c0ffee",
		IfName: "eth0", HostIf: "calyx0123456789", Addrs: []netip.Addr{netip.MustParseAddr("10.244.0.7")}}
	fmt.Println(c.Register(ctx, ep))
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	fmt.Println(c.WaitEnforced(wctx, ep.ID))
	fmt.Println(c.Unregister(ctx, ep.ID))
	_, err = c.Enforced(ctx, ep.ID)
	fmt.Println(err)
	// Output:
	// <nil>
	// <nil>
	// <nil>
	// endpointapi: unknown endpoint: "k8s-pod-network.c0ffee"
}

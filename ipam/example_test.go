package ipam_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/calyxnet/calyx/ipam"
)

func ExampleAllocator_AutoAssign() {
	ctx := context.Background()
	a := ipam.New(ipam.NewMemoryStore(), ipam.Config{})
	_ = a.UpsertPool(ctx, ipam.Pool{Name: "default-ipv4", CIDR: netip.MustParsePrefix("10.244.0.0/16")})
	_ = a.UpsertPool(ctx, ipam.Pool{Name: "default-ipv6", CIDR: netip.MustParsePrefix("fd00:10:244::/56")})

	res, err := a.AutoAssign(ctx, ipam.AssignRequest{
		Handle: "k8s-pod-network.3f2a9c",
		Node:   "worker-1",
		IPv4:   1,
		IPv6:   1,
		Attrs:  map[string]string{"namespace": "shop", "pod": "frontend-7d4b9"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.IPv4, res.IPv6)

	// The next pod on the same node gets the next address of the node's block.
	res, _ = a.AutoAssign(ctx, ipam.AssignRequest{Handle: "k8s-pod-network.9e01d7", Node: "worker-1", IPv4: 1})
	fmt.Println(res.IPv4)
	// Another node claims a block of its own.
	res, _ = a.AutoAssign(ctx, ipam.AssignRequest{Handle: "k8s-pod-network.51aa0c", Node: "worker-2", IPv4: 1})
	fmt.Println(res.IPv4)
	// Output:
	// [10.244.0.0] [fd00:10:244::]
	// [10.244.0.1]
	// [10.244.0.64]
}

func ExampleAllocator_ReleaseByHandle() {
	ctx := context.Background()
	a := ipam.New(ipam.NewMemoryStore(), ipam.Config{})
	_ = a.UpsertPool(ctx, ipam.Pool{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/24")})
	_, _ = a.AutoAssign(ctx, ipam.AssignRequest{Handle: "pod-a", Node: "n1", IPv4: 2})

	freed, err := a.ReleaseByHandle(ctx, "pod-a")
	fmt.Println(freed, err)
	_, err = a.LookupHandle(ctx, "pod-a")
	fmt.Println(err)
	// Output:
	// [10.0.0.0 10.0.0.1] <nil>
	// ipam: handle pod-a: ipam: not found
}

func ExampleAllocator_Assign() {
	ctx := context.Background()
	a := ipam.New(ipam.NewMemoryStore(), ipam.Config{})
	_ = a.UpsertPool(ctx, ipam.Pool{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/24")})
	addr := netip.MustParseAddr("10.0.0.10")

	fmt.Println(a.Assign(ctx, ipam.AssignAddrRequest{Addr: addr, Handle: "gateway", Node: "n1"}))
	al, _ := a.Lookup(ctx, addr)
	fmt.Println(al.Handle, al.Block)
	// Output:
	// <nil>
	// gateway 10.0.0.0/26
}

func ExampleAllocator_GC() {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := ipam.New(ipam.NewMemoryStore(), ipam.Config{Now: clock, GCGrace: time.Minute})
	_ = a.UpsertPool(ctx, ipam.Pool{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/24")})
	_, _ = a.AutoAssign(ctx, ipam.AssignRequest{Handle: "gone-pod", Node: "n1", IPv4: 1})
	podExists := func(context.Context, ipam.Handle) (bool, error) { return false, nil }

	now = now.Add(time.Minute) // older than the grace period
	res, _ := a.GC(ctx, podExists)
	fmt.Println("suspects:", res.Suspects, "released:", res.Released)
	now = now.Add(time.Minute) // still dead a grace period later
	res, _ = a.GC(ctx, podExists)
	fmt.Println("suspects:", res.Suspects, "released:", res.Released)
	// Output:
	// suspects: [gone-pod] released: []
	// suspects: [] released: [gone-pod]
}

func ExampleAllocator_Check() {
	ctx := context.Background()
	a := ipam.New(ipam.NewMemoryStore(), ipam.Config{})
	_ = a.UpsertPool(ctx, ipam.Pool{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/24")})
	_, _ = a.AutoAssign(ctx, ipam.AssignRequest{Handle: "pod-a", Node: "n1", IPv4: 1})

	rep, _ := a.Check(ctx)
	_ = rep.WriteText(os.Stdout)
	// Output:
	// checked 1 pools, 1 blocks, 1 nodes, 1 handles, 1 allocated addresses
	// no problems found
}

func ExampleAllocator_Usage() {
	ctx := context.Background()
	a := ipam.New(ipam.NewMemoryStore(), ipam.Config{})
	_ = a.UpsertPool(ctx, ipam.Pool{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/24")})
	_, _ = a.AutoAssign(ctx, ipam.AssignRequest{Handle: "pod-a", Node: "n1", IPv4: 3})
	_, _ = a.AutoAssign(ctx, ipam.AssignRequest{Handle: "pod-b", Node: "n2", IPv4: 1})

	u, _ := a.Usage(ctx)
	_ = u.WriteText(os.Stdout)
	// Output:
	// POOL  CIDR         BLOCK SIZE  BLOCKS  ALLOCATED  USED  STATE
	// p     10.0.0.0/24  /26         2       4          1.6%  enabled
	//
	// NODE  BLOCK         POOL  ALLOCATED  USED
	// n1    10.0.0.0/26   p     3/64       4.7%
	// n2    10.0.0.64/26  p     1/64       1.6%
}

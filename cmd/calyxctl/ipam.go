package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/calyxnet/calyx/ipam"
)

// newIPAMCmd wires `calyxctl ipam show | check | release` to the ipam
// package.
func newIPAMCmd(stdout io.Writer) *cobra.Command {
	var storeFlag string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "Inspect and repair IP address management state",
		Long: `ipam reads the IPAM store: pools, blocks and their node affinity,
handles and allocated addresses.

The store is --store bolt:/path (the node's embedded file, default
` + ipam.DefaultBoltPath + `) or --store etcd:http://host:2379[,http://…].`,
	}
	cmd.PersistentFlags().StringVar(&storeFlag, "store", "bolt:"+ipam.DefaultBoltPath, "IPAM store: bolt:/path or etcd:http://host:port[,…]")
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long (store lock, network)")

	// withAllocator opens the store and runs fn; a store that cannot be
	// opened is unreadable input (exit 2).
	withAllocator := func(fn func(ctx context.Context, a *ipam.Allocator) error) error {
		spec, err := ipam.ParseStoreSpec(storeFlag)
		if err != nil {
			return exitError{code: exitUsage, err: err}
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		s, err := spec.OpenExisting(ctx)
		if err != nil {
			return exitError{code: exitUsage, err: err}
		}
		defer s.Close()
		return fn(ctx, ipam.New(s, ipam.Config{}))
	}

	show := &cobra.Command{
		Use:   "show",
		Short: "Show pools, blocks per node and utilisation",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return withAllocator(func(ctx context.Context, a *ipam.Allocator) error {
				u, err := a.Usage(ctx)
				if err != nil {
					return err
				}
				return u.WriteText(stdout)
			})
		},
	}

	var repair bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Report every inconsistency (exit 1 if any); --repair fixes what is safe",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return withAllocator(func(ctx context.Context, a *ipam.Allocator) error {
				if repair {
					res, err := a.Repair(ctx)
					if err != nil {
						return err
					}
					for _, p := range res.Fixed {
						fmt.Fprintf(stdout, "fixed: %s\n", p)
					}
				}
				rep, err := a.Check(ctx)
				if err != nil {
					return err
				}
				if err := rep.WriteText(stdout); err != nil {
					return err
				}
				if !rep.OK() {
					return exitError{code: exitFindings}
				}
				return nil
			})
		},
	}
	check.Flags().BoolVar(&repair, "repair", false, "fix what is safe to fix before reporting")

	var addrs []string
	var handle string
	release := &cobra.Command{
		Use:   "release (--address ADDR... | --handle ID)",
		Short: "Release addresses, or every address of a handle",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if (len(addrs) == 0) == (handle == "") {
				return exitError{code: exitUsage, err: errors.New("give --address or --handle (one of them)")}
			}
			var parsed []netip.Addr
			for _, s := range addrs {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return exitError{code: exitUsage, err: fmt.Errorf("--address: %w", err)}
				}
				parsed = append(parsed, a)
			}
			return withAllocator(func(ctx context.Context, a *ipam.Allocator) error {
				if handle != "" {
					freed, err := a.ReleaseByHandle(ctx, handle)
					if errors.Is(err, ipam.ErrNotFound) {
						return exitError{code: exitFindings, err: err}
					}
					if err != nil {
						return err
					}
					for _, x := range freed {
						fmt.Fprintf(stdout, "released %s (handle %s)\n", x, handle)
					}
					return nil
				}
				unallocated, err := a.Release(ctx, parsed...)
				if err != nil {
					return err
				}
				for _, x := range parsed {
					if !contains(unallocated, x.Unmap()) {
						fmt.Fprintf(stdout, "released %s\n", x)
					}
				}
				if len(unallocated) > 0 {
					return exitError{code: exitFindings, err: fmt.Errorf("not allocated: %v", unallocated)}
				}
				return nil
			})
		},
	}
	release.Flags().StringSliceVar(&addrs, "address", nil, "address to release (repeat or comma-separate)")
	release.Flags().StringVar(&handle, "handle", "", "handle whose addresses to release")

	cmd.AddCommand(show, check, release)
	return cmd
}

func contains(xs []netip.Addr, x netip.Addr) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

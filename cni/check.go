package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/podnet"
	"github.com/calyxnet/calyx/ipam"
)

// Check verifies that the attachment still matches prevResult: the handle
// holds the same addresses, the host side is up and routes them, the pod's
// interface carries them, and the agent still enforces the endpoint.
func (p *Plugin) Check(ctx context.Context, args *skel.CmdArgs) error {
	a, err := p.attachment(args, true)
	if err != nil {
		return err
	}
	if len(a.conf.PrevResult) == 0 {
		return &ConfigError{Key: "prevResult", Msg: "CHECK needs the result of ADD"}
	}
	prev, err := version.NewResult(a.conf.CNIVersion, a.conf.PrevResult)
	if err != nil {
		return &ConfigError{Key: "prevResult", Msg: err.Error()}
	}
	res, err := current.NewResultFromResult(prev)
	if err != nil {
		return &ConfigError{Key: "prevResult", Msg: err.Error()}
	}
	var want []netip.Addr
	for _, ipc := range res.IPs {
		ad, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			return &ConfigError{Key: "prevResult", Msg: fmt.Sprintf("bad address %v", ipc.Address)}
		}
		want = append(want, ad.Unmap())
	}
	slices.SortFunc(want, netip.Addr.Compare)

	al, closeStore, err := openIPAM(ctx, a.conf)
	if err != nil {
		return err
	}
	defer closeStore()
	h, err := al.LookupHandle(ctx, a.handle)
	if err != nil {
		return fmt.Errorf("%w: allocation %s: %w", ErrCheckFailed, a.handle, err)
	}
	held := slices.Clone(h.Addrs)
	slices.SortFunc(held, netip.Addr.Compare)
	if !slices.Equal(held, want) {
		return fmt.Errorf("%w: %s holds %v, prevResult has %v", ErrCheckFailed, a.handle, held, want)
	}
	hostIf := a.hostIf
	if h.Attrs[attrHostIf] != "" {
		hostIf = h.Attrs[attrHostIf]
	}

	node, err := p.nodeNS(a.conf)
	if err != nil {
		return err
	}
	defer node.Close()
	if err := podnet.Check(ctx, node, podnet.Config{HostIfName: hostIf, PodIfName: a.ifName, Addrs: want}); err != nil {
		return fmt.Errorf("%w: %w", ErrCheckFailed, err)
	}
	pod, err := netns.Open(args.Netns)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidNetNS, args.Netns, err)
	}
	defer pod.Close()
	li, err := linkIn(pod, a.ifName)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckFailed, err)
	}
	slices.SortFunc(li.addrs, netip.Addr.Compare)
	if !li.up || !slices.Equal(li.addrs, want) {
		return fmt.Errorf("%w: %s in the pod: up=%v addresses %v, want %v", ErrCheckFailed, a.ifName, li.up, li.addrs, want)
	}

	ok, err := endpointapi.NewClient(a.conf.AgentSocket).Enforced(ctx, a.handle)
	switch {
	case errors.Is(err, endpointapi.ErrUnavailable) && a.conf.FailOpenWithoutAgent:
	case err != nil:
		return fmt.Errorf("%w: agent: %w", ErrCheckFailed, err)
	case !ok:
		return fmt.Errorf("%w: the agent does not enforce %s", ErrCheckFailed, a.handle)
	}
	return nil
}

// Status reports whether an ADD could succeed now: code 50 when the IPAM
// store or the agent cannot be reached or the pools are full, 51 when the
// agent cannot program policy.
func (p *Plugin) Status(ctx context.Context, args *skel.CmdArgs) error {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	al, closeStore, err := openIPAM(ctx, conf)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPluginNotAvailable, err)
	}
	defer closeStore()
	u, err := al.Usage(ctx)
	if err != nil {
		return fmt.Errorf("%w: IPAM: %w", ErrPluginNotAvailable, err)
	}
	var pools []ipam.Pool
	free := map[bool]bool{} // family (is4) → some enabled pool has room
	for _, pu := range u.Pools {
		pools = append(pools, pu.Pool)
		if !pu.Pool.Disabled && float64(pu.Allocated) < pu.Size {
			free[pu.Pool.CIDR.Addr().Is4()] = true
		}
	}
	if len(conf.Pools) == 0 {
		conf.Pools = pools
	} else {
		// Configured pools the store lacks are created on the first ADD.
		for _, cp := range conf.Pools {
			if !slices.ContainsFunc(pools, func(q ipam.Pool) bool { return q.Name == cp.Name }) {
				free[cp.CIDR.Addr().Is4()] = true
			}
		}
	}
	v4, v6 := families(conf.Pools)
	switch {
	case v4+v6 == 0:
		return fmt.Errorf("%w: no enabled IP pool", ErrPluginNotAvailable)
	case v4 > 0 && !free[true]:
		return fmt.Errorf("%w: IPv4 pools exhausted: %w", ErrPluginNotAvailable, ipam.ErrExhausted)
	case v6 > 0 && !free[false]:
		return fmt.Errorf("%w: IPv6 pools exhausted: %w", ErrPluginNotAvailable, ipam.ErrExhausted)
	}
	err = endpointapi.NewClient(conf.AgentSocket).Status(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, endpointapi.ErrCannotProgram):
		return fmt.Errorf("%w: %w", ErrLimitedConnectivity, err)
	case errors.Is(err, endpointapi.ErrUnavailable) && conf.FailOpenWithoutAgent:
		return nil
	default:
		return fmt.Errorf("%w: agent: %w", ErrPluginNotAvailable, err)
	}
}

// GC releases the allocations of this network and node whose attachment
// is not among the valid ones, with their host sides and agent endpoints.
func (p *Plugin) GC(ctx context.Context, args *skel.CmdArgs) error {
	a, err := p.attachment(args, false)
	if err != nil {
		return err
	}
	if !a.conf.HasValidAttachments {
		// Without the list every attachment would look stale.
		return &ConfigError{Key: "cni.dev/valid-attachments", Msg: "GC needs the list of valid attachments"}
	}
	valid := map[types.GCAttachment]bool{}
	for _, v := range a.conf.ValidAttachments {
		valid[v] = true
	}
	al, closeStore, err := openIPAM(ctx, a.conf)
	if err != nil {
		return err
	}
	defer closeStore()
	hs, err := al.Handles(ctx)
	if err != nil {
		return fmt.Errorf("cni: GC: list handles: %w", err)
	}
	var errs []error
	for _, h := range hs {
		if h.Attrs[attrNetwork] != a.conf.Name || h.Node != a.node {
			continue
		}
		att := types.GCAttachment{ContainerID: h.Attrs[attrContainerID], IfName: h.Attrs[attrIfName]}
		if valid[att] {
			continue
		}
		p.release(ctx, a.conf, h.ID, h.Attrs[attrHostIf])
		if _, err := al.ReleaseByHandle(ctx, h.ID); err != nil && !errors.Is(err, ipam.ErrNotFound) {
			errs = append(errs, fmt.Errorf("cni: GC: release %s: %w", h.ID, err))
		}
	}
	// Host sides whose allocation is gone (released by hand, or a store
	// restored from backup) are found by the handle on their alias.
	validIDs := map[string]bool{}
	for _, v := range a.conf.ValidAttachments {
		validIDs[a.conf.Name+"."+v.ContainerID] = true
	}
	node, err := p.nodeNS(a.conf)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer node.Close()
	links, err := ownedLinks(node, a.conf.Name+".")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for hostIf, handle := range links {
		if !validIDs[handle] {
			p.release(ctx, a.conf, handle, hostIf)
		}
	}
	return errors.Join(errs...)
}

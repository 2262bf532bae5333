//go:build linux

package cni

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"

	"github.com/calyxnet/calyx/internal/netns"
)

// linkMAC returns the MAC of interface name inside ns.
func linkMAC(ns *netns.NS, name string) (net.HardwareAddr, error) {
	l, err := linkIn(ns, name)
	if err != nil {
		return nil, err
	}
	return l.mac, nil
}

type linkInfo struct {
	mac   net.HardwareAddr
	up    bool
	addrs []netip.Addr
}

// linkIn reads an interface and its global addresses inside ns.
func linkIn(ns *netns.NS, name string) (linkInfo, error) {
	h, err := netlink.NewHandleAt(nlns.NsHandle(ns.Fd()))
	if err != nil {
		return linkInfo{}, fmt.Errorf("cni: netlink in %s: %w", ns.Path(), err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return linkInfo{}, fmt.Errorf("cni: %s in %s: %w", name, ns.Path(), err)
	}
	info := linkInfo{mac: l.Attrs().HardwareAddr, up: l.Attrs().Flags&net.FlagUp != 0}
	as, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return linkInfo{}, fmt.Errorf("cni: addresses of %s: %w", name, err)
	}
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		info.addrs = append(info.addrs, ip.Unmap())
	}
	return info, nil
}

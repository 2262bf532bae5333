//go:build linux

package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

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

// setOwner records the attachment's handle as the alias of its host-side
// interface, so that a DEL of an older sandbox of the same pod (same
// interface name) can tell the interface is no longer its own.
func setOwner(node *netns.NS, hostIf, handle string) error {
	h, err := netlink.NewHandleAt(nlns.NsHandle(node.Fd()))
	if err != nil {
		return fmt.Errorf("cni: netlink in %s: %w", node.Path(), err)
	}
	defer h.Close()
	l, err := h.LinkByName(hostIf)
	if err != nil {
		return fmt.Errorf("cni: %s: %w", hostIf, err)
	}
	if err := h.LinkSetAlias(l, handle); err != nil {
		return fmt.Errorf("cni: alias of %s: %w", hostIf, err)
	}
	return nil
}

// owner returns the handle recorded on hostIf; ok is false when the
// interface does not exist.
func owner(node *netns.NS, hostIf string) (handle string, ok bool, err error) {
	h, err := netlink.NewHandleAt(nlns.NsHandle(node.Fd()))
	if err != nil {
		return "", false, fmt.Errorf("cni: netlink in %s: %w", node.Path(), err)
	}
	defer h.Close()
	l, err := h.LinkByName(hostIf)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("cni: %s: %w", hostIf, err)
	}
	return l.Attrs().Alias, true, nil
}

// ownedLinks returns the host-side interfaces in node whose alias (the
// handle ADD recorded) starts with prefix, by interface name.
func ownedLinks(node *netns.NS, prefix string) (map[string]string, error) {
	h, err := netlink.NewHandleAt(nlns.NsHandle(node.Fd()))
	if err != nil {
		return nil, fmt.Errorf("cni: netlink in %s: %w", node.Path(), err)
	}
	defer h.Close()
	ls, err := h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("cni: links of %s: %w", node.Path(), err)
	}
	out := map[string]string{}
	for _, l := range ls {
		if a := l.Attrs().Alias; strings.HasPrefix(a, prefix) {
			out[l.Attrs().Name] = a
		}
	}
	return out, nil
}

//go:build linux

package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/internal/netns"
)

// UplinkName is the carrier-less uplink PrepareNode adds to a node namespace
// that has no uplink of its own.
const UplinkName = "cxuplink"

// PrepareNode readies a node namespace that has nothing but loopback (the
// lab's): forwarding on for IPv4 and IPv6, loopback up, and a dummy uplink
// holding the node's own addresses with default routes through it. Proxy
// ARP answers only for destinations the node routes out of another
// interface, so without the default route no pod could resolve its
// gateway. The uplink is a veth pair whose other end stays down inside the
// node namespace: it discards what it is given, nothing leaves the
// namespace.
func PrepareNode(ctx context.Context, node *netns.NS, nodeAddrs ...netip.Addr) error {
	for _, kv := range [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/ipv6/conf/all/forwarding", "1"},
		{"net/ipv6/conf/default/accept_dad", "0"},
	} {
		if err := node.WriteSysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := loUp(node); err != nil {
		return err
	}
	h, err := handle(node)
	if err != nil {
		return err
	}
	defer h.Close()
	// A veth whose peer stays down, rather than a dummy device: the dummy
	// module is not everywhere, and a veth without carrier discards what
	// it is given just the same.
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: UplinkName}, PeerName: UplinkName + "-p"}
	if err := h.LinkAdd(up); err != nil {
		return fmt.Errorf("podnet: add %s: %w", UplinkName, err)
	}
	link, err := h.LinkByName(UplinkName)
	if err != nil {
		return fmt.Errorf("podnet: %s: %w", UplinkName, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("podnet: %s up: %w", UplinkName, err)
	}
	for _, a := range nodeAddrs {
		bits := 32
		if a.Is6() {
			bits = 128
		}
		addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a.Unmap(), bits)), Flags: unix.IFA_F_NODAD}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("podnet: node address %s: %w", a, err)
		}
	}
	for _, dst := range []string{"0.0.0.0/0", "::/0"} {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(netip.MustParsePrefix(dst)), Scope: netlink.SCOPE_LINK}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("podnet: default route %s: %w", dst, err)
		}
	}
	return nil
}

func loUp(ns *netns.NS) error {
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("podnet: lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("podnet: lo up: %w", err)
	}
	return nil
}

func handle(ns *netns.NS) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(nlns.NsHandle(ns.Fd()))
	if err != nil {
		return nil, fmt.Errorf("podnet: netlink handle in %s: %w", ns.Path(), err)
	}
	return h, nil
}

// Setup creates the veth pair of one pod, addresses and routes both ends,
// and turns on proxy ARP / proxy NDP on the host side. On error it removes
// what it created.
func Setup(ctx context.Context, node, pod *netns.NS, cfg Config) (err error) {
	if len(cfg.HostIfName) == 0 || len(cfg.HostIfName) > 15 {
		return fmt.Errorf("podnet: host interface name %q must be 1..15 bytes", cfg.HostIfName)
	}
	hn, err := handle(node)
	if err != nil {
		return err
	}
	defer hn.Close()
	hp, err := handle(pod)
	if err != nil {
		return err
	}
	defer hp.Close()

	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:         cfg.HostIfName,
			MTU:          cfg.mtu(),
			HardwareAddr: HostMAC(),
		},
		PeerName:      cfg.podIf(),
		PeerMTU:       uint32(cfg.mtu()),
		PeerNamespace: netlink.NsFd(pod.Fd()),
	}
	if err := hn.LinkAdd(veth); err != nil {
		return fmt.Errorf("podnet: add veth %s: %w", cfg.HostIfName, err)
	}
	defer func() {
		if err != nil {
			_ = hn.LinkDel(veth)
		}
	}()
	host, err := hn.LinkByName(cfg.HostIfName)
	if err != nil {
		return fmt.Errorf("podnet: %s: %w", cfg.HostIfName, err)
	}
	podIf, err := hp.LinkByName(cfg.podIf())
	if err != nil {
		return fmt.Errorf("podnet: pod %s: %w", cfg.podIf(), err)
	}

	// Before the links come up, so no DAD delay and no proxy-ARP delay.
	hostConf := "net/ipv4/conf/" + cfg.HostIfName + "/"
	for _, kv := range [][2]string{
		{hostConf + "proxy_arp", "1"},
		{"net/ipv4/neigh/" + cfg.HostIfName + "/proxy_delay", "0"},
		{"net/ipv6/conf/" + cfg.HostIfName + "/accept_dad", "0"},
		{"net/ipv6/conf/" + cfg.HostIfName + "/proxy_ndp", "1"},
		{"net/ipv6/conf/" + cfg.HostIfName + "/forwarding", "1"},
	} {
		if err := node.WriteSysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := pod.WriteSysctl("net/ipv6/conf/"+cfg.podIf()+"/accept_dad", "0"); err != nil {
		return err
	}
	if err := hn.LinkSetUp(host); err != nil {
		return fmt.Errorf("podnet: %s up: %w", cfg.HostIfName, err)
	}
	if err := loUp(pod); err != nil {
		return err
	}
	if err := hp.LinkSetUp(podIf); err != nil {
		return fmt.Errorf("podnet: pod %s up: %w", cfg.podIf(), err)
	}

	var v4, v6 bool
	for _, a := range cfg.Addrs {
		a = a.Unmap()
		bits := 32
		if a.Is6() {
			bits = 128
			v6 = true
		} else {
			v4 = true
		}
		pfx := netip.PrefixFrom(a, bits)
		addr := &netlink.Addr{IPNet: ipNet(pfx)}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := hp.AddrAdd(podIf, addr); err != nil {
			return fmt.Errorf("podnet: pod address %s: %w", pfx, err)
		}
		if err := hn.RouteAdd(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: ipNet(pfx), Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("podnet: node route %s: %w", pfx, err)
		}
	}
	idx := podIf.Attrs().Index
	if v4 {
		gw := netip.PrefixFrom(GatewayV4, 32)
		if err := hp.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipNet(gw), Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("podnet: gateway route: %w", err)
		}
		if err := hp.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: GatewayV4.AsSlice()}); err != nil {
			return fmt.Errorf("podnet: default route: %w", err)
		}
	}
	if v6 {
		if err := hp.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipNet(netip.MustParsePrefix("::/0")), Gw: GatewayV6.AsSlice()}); err != nil {
			return fmt.Errorf("podnet: IPv6 default route: %w", err)
		}
	}
	return nil
}

// Teardown removes the pod's veth pair from the node's namespace (its
// routes go with it). A missing interface is not an error.
func Teardown(ctx context.Context, node *netns.NS, hostIfName string) error {
	h, err := handle(node)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(hostIfName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("podnet: %s: %w", hostIfName, err)
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("podnet: delete %s: %w", hostIfName, err)
	}
	return nil
}

// Check verifies that the pod's host-side interface exists and is up, and
// that the node routes every address through it.
func Check(ctx context.Context, node *netns.NS, cfg Config) error {
	h, err := handle(node)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(cfg.HostIfName)
	if err != nil {
		return fmt.Errorf("podnet: %s: %w", cfg.HostIfName, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("podnet: %s is down", cfg.HostIfName)
	}
	for _, a := range cfg.Addrs {
		routes, err := h.RouteGet(a.AsSlice())
		if err != nil {
			return fmt.Errorf("podnet: route to %s: %w", a, err)
		}
		if len(routes) == 0 || routes[0].LinkIndex != l.Attrs().Index {
			return fmt.Errorf("podnet: %s is not routed through %s", a, cfg.HostIfName)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Package podnet wires a pod's network namespace to its node the way
// Calico does, for the CNI plugin and the test lab alike.
//
// The topology: a veth pair per pod, eth0 inside the pod, a host-side
// interface in the node's namespace. The pod holds its addresses as /32
// and /128 and routes everything through a gateway that does not exist:
// 169.254.1.1 for IPv4, answered by proxy ARP on the host side, and the
// host side's own link-local address fe80::ecee:eeff:feee:eeee for IPv6
// (the host veth has the fixed MAC ee:ee:ee:ee:ee:ee, so every pod sees the
// same gateway). The node has one /32 or /128 route per pod address through
// the pod's host-side interface. Duplicate address detection is off on both
// ends so addresses work the moment they are added.
//
// The package knows interface names, addresses and namespace handles; it
// knows nothing about policy.
package podnet

import (
	"net"
	"net/netip"
)

// Gateways and the host-side MAC every pod sees.
var (
	// GatewayV4 is the pod's IPv4 next hop, answered by proxy ARP.
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	// GatewayV6 is the link-local address the host-side veth derives from
	// HostMAC: the pod's IPv6 next hop.
	GatewayV6 = netip.MustParseAddr("fe80::ecee:eeff:feee:eeee")
)

// HostMAC returns the MAC address of every host-side veth.
func HostMAC() net.HardwareAddr { return net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee} }

// Config describes one pod attachment.
type Config struct {
	// HostIfName is the interface name in the node's namespace (at most 15
	// bytes), for a pod compile.WorkloadInterface(namespace, name).
	HostIfName string
	// PodIfName is the interface name inside the pod; "eth0" when empty.
	PodIfName string
	// Addrs are the pod's addresses, IPv4 and/or IPv6.
	Addrs []netip.Addr
	// MTU of both ends; 1500 when zero.
	MTU int
}

func (c *Config) podIf() string {
	if c.PodIfName == "" {
		return "eth0"
	}
	return c.PodIfName
}

func (c *Config) mtu() int {
	if c.MTU == 0 {
		return 1500
	}
	return c.MTU
}

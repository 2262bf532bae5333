//go:build linux

package ebpf

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// TestForgedSourceDropped: traffic from a pod whose source address is not
// one of the pod's own on its interface is dropped before policy, as the
// iptables dataplane's dispatch does; a pod's own addresses pass. The
// program runs with BPF_PROG_TEST_RUN on a real interface index in a
// throw-away namespace.
func TestForgedSourceDropped(t *testing.T) {
	h := newHarness(t)
	h.apply(oneWay())
	ns := netnstest.New(t, "cxspoof-")
	nh, err := netlink.NewHandleAt(nlns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "calyxspoofa"}, PeerName: "pspoofa"}); err != nil {
		t.Fatal(err)
	}
	l, err := nh.LinkByName("calyxspoofa")
	if err != nil {
		t.Fatal(err)
	}
	idx := l.Attrs().Index
	for _, a := range h.rs.Endpoints[podA].Addrs {
		if err := h.objs.maps[refAddrs].Put(srcKey(uint32(idx), a), uint32(1)); err != nil {
			t.Fatal(err)
		}
	}
	prog := h.progs[h.plan.attach[attachKey{"calyxa000000001", hookIngress}]].entry
	ctx := make([]byte, 44) // struct __sk_buff up to ifindex
	binary.NativeEndian.PutUint32(ctx[40:], uint32(idx))
	for _, c := range []struct {
		name string
		p    model.Packet
		want bool
	}{
		{"own IPv4 address", model.Packet{Src: a4, Dst: b4, Protocol: 6, SrcPort: 40000, DstPort: 80}, true},
		{"own IPv6 address", model.Packet{Src: a6, Dst: b6, Protocol: 17, SrcPort: 40000, DstPort: 53}, true},
		// Each of these A's egress policy would allow: only the source check
		// stops them.
		{"another pod's address", model.Packet{Src: b4, Dst: b4, Protocol: 6, SrcPort: 40000, DstPort: 80}, false},
		{"an address of no endpoint", model.Packet{Src: mustAddr("10.77.0.9"), Dst: b4, Protocol: 6, SrcPort: 40000, DstPort: 80}, false},
		{"an outside address", model.Packet{Src: mustAddr("198.51.100.7"), Dst: b4, Protocol: 6, SrcPort: 40000, DstPort: 80}, false},
		{"a forged IPv6 address", model.Packet{Src: mustAddr("fd77::9"), Dst: b6, Protocol: 17, SrcPort: 40000, DstPort: 53}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h.flush()
			var ret uint32
			err := ns.Do(func() error {
				var err error
				ret, err = prog.Run(&ebpf.RunOptions{Data: frame(&pkt{Packet: c.p, tcpFlags: tcpSYN}), Context: ctx})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := int32(ret) != tcxDrop; got != c.want {
				t.Errorf("allowed=%v, want %v", got, c.want)
			}
		})
	}
}

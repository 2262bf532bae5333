//go:build linux

package iptables

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Member changes through netlink.
//
// A new pod like its neighbours, or a label change, only adds and deletes
// ipset members. Running `ipset restore` for that costs a fork and exec
// in the node's namespace — most of a new pod's time on a loaded node —
// where a netlink message per member costs microseconds. Anything else
// (sets created or destroyed, members of types not parsed here, many
// members) still goes through `ipset restore`.

// memberNetlinkMax is the most member changes sent one netlink message at
// a time; beyond, one `ipset restore` is cheaper.
const memberNetlinkMax = 64

// memberOp is one member to add to, or delete from, an existing set.
type memberOp struct {
	set    string
	entry  netlink.IPSetEntry
	del    bool
	member string
}

// memberOps returns the member changes that turn cur into want, if that is
// all there is to do (no set to create, change or destroy) and every
// member is of a type parsed here.
func memberOps(cur, want map[string]*ipset) ([]memberOp, bool) {
	if len(cur) != len(want) {
		return nil, false
	}
	var ops []memberOp
	for name, w := range want {
		c, ok := cur[name]
		if !ok || c.typ != w.typ || c.family != w.family {
			return nil, false
		}
		if c == w {
			continue
		}
		add, del := diffSorted(c.members, w.members)
		if len(ops)+len(add)+len(del) > memberNetlinkMax {
			return nil, false
		}
		for _, m := range del {
			e, ok := parseMember(w.typ, m)
			if !ok {
				return nil, false
			}
			ops = append(ops, memberOp{set: name, entry: e, del: true, member: m})
		}
		for _, m := range add {
			e, ok := parseMember(w.typ, m)
			if !ok {
				return nil, false
			}
			ops = append(ops, memberOp{set: name, entry: e, member: m})
		}
	}
	return ops, true
}

// parseMember reads a member as written for `ipset restore` into a netlink
// entry: hash:net ("addr" or "net/bits") and hash:net,iface
// ("addr,iface" or "net/bits,iface") only.
func parseMember(typ, m string) (netlink.IPSetEntry, bool) {
	var e netlink.IPSetEntry
	addr := m
	switch typ {
	case "hash:net":
	case "hash:net,iface":
		i := strings.LastIndexByte(m, ',')
		if i < 0 {
			return e, false
		}
		addr, e.IFace = m[:i], m[i+1:]
	default:
		return e, false
	}
	if p, err := netip.ParsePrefix(addr); err == nil {
		e.IP, e.CIDR = net.IP(p.Addr().AsSlice()), uint8(p.Bits())
	} else if a, err := netip.ParseAddr(addr); err == nil {
		e.IP = net.IP(a.AsSlice())
	} else {
		return e, false
	}
	// Like `ipset restore -exist`: adding a member there, or deleting one
	// not there, is no error.
	e.Replace = true
	return e, true
}

// ipsetHandle returns a netlink handle in the backend's namespace, opened
// on first use; nil when netlink cannot be used.
func (b *Backend) ipsetHandle() *netlink.Handle {
	if b.nlh != nil || b.nlFailed {
		return b.nlh
	}
	var h *netlink.Handle
	var err error
	if b.ns != nil {
		h, err = netlink.NewHandleAt(vnetns.NsHandle(b.ns.Fd()), unix.NETLINK_NETFILTER)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
	}
	if err != nil {
		b.log.Debug("ipset over netlink unavailable, using ipset restore", "err", err)
		b.nlFailed = true
		return nil
	}
	b.nlh = h
	return h
}

// applyMembers sends member changes one netlink message each.
func (b *Backend) applyMembers(h *netlink.Handle, ops []memberOp) (err error) {
	defer func() {
		// The library asserts the kernel's error is an errno.
		if p := recover(); p != nil {
			err = fmt.Errorf("ipset netlink: %v", p)
		}
	}()
	for i := range ops {
		op := &ops[i]
		if op.del {
			err = h.IpsetDel(op.set, &op.entry)
		} else {
			err = h.IpsetAdd(op.set, &op.entry)
		}
		if err != nil {
			verb := "add"
			if op.del {
				verb = "del"
			}
			return fmt.Errorf("ipset %s %s %s: %w", verb, op.set, op.member, err)
		}
	}
	return nil
}

func (b *Backend) closeNetlink() {
	if b.nlh != nil {
		b.nlh.Close()
		b.nlh = nil
	}
}

//go:build linux

package nftables

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// generation returns the nftables ruleset generation of the backend's
// network namespace: the kernel adds one at every committed batch, whoever
// sends it, and reading back a table is the only other way to notice a
// change. Reconcile skips the read when the generation is the one at which
// the kernel was last known to hold what the backend applied.
func (b *Backend) generation() (uint32, error) {
	if b.genConn == nil {
		// Kept between calls: dialling into a namespace costs more than
		// the question.
		cfg := &netlink.Config{}
		if b.ns != nil {
			cfg.NetNS = b.ns.Fd()
		}
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
		if err != nil {
			return 0, fmt.Errorf("nftables: generation: %w", err)
		}
		b.genConn = c
	}
	msgs, err := b.genConn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		// nfgenmsg: family, version, resource id.
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		b.closeGen()
		return 0, fmt.Errorf("nftables: generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("nftables: generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
		if err := ad.Err(); err != nil {
			return 0, fmt.Errorf("nftables: generation: %w", err)
		}
	}
	return 0, fmt.Errorf("nftables: generation: no NFTA_GEN_ID in the reply")
}

func (b *Backend) closeGen() {
	if b.genConn != nil {
		_ = b.genConn.Close()
		b.genConn = nil
	}
}

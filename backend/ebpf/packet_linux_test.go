//go:build linux

package ebpf

import (
	"encoding/binary"
	"net/netip"

	"github.com/calyxnet/calyx/backend/model"
)

// pkt describes a crafted packet: a model packet plus what the model does
// not see (TCP flags, fragmentation, IPv6 extension headers, ICMP
// errors' quotes).
type pkt struct {
	model.Packet
	tcpFlags uint8
	// fragment: 0 none; 1 first fragment (more fragments follow); 2 a
	// later fragment (offset > 0, no transport header).
	fragment int
	fragID   uint32
	// ext adds IPv6 hop-by-hop and destination options headers.
	ext bool
	// inner is the packet an ICMP error quotes.
	inner *model.Packet
	// hopLimit overrides the IPv6 hop limit (64 by default).
	hopLimit uint8
}

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// l4 builds the transport header and payload of p.
func l4(p *model.Packet, flags uint8, inner []byte) []byte {
	switch p.Protocol {
	case 6:
		b := make([]byte, 20+4)
		binary.BigEndian.PutUint16(b[0:], p.SrcPort)
		binary.BigEndian.PutUint16(b[2:], p.DstPort)
		b[12] = 5 << 4
		b[13] = flags
		binary.BigEndian.PutUint16(b[14:], 65535)
		copy(b[20:], "ping")
		return b
	case 17, 132, 136:
		b := make([]byte, 8+4)
		binary.BigEndian.PutUint16(b[0:], p.SrcPort)
		binary.BigEndian.PutUint16(b[2:], p.DstPort)
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
		copy(b[8:], "ping")
		return b
	case 1, 58:
		b := make([]byte, 8)
		b[0], b[1] = p.ICMPType, p.ICMPCode
		binary.BigEndian.PutUint16(b[4:], p.SrcPort) // echo identifier
		b = append(b, inner...)
		binary.BigEndian.PutUint16(b[2:], csum(b))
		return b
	}
	return []byte("payload!")
}

// ipPacket builds the IP header and what follows (no Ethernet).
func ipPacket(p *pkt, mp *model.Packet, payload []byte) []byte {
	src, dst := mp.Src.Unmap(), mp.Dst.Unmap()
	if src.Is4() {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
		binary.BigEndian.PutUint16(h[4:], uint16(p.fragID))
		switch p.fragment {
		case 1:
			h[6] = 0x20
		case 2:
			binary.BigEndian.PutUint16(h[6:], 185) // offset 1480 bytes, last fragment
		}
		h[8] = 64
		h[9] = mp.Protocol
		s4, d4 := src.As4(), dst.As4()
		copy(h[12:], s4[:])
		copy(h[16:], d4[:])
		binary.BigEndian.PutUint16(h[10:], csum(h))
		return append(h, payload...)
	}
	h := make([]byte, 40)
	h[0] = 0x60
	hop := p.hopLimit
	if hop == 0 {
		hop = 64
	}
	h[7] = hop
	s16, d16 := src.As16(), dst.As16()
	copy(h[8:], s16[:])
	copy(h[24:], d16[:])
	next := mp.Protocol
	var ext []byte
	if p.fragment != 0 {
		f := make([]byte, 8)
		f[0] = next
		switch p.fragment {
		case 1:
			f[3] = 1
		case 2:
			binary.BigEndian.PutUint16(f[2:], 1480)
		}
		binary.BigEndian.PutUint32(f[4:], p.fragID)
		ext = append(f, ext...)
		next = 44
	}
	if p.ext {
		d := make([]byte, 16) // destination options, 16 bytes: padding
		d[0], d[1] = next, 1
		d[2], d[3] = 1, 12    // PadN
		h2 := make([]byte, 8) // hop-by-hop, 8 bytes
		h2[0], h2[1] = 60, 0
		h2[2], h2[3] = 1, 4
		ext = append(append(h2, d...), ext...)
		next = 0
	}
	h[6] = next
	body := append(ext, payload...)
	binary.BigEndian.PutUint16(h[4:], uint16(len(body)))
	return append(h, body...)
}

// frame builds the Ethernet frame of p.
func frame(p *pkt) []byte {
	var inner []byte
	if p.inner != nil {
		ip := &pkt{Packet: *p.inner}
		inner = ipPacket(ip, p.inner, l4(p.inner, tcpSYN, nil))
		inner = inner[:min(len(inner), 48+8)]
	}
	payload := l4(&p.Packet, p.tcpFlags, inner)
	if p.fragment == 2 {
		payload = []byte("later fragment payload")
	}
	ip := ipPacket(p, &p.Packet, payload)
	eth := make([]byte, 14, 14+len(ip))
	copy(eth[0:], []byte{2, 0, 0, 0, 0, 1})
	copy(eth[6:], []byte{2, 0, 0, 0, 0, 2})
	if p.Src.Unmap().Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
	} else {
		binary.BigEndian.PutUint16(eth[12:], 0x86dd)
	}
	return append(eth, ip...)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

package ebpf

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// Return codes of a TCX program.
const (
	tcxNext = -1 // allow: hand over to the next program (or pass)
	tcxDrop = 2
)

// hook says on which side of the host veth a program runs. The pod's
// egress policy runs on TCX ingress, its ingress policy on TCX egress.
type hook uint8

const (
	hookIngress hook = 0 // TCX ingress of the host veth: traffic from the pod
	hookEgress  hook = 1 // TCX egress of the host veth: traffic to the pod
)

func (h hook) opposite() hook { return 1 - h }

// String returns "ingress" or "egress".
func (h hook) String() string {
	if h == hookIngress {
		return "ingress"
	}
	return "egress"
}

// The scratch area is a one-element per-CPU array: the parsed packet and
// every lookup key, built once by the entry program and read by its
// tail-called chunks (R7 points at it in every program).
const (
	oFam      = 0  // u8: 4 or 6
	oProto    = 1  // u8: upper-layer protocol
	oHasPorts = 2  // u8: TCP, UDP, SCTP, UDPLite
	oICMPType = 3  // u8
	oICMPCode = 4  // u8
	oTCPFlags = 5  // u8
	oFrag     = 6  // u8: 1 = first fragment of a fragmented packet
	oICMPErr  = 7  // u8: an ICMP error whose inner tuple is in oCTRel
	oSport    = 8  // u16, host order
	oDport    = 10 // u16, host order
	oResume   = 12 // u32: tier a tail-called chunk resumes at
	oHop      = 16 // u8: IPv6 hop limit

	// LPM keys: prefixlen u32 | id u32 | fam u8 | proto u8 | port be16 | addr [16]
	oSetSrc = 24
	oSetDst = 52
	oRunSrc = 80
	oRunDst = 108
	// Named-port keys: id u32 | fam u8 | proto u8 | port be16 | addr [16]
	oNPSrc = 136
	oNPDst = 160
	// Conntrack keys: ifindex u32 | hook u8 | fam u8 | proto u8 | pad | sport be16 | dport be16 | src [16] | dst [16]
	oCTFwd = 184
	oCTRev = 228
	oCTRel = 272
	// Conntrack value: last seen ns u64 | flags u32 | pad u32
	oCTVal = 320
	// Fragment key: ifindex u32 | hook u8 | fam u8 | proto u8 | pad | id u32 | src [16] | dst [16]
	oFragKey = 336
	// Log event (see Event).
	oEvent = 384
	// Header bytes loaded with bpf_skb_load_bytes.
	oHdr = 448
	// struct bpf_fib_lookup.
	oFib = 512
	// LPM keys of runs without ports (protocol, address) and without
	// protocol (address).
	oRunSrcP = 576
	oRunDstP = 604
	oRunSrcA = 632
	oRunDstA = 660
	// Source check key: ifindex u32 | fam u8 | pad [3] | addr [16]
	oAddrKey = 688

	scratchSize = 712
	zeroedSize  = 448 // bytes cleared for every packet
)

const (
	lpmKeySize  = 28
	lpmDataBits = 64 // id + fam + proto + port before the address
	npKeySize   = 24
	addrKeySize = 24
	ctKeySize   = 44
	ctValSize   = 16
	fragKeySize = 44
	eventSize   = 64
)

// Conntrack flags.
const (
	ctSynFwd   = 1  // flow seen from its originator
	ctReplied  = 2  // a reply was seen: established
	ctFinFwd   = 4  // FIN from the originator
	ctFinRev   = 8  // FIN from the responder
	ctRST      = 16 // RST from either side
	ctClosing  = ctFinFwd | ctFinRev
	tcpFIN     = 0x01
	tcpSYN     = 0x02
	tcpRST     = 0x04
	tcpACK     = 0x10
	icmpEchoV4 = 8
	icmpEchoV6 = 128
)

// Timeouts are how long an idle conntrack entry keeps a flow open.
type Timeouts struct {
	// TCPSynSent: a TCP flow whose first packet got no reply yet.
	TCPSynSent time.Duration
	// TCPEstablished: a TCP flow with traffic both ways.
	TCPEstablished time.Duration
	// TCPClosing: after a RST, or FINs both ways.
	TCPClosing time.Duration
	// UDP and other protocols without state.
	UDP time.Duration
	// ICMP echo and other ICMP exchanges.
	ICMP time.Duration
}

// DefaultTimeouts() are close to Calico's eBPF dataplane defaults.
const (
	timeoutSynSent     = 20 * time.Second
	timeoutEstablished = time.Hour
	timeoutClosing     = 10 * time.Second
	timeoutUDP         = 60 * time.Second
	timeoutICMP        = 5 * time.Second
)

// DefaultTimeouts returns the conntrack timeouts the programs use.
func DefaultTimeouts() Timeouts {
	return Timeouts{TCPSynSent: timeoutSynSent, TCPEstablished: timeoutEstablished, TCPClosing: timeoutClosing,
		UDP: timeoutUDP, ICMP: timeoutICMP}
}

// addrKey is an address in the 16-byte slot every key has: IPv4 in the
// first four bytes, the rest zero. IPv4-mapped IPv6 addresses are IPv4.
func addrKey(a netip.Addr) (fam uint8, b [16]byte) {
	a = a.Unmap()
	if a.Is4() {
		v := a.As4()
		copy(b[:], v[:])
		return 4, b
	}
	return 6, a.As16()
}

// lpmPrefix turns a set member into the family, address bytes and prefix
// length the LPM maps hold. A single IPv4-mapped address is IPv4 (the
// model unmaps single addresses); wider IPv4-mapped prefixes stay IPv6.
func lpmPrefix(p netip.Prefix) (fam uint8, b [16]byte, bits int) {
	if p.IsSingleIP() {
		fam, b = addrKey(p.Addr())
		if fam == 4 {
			return fam, b, 32
		}
		return fam, b, 128
	}
	p = p.Masked()
	if p.Addr().Is4() {
		v := p.Addr().As4()
		copy(b[:], v[:])
		return 4, b, p.Bits()
	}
	return 6, p.Addr().As16(), p.Bits()
}

// lpmKey encodes one LPM entry: id, family, protocol and port are always
// matched whole; the address by bits.
func lpmKey(id uint32, fam, proto uint8, port uint16, addr [16]byte, bits int) [lpmKeySize]byte {
	var k [lpmKeySize]byte
	binary.NativeEndian.PutUint32(k[0:], uint32(lpmDataBits+bits))
	binary.NativeEndian.PutUint32(k[4:], id)
	k[8] = fam
	k[9] = proto
	binary.BigEndian.PutUint16(k[10:], port)
	copy(k[12:], addr[:])
	return k
}

// srcKey is an endpoint's address on its interface: what the source check
// of traffic from a pod looks up.
func srcKey(ifindex uint32, a netip.Addr) [addrKeySize]byte {
	var k [addrKeySize]byte
	binary.NativeEndian.PutUint32(k[0:], ifindex)
	fam, b := addrKey(a)
	k[4] = fam
	copy(k[8:], b[:])
	return k
}

func npKey(id uint32, fam, proto uint8, port uint16, addr [16]byte) [npKeySize]byte {
	var k [npKeySize]byte
	binary.NativeEndian.PutUint32(k[0:], id)
	k[4] = fam
	k[5] = proto
	binary.BigEndian.PutUint16(k[6:], port)
	copy(k[8:], addr[:])
	return k
}

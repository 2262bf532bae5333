package ebpf

import (
	"github.com/cilium/ebpf/asm"
)

// Offsets in struct __sk_buff.
const (
	skbProtocol = 16
	skbIfindex  = 40
)

const (
	ethHlen   = 14
	ethPIPv4  = 0x0008 // htons(0x0800) as the kernel stores it
	ethPIPv6  = 0xdd86 // htons(0x86dd)
	ethPARP   = 0x0608 // htons(0x0806)
	maxExtHdr = 8
)

// Labels shared by the entry program's sections.
const (
	lDrop     = "drop" // dropped without an event: malformed, or a fragment of nothing
	lDeny     = "deny" // denied: with flow events, reported
	lAllowCT  = "allow_ct"
	lPolicy   = "policy"
	lL4       = "l4"
	lCT       = "ct"
	lLaterFrg = "later_fragment"
)

// parse emits the entry program's packet parsing: Ethernet, IPv4 or IPv6
// with extension headers, ports, ICMP type/code and the inner tuple of
// ICMP errors. It fills every key in the scratch area and falls into the
// conntrack section. Non-IP traffic other than ARP is dropped; ARP passes.
func (g *gen) parse(h hook) {
	// Clear what the keys are built in: hash keys compare every byte.
	g.emit(asm.Mov.Imm(asm.R1, 0))
	for off := int16(0); off < zeroedSize; off += 8 {
		g.emit(asm.StoreMem(rS, off, asm.R1, asm.DWord))
	}
	// Interface and hook in every key that has them.
	g.emit(asm.LoadMem(asm.R1, rCtx, skbIfindex, asm.Word))
	for _, off := range []int16{oCTFwd, oCTRev, oCTRel, oFragKey, oAddrKey} {
		g.emit(stw(off, asm.R1))
	}
	// The source check key lies beyond the cleared area.
	g.emit(asm.Mov.Imm(asm.R2, 0), stw(oAddrKey+4, asm.R2))
	for off := int16(8); off < addrKeySize; off += 4 {
		g.emit(stw(oAddrKey+off, asm.R2))
	}
	// The event's hook names the endpoint's direction as a pod's does:
	// a host endpoint's hooks are the other way round.
	eh := h
	if g.hostEP {
		eh = h.opposite()
	}
	g.emit(stw(oEvent+8, asm.R1), stib(oEvent+12, int64(eh)))
	g.emit(stib(oCTFwd+4, int64(h)), stib(oCTRev+4, int64(h.opposite())), stib(oCTRel+4, int64(h.opposite())), stib(oFragKey+4, int64(h)))

	v4, v6, pass := "ipv4", "ipv6", "non_ip_pass"
	g.emit(asm.LoadMem(asm.R1, rCtx, skbProtocol, asm.Word),
		asm.JEq.Imm(asm.R1, ethPIPv4, v4),
		asm.JEq.Imm(asm.R1, ethPIPv6, v6),
		asm.JEq.Imm(asm.R1, ethPARP, pass),
		asm.Ja.Label(lDrop))
	g.label(pass)
	g.ret(tcxNext)

	// IPv4.
	g.label(v4)
	g.loadBytesImm(ethHlen, 20, lDrop)
	g.emit(ldb(asm.R1, oHdr), asm.Mov.Reg(asm.R2, asm.R1), asm.And.Imm(asm.R2, 0xf0), asm.JNE.Imm(asm.R2, 0x40, lDrop),
		asm.And.Imm(asm.R1, 0x0f), asm.LSh.Imm(asm.R1, 2), asm.JLT.Imm(asm.R1, 20, lDrop),
		asm.Add.Imm(asm.R1, ethHlen), asm.Mov.Reg(asm.R8, asm.R1),
		ldb(asm.R9, oHdr+9))
	g.family(4)
	g.copyWords(oHdr+12, 1, srcSlots()...)
	g.copyWords(oHdr+16, 1, dstSlots()...)
	// Fragments: the ID and protocol identify the datagram.
	notFrag := g.fresh("v4_not_first")
	g.emit(ldh(asm.R1, oHdr+4), sth(oFragKey+8, asm.R1), stb(oFragKey+6, asm.R9),
		ldh(asm.R1, oHdr+6), asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.Mov.Reg(asm.R2, asm.R1), asm.And.Imm(asm.R2, 0x1fff), asm.JNE.Imm(asm.R2, 0, lLaterFrg),
		asm.And.Imm(asm.R1, 0x2000), asm.JEq.Imm(asm.R1, 0, notFrag),
		stib(oFrag, 1))
	g.label(notFrag)
	g.emit(asm.Ja.Label(lL4))

	// IPv6 and its extension headers.
	g.label(v6)
	g.loadBytesImm(ethHlen, 40, lDrop)
	g.emit(ldb(asm.R1, oHdr), asm.And.Imm(asm.R1, 0xf0), asm.JNE.Imm(asm.R1, 0x60, lDrop),
		ldb(asm.R9, oHdr+6), ldb(asm.R1, oHdr+7), stb(oHop, asm.R1),
		asm.Mov.Imm(asm.R8, ethHlen+40))
	g.family(6)
	g.copyWords(oHdr+8, 4, srcSlots()...)
	g.copyWords(oHdr+24, 4, dstSlots()...)
	for i := range maxExtHdr + 1 {
		ext := g.fresh("ext")
		g.label(ext)
		opt, ah, frag := g.fresh("ext_opt"), g.fresh("ext_ah"), g.fresh("ext_frag")
		if i == maxExtHdr {
			// Too many extension headers to judge: fail closed.
			opt, ah, frag = lDrop, lDrop, lDrop
		}
		g.emit(asm.JEq.Imm(asm.R9, 0, opt), asm.JEq.Imm(asm.R9, 43, opt), asm.JEq.Imm(asm.R9, 60, opt),
			asm.JEq.Imm(asm.R9, 51, ah), asm.JEq.Imm(asm.R9, 44, frag), asm.Ja.Label(lL4))
		if i == maxExtHdr {
			break
		}
		next := g.fresh("ext_next")
		g.label(opt)
		g.loadBytesReg(asm.R8, 8, lDrop)
		g.emit(ldb(asm.R9, oHdr), ldb(asm.R1, oHdr+1), asm.Add.Imm(asm.R1, 1), asm.LSh.Imm(asm.R1, 3),
			asm.Add.Reg(asm.R8, asm.R1), asm.Ja.Label(next))
		g.label(ah)
		g.loadBytesReg(asm.R8, 8, lDrop)
		g.emit(ldb(asm.R9, oHdr), ldb(asm.R1, oHdr+1), asm.Add.Imm(asm.R1, 2), asm.LSh.Imm(asm.R1, 2),
			asm.Add.Reg(asm.R8, asm.R1), asm.Ja.Label(next))
		g.label(frag)
		g.loadBytesReg(asm.R8, 8, lDrop)
		notFirst := g.fresh("v6_not_first")
		g.emit(ldb(asm.R9, oHdr), stb(oFragKey+6, asm.R9), ldw(asm.R1, oHdr+4), stw(oFragKey+8, asm.R1),
			ldh(asm.R1, oHdr+2), asm.HostTo(asm.BE, asm.R1, asm.Half),
			asm.Mov.Reg(asm.R2, asm.R1), asm.And.Imm(asm.R2, 0xfff8), asm.JNE.Imm(asm.R2, 0, lLaterFrg),
			asm.And.Imm(asm.R1, 1), asm.JEq.Imm(asm.R1, 0, notFirst),
			stib(oFrag, 1))
		g.label(notFirst)
		g.emit(asm.Add.Imm(asm.R8, 8))
		g.label(next)
		// Keep the offset bounded for the verifier.
		g.emit(asm.JGT.Imm(asm.R8, 4096, lDrop))
	}

	// Transport: R8 = offset, R9 = protocol.
	g.label(lL4)
	g.emit(stb(oProto, asm.R9))
	for _, off := range []int16{oRunSrc + 9, oRunDst + 9, oRunSrcP + 9, oRunDstP + 9, oNPSrc + 5, oNPDst + 5, oCTFwd + 6, oCTRev + 6, oEvent + 14} {
		g.emit(stb(off, asm.R9))
	}
	tcp, ports, icmp4, icmp6 := "tcp", "ports", "icmp4", "icmp6"
	g.emit(asm.JEq.Imm(asm.R9, 6, tcp), asm.JEq.Imm(asm.R9, 17, ports), asm.JEq.Imm(asm.R9, 132, ports),
		asm.JEq.Imm(asm.R9, 136, ports), asm.JEq.Imm(asm.R9, 1, icmp4), asm.JEq.Imm(asm.R9, 58, icmp6),
		asm.Ja.Label(lCT))
	loaded := "ports_loaded"
	g.label(tcp)
	g.loadBytesReg(asm.R8, 14, lDrop)
	g.emit(ldb(asm.R1, oHdr+13), stb(oTCPFlags, asm.R1), asm.Ja.Label(loaded))
	g.label(ports)
	g.loadBytesReg(asm.R8, 4, lDrop)
	g.label(loaded)
	g.emit(stib(oHasPorts, 1), ldh(asm.R1, oHdr), ldh(asm.R2, oHdr+2))
	for _, off := range []int16{oNPSrc + 6, oCTFwd + 8, oCTRev + 10, oEvent + 16} {
		g.emit(sth(off, asm.R1))
	}
	for _, off := range []int16{oRunSrc + 10, oRunDst + 10, oNPDst + 6, oCTFwd + 10, oCTRev + 8, oEvent + 18} {
		g.emit(sth(off, asm.R2))
	}
	g.emit(asm.HostTo(asm.BE, asm.R1, asm.Half), sth(oSport, asm.R1),
		asm.HostTo(asm.BE, asm.R2, asm.Half), sth(oDport, asm.R2), asm.Ja.Label(lCT))

	g.icmp(4, icmp4)
	g.icmp(6, icmp6)
}

// srcSlots and dstSlots are where a packet's addresses go.
func srcSlots() []int16 {
	return []int16{oAddrKey + 8, oSetSrc + 12, oRunSrc + 12, oRunSrcP + 12, oRunSrcA + 12, oNPSrc + 8, oCTFwd + 12, oCTRev + 28, oFragKey + 12, oEvent + 20}
}

func dstSlots() []int16 {
	return []int16{oSetDst + 12, oRunDst + 12, oRunDstP + 12, oRunDstA + 12, oNPDst + 8, oCTFwd + 28, oCTRev + 12, oFragKey + 28, oEvent + 36}
}

// family stores the family and the LPM prefix length of a full address.
func (g *gen) family(fam int64) {
	g.emit(stib(oFam, fam))
	for _, off := range []int16{oSetSrc + 8, oSetDst + 8, oRunSrc + 8, oRunDst + 8, oNPSrc + 4, oNPDst + 4,
		oCTFwd + 5, oCTRev + 5, oCTRel + 5, oFragKey + 5, oEvent + 13, oAddrKey + 4} {
		g.emit(stib(off, fam))
	}
	bits := int64(lpmDataBits + 32)
	if fam == 6 {
		bits = lpmDataBits + 128
	}
	for _, off := range []int16{oSetSrc, oSetDst, oRunSrc, oRunDst, oRunSrcP, oRunDstP, oRunSrcA, oRunDstA} {
		g.emit(stiw(off, bits))
	}
	// Run keys beyond the cleared area: family marks, protocol and port
	// zero until the transport header says otherwise.
	for _, off := range []int16{oRunSrcP, oRunDstP} {
		g.emit(stib(off+8, fam|famProto), stib(off+9, 0), asm.StoreImm(rS, off+10, 0, asm.Half))
	}
	for _, off := range []int16{oRunSrcA, oRunDstA} {
		g.emit(stib(off+8, fam|famAnyProto), stib(off+9, 0), asm.StoreImm(rS, off+10, 0, asm.Half))
	}
}

// icmp parses ICMP (fam 4) or ICMPv6 (fam 6): type, code, echo ID, and for
// errors the inner packet's tuple, the key of the flow it is about.
func (g *gen) icmp(fam int, label string) {
	g.label(label)
	g.loadBytesReg(asm.R8, 8, lDrop)
	echo, echoReply := int32(icmpEchoV4), int32(0)
	if fam == 6 {
		echo, echoReply = icmpEchoV6, 129
	}
	notReply := g.fresh("not_reply")
	g.emit(ldb(asm.R1, oHdr), ldb(asm.R2, oHdr+1), stb(oICMPType, asm.R1), stb(oICMPCode, asm.R2),
		ldh(asm.R3, oHdr+4), sth(oCTFwd+8, asm.R3), sth(oCTRev+8, asm.R3),
		// Only an echo reply is the reverse of a flow (its request); no
		// entry has type 255.
		stb(oCTFwd+10, asm.R1), asm.Mov.Imm(asm.R3, 255),
		asm.JNE.Imm(asm.R1, echoReply, notReply), asm.Mov.Imm(asm.R3, echo))
	g.label(notReply)
	g.emit(stb(oCTRev+10, asm.R3))
	isErr := g.fresh("icmp_err")
	errTypes := []int32{3, 4, 5, 11, 12}
	if fam == 6 {
		errTypes = []int32{1, 2, 3, 4}
		// Neighbour and router discovery (hop limit 255, never forwarded)
		// is what makes IPv6 work on the link at all: never judged.
		notND := g.fresh("not_nd")
		g.emit(asm.JLT.Imm(asm.R1, 133, notND), asm.JGT.Imm(asm.R1, 136, notND),
			ldb(asm.R2, oHop), asm.JNE.Imm(asm.R2, 255, notND))
		g.ret(tcxNext)
		g.label(notND)
	}
	for _, t := range errTypes {
		g.emit(asm.JEq.Imm(asm.R1, t, isErr))
	}
	g.emit(asm.Ja.Label(lCT))

	// The error quotes the IP header and 8 bytes of the packet it is
	// about; a quote too short to read is judged by policy alone.
	g.label(isErr)
	g.emit(stib(oICMPErr, 1), asm.Add.Imm(asm.R8, 8))
	if fam == 4 {
		g.loadBytesReg(asm.R8, 20, lCT)
		g.emit(ldb(asm.R1, oHdr), asm.And.Imm(asm.R1, 0x0f), asm.LSh.Imm(asm.R1, 2),
			asm.JLT.Imm(asm.R1, 20, lCT), asm.Add.Reg(asm.R8, asm.R1),
			ldb(asm.R9, oHdr+9), stb(oCTRel+6, asm.R9))
		g.copyWords(oHdr+12, 1, oCTRel+12)
		g.copyWords(oHdr+16, 1, oCTRel+28)
	} else {
		g.loadBytesReg(asm.R8, 40, lCT)
		g.emit(asm.Add.Imm(asm.R8, 40), ldb(asm.R9, oHdr+6), stb(oCTRel+6, asm.R9))
		g.copyWords(oHdr+8, 4, oCTRel+12)
		g.copyWords(oHdr+24, 4, oCTRel+28)
	}
	g.loadBytesReg(asm.R8, 8, lCT)
	innerICMP := g.fresh("inner_icmp")
	g.emit(asm.JEq.Imm(asm.R9, 1, innerICMP), asm.JEq.Imm(asm.R9, 58, innerICMP),
		ldh(asm.R1, oHdr), sth(oCTRel+8, asm.R1), ldh(asm.R1, oHdr+2), sth(oCTRel+10, asm.R1),
		asm.Ja.Label(lCT))
	g.label(innerICMP)
	g.emit(ldh(asm.R1, oHdr+4), sth(oCTRel+8, asm.R1), ldb(asm.R1, oHdr), stb(oCTRel+10, asm.R1),
		asm.Ja.Label(lCT))
}

// conntrack emits the lookups: the flow as seen (forward), its reverse
// (a reply) and, for ICMP errors, the flow quoted (related). A live entry
// allows the packet without policy; a miss, or an expired or closed
// entry, goes to policy.
func (g *gen) conntrack(h hook, t Timeouts) {
	g.label(lCT)
	if h == hookIngress && !g.hostEP {
		g.sourceCheck()
	}
	g.lookup(refCT, oCTFwd)
	rev, rel := "ct_rev", "ct_rel"
	g.emit(asm.JEq.Imm(asm.R0, 0, rev), asm.Mov.Reg(asm.R8, asm.R0))
	g.expired(t, rev)
	// A new SYN on a closed flow starts a new connection: judge it.
	fwdOK := "ct_fwd_ok"
	g.emit(ldb(asm.R1, oTCPFlags), asm.And.Imm(asm.R1, tcpSYN|tcpACK), asm.JNE.Imm(asm.R1, tcpSYN, fwdOK),
		asm.LoadMem(asm.R1, asm.R8, 8, asm.Word), asm.Mov.Reg(asm.R2, asm.R1), asm.And.Imm(asm.R2, ctRST),
		asm.JNE.Imm(asm.R2, 0, rev), asm.And.Imm(asm.R1, ctClosing), asm.JEq.Imm(asm.R1, ctClosing, rev))
	g.label(fwdOK)
	g.touch(ctFinFwd, 0)
	g.emit(asm.Ja.Label(lAllowCT))

	g.label(rev)
	g.lookup(refCT, oCTRev)
	// A SYN is never a reply: it opens a flow of its own.
	g.emit(asm.JEq.Imm(asm.R0, 0, rel), asm.Mov.Reg(asm.R8, asm.R0),
		ldb(asm.R1, oTCPFlags), asm.And.Imm(asm.R1, tcpSYN|tcpACK), asm.JEq.Imm(asm.R1, tcpSYN, rel))
	g.expired(t, rel)
	g.touch(ctFinRev, ctReplied)
	g.emit(asm.Ja.Label(lAllowCT))

	g.label(rel)
	g.emit(ldb(asm.R1, oICMPErr), asm.JEq.Imm(asm.R1, 0, lPolicy))
	g.lookup(refCT, oCTRel)
	g.emit(asm.JEq.Imm(asm.R0, 0, lPolicy), asm.Mov.Reg(asm.R8, asm.R0))
	g.expired(t, lPolicy)
	g.emit(asm.Ja.Label(lAllowCT))

	// Allowed by conntrack: a first fragment opens the way for the rest.
	g.label(lAllowCT)
	g.recordFragment()
	g.ret(tcxNext)

	// A later fragment carries no ports: it passes if its first fragment
	// did (same interface, direction, addresses, protocol and ID).
	g.label(lLaterFrg)
	if h == hookIngress && !g.hostEP {
		g.sourceCheck()
	}
	g.hostForwarded(h)
	g.lookup(refFrags, oFragKey)
	g.emit(asm.JEq.Imm(asm.R0, 0, lDrop))
	g.ret(tcxNext)
}

// sourceCheck drops traffic from a pod whose source address is not one of
// the pod's own on this interface: a forged source would otherwise be
// judged as another endpoint's traffic further on.
func (g *gen) sourceCheck() {
	g.lookup(refAddrs, oAddrKey)
	ok := g.fresh("source_ok")
	g.emit(asm.JNE.Imm(asm.R0, 0, ok))
	g.eventID(idForgedSource)
	g.emit(asm.Ja.Label(lDeny))
	g.label(ok)
}

// expired leaves R9 = now and jumps to label when the entry at R8 timed
// out.
func (g *gen) expired(t Timeouts, label string) {
	cmp, nonTCP, tClose, tEst, tICMP := g.fresh("ct_cmp"), g.fresh("ct_nontcp"), g.fresh("ct_tclose"), g.fresh("ct_test"), g.fresh("ct_ticmp")
	g.emit(asm.FnKtimeGetNs.Call(), asm.Mov.Reg(asm.R9, asm.R0),
		asm.LoadMem(asm.R1, asm.R8, 0, asm.DWord), asm.Sub.Reg(asm.R0, asm.R1),
		asm.LoadMem(asm.R2, asm.R8, 8, asm.Word), ldb(asm.R3, oProto),
		asm.JNE.Imm(asm.R3, 6, nonTCP),
		asm.Mov.Reg(asm.R4, asm.R2), asm.And.Imm(asm.R4, ctRST), asm.JNE.Imm(asm.R4, 0, tClose),
		asm.Mov.Reg(asm.R4, asm.R2), asm.And.Imm(asm.R4, ctClosing), asm.JEq.Imm(asm.R4, ctClosing, tClose),
		asm.Mov.Reg(asm.R4, asm.R2), asm.And.Imm(asm.R4, ctReplied), asm.JNE.Imm(asm.R4, 0, tEst),
		asm.LoadImm(asm.R1, int64(t.TCPSynSent), asm.DWord), asm.Ja.Label(cmp))
	g.label(tClose)
	g.emit(asm.LoadImm(asm.R1, int64(t.TCPClosing), asm.DWord), asm.Ja.Label(cmp))
	g.label(tEst)
	g.emit(asm.LoadImm(asm.R1, int64(t.TCPEstablished), asm.DWord), asm.Ja.Label(cmp))
	g.label(nonTCP)
	g.emit(asm.JEq.Imm(asm.R3, 1, tICMP), asm.JEq.Imm(asm.R3, 58, tICMP),
		asm.LoadImm(asm.R1, int64(t.UDP), asm.DWord), asm.Ja.Label(cmp))
	g.label(tICMP)
	g.emit(asm.LoadImm(asm.R1, int64(t.ICMP), asm.DWord))
	g.label(cmp)
	g.emit(asm.JGT.Reg(asm.R0, asm.R1, label))
}

// touch refreshes the entry at R8 (R9 = now) with the packet's TCP flags:
// fin is the FIN bit of this direction, set the bits always set.
func (g *gen) touch(fin, set int32) {
	noFin, noRst := g.fresh("no_fin"), g.fresh("no_rst")
	g.emit(asm.StoreMem(asm.R8, 0, asm.R9, asm.DWord),
		asm.LoadMem(asm.R2, asm.R8, 8, asm.Word), asm.Or.Imm(asm.R2, set),
		ldb(asm.R1, oTCPFlags), asm.Mov.Reg(asm.R3, asm.R1), asm.And.Imm(asm.R3, tcpFIN), asm.JEq.Imm(asm.R3, 0, noFin),
		asm.Or.Imm(asm.R2, fin))
	g.label(noFin)
	g.emit(asm.And.Imm(asm.R1, tcpRST), asm.JEq.Imm(asm.R1, 0, noRst), asm.Or.Imm(asm.R2, ctRST))
	g.label(noRst)
	g.emit(asm.StoreMem(asm.R8, 8, asm.R2, asm.Word))
}

// recordFragment remembers an allowed first fragment.
func (g *gen) recordFragment() {
	done := g.fresh("frag_done")
	g.emit(ldb(asm.R1, oFrag), asm.JEq.Imm(asm.R1, 0, done),
		asm.FnKtimeGetNs.Call(), asm.StoreMem(rS, oCTVal, asm.R0, asm.DWord))
	g.update(refFrags, oFragKey, oCTVal)
	g.label(done)
}

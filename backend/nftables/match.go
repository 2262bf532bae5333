//go:build linux

package nftables

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/compile"
)

// term is one conjunct of a rule: expressions and their nft text.
type term struct {
	exprs []expr.Any
	text  string
	// anon is the anonymous set read by the last expression (a Lookup).
	anon *anonSet
	// dim is set on a term that tests one value (a port, an address)
	// against alternatives another rule's term could be unioned with.
	dim *mergeDim
	// reads is the Ruleset set the term looks up, if any.
	reads setRef
}

const (
	reg1     = 1 // NFT_REG_1: 16 bytes
	reg32_00 = 8 // NFT_REG32_00: first 32-bit register, aliasing NFT_REG_1
)

func protoText(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	case 136:
		return "udplite"
	}
	return strconv.Itoa(int(p))
}

func hasPorts(p uint8) bool { return p == 6 || p == 17 || p == 132 || p == 136 }

func cmpOp(neg bool) (expr.CmpOp, string) {
	if neg {
		return expr.CmpOpNeq, "!= "
	}
	return expr.CmpOpEq, ""
}

func nfprotoTerm(fam uint8) term {
	v, name := byte(unix.NFPROTO_IPV4), "ipv4"
	if fam == 6 {
		v, name = unix.NFPROTO_IPV6, "ipv6"
	}
	return term{exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{v}},
	}, text: "meta nfproto " + name}
}

func l4protoTerm(p uint8, neg bool) term {
	op, t := cmpOp(neg)
	return term{exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: op, Register: reg1, Data: []byte{p}},
	}, text: "meta l4proto " + t + protoText(p)}
}

func portProtosTerm() term {
	return term{exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Lookup{SourceRegister: reg1, SetName: setPortProtos},
	}, text: "meta l4proto @" + setPortProtos}
}

func icmpFieldTerm(offset uint32, v uint8, neg bool) term {
	op, t := cmpOp(neg)
	return term{exprs: []expr.Any{
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 1},
		&expr.Cmp{Op: op, Register: reg1, Data: []byte{v}},
	}, text: fmt.Sprintf("@th,%d,8 %s%d", offset*8, t, v)}
}

// addrPayload loads the source or destination address of family fam.
func addrPayload(fam uint8, side string, reg uint32) (*expr.Payload, string) {
	p := &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: expr.PayloadBaseNetworkHeader}
	ip := "ip"
	switch {
	case fam == 4 && side == "src":
		p.Offset, p.Len = 12, 4
	case fam == 4:
		p.Offset, p.Len = 16, 4
	case side == "src":
		p.Offset, p.Len, ip = 8, 16, "ip6"
	default:
		p.Offset, p.Len, ip = 24, 16, "ip6"
	}
	if fam == 6 {
		ip = "ip6"
	}
	return p, ip + " " + map[string]string{"src": "saddr", "dst": "daddr"}[side]
}

func portPayload(side string, reg uint32) (*expr.Payload, string) {
	off, name := uint32(2), "th dport"
	if side == "src" {
		off, name = 0, "th sport"
	}
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2}, name
}

func addrSetTerm(fam uint8, side string, id compile.SetID, neg bool) term {
	set := setName(id, fam)
	p, t := addrPayload(fam, side, reg1)
	_, nt := cmpOp(neg)
	return term{exprs: []expr.Any{p, &expr.Lookup{SourceRegister: reg1, SetName: set, Invert: neg}}, text: t + " " + nt + "@" + set,
		reads: setRef{id: id, name: set}}
}

func namedPortTerm(fam uint8, side string, id compile.SetID, neg bool) term {
	set := namedPortSetName(id, fam)
	p, t := addrPayload(fam, side, reg32_00)
	protoReg := uint32(reg32_00 + 1)
	if fam == 6 {
		protoReg = reg32_00 + 4
	}
	pp, pt := portPayload(side, protoReg+1)
	_, nt := cmpOp(neg)
	return term{exprs: []expr.Any{
		p,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
		pp,
		&expr.Lookup{SourceRegister: reg32_00, SetName: set, Invert: neg},
	}, text: fmt.Sprintf("%s . meta l4proto . %s %s@%s", t, pt, nt, set), reads: setRef{id: id, name: set}}
}

// concatLookupTerm matches address . l4proto . dport against an anonymous
// concatenated interval set.
func concatLookupTerm(fam uint8, side string, as *anonSet, elems []string) term {
	p, t := addrPayload(fam, side, reg32_00)
	protoReg := uint32(reg32_00 + 1)
	if fam == 6 {
		protoReg = reg32_00 + 4
	}
	pp, _ := portPayload("dst", protoReg+1)
	return term{exprs: []expr.Any{
		p,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
		pp,
		&expr.Lookup{SourceRegister: reg32_00},
	}, text: fmt.Sprintf("%s . meta l4proto . th dport { %s }", t, strings.Join(elems, ", ")), anon: as}
}

// portRangesTerm matches the port against ranges: a comparison for one
// port, a range for one range, an anonymous interval set for more.
func portRangesTerm(side string, ranges []compile.PortRange, neg bool) term {
	t := portRangesTermNoDim(side, ranges, neg)
	if !neg {
		t.dim = &mergeDim{kind: dimPorts, side: side, ports: ranges}
	}
	return t
}

func portRangesTermNoDim(side string, ranges []compile.PortRange, neg bool) term {
	p, pt := portPayload(side, reg1)
	op, nt := cmpOp(neg)
	if len(ranges) == 1 {
		rg := ranges[0]
		if rg.Min == rg.Max {
			return term{exprs: []expr.Any{p, &expr.Cmp{Op: op, Register: reg1, Data: binaryutil.BigEndian.PutUint16(rg.Min)}},
				text: fmt.Sprintf("%s %s%d", pt, nt, rg.Min)}
		}
		return term{exprs: []expr.Any{p, &expr.Range{Op: op, Register: reg1,
			FromData: binaryutil.BigEndian.PutUint16(rg.Min), ToData: binaryutil.BigEndian.PutUint16(rg.Max)}},
			text: fmt.Sprintf("%s %s%d-%d", pt, nt, rg.Min, rg.Max)}
	}
	merged := mergePorts(ranges)
	as := &anonSet{keyType: nftables.TypeInetService, interval: true,
		elems: make([]nftables.SetElement, 0, 2*len(merged)), texts: make([]string, 0, len(merged)),
		groups: make([][]nftables.SetElement, 0, len(merged))}
	keys := make([]byte, 4*len(merged))
	for i, rg := range merged {
		k := keys[4*i : 4*i+4 : 4*i+4]
		binary.BigEndian.PutUint16(k[0:2], rg.Min)
		binary.BigEndian.PutUint16(k[2:4], rg.Max+1)
		start := len(as.elems)
		as.elems = append(as.elems, nftables.SetElement{Key: k[0:2:2]})
		if rg.Max < 65535 {
			as.elems = append(as.elems, nftables.SetElement{Key: k[2:4:4], IntervalEnd: true})
		}
		as.texts = append(as.texts, portRangeText(rg))
		as.groups = append(as.groups, as.elems[start:len(as.elems):len(as.elems)])
	}
	texts := as.texts
	return term{exprs: []expr.Any{p, &expr.Lookup{SourceRegister: reg1, Invert: neg}},
		text: fmt.Sprintf("%s %s{ %s }", pt, nt, strings.Join(texts, ", ")), anon: as}
}

func mergePorts(in []compile.PortRange) []compile.PortRange {
	rs := make([]compile.PortRange, 0, len(in))
	for _, r := range in {
		if r.Min > r.Max {
			r.Min, r.Max = r.Max, r.Min
		}
		rs = append(rs, r)
	}
	sortPorts(rs)
	var out []compile.PortRange
	for _, r := range rs {
		if n := len(out); n > 0 && (out[n-1].Max == 65535 || int(r.Min) <= int(out[n-1].Max)+1) {
			out[n-1].Max = max(out[n-1].Max, r.Max)
			continue
		}
		out = append(out, r)
	}
	return out
}

func sortPorts(rs []compile.PortRange) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Min < rs[j-1].Min; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

func usesAddr(m *compile.Match) bool {
	for _, pm := range []*compile.PeerMatch{&m.Src, &m.Dst} {
		if len(pm.Sets)+len(pm.NotSets)+len(pm.NamedPorts)+len(pm.NotNamedPorts) > 0 {
			return true
		}
	}
	return false
}

// cross returns every concatenation of one alternative from each group.
func cross(groups ...[][]term) [][]term {
	out := [][]term{nil}
	for _, g := range groups {
		var next [][]term
		for _, prefix := range out {
			for _, alt := range g {
				c := make([]term, 0, len(prefix)+len(alt))
				c = append(c, prefix...)
				c = append(c, alt...)
				next = append(next, c)
			}
		}
		out = next
	}
	return out
}

// alternatives expands a Match into a disjunction of conjunctions of
// terms, each renderable as one nft rule. No alternatives means the match
// can never be true.
func (r *renderer) alternatives(m *compile.Match) [][]term {
	var fams []uint8
	switch {
	case m.IPVersion != 0:
		fams = []uint8{m.IPVersion}
	case usesAddr(m):
		fams = []uint8{4, 6}
	default:
		fams = []uint8{0}
	}
	var out [][]term
	// Port terms do not depend on the family: build each once, and let
	// the IPv4 and IPv6 rules share its set.
	var ports [2]portTerms
	for _, fam := range fams {
		var base []term
		if fam != 0 {
			base = append(base, nfprotoTerm(fam))
		}
		if m.Protocol != 0 {
			base = append(base, l4protoTerm(m.Protocol, false))
		}
		if m.NotProtocol != 0 {
			base = append(base, l4protoTerm(m.NotProtocol, true))
		}
		icmp := r.icmpAlts(m, fam)
		if len(icmp) == 0 {
			continue
		}
		src := r.peerAlts(&m.Src, "src", fam, m.Protocol, &ports[0])
		dst := r.peerAlts(&m.Dst, "dst", fam, m.Protocol, &ports[1])
		out = append(out, cross([][]term{base}, icmp, src, dst)...)
	}
	return out
}

func icmpProtos(m *compile.Match, fam uint8) []uint8 {
	var out []uint8
	for _, p := range []uint8{1, 58} {
		if (fam == 4 && p == 58) || (fam == 6 && p == 1) {
			continue
		}
		if m.Protocol != 0 && m.Protocol != p {
			continue
		}
		if m.NotProtocol == p {
			continue
		}
		out = append(out, p)
	}
	return out
}

func (r *renderer) icmpAlts(m *compile.Match, fam uint8) [][]term {
	pos := [][]term{nil}
	if m.ICMP != nil {
		pos = nil
		for _, p := range icmpProtos(m, fam) {
			var t []term
			if m.Protocol == 0 {
				t = append(t, l4protoTerm(p, false))
			}
			t = append(t, icmpFieldTerm(0, m.ICMP.Type, false))
			if m.ICMP.Code != nil {
				t = append(t, icmpFieldTerm(1, *m.ICMP.Code, false))
			}
			pos = append(pos, t)
		}
	}
	if m.NotICMP == nil {
		return pos
	}
	// not (icmp ∧ type ∧ code), as exclusive alternatives.
	neg := [][]term{{l4protoTerm(1, true), l4protoTerm(58, true)}}
	for _, p := range []uint8{1, 58} {
		neg = append(neg, []term{l4protoTerm(p, false), icmpFieldTerm(0, m.NotICMP.Type, true)})
		if m.NotICMP.Code != nil {
			neg = append(neg, []term{l4protoTerm(p, false), icmpFieldTerm(0, m.NotICMP.Type, false), icmpFieldTerm(1, *m.NotICMP.Code, true)})
		}
	}
	return cross(pos, neg)
}

// portTerms memoises a side's port terms across families.
type portTerms struct{ pos, neg *term }

func (pt *portTerms) get(neg bool, side string, ranges []compile.PortRange) term {
	p := &pt.pos
	if neg {
		p = &pt.neg
	}
	if *p == nil {
		t := portRangesTerm(side, ranges, neg)
		*p = &t
	}
	return **p
}

func (r *renderer) peerAlts(pm *compile.PeerMatch, side string, fam uint8, proto uint8, pt *portTerms) [][]term {
	var conj []term
	var inlineAlts [][][]term
	for _, id := range pm.Sets {
		if s, ok := r.sets.Extra[id]; ok && len(s.Nets) > inlineLimit {
			// A union of merged rules' nets: one lookup.
			pfx := familyPrefixes(s.Nets, fam)
			if len(pfx) == 0 {
				return nil
			}
			conj = append(conj, netsTerm(fam, side, mergeIntervals(pfx)))
			continue
		}
		if pfx, ok := r.inlineNets(id, fam); ok {
			// Any one of the nets: alternatives.
			var alts [][]term
			for _, p := range pfx {
				alts = append(alts, prefixTerms(fam, side, p, false))
			}
			inlineAlts = append(inlineAlts, alts)
			continue
		}
		if !r.hasFamily(id, fam) {
			// No member of this family: the side never matches.
			return nil
		}
		conj = append(conj, addrSetTerm(fam, side, id, false))
	}
	for _, id := range pm.NotSets {
		if pfx, ok := r.inlineNets(id, fam); ok {
			// None of the nets: a conjunction of negations.
			for _, p := range pfx {
				if p.Bits() == 0 {
					return nil
				}
				conj = append(conj, prefixTerms(fam, side, p, true)...)
			}
			continue
		}
		if !r.hasFamily(id, fam) {
			continue // not in an empty set: always true
		}
		conj = append(conj, addrSetTerm(fam, side, id, true))
	}
	needProto := func() []term {
		if hasPorts(proto) {
			return nil
		}
		return []term{portProtosTerm()}
	}
	alts := [][]term{conj}
	for _, or := range inlineAlts {
		alts = cross(alts, or)
	}
	if len(pm.Ports) > 0 || len(pm.NamedPorts) > 0 {
		var or [][]term
		if len(pm.Ports) > 0 {
			or = append(or, append(needProto(), pt.get(false, side, pm.Ports)))
		}
		for _, id := range pm.NamedPorts {
			if r.hasFamily(id, fam) {
				or = append(or, []term{namedPortTerm(fam, side, id, false)})
			}
		}
		alts = cross(alts, or)
	}
	if len(pm.NotPorts) > 0 || len(pm.NotNamedPorts) > 0 {
		and := needProto()
		if len(pm.NotPorts) > 0 {
			and = append(and, pt.get(true, side, pm.NotPorts))
		}
		for _, id := range pm.NotNamedPorts {
			if r.hasFamily(id, fam) {
				and = append(and, namedPortTerm(fam, side, id, true))
			}
		}
		alts = cross(alts, [][]term{and})
	}
	return alts
}

// exprSig is a fingerprint of expressions that survives a round trip
// through the kernel: what Reconcile compares.
func exprSig(exprs []expr.Any, anon map[int]*anonSet) string {
	var b strings.Builder
	for i, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			fmt.Fprintf(&b, "meta:%d:%d", e.Key, canonReg(e.Register))
		case *expr.Cmp:
			fmt.Fprintf(&b, "cmp:%d:%d:%x", e.Op, canonReg(e.Register), e.Data)
		case *expr.Payload:
			fmt.Fprintf(&b, "pl:%d:%d:%d:%d", e.Base, e.Offset, e.Len, canonReg(e.DestRegister))
		case *expr.Lookup:
			name := e.SetName
			if _, isAnon := anon[i]; isAnon || strings.HasPrefix(name, "__set") {
				name = "anon"
			}
			fmt.Fprintf(&b, "lk:%d:%s:%v", canonReg(e.SourceRegister), name, e.Invert)
		case *expr.Range:
			fmt.Fprintf(&b, "rg:%d:%d:%x:%x", e.Op, canonReg(e.Register), e.FromData, e.ToData)
		case *expr.Bitwise:
			fmt.Fprintf(&b, "bw:%d:%d:%x:%x", canonReg(e.SourceRegister), canonReg(e.DestRegister), e.Mask, e.Xor)
		case *expr.Ct:
			fmt.Fprintf(&b, "ct:%d:%d", e.Key, canonReg(e.Register))
		case *expr.Verdict:
			fmt.Fprintf(&b, "v:%d:%s", e.Kind, e.Chain)
		case *expr.Log:
			fmt.Fprintf(&b, "log:%d:%s", e.Group, e.Data)
		default:
			fmt.Fprintf(&b, "%T", e)
		}
		b.WriteByte(';')
	}
	return b.String()
}

// canonReg spells a register the way the kernel reports it back: a 32-bit
// register that starts a 128-bit one is named by the 128-bit register.
func canonReg(r uint32) uint32 {
	if r >= reg32_00 && (r-reg32_00)%4 == 0 {
		return (r-reg32_00)/4 + 1
	}
	return r
}

// inlineLimit is the most nets a literal set may hold to be matched inline
// instead of through a named set: the kernel looks sets up by name in a
// list, so thousands of tiny literal sets would make every batch slow.
const inlineLimit = 4

// inlineNets returns the nets of family fam of a literal set small enough
// to match inline.
func (r *renderer) inlineNets(id compile.SetID, fam uint8) ([]netip.Prefix, bool) {
	s := r.sets.Set(id)
	if !s.Literal || s.Kind != compile.SetNets || len(s.Nets) > inlineLimit {
		return nil, false
	}
	return familyPrefixes(s.Nets, fam), true
}

// familyPrefixes returns the nets of family fam, IPv4-mapped ones as IPv4.
func familyPrefixes(nets []netip.Prefix, fam uint8) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range nets {
		n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-unmapBits(n)).Masked()
		if family(n.Addr()) == fam {
			out = append(out, n)
		}
	}
	return out
}

// prefixTerms matches (or excludes) one net: the address, masked, compared.
// A /0 matches everything: no term.
func prefixTerms(fam uint8, side string, p netip.Prefix, neg bool) []term {
	if p.Bits() == 0 && !neg {
		return nil
	}
	pl, t := addrPayload(fam, side, reg1)
	op, nt := cmpOp(neg)
	exprs := []expr.Any{pl}
	if p.Bits() < p.Addr().BitLen() {
		mask := net.CIDRMask(p.Bits(), p.Addr().BitLen())
		exprs = append(exprs, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: uint32(len(mask)),
			Mask: []byte(mask), Xor: make([]byte, len(mask))})
	}
	exprs = append(exprs, &expr.Cmp{Op: op, Register: reg1, Data: p.Addr().AsSlice()})
	text := p.String()
	if p.IsSingleIP() {
		text = p.Addr().String()
	}
	tm := term{exprs: exprs, text: t + " " + nt + text}
	if !neg {
		tm.dim = &mergeDim{kind: dimNets, side: side, fam: fam, nets: []interval{{p.Masked().Addr(), lastAddr(p)}}}
	}
	return []term{tm}
}

// portRangeText prints a range as nft does: "80" or "80-90".
func portRangeText(r compile.PortRange) string {
	if r.Min == r.Max {
		return strconv.Itoa(int(r.Min))
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}

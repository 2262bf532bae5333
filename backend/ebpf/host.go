package ebpf

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/asm"

	"github.com/calyxnet/calyx/compile"
)

// skbIngressIfindex is the offset of ingress_ifindex in struct __sk_buff:
// the interface a packet arrived on (skb->skb_iif), 0 for a packet the
// node itself originated.
const skbIngressIfindex = 36

// loopback is the interface a wildcard host endpoint never covers.
const loopback = "lo"

// Bounds of what a host endpoint program compares inline: the addresses
// of the endpoints without an interface name, and the fail-safe ports of
// a direction.
const (
	maxHostAddrs = 256
	maxFailsafe  = 256
)

// hostProg is what a host endpoint's program checks between conntrack and
// its policy.
type hostProg struct {
	// addrs, for an endpoint known only by its addresses (Interface ""),
	// are the node-side addresses it judges: the destination on ingress,
	// the source on egress. Nil: every address.
	addrs []netip.Addr
	// exclude are node-side addresses another host endpoint judges.
	exclude []netip.Addr
	// failsafe are the fail-safe ports of the direction.
	failsafe []compile.ProtoPort
}

// key identifies the prelude's code in the program cache.
func (hp *hostProg) key() string {
	var b strings.Builder
	for _, a := range hp.addrs {
		b.WriteString(a.Unmap().String())
		b.WriteByte(',')
	}
	b.WriteByte('|')
	for _, a := range hp.exclude {
		b.WriteString(a.Unmap().String())
		b.WriteByte(',')
	}
	b.WriteByte('|')
	for _, f := range hp.failsafe {
		fmt.Fprintf(&b, "%d/%d/%s,", f.Protocol, f.Port, f.Net)
	}
	return b.String()
}

// hostAny is the program of a host endpoint that covers every host
// interface (Interface "*" or ""), on one hook: which interfaces those
// are is known only when Apply or Reconcile lists them.
type hostAny struct {
	key  string // the endpoint
	hook hook
	fp   string
	// slot tells the links of several such endpoints on one interface
	// and hook apart: slot 0 is attachKey{name, hook}, slot n
	// attachKey{name:n, hook} (a colon is in no interface name).
	slot int
}

// slotName is the attachKey interface of slot n on interface name.
func slotName(name string, n int) string {
	if n == 0 {
		return name
	}
	return name + ":" + strconv.Itoa(n)
}

// dev is the interface of an attachment: its name without the slot.
func (k attachKey) dev() string {
	if i := strings.IndexByte(k.iface, ':'); i >= 0 {
		return k.iface[:i]
	}
	return k.iface
}

// isHostInterface reports whether a wildcard host endpoint covers the
// interface name: neither a workload interface nor loopback.
func isHostInterface(name string) bool {
	return name != loopback && !strings.HasPrefix(name, compile.InterfacePrefix)
}

// hostLinks adds to want the programs of wildcard host endpoints on every
// host interface of ifaces that no named endpoint claims.
func (p *plan) hostLinks(ifaces map[string]int, want map[attachKey]string) {
	if len(p.hostAny) == 0 {
		return
	}
	for name := range ifaces {
		if !isHostInterface(name) {
			continue
		}
		for _, ha := range p.hostAny {
			if _, named := p.attach[attachKey{name, ha.hook}]; named {
				continue
			}
			want[attachKey{slotName(name, ha.slot), ha.hook}] = ha.fp
		}
	}
}

// ownerOf names the endpoint whose program runs at ak: a workload, a
// named host endpoint, or the wildcard host endpoint; "" for an interface
// no endpoint claims.
func (p *plan) ownerOf(ak attachKey) string {
	if o, ok := p.owner[ak]; ok {
		return o
	}
	dev := ak.dev()
	if dev == "*" || isHostInterface(dev) {
		for _, ha := range p.hostAny {
			if ha.hook == ak.hook && slotName(dev, ha.slot) == ak.iface {
				return ha.key
			}
		}
	}
	return ""
}

// renderLinks are the links Render shows: the plan's named attachments,
// and "*" for what wildcard host endpoints attach to every host interface.
func (p *plan) renderLinks() map[attachKey]string {
	if len(p.hostAny) == 0 {
		return p.attach
	}
	out := maps.Clone(p.attach)
	for _, ha := range p.hostAny {
		out[attachKey{slotName("*", ha.slot), ha.hook}] = ha.fp
	}
	return out
}

// hostPlanner generates host endpoint programs into a plan, with the
// same program cache, set IDs and runs as the workloads' programs.
type hostPlanner struct {
	rs       *compile.Ruleset
	p        *plan
	cfg      config
	idf      idOf
	runs     map[string]*run
	pc, next *progCache
	memo     map[string]string
	failIn   []compile.ProtoPort
	failOut  []compile.ProtoPort
}

// planHosts adds the programs and attachments of rs's host endpoints to
// p: TCX ingress of a host interface runs the endpoint's ingress policy,
// TCX egress its egress policy.
//
// A named endpoint is attached to its interface (the first by key when
// two name one interface; none on a workload interface, whose traffic is
// the pods' business). The endpoints without a name go to every host
// interface no named endpoint claims, one TCX link each: those known by
// their addresses (Interface "") each judge the node's traffic on their
// addresses (an address claimed by two, the first by key's), the first
// "*" endpoint the rest. An endpoint with Interface "" and no address of
// its own judges nothing and is not attached.
func planHosts(rs *compile.Ruleset, p *plan, cfg config, idf idOf, runs map[string]*run, pc, next *progCache) error {
	hp := &hostPlanner{rs: rs, p: p, cfg: cfg, idf: idf, runs: runs, pc: pc, next: next, memo: map[string]string{},
		failIn: rs.Settings.FailsafeInbound, failOut: rs.Settings.FailsafeOutbound}
	hp.cfg.hostDeny = false // DefaultEndpointToHostAction is the pods' business
	var hosts []*compile.Endpoint
	for _, ep := range rs.Endpoints {
		if ep.Kind == compile.HostEndpoint {
			hosts = append(hosts, ep)
		}
	}
	if len(hosts) == 0 {
		return nil
	}
	slices.SortFunc(hosts, func(a, b *compile.Endpoint) int { return strings.Compare(a.Key, b.Key) })
	var star *compile.Endpoint
	type byAddr struct {
		ep    *compile.Endpoint
		addrs []netip.Addr
	}
	var addrEPs []byAddr
	claimed := map[netip.Addr]bool{}
	var all []netip.Addr // every address an endpoint without a name claims
	named := map[string]bool{}
	var problems []string
	for _, ep := range hosts {
		switch iface := ep.Interface; {
		case iface == "*":
			if star == nil {
				star = ep
			}
		case iface == "":
			var own []netip.Addr
			for _, a := range ep.Addrs {
				a = a.Unmap()
				if !claimed[a] {
					claimed[a] = true
					own = append(own, a)
				}
			}
			if len(own) > 0 {
				addrEPs = append(addrEPs, byAddr{ep, own})
				all = append(all, own...)
			}
		case !validLinkName(iface):
			problems = append(problems, fmt.Sprintf("host endpoint %s: invalid interface name %q", ep.Key, iface))
		case strings.HasPrefix(iface, compile.InterfacePrefix) || named[iface]:
		default:
			named[iface] = true
			for _, d := range hp.dirs(ep) {
				fp, err := hp.program(ep.Key, d.dp, d.h, &hostProg{failsafe: d.fail})
				if err != nil {
					return err
				}
				ak := attachKey{iface, d.h}
				if prev, dup := p.owner[ak]; dup {
					return fmt.Errorf("%w: endpoints %s and %s share interface %s", ErrInvalidRuleset, prev, ep.Key, iface)
				}
				p.owner[ak] = ep.Key
				p.attach[ak] = fp
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidRuleset, strings.Join(problems, "; "))
	}
	// The addresses and fail-safe ports are compared inline, in front of
	// the policy's first chunk: bounded so that it stays within the jump
	// range the chunks are sized for.
	if len(all) > maxHostAddrs {
		return fmt.Errorf("%w: host endpoints without an interface name list %d addresses (at most %d)", ErrTooBig, len(all), maxHostAddrs)
	}
	if n := max(len(hp.failIn), len(hp.failOut)); n > maxFailsafe {
		return fmt.Errorf("%w: %d fail-safe ports in one direction (at most %d)", ErrTooBig, n, maxFailsafe)
	}
	slot := 0
	add := func(ep *compile.Endpoint, addrs, exclude []netip.Addr) error {
		for _, d := range hp.dirs(ep) {
			fp, err := hp.program(ep.Key, d.dp, d.h, &hostProg{addrs: addrs, exclude: exclude, failsafe: d.fail})
			if err != nil {
				return err
			}
			p.hostAny = append(p.hostAny, hostAny{key: ep.Key, hook: d.h, fp: fp, slot: slot})
		}
		slot++
		return nil
	}
	if star != nil {
		if err := add(star, nil, all); err != nil {
			return err
		}
	}
	for _, e := range addrEPs {
		if err := add(e.ep, e.addrs, nil); err != nil {
			return err
		}
	}
	return nil
}

// hostDir is one direction of a host endpoint: its policy, the hook that
// runs it and the fail-safe ports.
type hostDir struct {
	dp   *compile.DirectionPolicy
	h    hook
	fail []compile.ProtoPort
}

func (hp *hostPlanner) dirs(ep *compile.Endpoint) [2]hostDir {
	return [2]hostDir{{&ep.Ingress, hookIngress, hp.failIn}, {&ep.Egress, hookEgress, hp.failOut}}
}

// validLinkName reports whether Linux takes name as an interface name:
// 1 to 15 bytes, not "." or "..", without '/', ':' or white space.
func validLinkName(name string) bool {
	if name == "" || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	return !strings.ContainsAny(name, "/: \t\n\r\v\f")
}

// program generates (or finds in the cache) the program of one host
// endpoint direction and returns its fingerprint.
func (hp *hostPlanner) program(key string, dp *compile.DirectionPolicy, h hook, prog *hostProg) (string, error) {
	rs, p := hp.rs, hp.p
	cfg := hp.cfg
	cfg.host = prog
	mk := "host|" + dpKey(dp, h) + "|" + fmt.Sprint(cfg.events) + "|" + prog.key()
	if fp, ok := hp.memo[mk]; ok {
		return fp, nil
	}
	pols := policiesOf(rs, dp)
	if slices.Contains(pols, nil) {
		return "", fmt.Errorf("%w: endpoint %s: %s", ErrInvalidRuleset, key, missingPolicies(rs, dp))
	}
	var ps *progSpec
	if hp.pc != nil {
		if c, ok := hp.pc.entries[mk]; ok && slices.Equal(c.pols, pols) && setsPresent(rs, c.used) {
			ps = c.ps
			for _, n := range c.used {
				hp.idf(n)
			}
			p.refs[ps.fp] = c.refs
			hp.next.entries[mk] = c
		}
	}
	if ps == nil {
		if err := validatePolicies(rs, pols); err != nil {
			return "", err
		}
		used := map[string]bool{}
		refs := map[uint64]stepRef{}
		var err error
		ps, err = genProgram(rs, dp, h, cfg, func(name string) uint32 { used[name] = true; return hp.idf(name) }, refs)
		if err != nil {
			return "", fmt.Errorf("endpoint %s %s: %w", key, h, err)
		}
		p.refs[ps.fp] = refs
		hp.next.entries[mk] = &cachedProg{pols: pols, ps: ps, used: slices.Sorted(maps.Keys(used)), refs: refs}
	}
	for _, r := range ps.runs {
		hp.runs[r.name] = r
	}
	hp.memo[mk] = ps.fp
	p.progs[ps.fp] = ps
	return ps.fp, nil
}

// hostPrelude is what a host endpoint's program does after conntrack
// missed and before its policy: a packet that is not the node's own
// traffic (forwarded, not to or from the endpoint's addresses, or to or
// from addresses another host endpoint judges) passes untouched; a
// fail-safe port is allowed. On ingress the node's traffic is what a FIB
// lookup finds a local route for; on egress what the node originated
// (it arrived on no interface: ingress_ifindex is 0).
func (g *gen) hostPrelude(h hook, hp *hostProg) {
	notOurs, body := g.fresh("host_not_ours"), g.fresh("host_policy")
	own, peer := int16(oSetSrc+12), int16(oSetDst+12) // the node's side and the other side
	if h == hookIngress {
		own, peer = peer, own
	}
	if h == hookEgress {
		// Forwarded: not judged, but remembered, so that its replies
		// pass the ingress program even when the node source-NATed the
		// flow (they come back to a node address, and TCX ingress runs
		// before conntrack undoes the NAT).
		originated := g.fresh("host_originated")
		g.emit(asm.LoadMem(asm.R1, rCtx, skbIngressIfindex, asm.Word), asm.JEq.Imm(asm.R1, 0, originated))
		g.openFlow(g.fresh("fwd_synonly_no"))
		g.ret(tcxNext)
		g.label(originated)
	}
	for _, a := range hp.exclude {
		a = a.Unmap()
		next := g.fresh("host_excl_next")
		g.prefixMatch(own, netip.PrefixFrom(a, a.BitLen()), next)
		g.emit(asm.Ja.Label(notOurs))
		g.label(next)
	}
	if hp.addrs != nil {
		ok := g.fresh("host_addr_ok")
		for _, a := range hp.addrs {
			a = a.Unmap()
			next := g.fresh("host_addr_next")
			g.prefixMatch(own, netip.PrefixFrom(a, a.BitLen()), next)
			g.emit(asm.Ja.Label(ok))
			g.label(next)
		}
		g.emit(asm.Ja.Label(notOurs))
		g.label(ok)
	}
	if h == hookIngress {
		g.fibLocal(notOurs)
	}
	if len(hp.failsafe) > 0 {
		noPorts := g.fresh("failsafe_none")
		g.emit(ldb(asm.R1, oHasPorts), asm.JEq.Imm(asm.R1, 0, noPorts))
		for _, f := range hp.failsafe {
			next := g.fresh("failsafe_next")
			g.emit(ldb(asm.R1, oProto), asm.JNE.Imm(asm.R1, int32(f.Protocol), next),
				ldh(asm.R1, oDport), asm.JNE.Imm(asm.R1, int32(f.Port), next))
			if f.Net.IsValid() {
				g.prefixMatch(peer, f.Net, next)
			}
			g.eventID(idFailsafe)
			g.emit(asm.Ja.Label("allow"))
			g.label(next)
		}
		g.label(noPorts)
	}
	g.emit(asm.Ja.Label(body))
	// Not the node's traffic: untouched. A first fragment opens the way
	// for the rest, which carry no ports to tell.
	g.label(notOurs)
	g.recordFragment()
	g.ret(tcxNext)
	g.label(body)
}

// hostForwarded, in a host endpoint's egress program, lets a later
// fragment the node did not originate (it arrived on an interface:
// ingress_ifindex is not 0) pass untouched. It emits nothing in other
// programs.
func (g *gen) hostForwarded(h hook) {
	if !g.hostEP || h != hookEgress {
		return
	}
	own := g.fresh("host_originated")
	g.emit(asm.LoadMem(asm.R1, rCtx, skbIngressIfindex, asm.Word), asm.JEq.Imm(asm.R1, 0, own))
	g.ret(tcxNext)
	g.label(own)
}

// prefixMatch jumps to fail unless the address at R7+off (family oFam) is
// in pfx. Words are compared as loaded: the constants are the prefix's
// bytes in memory order.
func (g *gen) prefixMatch(off int16, pfx netip.Prefix, fail string) {
	pfx = pfx.Masked()
	fam, addr, bits := int32(6), pfx.Addr().As16(), pfx.Bits()
	if pfx.Addr().Is4() {
		fam = 4
		v := pfx.Addr().As4()
		addr = [16]byte{}
		copy(addr[:], v[:])
	}
	g.emit(ldb(asm.R1, oFam), asm.JNE.Imm(asm.R1, fam, fail))
	for w := 0; bits > 0; w++ {
		var mask [4]byte
		for i := range 4 {
			switch {
			case bits >= 8:
				mask[i] = 0xff
				bits -= 8
			case bits > 0:
				mask[i] = byte(0xff << (8 - bits))
				bits = 0
			}
		}
		var want [4]byte
		for i := range 4 {
			want[i] = addr[4*w+i] & mask[i]
		}
		m, v := binary.NativeEndian.Uint32(mask[:]), binary.NativeEndian.Uint32(want[:])
		g.emit(ldw(asm.R1, off+int16(4*w)))
		if m != 0xffffffff {
			g.emit(asm.And.Imm32(asm.R1, int32(m)))
		}
		g.emit(asm.JNE.Imm32(asm.R1, int32(v), fail))
	}
}

// fibLocal jumps to notLocal unless a FIB lookup of the packet (from the
// interface it arrived on) finds a local route: the node receives it.
// Forwarded results (success, no neighbour, encapsulation, fragmentation
// needed) and routes that drop (blackhole, unreachable, prohibit) are not
// local; with forwarding off on the interface everything is.
func (g *gen) fibLocal(notLocal string) {
	g.fibLookup()
	g.emit(
		// 0 success, 1-3 blackhole/unreachable/prohibit (unsigned: an
		// error code is huge), 6-8 encapsulation, no neighbour, MTU.
		asm.JLT.Imm(asm.R0, 4, notLocal),
		asm.JEq.Imm(asm.R0, 6, notLocal), asm.JEq.Imm(asm.R0, 7, notLocal), asm.JEq.Imm(asm.R0, 8, notLocal))
}

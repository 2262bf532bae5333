//go:build linux

package nftables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/compile"
)

// Names of the fixed chains of host endpoints; they exist only while the
// Ruleset has a host endpoint.
const (
	chainHostInput   = "host-input"
	chainHostOutput  = "host-output"
	chainFailsafeIn  = "failsafe-in"
	chainFailsafeOut = "failsafe-out"
)

// hostSide is one direction of the node's own traffic: ingress judged on
// the input hook (packets arriving by iifname, to the node's address),
// egress on the output hook (leaving by oifname, from its address).
type hostSide struct {
	chain, failsafe string
	// side is the interface side ("in": iifname, "out": oifname); addr the
	// address of the node in the packet ("dst" on input, "src" on output),
	// peer the other one.
	side, addr, peer string
	dir              compile.Direction
}

var (
	hostIngress = hostSide{chain: chainHostInput, failsafe: chainFailsafeIn, side: "in", addr: "dst", peer: "src", dir: compile.Ingress}
	hostEgress  = hostSide{chain: chainHostOutput, failsafe: chainFailsafeOut, side: "out", addr: "src", peer: "dst", dir: compile.Egress}
)

// sortHosts sorts host endpoints (given in key order) by how they claim
// traffic, each list in key order: named interfaces (the first endpoint
// of an interface wins), address-only endpoints, and "*" (the first
// wins). An endpoint naming a workload interface or a name no interface
// can have (longer than 15 bytes), or with neither interface nor
// addresses, claims nothing. Loopback is only an endpoint's that names it.
func sortHosts(hosts []*compile.Endpoint) (named, byAddr []*compile.Endpoint, star *compile.Endpoint) {
	seen := map[string]bool{}
	for _, ep := range hosts {
		switch ifc := ep.Interface; {
		case ifc == "*":
			if star == nil {
				star = ep
			}
		case ifc == "":
			if len(ep.Addrs) > 0 {
				byAddr = append(byAddr, ep)
			}
		case strings.HasPrefix(ifc, compile.InterfacePrefix), len(ifc) >= unix.IFNAMSIZ, seen[ifc]:
		default:
			seen[ifc] = true
			named = append(named, ep)
		}
	}
	return named, byAddr, star
}

// addHostChains renders the host endpoints: for each direction a
// dispatch chain (host-input, host-output) that the input and output base
// chains go to for every packet not on a workload interface, the
// fail-safe chains, and per endpoint direction a content-named hep- chain
// in front of the endpoint's shared ep- chain. hosts are the Ruleset's
// host endpoints in key order. It reports whether any claims traffic;
// without one nothing is added.
func (r *renderer) addHostChains(hosts []*compile.Endpoint) bool {
	named, byAddr, star := sortHosts(hosts)
	if len(named)+len(byAddr) == 0 && star == nil {
		return false
	}
	r.addChain(newChain(chainFailsafeIn, failsafeRules(r.rs.Settings.FailsafeInbound, hostIngress)))
	r.addChain(newChain(chainFailsafeOut, failsafeRules(r.rs.Settings.FailsafeOutbound, hostEgress)))
	for _, hs := range []hostSide{hostIngress, hostEgress} {
		rules := []*nrule{
			// Without neighbour discovery the node reaches no IPv6
			// neighbour at all; conntrack does not track it.
			ndpRule(),
			newRule([]term{ctStateTerm(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related")}, "accept", verdictAccept, "replies of allowed flows"),
		}
		for _, ep := range named {
			rules = append(rules, gotoRule([]term{ifaceTerm(hs.side, ep.Interface)}, r.hostEndpointChain(ep, hs), "host endpoint "+ep.Key))
		}
		if len(byAddr) > 0 || star != nil {
			// Loopback is no one's unless named.
			rules = append(rules, newRule([]term{ifaceTerm(hs.side, "lo")}, "accept", verdictAccept, "loopback"))
		}
		for _, ep := range byAddr {
			hep := r.hostEndpointChain(ep, hs)
			for _, fam := range []uint8{4, 6} {
				var pfx []netip.Prefix
				for _, a := range ep.Addrs {
					a = a.Unmap()
					if family(a) == fam {
						pfx = append(pfx, netip.PrefixFrom(a, a.BitLen()))
					}
				}
				if len(pfx) == 0 {
					continue
				}
				terms := []term{nfprotoTerm(fam), netsTerm(fam, hs.addr, mergeIntervals(pfx))}
				rules = append(rules, gotoRule(terms, hep, "host endpoint "+ep.Key))
			}
		}
		if star != nil {
			rules = append(rules, gotoRule(nil, r.hostEndpointChain(star, hs), "host endpoint "+star.Key+" (all interfaces)"))
		}
		// The rest is no host endpoint's: the base chain's accept.
		r.addChain(newChain(hs.chain, rules))
	}
	return true
}

// hostEndpointChain returns the hep- chain of one direction of a host
// endpoint: invalid packets dropped, the fail-safe ports accepted, then
// the endpoint's ep- chain, shared with every endpoint of the same policy.
func (r *renderer) hostEndpointChain(ep *compile.Endpoint, hs hostSide) string {
	dp := &ep.Egress
	if hs.dir == compile.Ingress {
		dp = &ep.Ingress
	}
	epChain := r.endpointChain(dp, ep.Key, hs.dir)
	rules := []*nrule{
		newRule([]term{ctStateTerm(expr.CtStateBitINVALID, "invalid")}, "drop", verdictDrop, "invalid"),
		newRule(nil, "jump "+hs.failsafe, &expr.Verdict{Kind: expr.VerdictJump, Chain: hs.failsafe}, "fail-safe ports"),
		gotoRule(nil, epChain, "host endpoint policy"),
	}
	return r.contentChain("hep-", rules)
}

func gotoRule(terms []term, chain, comment string) *nrule {
	return newRule(terms, "goto "+chain, &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}, comment)
}

// failsafeRules accepts the fail-safe ports of one direction: the
// protocol and destination port, and with a Net the peer's address (the
// source on ingress, the destination on egress). Entries of a protocol
// without ports match nothing.
func failsafeRules(list []compile.ProtoPort, hs hostSide) []*nrule {
	var rules []*nrule
	for _, f := range list {
		if !hasPorts(f.Protocol) {
			continue
		}
		var terms []term
		what := fmt.Sprintf("fail-safe %s %d", protoText(f.Protocol), f.Port)
		if f.Net.IsValid() {
			n := netip.PrefixFrom(f.Net.Addr().Unmap(), f.Net.Bits()-unmapBits(f.Net)).Masked()
			fam := family(n.Addr())
			terms = append(terms, nfprotoTerm(fam), l4protoTerm(f.Protocol, false))
			terms = append(terms, prefixTerms(fam, hs.peer, n, false)...)
			what += " " + map[string]string{"src": "from ", "dst": "to "}[hs.peer] + n.String()
		} else {
			terms = append(terms, l4protoTerm(f.Protocol, false))
		}
		terms = append(terms, portRangesTerm("dst", []compile.PortRange{{Min: f.Port, Max: f.Port}}, false))
		rules = append(rules, newRule(terms, "accept", verdictAccept, what))
	}
	return mergeRules(rules)
}

// ifaceTerm matches one interface by its whole name.
func ifaceTerm(side, name string) term {
	k, t := ifaceKey(side)
	return term{exprs: []expr.Any{
		&expr.Meta{Key: k, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: append([]byte(name), 0)},
	}, text: t + " " + strconv.Quote(name)}
}

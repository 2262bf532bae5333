//go:build linux

package nftables

import (
	"strconv"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"

	"github.com/calyxnet/calyx/compile"
)

func ctStateTerm(bits uint32, text string) term {
	return term{exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}, text: "ct state " + text}
}

func ifaceKey(side string) (expr.MetaKey, string) {
	if side == "in" {
		return expr.MetaKeyIIFNAME, "iifname"
	}
	return expr.MetaKeyOIFNAME, "oifname"
}

// workloadIfaceTerm matches (or, negated, excludes) every interface with
// the workload prefix.
func workloadIfaceTerm(side string, neg bool) term {
	k, name := ifaceKey(side)
	op, t := cmpOp(neg)
	return term{exprs: []expr.Any{
		&expr.Meta{Key: k, Register: reg1},
		&expr.Cmp{Op: op, Register: reg1, Data: []byte(compile.InterfacePrefix)},
	}, text: name + " " + t + strconv.Quote(compile.InterfacePrefix+"*")}
}

func dispatchRule(side, vmap, comment string) *nrule {
	k, name := ifaceKey(side)
	ru := &nrule{comment: comment, text: name + " vmap @" + vmap}
	ru.exprs = []expr.Any{
		&expr.Meta{Key: k, Register: reg1},
		&expr.Lookup{SourceRegister: reg1, SetName: vmap, IsDestRegSet: true, DestRegister: 0},
	}
	return ru
}

var (
	verdictAccept = &expr.Verdict{Kind: expr.VerdictAccept}
	verdictDrop   = &expr.Verdict{Kind: expr.VerdictDrop}
)

func conntrackRules() []*nrule {
	return []*nrule{
		newRule([]term{ctStateTerm(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related")}, "accept", verdictAccept, "replies of allowed flows"),
		newRule([]term{ctStateTerm(expr.CtStateBitINVALID, "invalid")}, "drop", verdictDrop, "invalid"),
	}
}

// addBaseChains adds the base chains; with host endpoints (hostChains),
// the input and output chains hand the node's traffic that is not pod
// traffic to host-input and host-output.
func (r *renderer) addBaseChains(hostChains bool) {
	stage := func(name string, h *hook, side, vmap, what string, hostOnly bool) {
		var rules []*nrule
		if hostOnly {
			// Pod traffic is judged here; the rest is the host endpoints'
			// business, if there are any.
			notPod := []term{workloadIfaceTerm(side, true)}
			switch {
			case !hostChains:
				rules = append(rules, newRule(notPod, "accept", verdictAccept, "not pod traffic"))
			case name == chainInput:
				rules = append(rules, gotoRule(notPod, chainHostInput, "not pod traffic: host endpoints"))
			default:
				rules = append(rules, gotoRule(notPod, chainHostOutput, "not pod traffic: host endpoints"))
			}
			// IPv6 neighbour discovery between a pod and its node is what
			// makes IPv6 work at all; conntrack does not track it, and no
			// policy may break it (Calico exempts it too).
			rules = append(rules, ndpRule())
		}
		rules = append(rules, conntrackRules()...)
		rules = append(rules,
			dispatchRule(side, vmap, what),
			newRule([]term{workloadIfaceTerm(side, false)}, "drop", verdictDrop, "unknown workload interface: fail closed"),
		)
		r.addChain(&nchain{name: name, base: h, rules: rules, baseOK: true})
	}
	stage(chainFwdEgress, hookFwdEgress, "in", mapEgress, "pod egress", false)
	stage(chainFwdIngress, hookFwdIngress, "out", mapIngress, "pod ingress", false)
	stage(chainInput, hookInput, "in", mapEgress, "pod egress towards the node", true)
	stage(chainOutput, hookOutput, "out", mapIngress, "pod ingress from the node", true)

	var hostRules []*nrule
	if r.rs.Settings.DefaultEndpointToHostAction == compile.ActionDeny {
		hostRules = append(hostRules, conntrackRules()...)
		// The deny covers what a pod asks of its node, not the neighbour
		// discovery that lets the pod reach its gateway at all.
		hostRules = append(hostRules, ndpRule())
		hostRules = append(hostRules, newRule([]term{workloadIfaceTerm("in", false)}, "drop", verdictDrop, "endpoint to host: deny"))
	}
	r.addChain(&nchain{name: chainInputHost, base: hookInputHost, rules: hostRules, baseOK: true})
}

// ndpRule accepts IPv6 neighbour and router discovery.
func ndpRule() *nrule {
	return newRule([]term{l4protoTerm(58, false), ndpTerm()}, "accept", verdictAccept, "IPv6 neighbour discovery")
}

// ndpTerm matches ICMPv6 router and neighbour solicitations and
// advertisements (types 133 to 136).
func ndpTerm() term {
	return term{exprs: []expr.Any{
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: []byte{133}, ToData: []byte{136}},
	}, text: "@th,0,8 133-136"}
}

//go:build linux

package nftables

import (
	"github.com/google/nftables/expr"

	"github.com/calyxnet/calyx/backend/internal/irmerge"
	"github.com/calyxnet/calyx/compile"
)

// Merging the rules of a tier's small policies before rendering them.
//
// mergeRules unions rendered rules; doing the same on the IR first
// (package irmerge) means a tier of 900 two-rule policies renders a
// hundred rules instead of 2,700 (then unions those).

// irInlineRules is the most rules a tier policy may have for its rules to
// be merged with its neighbours' and written into the tier chain. Larger
// policies get chains of their own (policyPiecesFor), shared by every
// tier chain that uses them.
const irInlineRules = 8

// renderIRRun renders the rules of consecutive small policies of a tier.
func (r *renderer) renderIRRun(run []irmerge.Rule) []*nrule {
	var out []*nrule
	for i := 0; i < len(run); {
		a := run[i].Rule.Action
		j := i + 1
		if a != compile.ActionLog {
			for j < len(run) && run[j].Rule.Action == a {
				j++
			}
		}
		seg := run[i:j]
		if len(seg) > 1 {
			seg = r.sets.Nets(irmerge.Ports(seg, mergePorts))
		}
		for k := range seg {
			out = append(out, r.renderIR(&seg[k])...)
		}
		i = j
	}
	return out
}

// renderIR renders one (possibly merged) rule.
func (r *renderer) renderIR(ir *irmerge.Rule) []*nrule {
	ru := ir.Rule
	if ir.N <= 1 {
		if ru.Action == compile.ActionPass {
			return r.renderRule(ir.Policy, ir.Index, ru, &expr.Verdict{Kind: expr.VerdictReturn}, "return")
		}
		return r.renderAction(ir.Policy, ir.Index, ru)
	}
	comment := mergedComment(ruleComment(ir.Policy, ir.Index, ru), ir.N)
	v, vtext := &expr.Verdict{Kind: expr.VerdictAccept}, "accept"
	switch ru.Action {
	case compile.ActionDeny:
		v, vtext = &expr.Verdict{Kind: expr.VerdictDrop}, "drop"
	case compile.ActionPass:
		v, vtext = &expr.Verdict{Kind: expr.VerdictReturn}, "return"
	}
	alts := r.alternatives(&ru.Match)
	out := make([]*nrule, 0, len(alts))
	for _, terms := range alts {
		out = append(out, newRule(terms, vtext, v, comment))
	}
	return out
}

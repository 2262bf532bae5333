package iptables

import (
	"slices"
	"strconv"

	"github.com/calyxnet/calyx/backend/internal/irmerge"
	"github.com/calyxnet/calyx/compile"
)

// Small policies written into their tier chain, merged.
//
// A tier is one ordered list of rules: which policy a rule came from
// changes nothing but the order. The rules of small policies are written
// straight into the tier chain (renderRules keeps the mark logic of a
// policy chain: a run of Allow, or of Pass, rules returns once decided
// before a rule of another action), which spares a chain and a jump per
// policy: a node of 10,000 policies holds a few dozen chains, not 10,000.
// Within a run of one action the order of rules does not matter either,
// so rules equal but for their destination ports become one rule on the
// union of the ports (multiport chunks), and rules equal but for the one
// literal set of nets they read on a side become one rule on the union
// (an ipset named by its members).

// inlineRules is the most rules a policy may have to be written into its
// tier chains; larger ones keep a chain of their own.
const inlineRules = 8

// renderRules writes rules as a policy chain would (see renderPolicy)
// and reports whether the last run leaves a decision that the caller must
// return on before anything else.
func (r *renderer) renderRules(rules []irmerge.Rule) (bodies []string, pending bool) {
	var last compile.Action
	for i := 0; i < len(rules); {
		a := rules[i].Rule.Action
		j := i + 1
		if a != compile.ActionLog {
			for j < len(rules) && rules[j].Rule.Action == a {
				j++
			}
		}
		seg := rules[i:j]
		if len(seg) > 1 {
			seg = r.sets.Nets(irmerge.Ports(seg, nil)) // portChunks sorts and joins the ports
		}
		var out []string
		for k := range seg {
			out = append(out, r.rule(seg[k].Policy, seg[k].Index, seg[k].Rule)...)
		}
		if len(out) > 0 {
			if last != 0 && a != last {
				bodies = append(bodies, ifDecided+" -j RETURN")
				last = 0
			}
			bodies = append(bodies, out...)
			if a == compile.ActionAllow || a == compile.ActionPass {
				last = a
			}
		}
		i = j
	}
	return bodies, last != 0
}

// mergedIPSet adds the ipset of a merged set's nets in this family (named
// by its members, so a cached tier chain brings it along) and returns its
// name.
func (r *renderer) mergedIPSet(s *compile.IPSet) string {
	is := &ipset{typ: "hash:net", family: "inet"}
	if r.v == 6 {
		is.family = "inet6"
	}
	nets, _ := r.literalNets(s.ID)
	for _, p := range nets {
		is.members = append(is.members, netMembers(p)...)
	}
	slices.Sort(is.members)
	is.members = slices.Compact(is.members)
	is.name = r.n.prefix + strconv.Itoa(int(r.v)) + "-" + shortHash(append([]string{"merged"}, is.members...)...)
	r.fp.sets[is.name] = is
	return is.name
}

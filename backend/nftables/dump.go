//go:build linux

package nftables

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// text prints the table as nft syntax that `nft -f` loads: sets first,
// then chains in dependency order (policies, fail-safe ports, tiers,
// endpoints, host endpoints, host dispatch, base chains), each rule with
// its comment.
func (d *desired) text(table string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", table)
	for _, name := range sortedKeys(d.sets) {
		s := d.sets[name]
		kind := "set"
		if s.isMap {
			kind = "map"
		}
		fmt.Fprintf(&b, "\t%s %s {\n", kind, name)
		typ := s.keyType.Name
		if s.isMap {
			typ += " : verdict"
		}
		fmt.Fprintf(&b, "\t\ttype %s\n", typ)
		if s.interval {
			b.WriteString("\t\tflags interval\n")
		}
		if s.comment != "" {
			fmt.Fprintf(&b, "\t\tcomment %s\n", strconv.Quote(s.comment))
		}
		if len(s.elemText) > 0 {
			texts := slices.Clone(s.elemText)
			slices.Sort(texts)
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(texts, ",\n\t\t\t     "))
		}
		b.WriteString("\t}\n")
	}
	for _, name := range d.dumpOrder() {
		c := d.chains[name]
		fmt.Fprintf(&b, "\tchain %s {\n", name)
		if c.base != nil {
			fmt.Fprintf(&b, "\t\ttype filter hook %s priority %s; policy accept;\n", c.base.hookName, c.base.prioText)
		}
		for _, ru := range c.rules {
			b.WriteString("\t\t")
			b.WriteString(ru.text)
			if ru.comment != "" {
				b.WriteString(" comment ")
				b.WriteString(strconv.Quote(ru.comment))
			}
			b.WriteByte('\n')
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// chainLevel orders chains so that every chain comes after the chains it
// jumps to.
func chainLevel(name string) int {
	switch {
	case strings.HasPrefix(name, "pol-"), strings.HasPrefix(name, "prof-"),
		name == chainFailsafeIn, name == chainFailsafeOut:
		return 0
	case strings.HasPrefix(name, "tier-"):
		return 1
	case strings.HasPrefix(name, "ep-"):
		return 2
	case strings.HasPrefix(name, "hep-"):
		return 3
	case name == chainHostInput, name == chainHostOutput:
		return 4
	case slices.Contains(baseChains, name):
		return 5
	}
	// Not ours: whatever someone added.
	return 6
}

func (d *desired) dumpOrder() []string {
	names := sortedKeys(d.chains)
	slices.SortStableFunc(names, func(a, b string) int { return chainLevel(a) - chainLevel(b) })
	return names
}

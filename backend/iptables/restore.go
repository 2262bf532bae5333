package iptables

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// state is what one family holds in the kernel (as read back from
// iptables-save, or as last applied): our chains with their lines, the
// lines of the built-in chains we hook, and our sets.
type state struct {
	chains map[string][]string
	// applied, when set, is the plan the kernel was last given, whose
	// chains stand for chains (nil then): a chain the next plan shares
	// with it is the same value, compared by pointer.
	applied *famPlan
	// gen, when not zero, is the generation applied's chains were marked
	// with (chain.applied) when it was applied: a chain so marked needs
	// no look-up at all.
	gen uint64
	// builtin holds, per hooked built-in chain, the lines that jump to one
	// of our chains, and whether our jump is the chain's first rule.
	builtin map[string]builtinState
}

type builtinState struct {
	ours  []string
	first bool
}

// stateOf returns the state a plan leaves once applied.
func stateOf(fp *famPlan) *state {
	st := &state{applied: fp, builtin: map[string]builtinState{}}
	for _, j := range fp.jumps {
		b := strings.Fields(j)[1]
		st.builtin[b] = builtinState{ours: []string{j}, first: true}
	}
	return st
}

// parseSave reads iptables-save output of the filter table and keeps what
// belongs to this instance.
func parseSave(out []byte, n naming) *state {
	st := &state{chains: map[string][]string{}, builtin: map[string]builtinState{}}
	inFilter := false
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			inFilter = line == "*filter"
		case !inFilter:
		case strings.HasPrefix(line, ":"):
			name := strings.Fields(line[1:])[0]
			if n.isOwnChain(name) {
				if _, ok := st.chains[name]; !ok {
					st.chains[name] = []string{}
				}
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name := f[1]
			if n.isOwnChain(name) {
				st.chains[name] = append(st.chains[name], normalize(line))
				continue
			}
			for _, b := range builtins {
				if name != b.builtin {
					continue
				}
				pos := seen[name]
				seen[name]++
				if t := target(line); n.isOwnChain(t) {
					bs := st.builtin[name]
					bs.ours = append(bs.ours, normalize(line))
					if pos == 0 {
						bs.first = true
					}
					st.builtin[name] = bs
				}
			}
		}
	}
	return st
}

// target returns the chain a rule jumps to ("-j X").
func target(line string) string {
	f := strings.Fields(line)
	for i := len(f) - 2; i >= 0; i-- {
		if f[i] == "-j" || f[i] == "-g" {
			return f[i+1]
		}
	}
	return ""
}

// protoNumbers maps the protocol names iptables-save may print to the
// names we write.
var protoNumbers = map[string]string{"6": "tcp", "17": "udp", "1": "icmp", "58": "ipv6-icmp", "icmpv6": "ipv6-icmp", "132": "sctp", "136": "udplite"}

// normalize brings a saved line to the form we write: iptables-save may
// spell a protocol by number or an alias.
func normalize(line string) string {
	f := strings.Fields(line)
	changed := false
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-p" {
			if n, ok := protoNumbers[f[i+1]]; ok {
				f[i+1] = n
				changed = true
			}
		}
	}
	if !changed {
		return line
	}
	return strings.Join(f, " ")
}

// Drift is what a comparison of the kernel with the desired state found.
// Each entry names a chain, jump or set and what is wrong with it.
type Drift struct {
	Chains []string
	Jumps  []string
	Sets   []string
}

// Empty reports whether nothing differed.
func (d *Drift) Empty() bool { return len(d.Chains)+len(d.Jumps)+len(d.Sets) == 0 }

// String lists the differences.
func (d *Drift) String() string {
	if d.Empty() {
		return "no drift"
	}
	var parts []string
	parts = append(parts, d.Chains...)
	parts = append(parts, d.Jumps...)
	parts = append(parts, d.Sets...)
	return strings.Join(parts, "; ")
}

// rulesInput writes the iptables-restore --noflush input that turns cur
// into want: changed and new chains are declared (which flushes them) and
// written whole, jumps fixed, and chains no longer wanted flushed and
// deleted last, when nothing of ours refers to them any more. It returns
// nil when nothing differs.
func rulesInput(cur *state, want *famPlan, d *Drift) []byte {
	// Maps are walked unsorted (10,000 chains on a big node); only what
	// changed is sorted, so the input is deterministic.
	var rewrite, remove []string
	if cur.applied != nil {
		fi := famIndex(want.v)
		kept := 0
		for name, c := range want.chains {
			if cur.gen != 0 && c.applied[fi] == cur.gen {
				kept++
				continue
			}
			oc, ok := cur.applied.chains[name]
			if ok {
				kept++
			}
			if !ok || oc != c && !slices.Equal(oc.rules, c.rules) {
				rewrite = append(rewrite, name)
			}
		}
		if kept != len(cur.applied.chains) {
			for name := range cur.applied.chains {
				if _, ok := want.chains[name]; !ok {
					remove = append(remove, name)
				}
			}
		}
	} else {
		for name, c := range want.chains {
			if lines, ok := cur.chains[name]; !ok || !slices.Equal(lines, c.rules) {
				rewrite = append(rewrite, name)
			}
		}
		for name := range cur.chains {
			if _, ok := want.chains[name]; !ok {
				remove = append(remove, name)
			}
		}
	}
	slices.Sort(rewrite)
	slices.Sort(remove)
	if d != nil {
		for _, name := range rewrite {
			if cur.has(name) {
				d.Chains = append(d.Chains, "chain "+name+" differs")
			} else {
				d.Chains = append(d.Chains, "chain "+name+" missing")
			}
		}
		for _, name := range remove {
			d.Chains = append(d.Chains, "chain "+name+" not ours to keep")
		}
	}
	var jumps []string
	for _, j := range want.jumps {
		b := strings.Fields(j)[1]
		bs := cur.builtin[b]
		if bs.first && len(bs.ours) == 1 && bs.ours[0] == j {
			continue
		}
		if d != nil {
			d.Jumps = append(d.Jumps, "jump from "+b+" missing, moved or doubled")
		}
		for _, old := range bs.ours {
			jumps = append(jumps, "-D"+strings.TrimPrefix(old, "-A"))
		}
		jumps = append(jumps, "-I "+b+" 1"+strings.TrimPrefix(j, "-A "+b))
	}
	if len(rewrite)+len(remove)+len(jumps) == 0 {
		return nil
	}
	var buf bytes.Buffer
	buf.WriteString("*filter\n")
	for _, name := range rewrite {
		fmt.Fprintf(&buf, ":%s - [0:0]\n", name)
	}
	for _, name := range remove {
		fmt.Fprintf(&buf, ":%s - [0:0]\n", name)
	}
	for _, name := range rewrite {
		for _, l := range want.chains[name].rules {
			buf.WriteString(l)
			buf.WriteByte('\n')
		}
	}
	for _, j := range jumps {
		buf.WriteString(j)
		buf.WriteByte('\n')
	}
	for _, name := range remove {
		fmt.Fprintf(&buf, "-X %s\n", name)
	}
	buf.WriteString("COMMIT\n")
	return buf.Bytes()
}

// has reports whether cur holds a chain.
func (cur *state) has(name string) bool {
	if cur.applied != nil {
		_, ok := cur.applied.chains[name]
		return ok
	}
	_, ok := cur.chains[name]
	return ok
}

// removeInput writes the iptables-restore --noflush input that removes
// our jumps and chains from cur.
func removeInput(cur *state) []byte {
	if cur.applied != nil {
		chains := make(map[string][]string, len(cur.applied.chains))
		for name, c := range cur.applied.chains {
			chains[name] = c.rules
		}
		cur = &state{chains: chains, builtin: cur.builtin}
	}
	if len(cur.chains) == 0 && len(cur.builtin) == 0 {
		return nil
	}
	var buf bytes.Buffer
	buf.WriteString("*filter\n")
	names := sortedKeys(cur.chains)
	for _, name := range names {
		fmt.Fprintf(&buf, ":%s - [0:0]\n", name)
	}
	for _, b := range builtins {
		for _, old := range cur.builtin[b.builtin].ours {
			buf.WriteString("-D" + strings.TrimPrefix(old, "-A") + "\n")
		}
	}
	for _, name := range names {
		fmt.Fprintf(&buf, "-X %s\n", name)
	}
	buf.WriteString("COMMIT\n")
	return buf.Bytes()
}

// parseIpsetSave reads `ipset save` output and keeps this instance's sets.
func parseIpsetSave(out []byte, n naming) map[string]*ipset {
	sets := map[string]*ipset{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || !n.isOwnSet(f[1]) {
			continue
		}
		switch f[0] {
		case "create":
			s := &ipset{name: f[1], typ: f[2]}
			for i := 3; i+1 < len(f); i++ {
				if f[i] == "family" {
					s.family = f[i+1]
				}
			}
			sets[f[1]] = s
		case "add":
			if s, ok := sets[f[1]]; ok {
				s.members = append(s.members, canonMember(f[2]))
			}
		}
	}
	for _, s := range sets {
		slices.Sort(s.members)
	}
	return sets
}

// canonMember spells a saved member as we write it (ipset prints a
// single address without /32 or /128 already; keep the hook for
// versions that do not).
func canonMember(m string) string {
	if a, ok := strings.CutSuffix(m, "/32"); ok && !strings.Contains(a, ":") {
		return a
	}
	if a, ok := strings.CutSuffix(m, "/128"); ok && strings.Contains(a, ":") {
		return a
	}
	return m
}

// setsInputs writes the `ipset restore` inputs that turn cur into want:
// prepare (create new sets, add and delete members) runs before the
// rules change, destroy (sets no rule uses any more) after.
func setsInputs(cur, want map[string]*ipset, d *Drift) (prepare, destroy []byte) {
	var pb, db bytes.Buffer
	for _, name := range sortedKeys(want) {
		w := want[name]
		c, ok := cur[name]
		if ok && (c.typ != w.typ || c.family != w.family) {
			ok = false // cannot be changed in place; cannot happen for one ID
		}
		if !ok {
			if d != nil {
				d.Sets = append(d.Sets, "set "+name+" missing")
			}
			pb.WriteString(w.createLine() + "\n")
			for _, m := range w.members {
				fmt.Fprintf(&pb, "add %s %s\n", name, m)
			}
			continue
		}
		add, del := diffSorted(c.members, w.members)
		if d != nil && len(add)+len(del) > 0 {
			d.Sets = append(d.Sets, fmt.Sprintf("set %s: %d members missing, %d extra", name, len(add), len(del)))
		}
		for _, m := range del {
			fmt.Fprintf(&pb, "del %s %s\n", name, m)
		}
		for _, m := range add {
			fmt.Fprintf(&pb, "add %s %s\n", name, m)
		}
	}
	for _, name := range sortedKeys(cur) {
		if _, ok := want[name]; !ok {
			if d != nil {
				d.Sets = append(d.Sets, "set "+name+" not ours to keep")
			}
			fmt.Fprintf(&db, "destroy %s\n", name)
		}
	}
	return pb.Bytes(), db.Bytes()
}

// diffSorted returns what is in want but not have, and in have but not
// want; both sorted.
func diffSorted(have, want []string) (add, del []string) {
	i, j := 0, 0
	for i < len(have) || j < len(want) {
		switch {
		case i == len(have):
			add = append(add, want[j])
			j++
		case j == len(want):
			del = append(del, have[i])
			i++
		case have[i] == want[j]:
			i++
			j++
		case have[i] < want[j]:
			del = append(del, have[i])
			i++
		default:
			add = append(add, want[j])
			j++
		}
	}
	return add, del
}

// allSets merges both families' sets of a plan.
func (p *plan) allSets() map[string]*ipset {
	out := map[string]*ipset{}
	for _, fp := range p.fams {
		for k, v := range fp.sets {
			out[k] = v
		}
	}
	return out
}

// dump writes the plan as the inputs a fresh host would be given: the
// ipset restore input, then the iptables-restore input of each family.
func (p *plan) dump() []byte {
	var buf bytes.Buffer
	prep, _ := setsInputs(nil, p.allSets(), nil)
	buf.WriteString("# ipset restore\n")
	buf.Write(prep)
	for _, fp := range p.fams {
		fmt.Fprintf(&buf, "# %s-restore --noflush\n", cmdName(fp.v))
		buf.Write(rulesInput(&state{chains: map[string][]string{}, builtin: map[string]builtinState{}}, fp, nil))
	}
	return buf.Bytes()
}

func cmdName(v uint8) string {
	if v == 6 {
		return "ip6tables"
	}
	return "iptables"
}

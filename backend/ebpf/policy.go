package ebpf

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf/asm"

	"github.com/calyxnet/calyx/compile"
)

// stepKind says what one step of a flattened direction does.
type stepKind uint8

const (
	stepRule stepKind = iota + 1 // a rule (or a merged run of rules)
	stepDeny                     // end of a tier that denies, end of profiles
)

// step is one element of a direction flattened into straight-line code:
// the tiers' rules, each tier's end, the profiles' rules, the final deny.
type step struct {
	kind stepKind
	// tier is the index of the tier the step belongs to (len(Tiers) for
	// profiles); tierStart marks the first step of a tier.
	tier      int
	tierStart bool
	rule      *compile.Rule
	action    compile.Action
	passTo    int // Pass: the tier to continue with
	run       *run
	ruleID    uint64
}

// run is a stretch of consecutive same-shaped rules with one action,
// matched by one LPM lookup: (run ID, protocol, destination port, address).
type run struct {
	name  string // identity: what the rules say, not what their sets hold
	side  int    // 0: the set is on the source, 1: on the destination
	rules []*compile.Rule
	kinds uint8 // the key kinds its entries use (1 << runPorts, …)
	// dispatch: rules without sets, of either action; an entry's value is
	// the index of the first rule that makes it, shifted left, or-ed with
	// 1 for Deny. The lowest value among the hits decides.
	dispatch bool
}

// Kinds of run entries, told apart by high bits of the family byte: a
// rule with destination ports (protocol, port, address), one with a
// protocol and no ports (protocol, address), one with neither (address).
const (
	runPorts    = 0
	runProto    = 1
	runAny      = 2
	famProto    = 0x40
	famAnyProto = 0x80
)

// minRun is the shortest stretch of rules worth a lookup.
const minRun = 2

// maxRunPorts bounds the ports one rule of a run expands to.
const maxRunPorts = 64

// RuleRef names a rule for log and flow events.
type RuleRef struct {
	// Tier is the tier of the rule's policy (compile.Policy.Tier); empty
	// for a profile's rule and for the end of the profiles.
	Tier string
	// Policy is the policy's display name (compile.Policy.Name); empty
	// for the end of a tier or of the profiles.
	Policy string
	// Index is the rule's position in the compiled policy's rules
	// (compile.Policy.Rules); -1 for the end of a tier or of the
	// profiles, which no rule decides.
	Index int
	// Origin is the rule's compile.Origin: the source policy, its kind,
	// the rule's index and field path there. Zero when no rule decided
	// (the end of a tier or of the profiles).
	Origin compile.Origin
}

// flatten turns one direction into steps, merging runs of same-shaped
// rules. refs receives the IDs of the steps that write events: Log rules,
// and the rules, runs and tier ends that decide a verdict.
func flatten(rs *compile.Ruleset, dp *compile.DirectionPolicy, refs map[uint64]stepRef) []step {
	var out []step
	type item struct {
		pid compile.PolicyID
		pol *compile.Policy
		i   int
	}
	addRules := func(ti int, pids []compile.PolicyID, profile bool) {
		var items []item
		for _, pid := range pids {
			pol := rs.Policies[pid]
			for i := range pol.Rules {
				if profile && pol.Rules[i].Action == compile.ActionPass {
					continue // profiles have no next tier to pass to
				}
				items = append(items, item{pid, pol, i})
			}
		}
		rules := make([]*compile.Rule, len(items))
		for k, it := range items {
			rules[k] = &it.pol.Rules[it.i]
		}
		ref := func(it item) RuleRef {
			return RuleRef{Tier: it.pol.Tier, Policy: it.pol.Name, Index: it.i, Origin: it.pol.Rules[it.i].Origin}
		}
		// runRef names the rules of a run, in order: an event of the run
		// is resolved to the first of them that matches its packet.
		runRef := func(ru *run, from, to int) uint64 {
			h := fnv.New64a()
			rr := &runRef{rules: ru.rules, side: ru.side}
			for _, it := range items[from:to] {
				fmt.Fprintf(h, "%s\x00%d\x00", it.pid, it.i)
				rr.refs = append(rr.refs, ref(it))
			}
			id := h.Sum64() | 1
			refs[id] = stepRef{reason: ReasonRule, run: rr}
			return id
		}
		for k := 0; k < len(items); k++ {
			it := items[k]
			r := rules[k]
			if j, ru := findDispatch(rules, k); ru != nil {
				out = append(out, step{kind: stepRule, tier: ti, run: ru, ruleID: runRef(ru, k, j)})
				k = j - 1
				continue
			}
			if j, ru := findRun(rs, rules, k); ru != nil {
				out = append(out, step{kind: stepRule, tier: ti, action: r.Action, run: ru, ruleID: runRef(ru, k, j)})
				k = j - 1
				continue
			}
			st := step{kind: stepRule, tier: ti, rule: r, action: r.Action, passTo: ti + 1}
			if r.Action != compile.ActionPass {
				st.ruleID = ruleID(it.pid, it.i)
				refs[st.ruleID] = stepRef{reason: ReasonRule, rule: ref(it)}
			}
			out = append(out, st)
		}
	}
	mark := func(ti, from int) {
		if from < len(out) {
			out[from].tierStart = true
		} else {
			// An empty tier still needs somewhere to start.
			out = append(out, step{kind: stepRule, tier: ti, tierStart: true, action: compile.ActionLog,
				rule: &compile.Rule{Action: compile.ActionLog}, ruleID: 0})
		}
	}
	for ti, t := range dp.Tiers {
		from := len(out)
		addRules(ti, t.Policies, false)
		if t.EndAction != compile.ActionPass {
			id := endID("tier\x00" + t.Tier)
			refs[id] = stepRef{reason: ReasonTierEnd, rule: RuleRef{Tier: t.Tier, Index: -1}}
			out = append(out, step{kind: stepDeny, tier: ti, ruleID: id})
		}
		mark(ti, from)
	}
	from := len(out)
	addRules(len(dp.Tiers), dp.Profiles, true)
	id := endID("profiles")
	refs[id] = stepRef{reason: ReasonProfilesEnd, rule: RuleRef{Index: -1}}
	out = append(out, step{kind: stepDeny, tier: len(dp.Tiers), ruleID: id})
	mark(len(dp.Tiers), from)
	return out
}

// endID names the end of a tier or of the profiles in events.
func endID(what string) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "end\x00%s", what)
	return h.Sum64() | 1
}

// ruleID names a rule in events: stable across restarts. Rule, run and
// end IDs are odd; the fixed reasons (forged source, fail closed, node
// denied) are small even numbers.
func ruleID(pid compile.PolicyID, i int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d", pid, i)
	return h.Sum64() | 1 // never 0
}

// anyAddress are the nets of a rule without sets.
func anyAddress() []netip.Prefix {
	return []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)}
}

// runShape reports whether a rule can join a run: Allow or Deny, one net
// set on one side and nothing else but a protocol, an IP version and
// destination ports (few enough to list). It returns the side of the set
// and the kind of entries the rule makes.
func runShape(rs *compile.Ruleset, r *compile.Rule) (side, kind int, ok bool) {
	m := &r.Match
	if r.Action != compile.ActionAllow && r.Action != compile.ActionDeny {
		return 0, 0, false
	}
	if m.NotProtocol != 0 || m.ICMP != nil || m.NotICMP != nil {
		return 0, 0, false
	}
	s, d := &m.Src, &m.Dst
	if len(s.NotSets)+len(d.NotSets)+len(s.Ports)+len(s.NamedPorts)+len(s.NotPorts)+len(s.NotNamedPorts)+
		len(d.NamedPorts)+len(d.NotPorts)+len(d.NotNamedPorts) > 0 {
		return 0, 0, false
	}
	switch {
	case len(d.Ports) > 0:
		switch m.Protocol {
		case 6, 17, 132, 136:
		default:
			return 0, 0, false
		}
		n := 0
		for _, pr := range d.Ports {
			if pr.Max < pr.Min {
				return 0, 0, false
			}
			n += int(pr.Max-pr.Min) + 1
		}
		if n > maxRunPorts {
			return 0, 0, false
		}
		kind = runPorts
	case m.Protocol != 0:
		kind = runProto
	default:
		kind = runAny
	}
	var set compile.SetID
	switch {
	case len(s.Sets) == 1 && len(d.Sets) == 0:
		set, side = s.Sets[0], 0
	case len(s.Sets) == 0 && len(d.Sets) == 1:
		set, side = d.Sets[0], 1
	case len(s.Sets) == 0 && len(d.Sets) == 0:
		// Any address: /0 entries on the destination side.
		return 1, kind, true
	default:
		return 0, 0, false
	}
	if st := rs.Sets[set]; st == nil || st.Kind == compile.SetNamedPorts {
		return 0, 0, false
	}
	return side, kind, true
}

// findRun returns the run starting at rules[i] and the index after it, or
// nil when fewer than minRun rules line up. Consecutive rules of one tier
// merge across policies: with one action, the first match is as good as
// any.
func findRun(rs *compile.Ruleset, rules []*compile.Rule, i int) (int, *run) {
	side, kind, ok := runShape(rs, rules[i])
	if !ok {
		return i, nil
	}
	kinds := uint8(1) << kind
	j := i + 1
	for j < len(rules) && rules[j].Action == rules[i].Action {
		s, k, ok := runShape(rs, rules[j])
		if !ok || s != side {
			break
		}
		kinds |= 1 << k
		j++
	}
	if j-i < minRun {
		return i, nil
	}
	ru := &run{side: side, kinds: kinds}
	h := sha256.New()
	fmt.Fprintf(h, "%d", side)
	for k := i; k < j; k++ {
		r := rules[k]
		ru.rules = append(ru.rules, r)
		m := &r.Match
		fmt.Fprintf(h, "|%d %d %d %v %v", r.Action, m.Protocol, m.IPVersion, m.Src.Sets, m.Dst.Sets)
		for _, p := range m.Dst.Ports {
			fmt.Fprintf(h, " %d-%d", p.Min, p.Max)
		}
	}
	ru.name = "run:" + hex.EncodeToString(h.Sum(nil)[:12])
	return j, ru
}

// dispatchShape reports whether a rule can join a dispatch: Allow or
// Deny, no set on either side, at most a protocol, an IP version and
// destination ports.
func dispatchShape(r *compile.Rule) (kind int, ok bool) {
	m := &r.Match
	if len(m.Src.Sets)+len(m.Dst.Sets) > 0 {
		return 0, false
	}
	side, kind, ok := runShape(nil, r)
	return kind, ok && side == 1
}

// findDispatch returns the dispatch starting at rules[i] and the index
// after it, or nil when fewer than minRun set-less rules line up.
func findDispatch(rules []*compile.Rule, i int) (int, *run) {
	var kinds uint8
	j := i
	for ; j < len(rules); j++ {
		k, ok := dispatchShape(rules[j])
		if !ok {
			break
		}
		kinds |= 1 << k
	}
	if j-i < minRun {
		return i, nil
	}
	ru := &run{side: 1, kinds: kinds, dispatch: true}
	h := sha256.New()
	h.Write([]byte("dispatch"))
	for k := i; k < j; k++ {
		r := rules[k]
		ru.rules = append(ru.rules, r)
		m := &r.Match
		fmt.Fprintf(h, "|%d %d %d", r.Action, m.Protocol, m.IPVersion)
		for _, p := range m.Dst.Ports {
			fmt.Fprintf(h, " %d-%d", p.Min, p.Max)
		}
	}
	ru.name = "dispatch:" + hex.EncodeToString(h.Sum(nil)[:12])
	return j, ru
}

// dispatchEntries are the keys and values of a dispatch: for each key,
// the first rule that makes it.
func dispatchEntries(ru *run, id uint32) ([][lpmKeySize]byte, []uint32) {
	seen := map[[lpmKeySize]byte]bool{}
	var keys [][lpmKeySize]byte
	var vals []uint32
	var zero [16]byte
	for i, r := range ru.rules {
		m := &r.Match
		v := uint32(i) << 1
		if r.Action == compile.ActionDeny {
			v |= 1
		}
		add := func(k [lpmKeySize]byte) {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
				vals = append(vals, v)
			}
		}
		for _, fam := range []uint8{4, 6} {
			if m.IPVersion != 0 && m.IPVersion != fam {
				continue
			}
			switch {
			case len(m.Dst.Ports) > 0:
				for _, pr := range m.Dst.Ports {
					for p := int(pr.Min); p <= int(pr.Max); p++ {
						add(lpmKey(id, fam, m.Protocol, uint16(p), zero, 0))
					}
				}
			case m.Protocol != 0:
				add(lpmKey(id, fam|famProto, m.Protocol, 0, zero, 0))
			default:
				add(lpmKey(id, fam|famAnyProto, 0, 0, zero, 0))
			}
		}
	}
	return keys, vals
}

// idOf resolves set and run names to the 32-bit IDs in map keys.
type idOf func(name string) uint32

// progSpec is one endpoint direction's code, split into chunks that
// tail-call each other.
type progSpec struct {
	hook   hook
	chunks []asm.Instructions
	fp     string // fingerprint of the code: equal code, one program
	runs   []*run
	steps  int
}

// chunkBudget is the instructions one chunk may hold: well below the
// verifier's walls and the 16-bit jump offsets.
const chunkBudget = 16 * 1024

// maxChunks is the kernel's tail-call limit (33) plus the entry program.
const maxChunks = 33

// config is what code generation depends on besides the direction.
type config struct {
	timeouts Timeouts
	hostDeny bool // DefaultEndpointToHostAction Deny, on the ingress hook
	events   bool // flow events: the verdict of new flows and denied packets

	// host, for a host endpoint's program: what it checks before its
	// policy (see hostPrelude). Nil for workloads.
	host *hostProg
}

// genProgram generates the program of one direction at hook h.
func genProgram(rs *compile.Ruleset, dp *compile.DirectionPolicy, h hook, cfg config, ids idOf, refs map[uint64]stepRef) (*progSpec, error) {
	steps := flatten(rs, dp, refs)
	// Code for each step's match, generated once to size the chunks.
	bodies := make([]*gen, len(steps))
	total := 0
	for i := range steps {
		g := newGen()
		g.pfx = fmt.Sprintf("s%d", i)
		g.events = cfg.events
		g.match(&steps[i], ids, fmt.Sprintf("next_%d", i))
		bodies[i] = g
		total += len(g.insns) + 4
	}
	budget := chunkBudget
	if need := total/(maxChunks-1) + 1; need > budget {
		budget = need
	}
	if budget > 30*1024 {
		return nil, fmt.Errorf("%w: %d instructions", ErrTooBig, total)
	}
	// Split at step boundaries.
	var bounds []int // first step of each chunk
	size := 0
	for i := range steps {
		if i == 0 || size+len(bodies[i].insns) > budget {
			bounds = append(bounds, i)
			size = 0
		}
		size += len(bodies[i].insns) + 4
	}
	if len(bounds) > maxChunks {
		return nil, fmt.Errorf("%w: %d chunks", ErrTooBig, len(bounds))
	}
	chunkOf := func(step int) int {
		c, _ := slices.BinarySearch(bounds, step+1)
		return c - 1
	}
	tierStep := map[int]int{}
	for i, s := range steps {
		if s.tierStart {
			if _, ok := tierStep[s.tier]; !ok {
				tierStep[s.tier] = i
			}
		}
	}
	ps := &progSpec{hook: h, steps: len(steps)}
	for i := range steps {
		if steps[i].run != nil {
			ps.runs = append(ps.runs, steps[i].run)
		}
	}
	for c, first := range bounds {
		last := len(steps)
		if c+1 < len(bounds) {
			last = bounds[c+1]
		}
		g := newGen()
		g.events = cfg.events
		g.prologue()
		if c == 0 {
			g.hostEP = cfg.host != nil
			g.parse(h)
			g.conntrack(h, cfg.timeouts)
			g.label(lPolicy)
			if cfg.host != nil {
				g.hostPrelude(h, cfg.host)
			}
		} else {
			// Resume at a tier a Pass jumped to, or at the first step.
			for _, ti := range slices.Sorted(maps.Keys(tierStep)) {
				if si := tierStep[ti]; si > first && si < last {
					g.emit(ldw(asm.R1, oResume), asm.JEq.Imm(asm.R1, int32(ti), fmt.Sprintf("tier_%d", ti)))
				}
			}
		}
		for i := first; i < last; i++ {
			s := &steps[i]
			if s.tierStart && tierStep[s.tier] == i {
				g.label(fmt.Sprintf("tier_%d", s.tier))
			}
			g.splice(bodies[i])
			g.action(s, c, chunkOf, tierStep, len(bounds))
			g.label(fmt.Sprintf("next_%d", i))
		}
		if last < len(steps) {
			g.tailCall(c+1, 0xffff)
		}
		g.epilogue(h, cfg)
		insns, err := g.finish()
		if err != nil {
			return nil, err
		}
		ps.chunks = append(ps.chunks, insns)
	}
	h2 := sha256.New()
	var buf [24]byte
	buf[0] = byte(h)
	h2.Write(buf[:1])
	for _, ch := range ps.chunks {
		for _, in := range ch {
			binary.LittleEndian.PutUint32(buf[0:], uint32(in.OpCode))
			buf[4], buf[5] = byte(in.Dst), byte(in.Src)
			binary.LittleEndian.PutUint16(buf[6:], uint16(in.Offset))
			binary.LittleEndian.PutUint64(buf[8:], uint64(in.Constant))
			h2.Write(buf[:16])
			h2.Write([]byte(in.Symbol()))
			h2.Write([]byte{0})
			h2.Write([]byte(in.Reference()))
			h2.Write([]byte{0})
		}
		h2.Write([]byte{1})
	}
	ps.fp = hex.EncodeToString(h2.Sum(nil)[:16])
	return ps, nil
}

// action emits what a matching step does.
func (g *gen) action(s *step, chunk int, chunkOf func(int) int, tierStep map[int]int, nChunks int) {
	if s.kind == stepDeny {
		g.eventID(s.ruleID)
		g.emit(asm.Ja.Label(lDeny))
		return
	}
	if s.run != nil && s.run.dispatch {
		return // its code ends in its verdicts
	}
	switch s.action {
	case compile.ActionAllow:
		g.eventID(s.ruleID)
		g.emit(asm.Ja.Label("allow"))
	case compile.ActionDeny:
		g.eventID(s.ruleID)
		g.emit(asm.Ja.Label(lDeny))
	case compile.ActionLog:
		if s.ruleID == 0 {
			return
		}
		g.emit(stiw(oEvent, int64(int32(uint32(s.ruleID)))), stiw(oEvent+4, int64(int32(uint32(s.ruleID>>32)))))
		g.output(compile.ActionLog)
	case compile.ActionPass:
		target, ok := tierStep[s.passTo]
		if !ok {
			g.emit(asm.Ja.Label(lDrop))
			return
		}
		if tc := chunkOf(target); tc == chunk {
			g.emit(asm.Ja.Label(fmt.Sprintf("tier_%d", s.passTo)))
		} else {
			g.tailCall(tc, s.passTo)
		}
	}
}

// tailCall continues in chunk c at tier resume (0xffff: its first step);
// if the call fails, the packet is dropped.
func (g *gen) tailCall(c int, resume int) {
	g.emit(stiw(oResume, int64(resume)), asm.Mov.Reg(asm.R1, rCtx), mapPtr(asm.R2, refTail),
		asm.Mov.Imm(asm.R3, int32(c)), asm.FnTailCall.Call(), asm.Ja.Label(lDrop))
}

// epilogue: allow (after the node check, open a conntrack entry) and drop.
func (g *gen) epilogue(h hook, cfg config) {
	g.label("allow")
	if h == hookIngress && cfg.hostDeny {
		g.hostCheck()
	}
	g.openFlow("ct_synonly_no")
	if g.events {
		g.output(compile.ActionAllow)
	}
	g.ret(tcxNext)
	g.label(lDeny)
	if g.events {
		g.output(compile.ActionDeny)
	}
	g.label(lDrop)
	g.ret(tcxDrop)
}

// openFlow makes the conntrack entry of an allowed packet (none for an
// ICMP error or a TCP RST) and, for a first fragment, its fragment entry.
// synOnlyNo is a label of its own (a fixed name keeps the fingerprints of
// the programs that call it once).
func (g *gen) openFlow(synOnlyNo string) {
	noCT := g.fresh("no_ct")
	notTCP, flagsDone := g.fresh("ct_not_tcp"), g.fresh("ct_flags_done")
	g.emit(ldb(asm.R1, oICMPErr), asm.JNE.Imm(asm.R1, 0, noCT),
		ldb(asm.R1, oProto), asm.JNE.Imm(asm.R1, 6, notTCP),
		ldb(asm.R1, oTCPFlags), asm.Mov.Reg(asm.R2, asm.R1), asm.And.Imm(asm.R2, tcpRST), asm.JNE.Imm(asm.R2, 0, noCT),
		asm.Mov.Imm(asm.R3, ctSynFwd|ctReplied),
		asm.Mov.Reg(asm.R2, asm.R1), asm.And.Imm(asm.R2, tcpSYN|tcpACK), asm.JNE.Imm(asm.R2, tcpSYN, synOnlyNo),
		asm.Mov.Imm(asm.R3, ctSynFwd))
	g.label(synOnlyNo)
	g.emit(asm.And.Imm(asm.R1, tcpFIN), asm.JEq.Imm(asm.R1, 0, flagsDone), asm.Or.Imm(asm.R3, ctFinFwd),
		asm.Ja.Label(flagsDone))
	g.label(notTCP)
	g.emit(asm.Mov.Imm(asm.R3, ctSynFwd))
	g.label(flagsDone)
	g.emit(stw(oCTVal+8, asm.R3), asm.FnKtimeGetNs.Call(), asm.StoreMem(rS, oCTVal, asm.R0, asm.DWord))
	g.update(refCT, oCTFwd, oCTVal)
	g.label(noCT)
	g.recordFragment()
}

// eventID stores the ID of what decides in the event (flow events only).
func (g *gen) eventID(id uint64) {
	if !g.events || id == 0 {
		return
	}
	g.emit(stiw(oEvent, int64(int32(uint32(id)))), stiw(oEvent+4, int64(int32(uint32(id>>32)))))
}

// output writes the event in the scratch area to the ring buffer with
// action a; when the ring buffer is full, it counts the event lost.
func (g *gen) output(a compile.Action) {
	done := g.fresh("event_done")
	g.emit(stib(oEvent+15, int64(a)),
		mapPtr(asm.R1, refEvents), asm.Mov.Reg(asm.R2, rS), asm.Add.Imm(asm.R2, oEvent),
		asm.Mov.Imm(asm.R3, eventSize), asm.Mov.Imm(asm.R4, 0), asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, done))
	g.countLost(done)
	g.label(done)
}

// countLost adds one to this CPU's lost-event counter, then goes to done.
func (g *gen) countLost(done string) {
	g.emit(asm.StoreImm(asm.R10, -8, 0, asm.Word),
		mapPtr(asm.R1, refLost), asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(), asm.JEq.Imm(asm.R0, 0, done),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord), asm.Add.Imm(asm.R1, 1), asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Ja.Label(done))
}

// hostCheck drops what a pod sends to its own node (a FIB lookup that
// finds a local route) when DefaultEndpointToHostAction is Deny.
func (g *gen) hostCheck() {
	notLocal := g.fresh("fib_not_local")
	g.fibLookup()
	g.emit(asm.JNE.Imm(asm.R0, 4, notLocal)) // BPF_FIB_LKUP_RET_NOT_FWDED: a local address
	g.eventID(idNodeDenied)
	g.emit(asm.Ja.Label(lDeny))
	g.label(notLocal)
}

// match emits the checks of one step, jumping to fail when it does not
// match; on a match the code falls through to the action.
func (g *gen) match(s *step, ids idOf, fail string) {
	if s.kind == stepDeny {
		return
	}
	if s.run != nil && s.run.dispatch {
		id := int64(int32(ids(s.run.name)))
		g.emit(asm.Mov.Imm(asm.R8, -1))
		for kind, off := range [3]int16{oRunDst, oRunDstP, oRunDstA} {
			if s.run.kinds&(1<<kind) == 0 {
				continue
			}
			miss := g.fresh("dispatch_miss")
			g.emit(stiw(off+4, id))
			g.lookup(refSets, int32(off))
			g.emit(asm.JEq.Imm(asm.R0, 0, miss),
				asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
				asm.JGE.Reg(asm.R1, asm.R8, miss),
				asm.Mov.Reg(asm.R8, asm.R1))
			g.label(miss)
		}
		g.emit(asm.JEq.Imm(asm.R8, -1, fail))
		g.eventID(s.ruleID)
		g.emit(asm.And.Imm(asm.R8, 1), asm.JEq.Imm(asm.R8, 1, lDeny),
			asm.Ja.Label("allow"))
		return
	}
	if s.run != nil {
		keys := [3]int16{oRunSrc, oRunSrcP, oRunSrcA}
		if s.run.side == 1 {
			keys = [3]int16{oRunDst, oRunDstP, oRunDstA}
		}
		id := int64(int32(ids(s.run.name)))
		hit := g.fresh("run_hit")
		for kind, off := range keys {
			if s.run.kinds&(1<<kind) == 0 {
				continue
			}
			g.emit(stiw(off+4, id))
			g.lookup(refSets, int32(off))
			g.emit(asm.JNE.Imm(asm.R0, 0, hit))
		}
		g.emit(asm.Ja.Label(fail))
		g.label(hit)
		return
	}
	m := &s.rule.Match
	if m.Protocol != 0 {
		g.emit(ldb(asm.R1, oProto), asm.JNE.Imm(asm.R1, int32(m.Protocol), fail))
	}
	if m.NotProtocol != 0 {
		g.emit(ldb(asm.R1, oProto), asm.JEq.Imm(asm.R1, int32(m.NotProtocol), fail))
	}
	if m.IPVersion != 0 {
		g.emit(ldb(asm.R1, oFam), asm.JNE.Imm(asm.R1, int32(m.IPVersion), fail))
	}
	if m.ICMP != nil {
		ok := g.fresh("icmp_ok")
		g.emit(ldb(asm.R1, oProto), asm.JEq.Imm(asm.R1, 1, ok), asm.JNE.Imm(asm.R1, 58, fail))
		g.label(ok)
		g.emit(ldb(asm.R1, oICMPType), asm.JNE.Imm(asm.R1, int32(m.ICMP.Type), fail))
		if m.ICMP.Code != nil {
			g.emit(ldb(asm.R1, oICMPCode), asm.JNE.Imm(asm.R1, int32(*m.ICMP.Code), fail))
		}
	}
	if m.NotICMP != nil {
		is, pass := g.fresh("noticmp_is"), g.fresh("noticmp_pass")
		g.emit(ldb(asm.R1, oProto), asm.JEq.Imm(asm.R1, 1, is), asm.JNE.Imm(asm.R1, 58, pass))
		g.label(is)
		g.emit(ldb(asm.R1, oICMPType), asm.JNE.Imm(asm.R1, int32(m.NotICMP.Type), pass))
		if m.NotICMP.Code != nil {
			g.emit(ldb(asm.R1, oICMPCode), asm.JNE.Imm(asm.R1, int32(*m.NotICMP.Code), pass))
		}
		g.emit(asm.Ja.Label(fail))
		g.label(pass)
	}
	g.peer(&m.Src, oSetSrc, oNPSrc, oSport, ids, fail)
	g.peer(&m.Dst, oSetDst, oNPDst, oDport, ids, fail)
}

func (g *gen) peer(pm *compile.PeerMatch, setKey, npKey, portOff int16, ids idOf, fail string) {
	for _, id := range pm.Sets {
		g.emit(stiw(setKey+4, int64(int32(ids(string(id))))))
		g.lookup(refSets, int32(setKey))
		g.emit(asm.JEq.Imm(asm.R0, 0, fail))
	}
	for _, id := range pm.NotSets {
		g.emit(stiw(setKey+4, int64(int32(ids(string(id))))))
		g.lookup(refSets, int32(setKey))
		g.emit(asm.JNE.Imm(asm.R0, 0, fail))
	}
	if len(pm.Ports) > 0 || len(pm.NamedPorts) > 0 {
		ok := g.fresh("ports_ok")
		g.emit(ldb(asm.R1, oHasPorts), asm.JEq.Imm(asm.R1, 0, fail))
		g.ranges(pm.Ports, portOff, ok)
		for _, id := range pm.NamedPorts {
			g.emit(stiw(npKey, int64(int32(ids(string(id))))))
			g.lookup(refPorts, int32(npKey))
			g.emit(asm.JNE.Imm(asm.R0, 0, ok))
		}
		g.emit(asm.Ja.Label(fail))
		g.label(ok)
	}
	if len(pm.NotPorts) > 0 || len(pm.NotNamedPorts) > 0 {
		g.emit(ldb(asm.R1, oHasPorts), asm.JEq.Imm(asm.R1, 0, fail))
		g.ranges(pm.NotPorts, portOff, fail)
		for _, id := range pm.NotNamedPorts {
			g.emit(stiw(npKey, int64(int32(ids(string(id))))))
			g.lookup(refPorts, int32(npKey))
			g.emit(asm.JNE.Imm(asm.R0, 0, fail))
		}
	}
}

// ranges jumps to in when the port at portOff is in one of rs.
func (g *gen) ranges(rs []compile.PortRange, portOff int16, in string) {
	if len(rs) == 0 {
		return
	}
	g.emit(ldh(asm.R1, portOff))
	for _, r := range rs {
		if r.Min == r.Max {
			g.emit(asm.JEq.Imm(asm.R1, int32(r.Min), in))
			continue
		}
		next := g.fresh("range_next")
		g.emit(asm.JLT.Imm(asm.R1, int32(r.Min), next), asm.JLE.Imm(asm.R1, int32(r.Max), in))
		g.label(next)
	}
}

// denyAll is what an unknown workload interface gets: nothing passes.
// With events, every packet is reported (interface and hook only: the
// program parses nothing).
func denyAllProgram(h hook, events bool) asm.Instructions {
	if !events {
		return asm.Instructions{asm.Mov.Imm(asm.R0, tcxDrop), asm.Return()}
	}
	g := newGen()
	const ev = -eventSize - 8 // the event on the stack; R10-8 is the counter's key
	g.emit(asm.Mov.Reg(rCtx, asm.R1), asm.Mov.Imm(asm.R1, 0))
	for off := int16(0); off < eventSize; off += 8 {
		g.emit(asm.StoreMem(asm.R10, ev+off, asm.R1, asm.DWord))
	}
	g.emit(asm.LoadImm(asm.R1, idFailClosed, asm.DWord), asm.StoreMem(asm.R10, ev, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, rCtx, skbIfindex, asm.Word), asm.StoreMem(asm.R10, ev+8, asm.R1, asm.Word),
		asm.StoreImm(asm.R10, ev+12, int64(h), asm.Byte),
		asm.StoreImm(asm.R10, ev+15, int64(compile.ActionDeny), asm.Byte),
		mapPtr(asm.R1, refEvents), asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, ev),
		asm.Mov.Imm(asm.R3, eventSize), asm.Mov.Imm(asm.R4, 0), asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, "done"))
	g.countLost("done")
	g.label("done")
	g.ret(tcxDrop)
	insns, _ := g.finish()
	return insns
}

// runRuleEntries are the LPM keys of rule i of a run.
func runRuleEntries(rs *compile.Ruleset, ru *run, i int, id uint32, add func([lpmKeySize]byte)) {
	r := ru.rules[i]
	m := &r.Match
	set := m.Src.Sets
	if ru.side == 1 {
		set = m.Dst.Sets
	}
	nets := anyAddress()
	if len(set) > 0 {
		nets = rs.Sets[set[0]].Nets
	}
	for _, n := range nets {
		fam, addr, bits := lpmPrefix(n)
		if m.IPVersion != 0 && m.IPVersion != fam {
			continue
		}
		switch {
		case len(m.Dst.Ports) > 0:
			for _, pr := range m.Dst.Ports {
				for p := int(pr.Min); p <= int(pr.Max); p++ {
					add(lpmKey(id, fam, m.Protocol, uint16(p), addr, bits))
				}
			}
		case m.Protocol != 0:
			add(lpmKey(id, fam|famProto, m.Protocol, 0, addr, bits))
		default:
			add(lpmKey(id, fam|famAnyProto, 0, 0, addr, bits))
		}
	}
}

// fibLookup looks the packet up in the FIB, as routed from the interface
// it arrived on, and leaves bpf_fib_lookup's result in R0.
func (g *gen) fibLookup() {
	v6, call := g.fresh("fib_v6"), g.fresh("fib_call")
	g.emit(asm.Mov.Imm(asm.R1, 0))
	for off := int16(0); off < 64; off += 8 {
		g.emit(asm.StoreMem(rS, oFib+off, asm.R1, asm.DWord))
	}
	g.emit(ldb(asm.R1, oProto), stb(oFib+1, asm.R1),
		asm.LoadMem(asm.R1, rCtx, skbIfindex, asm.Word), stw(oFib+8, asm.R1),
		ldb(asm.R1, oFam), asm.JEq.Imm(asm.R1, 6, v6),
		stib(oFib, 2))
	g.copyWords(oSetSrc+12, 1, oFib+16)
	g.copyWords(oSetDst+12, 1, oFib+32)
	g.emit(asm.Ja.Label(call))
	g.label(v6)
	g.emit(stib(oFib, 10))
	g.copyWords(oSetSrc+12, 4, oFib+16)
	g.copyWords(oSetDst+12, 4, oFib+32)
	g.label(call)
	g.emit(asm.Mov.Reg(asm.R1, rCtx), asm.Mov.Reg(asm.R2, rS), asm.Add.Imm(asm.R2, oFib),
		asm.Mov.Imm(asm.R3, 64), asm.Mov.Imm(asm.R4, 0), asm.FnFibLookup.Call())
}

package ebpf

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/calyxnet/calyx/compile"
)

// attachKey names one attachment: an interface and a hook.
type attachKey struct {
	iface string
	hook  hook
}

func (k attachKey) String() string { return k.iface + "/" + k.hook.String() }

// cmpAttach orders attach keys by interface, then hook (ingress first),
// without building their strings.
func cmpAttach(x, y attachKey) int {
	if c := strings.Compare(x.iface, y.iface); c != 0 {
		return c
	}
	return int(x.hook) - int(y.hook)
}

// plan is everything one Ruleset asks of the kernel: programs by
// fingerprint, which program each interface and hook runs, and the entries
// of the set maps.
type plan struct {
	progs  map[string]*progSpec
	attach map[attachKey]string // → program fingerprint
	owner  map[attachKey]string // → endpoint key
	// sets holds each set's and run's entries by name; raw plans (read
	// back from the kernel) have flat maps only.
	sets map[string]*setEntries
	raw  bool
	lpm  map[[lpmKeySize]byte]string
	np   map[[npKeySize]byte]string
	used map[string]bool // set and run names the programs refer to
	// hostAny are the programs of a host endpoint for every host
	// interface (Interface "*" or ""), expanded by hostLinks.
	hostAny []hostAny
	// refs are the event IDs of each program, by fingerprint.
	refs map[string]map[uint64]stepRef
}

// setEntries are the map entries of one set or run.
type setEntries struct {
	src *compile.IPSet // nil for a run
	id  uint32
	lpm [][lpmKeySize]byte
	np  [][npKeySize]byte
	// delta, when set, is how these entries differ from from's: what a
	// membership change did to a run, without comparing all its entries.
	delta *entryDelta
	// parts, for a run, are its entries rule by rule; keys joins them
	// when asked.
	parts [][][lpmKeySize]byte
	// vals are the values of lpm, for a dispatch; nil: every value is 1.
	vals []uint32
}

// keys returns the LPM entries.
func (e *setEntries) keys() [][lpmKeySize]byte {
	if e.lpm == nil && e.parts != nil {
		for _, p := range e.parts {
			e.lpm = append(e.lpm, p...)
		}
	}
	return e.lpm
}

type entryDelta struct {
	from     *setEntries
	add, del [][lpmKeySize]byte
}

// flat returns every entry of p, by key, with the set it belongs to.
func (p *plan) flat() (map[[lpmKeySize]byte]string, map[[npKeySize]byte]string) {
	if p.raw || p.lpm != nil {
		return p.lpm, p.np
	}
	p.lpm, p.np = map[[lpmKeySize]byte]string{}, map[[npKeySize]byte]string{}
	for name, e := range p.sets {
		for _, k := range e.keys() {
			p.lpm[k] = name
		}
		for _, k := range e.np {
			p.np[k] = name
		}
	}
	return p.lpm, p.np
}

// ids hands out the 32-bit IDs map keys carry for set and run names. An
// ID stays with its name while programs use it, so a membership change
// only touches map entries.
type ids struct {
	byName map[string]uint32
	used   map[uint32]bool
	next   uint32
	// adopted are IDs a previous backend recorded, by hash of the name,
	// not claimed yet.
	adopted map[[32]byte]uint32
	// put and del are what the meta map lacks: names given an ID and keys
	// released since the last write.
	put []string
	del [][32]byte
}

func newIDs() *ids { return &ids{byName: map[string]uint32{}, used: map[uint32]bool{}, next: 1} }

func (x *ids) clone() *ids {
	c := &ids{byName: maps.Clone(x.byName), used: maps.Clone(x.used), next: x.next, adopted: maps.Clone(x.adopted),
		put: slices.Clone(x.put), del: slices.Clone(x.del)}
	return c
}

func idKey(name string) [32]byte { return sha256.Sum256([]byte("id:" + name)) }

func (x *ids) get(name string) uint32 {
	if id, ok := x.byName[name]; ok {
		return id
	}
	if id, ok := x.adopted[idKey(name)]; ok {
		delete(x.adopted, idKey(name))
		x.byName[name] = id
		return id
	}
	for x.used[x.next] || x.next == 0 {
		x.next++
	}
	id := x.next
	x.next++
	x.byName[name] = id
	x.used[id] = true
	x.put = append(x.put, name)
	return id
}

// release forgets the names not in keep, and adopted IDs nobody claimed.
func (x *ids) release(keep map[string]bool) {
	if len(keep) == len(x.byName) && len(x.adopted) == 0 {
		return // every name is kept
	}
	for name, id := range x.byName {
		if !keep[name] {
			delete(x.byName, name)
			delete(x.used, id)
			x.del = append(x.del, idKey(name))
		}
	}
	for k, id := range x.adopted {
		delete(x.used, id)
		x.del = append(x.del, k)
	}
	x.adopted = nil
}

// missingPolicies names the policies dp refers to that rs lacks.
func missingPolicies(rs *compile.Ruleset, dp *compile.DirectionPolicy) string {
	var out []string
	for _, t := range dp.Tiers {
		for _, id := range t.Policies {
			if rs.Policies[id] == nil {
				out = append(out, "unknown policy "+string(id))
			}
		}
	}
	for _, id := range dp.Profiles {
		if rs.Policies[id] == nil {
			out = append(out, "unknown profile "+string(id))
		}
	}
	return strings.Join(out, ", ")
}

// setsPresent reports whether every set a cached program reads is still
// in rs.
func setsPresent(rs *compile.Ruleset, used []string) bool {
	for _, n := range used {
		if strings.HasPrefix(n, "run:") || strings.HasPrefix(n, "dispatch:") {
			continue
		}
		if _, ok := rs.Sets[compile.SetID(n)]; !ok {
			return false
		}
	}
	return true
}

// validatePolicies checks that every set the policies' rules refer to is
// in rs.
func validatePolicies(rs *compile.Ruleset, pols []*compile.Policy) error {
	var problems []string
	for _, p := range pols {
		for i := range p.Rules {
			m := &p.Rules[i].Match
			for _, pm := range []*compile.PeerMatch{&m.Src, &m.Dst} {
				for _, list := range [][]compile.SetID{pm.Sets, pm.NotSets, pm.NamedPorts, pm.NotNamedPorts} {
					for _, id := range list {
						if _, ok := rs.Sets[id]; !ok {
							problems = append(problems, fmt.Sprintf("policy %s rule %d: unknown set %s", p.ID, i, id))
						}
					}
				}
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidRuleset, strings.Join(problems, "; "))
	}
	return nil
}

// dpIdentity is a direction's lists by identity: two directions whose
// tiers share policy lists (same backing arrays) have the same contents
// (the IR is read-only). Up to four tiers; longer lists go by contents.
type dpIdentity struct {
	t  [4]tierIdentity
	nt int
	// Profiles are short lists, often built per endpoint: by value.
	profiles [2]compile.PolicyID
	np       int
	h        hook
}

type tierIdentity struct {
	tier string
	end  compile.Action
	pols *compile.PolicyID
	n    int
}

func identity(dp *compile.DirectionPolicy, h hook) (dpIdentity, bool) {
	id := dpIdentity{nt: len(dp.Tiers), np: len(dp.Profiles), h: h}
	if len(dp.Tiers) > len(id.t) {
		return id, false
	}
	for i, t := range dp.Tiers {
		id.t[i] = tierIdentity{tier: t.Tier, end: t.EndAction, n: len(t.Policies)}
		if len(t.Policies) > 0 {
			id.t[i].pols = &t.Policies[0]
		}
	}
	if len(dp.Profiles) > len(id.profiles) {
		return id, false
	}
	copy(id.profiles[:], dp.Profiles)
	return id, true
}

// dpKey identifies a direction's code: equal keys generate equal programs
// within one Ruleset.
func dpKey(dp *compile.DirectionPolicy, h hook) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|", h)
	for _, t := range dp.Tiers {
		fmt.Fprintf(&b, "%s:%d:", t.Tier, t.EndAction)
		for _, p := range t.Policies {
			b.WriteString(string(p))
			b.WriteByte(',')
		}
		b.WriteByte(';')
	}
	b.WriteString("|")
	for _, p := range dp.Profiles {
		b.WriteString(string(p))
		b.WriteByte(',')
	}
	return b.String()
}

// progCache keeps the programs of the last plan, so that a Ruleset that
// differs a little from the last one costs little: a new pod on a node
// with 10,000 policies must not regenerate them all. An entry is valid
// while the policies it was generated from are the same values (the IR is
// read-only: the compiler shares unchanged policies between Rulesets).
type progCache struct {
	entries map[string]*cachedProg
	// idents are the program keys of the last plan's directions by the
	// identity of their lists (dpIdentity holds a pointer into a tier's
	// policy list, which keeps it alive, so an identity is never reused
	// by another list), with the policies they named: a direction whose
	// lists and policies are the same skips dpKey.
	idents map[dpIdentity]identEntry
	sets   map[*compile.IPSet]*setEntries
	runs   map[*run]*cachedRun
	// setPtr is the last plan's Ruleset.Sets (read-only, as the IR is):
	// comparing values by identity tells which sets changed.
	setPtr map[compile.SetID]*compile.IPSet
}

// cachedRun is a run's entries, rule by rule, and the set values they
// were made from: a membership change recomputes the rules of that set.
type cachedRun struct {
	ids  []compile.SetID // the set each rule reads ("" for any address)
	sets []*compile.IPSet
	per  [][][lpmKeySize]byte
	e    *setEntries
	// count says how many rules of the run make each entry.
	count map[[lpmKeySize]byte]int32
}

// runSetIDs lists the set each rule of a run reads ("" for any address).
func runSetIDs(r *run) []compile.SetID {
	out := make([]compile.SetID, 0, len(r.rules))
	for _, ru := range r.rules {
		ids := ru.Match.Src.Sets
		if r.side == 1 {
			ids = ru.Match.Dst.Sets
		}
		if len(ids) == 0 {
			out = append(out, "")
			continue
		}
		out = append(out, ids[0])
	}
	return out
}

// anyChanged reports whether one of ids is in changed.
func anyChanged(ids []compile.SetID, changed map[compile.SetID]bool) bool {
	if len(changed) == 0 {
		return false
	}
	for _, id := range ids {
		if changed[id] {
			return true
		}
	}
	return false
}

// identEntry is a direction's program key and the policies it was made
// from.
type identEntry struct {
	mk               string
	pols             []*compile.Policy
	hostDeny, events bool
}

type cachedProg struct {
	pols []*compile.Policy
	ps   *progSpec
	used []string
	refs map[uint64]stepRef
}

func newProgCache() *progCache {
	return &progCache{entries: map[string]*cachedProg{}, idents: map[dpIdentity]identEntry{}, sets: map[*compile.IPSet]*setEntries{}, runs: map[*run]*cachedRun{}}
}

// policiesOf lists the policies a direction refers to, in order.
func policiesOf(rs *compile.Ruleset, dp *compile.DirectionPolicy) []*compile.Policy {
	var out []*compile.Policy
	for _, t := range dp.Tiers {
		for _, id := range t.Policies {
			out = append(out, rs.Policies[id])
		}
	}
	for _, id := range dp.Profiles {
		out = append(out, rs.Policies[id])
	}
	return out
}

// makePlan generates the programs and map entries rs needs; cache (may be
// nil) holds programs of the last plan and receives this one's.
func makePlan(rs *compile.Ruleset, x *ids, cfg config, cache ...*progCache) (*plan, error) {
	var pc *progCache
	if len(cache) > 0 {
		pc = cache[0]
	}
	next := newProgCache()
	// Sets whose value changed since the last plan (nil: unknown).
	var changed map[compile.SetID]bool
	if pc != nil && pc.setPtr != nil {
		changed = map[compile.SetID]bool{}
		for id, s := range rs.Sets {
			if pc.setPtr[id] != s {
				changed[id] = true
			}
		}
		for id := range pc.setPtr {
			if _, ok := rs.Sets[id]; !ok {
				changed[id] = true
			}
		}
	}
	if pc != nil {
		next.setPtr = rs.Sets
	}
	p := &plan{
		progs:  map[string]*progSpec{},
		attach: map[attachKey]string{},
		owner:  map[attachKey]string{},
		sets:   map[string]*setEntries{},
		used:   map[string]bool{},
		refs:   map[string]map[uint64]stepRef{},
	}
	runs := map[string]*run{}
	idf := func(name string) uint32 {
		p.used[name] = true
		return x.get(name)
	}
	memo := map[string]string{}
	fast := map[dpIdentity]string{}
	keys := make([]string, 0, len(rs.Endpoints))
	for k := range rs.Endpoints {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	cfg.hostDeny = rs.Settings.DefaultEndpointToHostAction == compile.ActionDeny
	for _, key := range keys {
		ep := rs.Endpoints[key]
		if ep.Kind != compile.WorkloadEndpoint || ep.Interface == "" {
			continue
		}
		for _, d := range []struct {
			dp *compile.DirectionPolicy
			h  hook
		}{{&ep.Egress, hookIngress}, {&ep.Ingress, hookEgress}} {
			ak := attachKey{ep.Interface, d.h}
			if prev, dup := p.owner[ak]; dup {
				return nil, fmt.Errorf("%w: endpoints %s and %s share interface %s", ErrInvalidRuleset, prev, key, ep.Interface)
			}
			p.owner[ak] = key
			// Endpoints of a namespace usually share their lists: same
			// slices, same program, no need to look at the contents.
			fk, fkOK := identity(d.dp, d.h)
			if fp, ok := fast[fk]; ok && fkOK {
				p.attach[ak] = fp
				continue
			}
			// The same lists as in the last plan, with the same policies:
			// the same key, without spelling it out again.
			var mk string
			var pols []*compile.Policy
			if fkOK && pc != nil {
				if ie, ok := pc.idents[fk]; ok && ie.hostDeny == cfg.hostDeny && ie.events == cfg.events {
					pols = policiesOf(rs, d.dp)
					if slices.Equal(ie.pols, pols) {
						mk = ie.mk
					}
				}
			}
			if mk == "" {
				mk = dpKey(d.dp, d.h) + "|" + fmt.Sprint(cfg.hostDeny, cfg.events)
			}
			if fp, ok := memo[mk]; ok {
				p.attach[ak] = fp
				if fkOK {
					fast[fk] = fp
				}
				continue
			}
			if pols == nil {
				pols = policiesOf(rs, d.dp)
			}
			if fkOK && pc != nil && !slices.Contains(pols, nil) {
				next.idents[fk] = identEntry{mk: mk, pols: pols, hostDeny: cfg.hostDeny, events: cfg.events}
			}
			if slices.Contains(pols, nil) {
				return nil, fmt.Errorf("%w: endpoint %s: %s", ErrInvalidRuleset, key, missingPolicies(rs, d.dp))
			}
			var ps *progSpec
			if pc != nil {
				if c, ok := pc.entries[mk]; ok && slices.Equal(c.pols, pols) && setsPresent(rs, c.used) {
					ps = c.ps
					for _, n := range c.used {
						idf(n)
					}
					p.refs[ps.fp] = c.refs
					next.entries[mk] = c
				}
			}
			if ps == nil {
				if err := validatePolicies(rs, pols); err != nil {
					return nil, err
				}
				used := map[string]bool{}
				refs := map[uint64]stepRef{}
				var err error
				ps, err = genProgram(rs, d.dp, d.h, cfg, func(name string) uint32 { used[name] = true; return idf(name) }, refs)
				if err != nil {
					return nil, fmt.Errorf("endpoint %s %s: %w", key, d.h, err)
				}
				p.refs[ps.fp] = refs
				next.entries[mk] = &cachedProg{pols: pols, ps: ps, used: slices.Sorted(maps.Keys(used)), refs: refs}
			}
			for _, r := range ps.runs {
				runs[r.name] = r
			}
			memo[mk] = ps.fp
			if fkOK {
				fast[fk] = ps.fp
			}
			p.progs[ps.fp] = ps
			p.attach[ak] = ps.fp
		}
	}
	if err := planHosts(rs, p, cfg, idf, runs, pc, next); err != nil {
		return nil, err
	}
	if pc != nil {
		pc.entries, pc.idents = next.entries, next.idents
	}
	// Map entries of every set and run the programs use; unchanged sets
	// (the same value as last time) reuse their entries.
	for name := range p.used {
		id := x.get(name)
		if r, ok := runs[name]; ok && r.dispatch {
			if pc != nil {
				if c, ok := pc.runs[r]; ok && c.e.id == id {
					next.runs[r] = c
					p.sets[name] = c.e
					continue
				}
			}
			e := &setEntries{id: id}
			e.lpm, e.vals = dispatchEntries(r, id)
			p.sets[name] = e
			if pc != nil {
				next.runs[r] = &cachedRun{e: e}
			}
			continue
		}
		if r, ok := runs[name]; ok {
			var prev *cachedRun
			if pc != nil {
				if c, ok := pc.runs[r]; ok && c.e.id == id {
					prev = c
				}
			}
			if prev != nil && changed != nil && !anyChanged(prev.ids, changed) {
				next.runs[r] = prev
				p.sets[name] = prev.e
				continue
			}
			var ids []compile.SetID
			if prev != nil {
				ids = prev.ids
			} else {
				ids = runSetIDs(r)
			}
			sets := make([]*compile.IPSet, len(ids))
			for i, sid := range ids {
				switch {
				case sid == "":
				case prev != nil && changed != nil && !changed[sid]:
					sets[i] = prev.sets[i]
				default:
					sets[i] = rs.Sets[sid]
				}
			}
			if prev != nil && slices.Equal(prev.sets, sets) {
				next.runs[r] = prev
				p.sets[name] = prev.e
				continue
			}
			if prev != nil && prev.count == nil {
				prev = nil // its counts went to a later plan: start afresh
			}
			c := &cachedRun{ids: ids, sets: sets, per: make([][][lpmKeySize]byte, len(r.rules)), e: &setEntries{id: id}}
			if prev != nil {
				// Only the rules whose set changed: count what they add
				// and drop, and keep the difference.
				c.count = prev.count
				prev.count = nil // owned by c from now on
				before := map[[lpmKeySize]byte]bool{}
				for i := range r.rules {
					if prev.sets[i] == sets[i] {
						c.per[i] = prev.per[i]
						continue
					}
					runRuleEntries(rs, r, i, id, func(k [lpmKeySize]byte) { c.per[i] = append(c.per[i], k) })
					for _, k := range prev.per[i] {
						if _, seen := before[k]; !seen {
							before[k] = c.count[k] > 0
						}
						c.count[k]--
					}
					for _, k := range c.per[i] {
						if _, seen := before[k]; !seen {
							before[k] = c.count[k] > 0
						}
						c.count[k]++
					}
				}
				d := &entryDelta{from: prev.e}
				for k, was := range before {
					now := c.count[k] > 0
					if c.count[k] <= 0 {
						delete(c.count, k)
					}
					switch {
					case now && !was:
						d.add = append(d.add, k)
					case was && !now:
						d.del = append(d.del, k)
					}
				}
				c.e.delta = d
			} else {
				c.count = map[[lpmKeySize]byte]int32{}
				for i := range r.rules {
					runRuleEntries(rs, r, i, id, func(k [lpmKeySize]byte) { c.per[i] = append(c.per[i], k) })
					for _, k := range c.per[i] {
						c.count[k]++
					}
				}
			}
			c.e.parts = c.per
			p.sets[name] = c.e
			if pc != nil {
				next.runs[r] = c
			}
			continue
		}
		s := rs.Sets[compile.SetID(name)]
		if s == nil {
			continue
		}
		if pc != nil {
			if e, ok := pc.sets[s]; ok && e.id == id {
				next.sets[s] = e
				p.sets[name] = e
				continue
			}
		}
		e := &setEntries{src: s, id: id}
		for _, n := range s.Nets {
			fam, addr, bits := lpmPrefix(n)
			e.lpm = append(e.lpm, lpmKey(id, fam, 0, 0, addr, bits))
		}
		for _, m := range s.Ports {
			fam, addr := addrKey(m.Addr)
			e.np = append(e.np, npKey(id, fam, m.Protocol, m.Port, addr))
		}
		next.sets[s] = e
		p.sets[name] = e
	}
	if pc != nil {
		pc.sets, pc.runs, pc.setPtr = next.sets, next.runs, next.setPtr
	}
	return p, nil
}

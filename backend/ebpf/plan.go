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

// plan is everything one Ruleset asks of the kernel: programs by
// fingerprint, which program each interface and hook runs, and the entries
// of the set maps.
type plan struct {
	progs  map[string]*progSpec
	attach map[attachKey]string // → program fingerprint
	owner  map[attachKey]string // → endpoint key
	lpm    map[[lpmKeySize]byte]string
	np     map[[npKeySize]byte]string
	used   map[string]bool // set and run names the programs refer to
	refs   map[uint64]RuleRef
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
}

func newIDs() *ids { return &ids{byName: map[string]uint32{}, used: map[uint32]bool{}, next: 1} }

func (x *ids) clone() *ids {
	c := &ids{byName: maps.Clone(x.byName), used: maps.Clone(x.used), next: x.next, adopted: maps.Clone(x.adopted)}
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
	return id
}

// release forgets the names not in keep, and adopted IDs nobody claimed;
// it returns the meta keys to delete.
func (x *ids) release(keep map[string]bool) [][32]byte {
	var gone [][32]byte
	for name, id := range x.byName {
		if !keep[name] {
			delete(x.byName, name)
			delete(x.used, id)
			gone = append(gone, idKey(name))
		}
	}
	for k, id := range x.adopted {
		delete(x.used, id)
		gone = append(gone, k)
	}
	x.adopted = nil
	return gone
}

// validate checks that every reference of rs resolves.
func validate(rs *compile.Ruleset) error {
	var problems []string
	check := func(where string, list []compile.SetID) {
		for _, id := range list {
			if _, ok := rs.Sets[id]; !ok {
				problems = append(problems, fmt.Sprintf("%s: unknown set %s", where, id))
			}
		}
	}
	for id, p := range rs.Policies {
		for i := range p.Rules {
			m := &p.Rules[i].Match
			w := fmt.Sprintf("policy %s rule %d", id, i)
			for _, pm := range []*compile.PeerMatch{&m.Src, &m.Dst} {
				check(w, pm.Sets)
				check(w, pm.NotSets)
				check(w, pm.NamedPorts)
				check(w, pm.NotNamedPorts)
			}
		}
	}
	for key, ep := range rs.Endpoints {
		for _, d := range []*compile.DirectionPolicy{&ep.Ingress, &ep.Egress} {
			for _, t := range d.Tiers {
				for _, id := range t.Policies {
					if _, ok := rs.Policies[id]; !ok {
						problems = append(problems, fmt.Sprintf("endpoint %s: unknown policy %s", key, id))
					}
				}
			}
			for _, id := range d.Profiles {
				if _, ok := rs.Policies[id]; !ok {
					problems = append(problems, fmt.Sprintf("endpoint %s: unknown profile %s", key, id))
				}
			}
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("%w: %s", ErrInvalidRuleset, strings.Join(problems, "; "))
	}
	return nil
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

// makePlan generates the programs and map entries rs needs.
func makePlan(rs *compile.Ruleset, x *ids, cfg config) (*plan, error) {
	if err := validate(rs); err != nil {
		return nil, err
	}
	p := &plan{
		progs:  map[string]*progSpec{},
		attach: map[attachKey]string{},
		owner:  map[attachKey]string{},
		lpm:    map[[lpmKeySize]byte]string{},
		np:     map[[npKeySize]byte]string{},
		used:   map[string]bool{},
		refs:   map[uint64]RuleRef{},
	}
	runs := map[string]*run{}
	idf := func(name string) uint32 {
		p.used[name] = true
		return x.get(name)
	}
	memo := map[string]string{}
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
			mk := dpKey(d.dp, d.h)
			if fp, ok := memo[mk]; ok {
				p.attach[ak] = fp
				continue
			}
			ps, err := genProgram(rs, d.dp, d.h, cfg, idf, p.refs)
			if err != nil {
				return nil, fmt.Errorf("endpoint %s %s: %w", key, d.h, err)
			}
			for _, r := range ps.runs {
				runs[r.name] = r
			}
			memo[mk] = ps.fp
			p.progs[ps.fp] = ps
			p.attach[ak] = ps.fp
		}
	}
	// Map entries of every set and run the programs use.
	for name := range p.used {
		id := x.get(name)
		if r, ok := runs[name]; ok {
			runEntries(rs, r, id, func(k [lpmKeySize]byte) { p.lpm[k] = name })
			continue
		}
		s := rs.Sets[compile.SetID(name)]
		if s == nil {
			continue
		}
		for _, n := range s.Nets {
			fam, addr, bits := lpmPrefix(n)
			p.lpm[lpmKey(id, fam, 0, 0, addr, bits)] = name
		}
		for _, m := range s.Ports {
			fam, addr := addrKey(m.Addr)
			p.np[npKey(id, fam, m.Protocol, m.Port, addr)] = name
		}
	}
	return p, nil
}

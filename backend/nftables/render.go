//go:build linux

package nftables

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/backend/internal/irmerge"
	"github.com/calyxnet/calyx/compile"
)

// Names of the fixed objects of the table.
const (
	chainFwdEgress  = "forward-egress"
	chainFwdIngress = "forward-ingress"
	chainInput      = "input"
	chainInputHost  = "input-host"
	chainOutput     = "output"
	mapEgress       = "egress"
	mapIngress      = "ingress"
	setPortProtos   = "l4-ports"
	// logGroup is the nflog group Log rules send to.
	logGroup = 1
)

// hook describes a base chain.
type hook struct {
	num      nftables.ChainHook
	prio     nftables.ChainPriority
	hookName string
	prioText string
}

// nchain is one chain of the desired (or observed) table.
type nchain struct {
	name  string
	base  *hook
	rules []*nrule
	// baseOK is set on an observed base chain whose type and policy are
	// what Calyx sets (filter, accept).
	baseOK bool
	// sets are the named constant sets the rules read (see namedSets):
	// wherever the chain goes, they go.
	sets []*nset
	// reads are the sets of the Ruleset the rules look up: they go
	// wherever the chain goes too, with the members of the Ruleset at
	// hand (see renderer.addChain).
	reads []setRef
}

// setRef names the kernel set of one family of a Ruleset set.
type setRef struct {
	id   compile.SetID
	name string
}

// nrule is one rule: its expressions, the anonymous sets they use, its
// nft text and its comment.
type nrule struct {
	exprs []expr.Any
	// anon maps an index of exprs (a Lookup) to the anonymous set it
	// reads; the Lookup is completed when the set is created.
	anon    map[int]*anonSet
	text    string
	comment string
	// terms, verdict and vtext are what the rule was built from, kept so
	// that rules can be merged (mergeRules); nil for rules read back.
	terms   []term
	verdict expr.Any
	vtext   string
	// sig is what Reconcile compares with what the kernel returns;
	// computed when first needed (signature).
	sig string
	// reads are the Ruleset's sets the rule looks up.
	reads []setRef
}

// signature returns the rule's fingerprint, computing it once.
func (ru *nrule) signature() string {
	if ru.sig == "" {
		ru.sig = exprSig(ru.exprs, ru.anon) + "|" + ru.comment
	}
	return ru.sig
}

// anonSet is the constant set one term looks values up in. It is
// rendered as a named set called by its content (see namedSets), shared by
// every rule that reads the same values.
type anonSet struct {
	keyType  nftables.SetDatatype
	interval bool
	concat   bool
	elems    []nftables.SetElement
	// texts prints each logical element, groups holds its kernel elements
	// (an interval of a plain interval set is a start and an end).
	texts  []string
	groups [][]nftables.SetElement
}

// nset is one named set or verdict map.
type nset struct {
	name     string
	keyType  nftables.SetDatatype
	interval bool
	concat   bool
	isMap    bool
	comment  string
	// constant sets never change (l4-ports).
	elems []nftables.SetElement
	// elemText prints each element as nft syntax, parallel to elems, one
	// entry per logical element (an interval is one entry).
	elemText []string
	// keys are fingerprints of the logical elements, parallel to elemText,
	// and groups maps each to its kernel elements (an interval is a start
	// and an end element).
	keys   []string
	groups [][]nftables.SetElement
}

// desired is a whole table.
type desired struct {
	chains map[string]*nchain
	sets   map[string]*nset
	// observed marks a table read back from the kernel; tableExists says
	// whether the kernel had it at all.
	observed, tableExists bool
}

var (
	hookFwdEgress  = &hook{*nftables.ChainHookForward, *nftables.ChainPriorityFilter, "forward", "filter"}
	hookFwdIngress = &hook{*nftables.ChainHookForward, *nftables.ChainPriorityFilter + 1, "forward", "filter + 1"}
	hookInput      = &hook{*nftables.ChainHookInput, *nftables.ChainPriorityFilter, "input", "filter"}
	hookInputHost  = &hook{*nftables.ChainHookInput, *nftables.ChainPriorityFilter + 1, "input", "filter + 1"}
	hookOutput     = &hook{*nftables.ChainHookOutput, *nftables.ChainPriorityFilter, "output", "filter"}
)

var baseChains = []string{chainFwdEgress, chainFwdIngress, chainInput, chainInputHost, chainOutput}

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// renderer turns one Ruleset into a desired table.
type renderer struct {
	rs  *compile.Ruleset
	out *desired
	// policyChains caches rendered policies: id → pieces of a tier chain.
	policyPieces map[compile.PolicyID][]*nrule
	profiles     map[compile.PolicyID]string
	cache        *renderCache // what this render produced
	oldCache     *renderCache // what the last one did
	fps          map[compile.PolicyID]string
	// tiers memoises tier chains within one render by the identity of the
	// policy list: endpoints of one namespace usually share it.
	tiers map[tierMemo][2]string
	// sets are the Ruleset's sets and the literal sets this render made
	// by merging rules.
	sets irmerge.Sets
}

type tierMemo struct {
	first     *compile.PolicyID
	n         int
	tier      string
	endAction compile.Action
}

// renderCache keeps what earlier renders produced, keyed by content, so
// rendering a Ruleset that differs a little from the last one costs little:
// a new pod on a node with 10,000 policies must not re-render them all.
type renderCache struct {
	policies map[string]*cachedPolicy // by fingerprint
	chains   map[string]*cachedChain  // tier, endpoint and profile chains by key
	ptrs     map[*compile.Policy]string
	// tiers holds tier chains by a hash of their policy values
	// (tierPtrKey).
	tiers map[uint64]*tierEntry
	seed  maphash.Seed
	// gen counts renders; entries below record the last one that saw
	// them, so that a render can tell what the previous one also had.
	gen uint64
	// sets holds the named sets rendered for each IPSet value; setIDs
	// the IDs the last render's Ruleset held (nIDs of them).
	sets   map[*compile.IPSet]*setEntry
	setIDs map[compile.SetID]struct{}
	// fams holds the families of every set ID a cached rendering may
	// have read (see scanSets).
	fams map[compile.SetID]famSet
	nIDs int
	// pols holds the policy values found valid since a set was last
	// removed, by the last render that held them; nPols counts the last
	// render's policies. polsSame says this render's policies are the
	// very values of the last one's.
	pols     map[*compile.Policy]*uint64
	nPols    int
	polsSame bool
	// lists holds tier policy lists (by identity) known to name only
	// existing policies, and the tier chains rendered for them; both are
	// dropped whenever the policies change.
	lists     map[listID]bool
	tierLists map[tierMemo]*tierEntry
	// nChains and nSets are how many the last render's table held.
	nChains, nSets int
	// logPrefix is the one every entry was rendered with.
	logPrefix string
}

// tierEntry remembers a tier chain rendered for a list of policies, with
// the policy values it was rendered from.
type tierEntry struct {
	name, key string
	pols      []*compile.Policy
	deps      []*nchain
}

type cachedPolicy struct {
	pieces []*nrule
	chains []*nchain
}

type cachedChain struct {
	name  string
	chain *nchain
}

func newRenderCache() *renderCache {
	return &renderCache{policies: map[string]*cachedPolicy{}, chains: map[string]*cachedChain{},
		ptrs: map[*compile.Policy]string{}, tiers: map[uint64]*tierEntry{}, seed: maphash.MakeSeed(),
		sets: map[*compile.IPSet]*setEntry{}, setIDs: map[compile.SetID]struct{}{}, fams: map[compile.SetID]famSet{},
		pols: map[*compile.Policy]*uint64{}, lists: map[listID]bool{}, tierLists: map[tierMemo]*tierEntry{}}
}

// setEntry is what was rendered for one IPSet value: nothing for one
// matched inline, and no set for a family the value has no member of.
type setEntry struct {
	made []*nset
	gen  uint64
	fams famSet
}

// famSet says which address families a set has members of, and so which
// of its kernel sets exist.
type famSet uint8

const (
	fam4 famSet = 1 << iota
	fam6
)

func famBit(fam uint8) famSet {
	if fam == 6 {
		return fam6
	}
	return fam4
}

// listID identifies a slice of policy IDs of a Ruleset. Rulesets are
// read-only, and the cache holding the pointer keeps the address from
// being reused.
type listID struct {
	first *compile.PolicyID
	n     int
}

// scanSets renders the sets of rs not rendered before, and returns
// whether any set ID of the last render is gone.
// It looks at each set's pointer, and at the ID only of values it has not
// seen in the last render: a new pod must not cost a string hash per set.
//
// reshaped holds the set IDs that now have members of a family they had
// none of when some cached rendering read them, or the other way round:
// rules read a set's families as they are, so the renderings of the
// policies that read them are stale. reshapedAll says every rendering may
// be.
func (c *renderCache) scanSets(rs *compile.Ruleset) (removed bool, reshaped map[compile.SetID]bool, reshapedAll bool) {
	g := c.gen
	kept := 0
	for id, s := range rs.Sets {
		e := c.sets[s]
		seenLast := e != nil && e.gen+1 == g
		if e == nil {
			made, fams := renderSet(s)
			e = &setEntry{made: made, fams: fams}
			c.sets[s] = e
		}
		e.gen = g
		if !seenLast {
			if f, had := c.fams[id]; had && f != e.fams {
				if reshaped == nil {
					reshaped = map[compile.SetID]bool{}
				}
				reshaped[id] = true
			}
			c.fams[id] = e.fams
		}
		if seenLast {
			kept++
		} else if _, had := c.setIDs[id]; had {
			kept++
		} else {
			c.setIDs[id] = struct{}{}
		}
	}
	if kept != c.nIDs {
		removed = true
		c.setIDs = make(map[compile.SetID]struct{}, len(rs.Sets))
		for id := range rs.Sets {
			c.setIDs[id] = struct{}{}
		}
	}
	c.nIDs = len(rs.Sets)
	if len(c.sets) > 2*len(rs.Sets)+256 {
		for s, e := range c.sets {
			if e.gen != g {
				delete(c.sets, s)
			}
		}
	}
	if len(c.fams) > 2*len(rs.Sets)+256 {
		// Forgetting an ID's families would let a rendering that read
		// them outlive a change of them: start the renderings over.
		reshapedAll = true
		c.fams = make(map[compile.SetID]famSet, len(rs.Sets))
		for id, s := range rs.Sets {
			c.fams[id] = c.sets[s].fams
		}
	}
	return removed, reshaped, reshapedAll
}

// forgetReaders drops the cached renderings that read a set of changed
// (all of them if all): the fingerprints of their policies, found by
// pointer, and the tier chains holding them, found by their policies'
// pointers. Rendered policies and chains stay: they are found by
// fingerprints, which name the families of the sets read.
func (c *renderCache) forgetReaders(changed map[compile.SetID]bool, all bool) {
	if all {
		c.ptrs = map[*compile.Policy]string{}
		c.tiers = map[uint64]*tierEntry{}
		c.tierLists = map[tierMemo]*tierEntry{}
		return
	}
	known := map[*compile.Policy]bool{}
	reads := func(p *compile.Policy) bool {
		v, ok := known[p]
		if !ok {
			v = policyReads(p, changed)
			known[p] = v
		}
		return v
	}
	for p := range c.ptrs {
		if reads(p) {
			delete(c.ptrs, p)
		}
	}
	for k, e := range c.tiers {
		if slices.ContainsFunc(e.pols, reads) {
			delete(c.tiers, k)
		}
	}
	for k, e := range c.tierLists {
		if slices.ContainsFunc(e.pols, reads) {
			delete(c.tierLists, k)
		}
	}
}

// policyReads reports whether a rule of p reads a set of ids.
func policyReads(p *compile.Policy, ids map[compile.SetID]bool) bool {
	for i := range p.Rules {
		m := &p.Rules[i].Match
		for _, l := range [][]compile.SetID{m.Src.Sets, m.Src.NotSets, m.Dst.Sets, m.Dst.NotSets,
			m.Src.NamedPorts, m.Src.NotNamedPorts, m.Dst.NamedPorts, m.Dst.NotNamedPorts} {
			for _, id := range l {
				if ids[id] {
					return true
				}
			}
		}
	}
	return false
}

// render builds the desired table for rs. It fails if rs refers to a set
// or policy it does not hold.
func render(rs *compile.Ruleset) (*desired, error) {
	return renderCached(rs, nil)
}

// renderCached renders rs reusing (and refilling) cache; a nil cache
// renders everything afresh. Entries rs no longer uses are dropped.
func renderCached(rs *compile.Ruleset, cache *renderCache) (*desired, error) {
	if cache == nil {
		cache = newRenderCache()
	}
	if cache.logPrefix != rs.Settings.LogPrefix || len(cache.policies) > 4*len(rs.Policies)+1000 ||
		len(cache.tiers) > 4*len(rs.Endpoints)+1000 {
		// Entries of a different log prefix, or too many dead ones: start
		// over (memory only; correctness never depends on the cache).
		// Before the sets are scanned: rules read their entries.
		*cache = *newRenderCache()
		cache.logPrefix = rs.Settings.LogPrefix
	}
	cache.gen++
	removed, reshaped, reshapedAll := cache.scanSets(rs)
	if reshaped != nil || reshapedAll {
		// Even if rs is refused: scanSets has recorded the new families.
		cache.forgetReaders(reshaped, reshapedAll)
	}
	if err := validate(rs, cache, removed); err != nil {
		return nil, err
	}
	r := &renderer{
		rs:           rs,
		sets:         irmerge.Sets{RS: rs},
		out:          &desired{chains: make(map[string]*nchain, cache.nChains), sets: make(map[string]*nset, cache.nSets)},
		policyPieces: map[compile.PolicyID][]*nrule{},
		profiles:     map[compile.PolicyID]string{},
		fps:          map[compile.PolicyID]string{},
		tiers:        map[tierMemo][2]string{},
		cache:        cache,
		oldCache:     cache,
	}
	r.addPortProtos()
	egress := &nset{name: mapEgress, keyType: nftables.TypeIFName, isMap: true, comment: "pod egress by host-side interface"}
	ingress := &nset{name: mapIngress, keyType: nftables.TypeIFName, isMap: true, comment: "pod ingress by host-side interface"}
	var hosts []*compile.Endpoint
	for _, key := range sortedKeys(rs.Endpoints) {
		ep := rs.Endpoints[key]
		if ep.Kind == compile.HostEndpoint {
			hosts = append(hosts, ep)
			continue
		}
		if ep.Kind != compile.WorkloadEndpoint || ep.Interface == "" {
			continue
		}
		addVerdictElem(egress, ep.Interface, r.endpointChain(&ep.Egress, key, compile.Egress))
		addVerdictElem(ingress, ep.Interface, r.endpointChain(&ep.Ingress, key, compile.Ingress))
	}
	r.out.sets[egress.name] = egress
	r.out.sets[ingress.name] = ingress
	r.addBaseChains(r.addHostChains(hosts))
	// Size the next render's maps: growing maps of 20,000 entries costs
	// more than filling them.
	cache.nChains, cache.nSets = len(r.out.chains), len(r.out.sets)
	return r.out, nil
}

// validate checks that rs refers only to sets and policies it holds. A
// policy value found valid before is not walked again unless a set was
// removed since (removed); a policy list seen before is not walked again
// while the policies stay the same values.
func validate(rs *compile.Ruleset, c *renderCache, removed bool) error {
	var problems []string
	if removed || len(c.pols) > 2*len(rs.Policies)+1000 {
		c.pols = make(map[*compile.Policy]*uint64, len(rs.Policies))
	}
	same := len(rs.Policies) == c.nPols
	for id, p := range rs.Policies {
		// One look-up per policy: the entry is updated in place.
		g := c.pols[p]
		if g == nil {
			if probs := policyProblems(id, p, rs); len(probs) > 0 {
				problems = append(problems, probs...)
				same = false
				continue
			}
			g = new(uint64)
			c.pols[p] = g
		}
		if *g+1 != c.gen {
			same = false
		}
		*g = c.gen
	}
	c.nPols = len(rs.Policies)
	c.polsSame = same && len(problems) == 0
	if !c.polsSame || len(c.lists) > 4*len(rs.Endpoints)+1000 {
		c.lists = map[listID]bool{}
		c.tierLists = map[tierMemo]*tierEntry{}
	}
	for key, ep := range rs.Endpoints {
		for _, d := range [2]*compile.DirectionPolicy{&ep.Ingress, &ep.Egress} {
			for _, t := range d.Tiers {
				// Endpoints of a namespace share their lists: check each once.
				if len(t.Policies) == 0 {
					continue
				}
				l := listID{&t.Policies[0], len(t.Policies)}
				if c.lists[l] {
					continue
				}
				bad := false
				for _, id := range t.Policies {
					if _, ok := rs.Policies[id]; !ok {
						bad = true
						problems = append(problems, fmt.Sprintf("endpoint %s: unknown policy %s", key, id))
					}
				}
				if !bad {
					c.lists[l] = true
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

// policyProblems names every rule of p that reads a set rs lacks.
func policyProblems(id compile.PolicyID, p *compile.Policy, rs *compile.Ruleset) []string {
	var out []string
	missing := func(ids []compile.SetID) bool {
		for _, id := range ids {
			if _, ok := rs.Sets[id]; !ok {
				return true
			}
		}
		return false
	}
	for i := range p.Rules {
		m := &p.Rules[i].Match
		if missing(m.Src.Sets) || missing(m.Src.NotSets) || missing(m.Src.NamedPorts) || missing(m.Src.NotNamedPorts) ||
			missing(m.Dst.Sets) || missing(m.Dst.NotSets) || missing(m.Dst.NamedPorts) || missing(m.Dst.NotNamedPorts) {
			out = append(out, fmt.Sprintf("policy %s rule %d: unknown set", id, i))
		}
	}
	return out
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ---- sets ----

func setName(id compile.SetID, fam uint8) string {
	return "s-" + shortHash(string(id)) + "-" + strconv.Itoa(int(fam))
}

func namedPortSetName(id compile.SetID, fam uint8) string {
	return "np-" + shortHash(string(id)) + "-" + strconv.Itoa(int(fam))
}

var (
	typeNP4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	typeNP6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
)

func (r *renderer) addPortProtos() {
	s := &nset{name: setPortProtos, keyType: nftables.TypeInetProto, comment: "protocols with ports"}
	for _, p := range []uint8{6, 17, 132, 136} {
		addElem(s, protoText(p), []nftables.SetElement{{Key: []byte{p}}})
	}
	r.out.sets[s.name] = s
}

func addElem(s *nset, text string, group []nftables.SetElement) {
	key := elemKey(group)
	s.keys = append(s.keys, key)
	s.elemText = append(s.elemText, text)
	s.groups = append(s.groups, group)
	s.elems = append(s.elems, group...)
}

func elemKey(group []nftables.SetElement) string {
	var b strings.Builder
	for _, e := range group {
		b.WriteString(hex.EncodeToString(e.Key))
		if len(e.KeyEnd) > 0 {
			b.WriteString("-" + hex.EncodeToString(e.KeyEnd))
		}
		if e.IntervalEnd {
			b.WriteString("/end")
		}
		if e.VerdictData != nil {
			fmt.Fprintf(&b, ">%d:%s", e.VerdictData.Kind, e.VerdictData.Chain)
		}
		b.WriteByte(' ')
	}
	return b.String()
}

func addVerdictElem(s *nset, ifname, chain string) {
	group := []nftables.SetElement{{Key: ifnameKey(ifname), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}}
	// What elemKey would say, without hex-encoding the key: a map has one
	// element per interface name.
	s.keys = append(s.keys, ifname+">goto:"+chain)
	s.elemText = append(s.elemText, strconv.Quote(ifname)+" : goto "+chain)
	s.groups = append(s.groups, group)
	s.elems = append(s.elems, group...)
}

func ifnameKey(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

// inlined reports whether a set is matched inline rather than through
// named sets.
func inlined(s *compile.IPSet) bool {
	return s.Literal && s.Kind == compile.SetNets && len(s.Nets) <= inlineLimit
}

// renderSet renders the named sets of s, one per family it has members
// of, and says which families those are. A family with no member gets no
// kernel set: rules render its lookups as never true (see
// renderer.hasFamily).
func renderSet(s *compile.IPSet) ([]*nset, famSet) {
	var made []*nset
	var fams famSet
	comment := truncate(string(s.ID), 120)
	switch s.Kind {
	case compile.SetNamedPorts:
		for _, fam := range []uint8{4, 6} {
			ns := &nset{name: namedPortSetName(s.ID, fam), keyType: typeNP4, concat: true, comment: comment}
			if fam == 6 {
				ns.keyType = typeNP6
			}
			for _, m := range s.Ports {
				a := m.Addr.Unmap()
				if family(a) != fam {
					continue
				}
				key := concatKey(a.AsSlice(), []byte{m.Protocol}, binaryutil.BigEndian.PutUint16(m.Port))
				addElem(ns, fmt.Sprintf("%s . %s . %d", a, protoText(m.Protocol), m.Port), []nftables.SetElement{{Key: key}})
			}
			if len(ns.elems) > 0 {
				made = append(made, ns)
				fams |= famBit(fam)
			}
		}
	default: // nets and domains
		if inlined(s) {
			return nil, fam4 | fam6
		}
		for _, fam := range []uint8{4, 6} {
			ns := &nset{name: setName(s.ID, fam), keyType: nftables.TypeIPAddr, interval: true, comment: comment}
			if fam == 6 {
				ns.keyType = nftables.TypeIP6Addr
			}
			var pfx []netip.Prefix
			for _, n := range s.Nets {
				n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-unmapBits(n)).Masked()
				if family(n.Addr()) == fam {
					pfx = append(pfx, n)
				}
			}
			for _, iv := range mergeIntervals(pfx) {
				addElem(ns, iv.text(), iv.elements())
			}
			if len(ns.elems) > 0 {
				made = append(made, ns)
				fams |= famBit(fam)
			}
		}
	}
	return made, fams
}

// setFams returns the families set id has kernel sets for.
func (r *renderer) setFams(id compile.SetID) famSet {
	s, ok := r.rs.Sets[id]
	if !ok {
		return fam4 | fam6
	}
	if e := r.cache.sets[s]; e != nil {
		return e.fams
	}
	return setFamilies(s)
}

// setFamilies is what renderSet says of s's families, without rendering.
func setFamilies(s *compile.IPSet) famSet {
	var fams famSet
	if s.Kind == compile.SetNamedPorts {
		for _, m := range s.Ports {
			fams |= famBit(family(m.Addr))
		}
		return fams
	}
	if inlined(s) {
		return fam4 | fam6
	}
	for _, n := range s.Nets {
		n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-unmapBits(n)).Masked()
		fams |= famBit(family(n.Addr()))
	}
	return fams
}

// hasFamily reports whether set id has a kernel set for family fam: a
// lookup in one it lacks would never match.
func (r *renderer) hasFamily(id compile.SetID, fam uint8) bool {
	return r.setFams(id)&famBit(fam) != 0
}

func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

func family(a netip.Addr) uint8 {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

// concatKey pads each field to a multiple of 4 bytes, as the kernel lays
// concatenations out in 32-bit registers.
func concatKey(fields ...[]byte) []byte {
	var out []byte
	for _, f := range fields {
		out = append(out, f...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out
}

// interval is an inclusive address range.
type interval struct{ first, last netip.Addr }

func (iv interval) text() string {
	if iv.first == iv.last {
		return iv.first.String()
	}
	if p, ok := prefixOf(iv); ok {
		return p.String()
	}
	return iv.first.String() + "-" + iv.last.String()
}

func prefixOf(iv interval) (netip.Prefix, bool) {
	if iv.first.BitLen() != iv.last.BitLen() {
		return netip.Prefix{}, false
	}
	// A prefix: the addresses share their first bits, then first has
	// only zeros and last only ones.
	a, b := iv.first.As16(), iv.last.As16()
	off := 0
	if iv.first.Is4() {
		off = 12
	}
	bits := 0
	i := off
	for ; i < 16 && a[i] == b[i]; i++ {
		bits += 8
	}
	if i < 16 {
		x := a[i] ^ b[i]
		for x&0x80 == 0 {
			bits++
			x <<= 1
		}
		for k := i; k < 16; k++ {
			m := byte(0xff)
			if k == i {
				m = 0xff >> (bits % 8)
			}
			if a[k]&m != 0 || b[k]&m != m {
				return netip.Prefix{}, false
			}
		}
	}
	return netip.PrefixFrom(iv.first, bits), true
}

// elements are the kernel elements of an interval set: the start, and the
// address after the end flagged as an interval end (none when the range
// runs to the top of the address space).
func (iv interval) elements() []nftables.SetElement {
	els := []nftables.SetElement{{Key: iv.first.AsSlice()}}
	if next := iv.last.Next(); next.IsValid() {
		els = append(els, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
	}
	return els
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// mergeIntervals turns prefixes into sorted, disjoint, non-adjacent ranges:
// interval sets reject overlapping elements.
func mergeIntervals(pfx []netip.Prefix) []interval {
	return joinIntervals(prefixIntervals(pfx))
}

func prefixIntervals(pfx []netip.Prefix) []interval {
	ivs := make([]interval, 0, len(pfx))
	for _, p := range pfx {
		ivs = append(ivs, interval{p.Masked().Addr(), lastAddr(p)})
	}
	return ivs
}

// joinIntervals sorts ivs (in place) and joins those that overlap or
// touch.
func joinIntervals(ivs []interval) []interval {
	slices.SortFunc(ivs, func(a, b interval) int { return a.first.Compare(b.first) })
	var out []interval
	for _, iv := range ivs {
		if n := len(out); n > 0 {
			prev := &out[n-1]
			if next := prev.last.Next(); !next.IsValid() || iv.first.Compare(next) <= 0 {
				if iv.last.Compare(prev.last) > 0 {
					prev.last = iv.last
				}
				continue
			}
		}
		out = append(out, iv)
	}
	return out
}

// ---- chains ----

// addChain adds a chain and the sets it reads: a set of the Ruleset that
// no rule reads gets no kernel set.
func (r *renderer) addChain(c *nchain) {
	r.out.chains[c.name] = c
	for _, ns := range c.sets {
		r.out.sets[ns.name] = ns
	}
	for _, ref := range c.reads {
		if _, ok := r.out.sets[ref.name]; !ok {
			r.addSet(ref)
		}
	}
}

// addSet adds the kernel set ref names, as rendered for the Ruleset's
// members.
func (r *renderer) addSet(ref setRef) {
	s := r.rs.Sets[ref.id]
	if s == nil {
		return // validate refuses a Ruleset whose rules read a set it lacks
	}
	made := []*nset(nil)
	if e := r.cache.sets[s]; e != nil {
		made = e.made
	} else {
		made, _ = renderSet(s)
	}
	for _, ns := range made {
		if ns.name == ref.name {
			r.out.sets[ns.name] = ns
		}
	}
}

// newChain makes a chain of rules, turning the constant sets they read
// into named ones.
func newChain(name string, rules []*nrule) *nchain {
	rules, sets := namedSets(rules)
	return &nchain{name: name, rules: rules, sets: sets, reads: ruleReads(rules)}
}

// ruleReads lists the Ruleset sets rules read, each once.
func ruleReads(rules []*nrule) []setRef {
	var out []setRef
	for _, ru := range rules {
		for _, ref := range ru.reads {
			if !slices.Contains(out, ref) {
				out = append(out, ref)
			}
		}
	}
	return out
}

// contentChain names a chain by the hash of its rules and adds it.
func (r *renderer) contentChain(prefix string, rules []*nrule) string {
	rules, sets := namedSets(rules)
	parts := make([]string, 0, len(rules))
	for _, ru := range rules {
		parts = append(parts, ru.text+" # "+ru.comment)
	}
	name := prefix + shortHash(parts...)
	if _, ok := r.out.chains[name]; !ok {
		r.addChain(&nchain{name: name, rules: rules, sets: sets, reads: ruleReads(rules)})
	}
	return name
}

func (r *renderer) endpointChain(d *compile.DirectionPolicy, key string, dir compile.Direction) string {
	var ck strings.Builder
	ck.WriteString("ep")
	tierNames := make([]string, 0, len(d.Tiers))
	for i := range d.Tiers {
		name, tk := r.tierChain(&d.Tiers[i], dir)
		tierNames = append(tierNames, name)
		ck.WriteString("|" + tk)
	}
	for _, pid := range d.Profiles {
		ck.WriteString("|p:" + r.fingerprint(pid))
	}
	k := ck.String()
	if c, ok := r.lookupChain(k); ok {
		for _, pid := range d.Profiles {
			r.profileChain(pid)
		}
		return c
	}
	var rules []*nrule
	for i, t := range d.Tiers {
		rules = append(rules, newRule(nil, "jump "+tierNames[i], &expr.Verdict{Kind: expr.VerdictJump, Chain: tierNames[i]}, "tier "+t.Tier))
	}
	for _, pid := range d.Profiles {
		prof := r.profileChain(pid)
		rules = append(rules, newRule(nil, "jump "+prof, &expr.Verdict{Kind: expr.VerdictJump, Chain: prof}, "profile "+r.rs.Policies[pid].Name))
	}
	rules = append(rules, newRule(nil, "drop", &expr.Verdict{Kind: expr.VerdictDrop}, "no tier or profile allowed"))
	name := r.contentChain("ep-", rules)
	r.storeChain(k, name)
	return name
}

// lookupChain finds a chain made by an earlier render under cache key k
// and adds it.
func (r *renderer) lookupChain(k string) (string, bool) {
	c, ok := r.cache.chains[k]
	if !ok {
		return "", false
	}
	if _, have := r.out.chains[c.name]; !have {
		r.addChain(c.chain)
	}
	return c.name, true
}

func (r *renderer) storeChain(k, name string) {
	r.cache.chains[k] = &cachedChain{name: name, chain: r.out.chains[name]}
}

// tierChain returns the tier chain's name and its cache key.
func (r *renderer) tierChain(t *compile.TierPolicies, dir compile.Direction) (string, string) {
	var memo tierMemo
	if len(t.Policies) > 0 {
		memo = tierMemo{&t.Policies[0], len(t.Policies), t.Tier, t.EndAction}
		if v, ok := r.tiers[memo]; ok {
			return v[0], v[1]
		}
		if e, ok := r.cache.tierLists[memo]; ok {
			// The very list of the last render, and the same policy
			// values (the cache drops tierLists when they change).
			return r.useTier(memo, e)
		}
	}
	// Across renders, a tier chain is found by its policy values: a new
	// pod whose list holds the same policies as its neighbours' costs a
	// look-up per policy, not a render.
	pols := make([]*compile.Policy, len(t.Policies))
	var h maphash.Hash
	h.SetSeed(r.cache.seed)
	h.WriteString(t.Tier)
	h.WriteByte(byte(t.EndAction))
	for i, pid := range t.Policies {
		pols[i] = r.rs.Policies[pid]
		maphash.WriteComparable(&h, pols[i])
	}
	pk := h.Sum64()
	if e, ok := r.cache.tiers[pk]; ok && slices.Equal(e.pols, pols) {
		return r.useTier(memo, e)
	}
	name, k := r.tierChainSlow(t)
	if memo.first != nil {
		r.tiers[memo] = [2]string{name, k}
	}
	e := &tierEntry{name: name, key: k, pols: pols, deps: []*nchain{r.out.chains[name]}}
	for _, pid := range t.Policies {
		if c, ok := r.cache.policies[r.fps[pid]]; ok {
			e.deps = append(e.deps, c.chains...)
		}
	}
	r.cache.tiers[pk] = e
	if memo.first != nil {
		r.cache.tierLists[memo] = e
	}
	return name, k
}

// useTier adds a tier chain rendered before, and the chains it jumps to.
func (r *renderer) useTier(memo tierMemo, e *tierEntry) (string, string) {
	for _, c := range e.deps {
		if _, have := r.out.chains[c.name]; !have {
			r.addChain(c)
		}
	}
	if memo.first != nil {
		r.tiers[memo] = [2]string{e.name, e.key}
		r.cache.tierLists[memo] = e
	}
	return e.name, e.key
}

// tierChainSlow renders a tier chain: the rules of small policies merged
// and written in, larger policies jumped to. Its key is its name (a hash of
// its content).
func (r *renderer) tierChainSlow(t *compile.TierPolicies) (string, string) {
	var rules []*nrule
	var run []irmerge.Rule
	for _, pid := range t.Policies {
		pol := r.rs.Policies[pid]
		if len(pol.Rules) <= irInlineRules {
			for i := range pol.Rules {
				run = append(run, irmerge.Rule{Policy: pol, Index: i, Rule: &pol.Rules[i], N: 1})
			}
			continue
		}
		rules = append(rules, r.renderIRRun(run)...)
		run = run[:0]
		rules = append(rules, r.policyPiecesFor(pid)...)
	}
	rules = append(rules, r.renderIRRun(run)...)
	// Policies of a tier share runs of same-verdict rules: merge across
	// them.
	rules = mergeRules(rules)
	if t.EndAction != compile.ActionPass {
		rules = append(rules, newRule(nil, "drop", &expr.Verdict{Kind: expr.VerdictDrop}, "end of tier "+t.Tier))
	}
	name := r.contentChain("tier-", rules)
	return name, name
}

// fingerprint identifies a policy's rendering: its rules, the literal sets
// they inline and the log prefix. A Policy value seen before (same
// pointer) is taken as unchanged: Rulesets are read-only, and the compiler
// shares unchanged parts between one Ruleset and the next.
func (r *renderer) fingerprint(pid compile.PolicyID) string {
	if fp, ok := r.fps[pid]; ok {
		return fp
	}
	pol := r.rs.Policies[pid]
	fp, ok := r.cache.ptrs[pol]
	if !ok {
		var b strings.Builder
		b.WriteString(r.rs.Settings.LogPrefix)
		b.WriteString(pol.String())
		for i := range pol.Rules {
			m := &pol.Rules[i].Match
			for _, ids := range [][]compile.SetID{m.Src.Sets, m.Src.NotSets, m.Dst.Sets, m.Dst.NotSets,
				m.Src.NamedPorts, m.Src.NotNamedPorts, m.Dst.NamedPorts, m.Dst.NotNamedPorts} {
				for _, id := range ids {
					if s := r.rs.Sets[id]; s.Literal {
						b.WriteString(s.String())
					} else {
						// Which of its kernel sets exist decides the rules.
						b.WriteByte('0' + byte(r.setFams(id)))
					}
				}
			}
		}
		fp = string(pid) + "@" + shortHash(b.String())
		r.cache.ptrs[pol] = fp
	}
	r.fps[pid] = fp
	return fp
}

// policyPiecesFor renders a tier policy once: its segment chains, and the
// rules a tier chain holds for it (jumps to segments, inline Pass rules).
func (r *renderer) policyPiecesFor(pid compile.PolicyID) []*nrule {
	if p, ok := r.policyPieces[pid]; ok {
		return p
	}
	fp := r.fingerprint(pid)
	if c, ok := r.oldCache.policies[fp]; ok {
		for _, ch := range c.chains {
			r.addChain(ch)
		}
		r.cache.policies[fp] = c
		r.policyPieces[pid] = c.pieces
		return c.pieces
	}
	var made []*nchain
	pol := r.rs.Policies[pid]
	base := "pol-" + shortHash(string(pid))
	var pieces []*nrule
	var seg []*nrule
	segN := 0
	flush := func(last bool) {
		name := base
		if segN > 0 || !last {
			name = base + "-s" + strconv.Itoa(segN)
		}
		segN++
		if len(seg) == 0 {
			return
		}
		seg = mergeRules(seg)
		if len(seg) <= inlineRules {
			// A short run of rules costs less inline than a jump, and
			// makes fewer kernel objects: nothing is shared but a chain
			// name.
			pieces = append(pieces, seg...)
			seg = nil
			return
		}
		ch := newChain(name, seg)
		r.addChain(ch)
		made = append(made, ch)
		pieces = append(pieces, newRule(nil, "jump "+name, &expr.Verdict{Kind: expr.VerdictJump, Chain: name}, "policy "+pol.Name))
		seg = nil
	}
	rules := pol.Rules
	for i := 0; i < len(rules); i++ {
		ru := &rules[i]
		if ru.Action == compile.ActionPass {
			flush(false)
			pieces = append(pieces, r.renderRule(pol, i, ru, &expr.Verdict{Kind: expr.VerdictReturn}, "return")...)
			continue
		}
		if j, merged := r.mergeRun(pol, i); merged != nil {
			seg = append(seg, merged...)
			i = j
			continue
		}
		seg = append(seg, r.renderAction(pol, i, ru)...)
	}
	flush(true)
	r.policyPieces[pid] = pieces
	r.cache.policies[fp] = &cachedPolicy{pieces: pieces, chains: made}
	return pieces
}

func (r *renderer) profileChain(pid compile.PolicyID) string {
	if name, ok := r.profiles[pid]; ok {
		return name
	}
	k := "prof|" + r.fingerprint(pid)
	if name, ok := r.lookupChain(k); ok {
		r.profiles[pid] = name
		return name
	}
	pol := r.rs.Policies[pid]
	name := "prof-" + shortHash(string(pid))
	var rules []*nrule
	for i := range pol.Rules {
		ru := &pol.Rules[i]
		if ru.Action == compile.ActionPass {
			// A profile has no next tier: Pass decides nothing.
			continue
		}
		rules = append(rules, r.renderAction(pol, i, ru)...)
	}
	r.addChain(newChain(name, mergeRules(rules)))
	r.profiles[pid] = name
	r.storeChain(k, name)
	return name
}

func (r *renderer) renderAction(pol *compile.Policy, i int, ru *compile.Rule) []*nrule {
	switch ru.Action {
	case compile.ActionAllow:
		return r.renderRule(pol, i, ru, &expr.Verdict{Kind: expr.VerdictAccept}, "accept")
	case compile.ActionDeny:
		return r.renderRule(pol, i, ru, &expr.Verdict{Kind: expr.VerdictDrop}, "drop")
	case compile.ActionLog:
		prefix := r.logPrefix(pol, i, ru)
		lg := &expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: logGroup, Data: []byte(prefix)}
		return r.renderRule(pol, i, ru, lg, fmt.Sprintf("log prefix %s group %d", strconv.Quote(prefix), logGroup))
	}
	return nil
}

// logPrefix names the policy and rule, within the kernel's 127 bytes.
func (r *renderer) logPrefix(pol *compile.Policy, i int, ru *compile.Rule) string {
	name := pol.Name
	if pol.Tier != "" {
		name = pol.Tier + "/" + name
	}
	idx := ru.Origin.Index
	if idx < 0 {
		idx = i
	}
	return truncate(r.rs.Settings.LogPrefix+name+" r"+strconv.Itoa(idx)+" ", 127)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func ruleComment(pol *compile.Policy, i int, ru *compile.Rule) string {
	o := ru.Origin
	if o.Policy == "" {
		o = compile.Origin{Tier: pol.Tier, Policy: pol.Name, Index: i}
	}
	return truncate(o.String(), 120)
}

// renderRule renders one IR rule as one nft rule per alternative of its
// match, each ending in the verdict (or log) v.
func (r *renderer) renderRule(pol *compile.Policy, i int, ru *compile.Rule, v expr.Any, vtext string) []*nrule {
	alts := r.alternatives(&ru.Match)
	comment := ruleComment(pol, i, ru)
	out := make([]*nrule, 0, len(alts))
	for _, terms := range alts {
		out = append(out, newRule(terms, vtext, v, comment))
	}
	return out
}

func newRule(terms []term, vtext string, v expr.Any, comment string) *nrule {
	ru := &nrule{comment: comment, terms: terms, verdict: v, vtext: vtext}
	var texts []string
	for _, t := range terms {
		if t.anon != nil {
			if ru.anon == nil {
				ru.anon = map[int]*anonSet{}
			}
			ru.anon[len(ru.exprs)+len(t.exprs)-1] = t.anon
		}
		if t.reads.name != "" {
			ru.reads = append(ru.reads, t.reads)
		}
		ru.exprs = append(ru.exprs, t.exprs...)
		texts = append(texts, t.text)
	}
	ru.exprs = append(ru.exprs, v)
	texts = append(texts, vtext)
	ru.text = strings.Join(texts, " ")
	return ru
}

// mergeRun finds a run of two or more rules starting at i that all Allow
// (or all Deny) with the same shape — a protocol, one literal set on one
// side, destination port ranges, nothing else — and renders it as one
// lookup in an anonymous concatenated interval set per family. It returns
// the index of the last rule of the run.
func (r *renderer) mergeRun(pol *compile.Policy, i int) (int, []*nrule) {
	first := &pol.Rules[i]
	side, ok := r.mergeShape(first)
	if !ok || (first.Action != compile.ActionAllow && first.Action != compile.ActionDeny) {
		return i, nil
	}
	j := i
	for j+1 < len(pol.Rules) {
		next := &pol.Rules[j+1]
		s, ok := r.mergeShape(next)
		if !ok || s != side || next.Action != first.Action {
			break
		}
		j++
	}
	if j-i+1 < mergeMinRun || !r.runDisjoint(pol, i, j, side) {
		return i, nil
	}
	vk, vtext := expr.VerdictAccept, "accept"
	if first.Action == compile.ActionDeny {
		vk, vtext = expr.VerdictDrop, "drop"
	}
	var out []*nrule
	comment := truncate(fmt.Sprintf("%s rules %d-%d", ruleComment(pol, i, first), i, j), 120)
	for _, fam := range []uint8{4, 6} {
		as := &anonSet{interval: true, concat: true, keyType: typeNP4}
		if fam == 6 {
			as.keyType = typeNP6
		}
		var texts []string
		for k := i; k <= j; k++ {
			ru := &pol.Rules[k]
			pm := &ru.Match.Dst
			if side == "src" {
				pm = &ru.Match.Src
			}
			var pfx []netip.Prefix
			for _, n := range r.rs.Sets[pm.Sets[0]].Nets {
				n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-unmapBits(n)).Masked()
				if family(n.Addr()) == fam {
					pfx = append(pfx, n)
				}
			}
			ports := ru.Match.Dst.Ports
			if len(ports) == 0 {
				ports = []compile.PortRange{{Min: 0, Max: 65535}}
			}
			for _, iv := range mergeIntervals(pfx) {
				for _, pr := range ports {
					as.elems = append(as.elems, nftables.SetElement{
						Key:    concatKey(iv.first.AsSlice(), []byte{ru.Match.Protocol}, binaryutil.BigEndian.PutUint16(pr.Min)),
						KeyEnd: concatKey(iv.last.AsSlice(), []byte{ru.Match.Protocol}, binaryutil.BigEndian.PutUint16(pr.Max)),
					})
					texts = append(texts, fmt.Sprintf("%s . %s . %s", iv.text(), protoText(ru.Match.Protocol), portRangeText(pr)))
				}
			}
		}
		if len(as.elems) == 0 {
			continue
		}
		as.elems, texts = dedupeElems(as.elems, texts)
		for k := range as.elems {
			as.texts = append(as.texts, texts[k])
			as.groups = append(as.groups, as.elems[k:k+1])
		}
		terms := []term{nfprotoTerm(fam), concatLookupTerm(fam, side, as, texts)}
		out = append(out, newRule(terms, vtext, &expr.Verdict{Kind: vk}, comment))
	}
	return j, out
}

// runDisjoint reports whether the nets of rules i..j are pairwise
// disjoint per family, and each rule's ports are disjoint: the kernel
// rejects overlapping elements of a concatenated interval set.
func (r *renderer) runDisjoint(pol *compile.Policy, i, j int, side string) bool {
	var ivs []interval
	for k := i; k <= j; k++ {
		m := &pol.Rules[k].Match
		pm := &m.Dst
		if side == "src" {
			pm = &m.Src
		}
		var pfx []netip.Prefix
		for _, n := range r.rs.Sets[pm.Sets[0]].Nets {
			pfx = append(pfx, netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-unmapBits(n)).Masked())
		}
		ivs = append(ivs, mergeIntervals(pfx)...)
		ports := slices.Clone(m.Dst.Ports)
		slices.SortFunc(ports, func(a, b compile.PortRange) int { return int(a.Min) - int(b.Min) })
		for x := 1; x < len(ports); x++ {
			if ports[x].Min <= ports[x-1].Max {
				return false
			}
		}
	}
	slices.SortFunc(ivs, func(a, b interval) int { return a.first.Compare(b.first) })
	for x := 1; x < len(ivs); x++ {
		if ivs[x].first.Is4() == ivs[x-1].first.Is4() && ivs[x].first.Compare(ivs[x-1].last) <= 0 {
			return false
		}
	}
	return true
}

// inlineRules is the most rules a policy (or segment of one) may render
// to for its rules to go straight into the tier chains that use it rather
// than into a chain of its own.
const inlineRules = 3

// mergeMinRun is the shortest run of same-shaped rules worth a set lookup.
const mergeMinRun = 4

func dedupeElems(els []nftables.SetElement, texts []string) ([]nftables.SetElement, []string) {
	seen := map[string]bool{}
	var out []nftables.SetElement
	var outT []string
	for i, e := range els {
		k := string(e.Key) + "|" + string(e.KeyEnd)
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
			outT = append(outT, texts[i])
		}
	}
	return out, outT
}

// mergeShape reports whether a rule can join a merged run, and on which
// side its literal set is. Overlapping elements of a run would be rejected
// by the kernel, so rules whose ranges overlap are kept apart by
// checkOverlap at render time.
func (r *renderer) mergeShape(ru *compile.Rule) (string, bool) {
	m := &ru.Match
	if m.Protocol != 6 && m.Protocol != 17 && m.Protocol != 132 && m.Protocol != 136 {
		return "", false
	}
	if m.NotProtocol != 0 || m.IPVersion != 0 || m.ICMP != nil || m.NotICMP != nil {
		return "", false
	}
	if len(m.Dst.NamedPorts) > 0 || len(m.Dst.NotPorts) > 0 || len(m.Dst.NotNamedPorts) > 0 || len(m.Dst.NotSets) > 0 {
		return "", false
	}
	if len(m.Src.NamedPorts) > 0 || len(m.Src.NotPorts) > 0 || len(m.Src.NotNamedPorts) > 0 || len(m.Src.NotSets) > 0 || len(m.Src.Ports) > 0 {
		return "", false
	}
	literal := func(ids []compile.SetID) bool {
		if len(ids) != 1 {
			return false
		}
		s := r.rs.Sets[ids[0]]
		return s.Literal && s.Kind == compile.SetNets
	}
	switch {
	case len(m.Src.Sets) == 0 && literal(m.Dst.Sets):
		return "dst", true
	case len(m.Dst.Sets) == 0 && literal(m.Src.Sets):
		return "src", true
	}
	return "", false
}

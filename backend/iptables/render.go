package iptables

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/calyxnet/calyx/backend/internal/irmerge"
	"github.com/calyxnet/calyx/compile"
)

// Mark bits the chains use to carry a decision back to their caller.
// They live in the high byte, clear of kube-proxy (0x4000, 0x8000) and of
// Docker; the backend only ever changes these bits.
const (
	markAccept = 0x1000000 // a policy allowed the packet in this stage
	markPass   = 0x2000000 // a Pass rule matched: go on with the next tier
	markLog    = 0x4000000 // a Log rule of several alternatives matched
	markAll    = markAccept | markPass | markLog
)

// multiportMax is iptables' limit on ports in one multiport match; a range
// counts two.
const multiportMax = 15

// maxElem is the capacity every ipset is created with (memory is used
// only by members).
const maxElem = 1 << 20

// builtins are the filter table's chains we hook, with our chain suffix.
var builtins = [...]struct{ builtin, ours string }{
	{"FORWARD", "fwd"},
	{"INPUT", "in"},
	{"OUTPUT", "out"},
}

// portProtos are the protocols ports apply to (the model's hasPorts).
var portProtos = []uint8{6, 17, 132, 136}

// ipset describes one ipset of a plan.
type ipset struct {
	name    string
	typ     string // hash:net or hash:ip,port
	family  string // inet or inet6
	members []string
}

func (s *ipset) createLine() string {
	return fmt.Sprintf("create %s %s family %s maxelem %d", s.name, s.typ, s.family, maxElem)
}

// chain is one of our chains with its rule lines, each a complete
// iptables-save line ("-A name … -m comment --comment "cx:…" -j …").
type chain struct {
	name  string
	rules []string
	// applied holds, per family (IPv4, IPv6), the generation of the last
	// state applied to the kernel with this very chain in it (see
	// state.gen).
	applied [2]uint64
}

// famIndex is the index of family v in per-family arrays.
func famIndex(v uint8) int {
	if v == 6 {
		return 1
	}
	return 0
}

// famPlan is what one family (iptables or ip6tables) should hold.
type famPlan struct {
	v      uint8
	chains map[string]*chain
	// jumps are the lines that hook our top chains into the built-in ones.
	jumps []string
	sets  map[string]*ipset
}

// plan is the whole rendering of a Ruleset.
type plan struct {
	fams [2]*famPlan // IPv4, IPv6
}

// naming holds the instance's prefixes.
type naming struct {
	prefix string // "calyx-" or "calyx-TAG-"
}

// newNaming derives the chain and set prefix from Options.Name: names of
// up to six characters are used as they are; longer ones are hashed, so
// chain names stay within iptables' 28 characters and set names within
// ipset's 31.
func newNaming(name string) naming {
	if name == "" {
		return naming{prefix: "calyx-"}
	}
	tag := name
	if len(tag) > 6 || strings.ContainsFunc(tag, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z')
	}) {
		tag = shortHash(name)[:6]
	}
	return naming{prefix: "calyx-" + tag + "-"}
}

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

func (n naming) top(suffix string) string { return n.prefix + suffix }

// ownChain matches what follows the prefix in the name of every chain an
// instance creates, and nothing another instance (with a longer prefix)
// creates.
var ownChain = regexp.MustCompile(`^(fwd|in|out|fe|fi|hi|ho|[ehtprx]-[0-9a-f]{12})$`)

// ownSet does the same for ipset names.
var ownSet = regexp.MustCompile(`^[46]-[0-9a-f]{12}$`)

func (n naming) isOwnChain(name string) bool {
	rest, ok := strings.CutPrefix(name, n.prefix)
	return ok && ownChain.MatchString(rest)
}

func (n naming) isOwnSet(name string) bool {
	rest, ok := strings.CutPrefix(name, n.prefix)
	return ok && ownSet.MatchString(rest)
}

func (n naming) setName(id compile.SetID, v uint8) string {
	return fmt.Sprintf("%s%d-%s", n.prefix, v, shortHash(string(id)))
}

// renderer renders one family of one Ruleset.
type renderer struct {
	n     naming
	rs    *compile.Ruleset
	v     uint8
	fp    *famPlan
	errs  []string
	used  map[compile.SetID]bool
	cache *renderCache
	// tiers memoizes tier chains within one render: endpoints of one
	// namespace usually share their tier lists.
	tiers map[tierKey]tierMemo
	// sets are the Ruleset's sets and the literal sets this render made
	// by merging rules.
	sets irmerge.Sets
}

type tierKey struct {
	first     *compile.PolicyID
	n         int
	tier      string
	endAction compile.Action
}

type tierMemo struct {
	name   string
	passes bool
}

// set returns the ipset name of a compile set in this family and notes
// that a rule uses it: only used sets are created.
func (r *renderer) set(id compile.SetID) string {
	r.used[id] = true
	return r.n.setName(id, r.v)
}

// renderCache keeps the rendering of each policy between Applies, keyed
// by the policy's identity: the compiler shares unchanged policies between
// one Ruleset and the next, so a new pod on a node of 10,000 policies
// renders only what changed. Holding the pointer keeps it from being
// reused for another policy.
type renderCache struct {
	// cur holds policy renderings by policy value; it is kept across
	// renders (pruned when it grows past what the last Ruleset needs):
	// renewing it each render would cost a map write per policy.
	cur map[polKey]*polRender
	// want is how many entries the last render needed at most.
	want int
	// chains keeps content-named chains (whose lines depend only on
	// their name) from one render to the next.
	chains, nextChains map[string]*chain
	// names remembers policy chain names (a hash of the ID).
	names map[polName]string
	// tiers keeps whole tier chains with their policies; byPols the same
	// by a hash of the policy values (seed).
	tiers, nextTiers   map[tierCacheKey]*tierRender
	byPols, nextByPols map[uint64]*tierRender
	seed               maphash.Seed
	// sizes are the chain counts of the last render, per family.
	sizes [2]int
}

type polName struct {
	id      compile.PolicyID
	profile bool
}

type polKey struct {
	pol       *compile.Policy
	profile   bool
	v         uint8
	logPrefix string
}

// polRender is one policy's chain and what it brought along.
type polRender struct {
	name  string
	chain *chain
	extra []*chain
	sets  []*ipset
	used  []compile.SetID
	errs  []string
}

func newRenderCache() *renderCache {
	return &renderCache{cur: map[polKey]*polRender{}, chains: map[string]*chain{}, names: map[polName]string{},
		tiers: map[tierCacheKey]*tierRender{}, byPols: map[uint64]*tierRender{}, seed: maphash.MakeSeed()}
}

// commit makes what the last render used the cache.
func (c *renderCache) commit() {
	if c != nil && c.nextChains != nil {
		c.chains, c.nextChains = c.nextChains, nil
		c.tiers, c.nextTiers = c.nextTiers, nil
		c.byPols, c.nextByPols = c.nextByPols, nil
		if len(c.cur) > 2*c.want+1024 {
			// Forget policies no tier uses any more; profiles and the
			// rest render again when next needed.
			c.cur = map[polKey]*polRender{}
			for _, tr := range c.tiers {
				for k, v := range tr.polrs {
					c.cur[k] = v
				}
			}
		}
		if len(c.names) > 2*c.want+1024 {
			c.names = map[polName]string{} // forget removed policies
		}
	}
}

// render turns rs into the chains, jumps and sets of both families.
//
// cache, when not nil, is consulted and filled; call its commit after the
// plan is applied.
func render(rs *compile.Ruleset, n naming, cache *renderCache) (*plan, error) {
	p := &plan{}
	var errs []string
	if cache != nil {
		cache.want = 2 * len(rs.Policies)
		cache.nextChains = make(map[string]*chain, len(cache.chains))
		cache.nextTiers = make(map[tierCacheKey]*tierRender, len(cache.tiers))
		cache.nextByPols = make(map[uint64]*tierRender, len(cache.byPols))
	}
	for i, v := range []uint8{4, 6} {
		hint := 0
		if cache != nil {
			hint = cache.sizes[i]
		}
		r := &renderer{n: n, rs: rs, sets: irmerge.Sets{RS: rs}, v: v, fp: &famPlan{v: v, chains: make(map[string]*chain, hint), sets: map[string]*ipset{}},
			used: map[compile.SetID]bool{}, cache: cache, tiers: map[tierKey]tierMemo{}}
		r.renderFamily()
		errs = append(errs, r.errs...)
		p.fams[i] = r.fp
		if cache != nil {
			cache.sizes[i] = len(r.fp.chains)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidRuleset, strings.Join(errs, "; "))
	}
	return p, nil
}

// addChain adds a chain whose rule bodies are given without "-A name" and
// without the comment; it appends the comment carrying the stable hash of
// the chain name, position and body. The body's last " -j " splits it.
func (r *renderer) addChain(name string, bodies []string) {
	c := &chain{name: name, rules: make([]string, 0, len(bodies))}
	for i, b := range bodies {
		c.rules = append(c.rules, ruleLine(name, i, b))
	}
	r.fp.chains[name] = c
}

// ruleLine writes a rule as iptables-save prints it: matches, then the
// comment match, then the target.
func ruleLine(chainName string, pos int, body string) string {
	match, target := body, ""
	i := strings.LastIndex(" "+body, " -j ")
	if g := strings.LastIndex(" "+body, " -g "); g > i {
		i = g
	}
	if i >= 0 {
		match, target = strings.TrimSpace(body[:max(i-1, 0)]), body[i:]
		if i == 0 {
			match, target = "", body
		}
	}
	comment := `-m comment --comment "cx:` + shortHash(chainName, strconv.Itoa(pos), body) + `"`
	var b strings.Builder
	b.WriteString("-A ")
	b.WriteString(chainName)
	if match != "" {
		b.WriteByte(' ')
		b.WriteString(match)
	}
	b.WriteByte(' ')
	b.WriteString(comment)
	b.WriteByte(' ')
	b.WriteString(target)
	return b.String()
}

// contentChain adds a chain named by its content (prefix, kind, hash of
// the bodies) and returns the name; identical chains are shared.
func (r *renderer) contentChain(kind string, bodies []string) string {
	name := r.n.prefix + kind + "-" + shortHash(append([]string{kind}, bodies...)...)
	if _, ok := r.fp.chains[name]; ok {
		return name
	}
	if r.cache != nil {
		if c, ok := r.cache.chains[name]; ok {
			r.fp.chains[name] = c
			r.cache.nextChains[name] = c
			return name
		}
	}
	r.addChain(name, bodies)
	if r.cache != nil {
		r.cache.nextChains[name] = r.fp.chains[name]
	}
	return name
}

func markArg(bits int) string { return fmt.Sprintf("0x%x/0x%x", bits, bits) }

var (
	setAccept   = "-j MARK --set-xmark " + markArg(markAccept)
	setPass     = "-j MARK --set-xmark " + markArg(markPass)
	setLog      = "-j MARK --set-xmark " + markArg(markLog)
	clearAll    = fmt.Sprintf("-j MARK --set-xmark 0x0/0x%x", markAll)
	clearPass   = fmt.Sprintf("-j MARK --set-xmark 0x0/0x%x", markPass)
	clearLog    = fmt.Sprintf("-j MARK --set-xmark 0x0/0x%x", markLog)
	ifAccepted  = "-m mark --mark " + markArg(markAccept)
	ifLogged    = "-m mark --mark " + markArg(markLog)
	ifDecided   = fmt.Sprintf("-m mark ! --mark 0x0/0x%x", markAccept|markPass)
	established = "-m conntrack --ctstate RELATED,ESTABLISHED"
	invalid     = "-m conntrack --ctstate INVALID"
)

func (r *renderer) icmpProto() uint8 {
	if r.v == 4 {
		return 1
	}
	return 58
}

func (r *renderer) renderFamily() {
	defer r.renderSets()
	egress := r.dispatch("fe", "-i", compile.Egress)
	ingress := r.dispatch("fi", "-o", compile.Ingress)
	pfx := compile.InterfacePrefix + "+"

	fwd := []string{
		"! -i " + pfx + " ! -o " + pfx + " -j RETURN",
		established + " -j ACCEPT",
		invalid + " -j DROP",
		"-i " + pfx + " -j " + egress,
		"-o " + pfx + " -j " + ingress,
		ifAccepted + " -j ACCEPT",
	}
	r.addChain(r.n.top("fwd"), fwd)

	// Packets of no workload interface are the node's own traffic: the
	// host endpoints' business, or nobody's (RETURN).
	other := func(side, dispatch string) string {
		if dispatch == "" {
			return "! " + side + " " + pfx + " -j RETURN"
		}
		return "! " + side + " " + pfx + " -g " + dispatch
	}
	hosts := r.hostEndpoints()
	in := []string{other("-i", r.hostDispatch(hosts, "hi", compile.Ingress))}
	in = append(in, r.ndp()...)
	in = append(in, established+" -j ACCEPT", invalid+" -j DROP", "-j "+egress)
	switch r.rs.Settings.DefaultEndpointToHostAction {
	case compile.ActionDeny:
		in = append(in, "-j DROP")
	case compile.ActionPass:
		// Host rules decide.
	default:
		in = append(in, ifAccepted+" -j ACCEPT")
	}
	r.addChain(r.n.top("in"), in)

	out := []string{other("-o", r.hostDispatch(hosts, "ho", compile.Egress))}
	out = append(out, r.ndp()...)
	out = append(out, established+" -j ACCEPT", invalid+" -j DROP", "-j "+ingress, ifAccepted+" -j ACCEPT")
	r.addChain(r.n.top("out"), out)

	for _, b := range builtins {
		r.fp.jumps = append(r.fp.jumps, jumpLine(b.builtin, r.n.top(b.ours)))
	}
}

// ndp accepts IPv6 neighbour discovery (in IPv6 only): between a pod and
// its node, or on a host endpoint's interface, it is what makes IPv6 work
// at all, and conntrack does not track it.
func (r *renderer) ndp() []string {
	if r.v != 6 {
		return nil
	}
	var out []string
	for t := 133; t <= 136; t++ {
		out = append(out, fmt.Sprintf("-p ipv6-icmp -m icmp6 --icmpv6-type %d -j ACCEPT", t))
	}
	return out
}

// jumpLine is the rule that hooks one of our chains into a built-in one.
func jumpLine(builtin, target string) string {
	return "-A " + builtin + ` -m comment --comment "cx:` + shortHash("jump", builtin, target) + `" -j ` + target
}

func (r *renderer) renderSets() {
	for _, id := range sortedKeys(r.used) {
		s, ok := r.rs.Sets[id]
		if !ok {
			continue // reported by the rule that uses it
		}
		is := &ipset{name: r.n.setName(id, r.v), family: "inet", typ: "hash:net"}
		if r.v == 6 {
			is.family = "inet6"
		}
		switch s.Kind {
		case compile.SetNamedPorts:
			is.typ = "hash:ip,port"
			for _, m := range s.Ports {
				a := m.Addr.Unmap()
				if fam(a) != r.v {
					continue
				}
				pn, ok := ipsetProto(m.Protocol)
				if !ok {
					continue
				}
				is.members = append(is.members, fmt.Sprintf("%s,%s:%d", a, pn, m.Port))
			}
		default:
			for _, p := range s.Nets {
				if p.Addr().Is4In6() {
					p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
				}
				if fam(p.Addr()) != r.v {
					continue
				}
				is.members = append(is.members, netMembers(p)...)
			}
		}
		slices.Sort(is.members)
		is.members = slices.Compact(is.members)
		r.fp.sets[is.name] = is
	}
}

// netMembers spells a prefix for hash:net, which refuses /0: the two
// halves stand for it.
func netMembers(p netip.Prefix) []string {
	if p.Bits() == 0 {
		if p.Addr().Is4() {
			return []string{"0.0.0.0/1", "128.0.0.0/1"}
		}
		return []string{"::/1", "8000::/1"}
	}
	if p.IsSingleIP() {
		return []string{p.Addr().String()}
	}
	return []string{p.String()}
}

func fam(a netip.Addr) uint8 {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

func ipsetProto(p uint8) (string, bool) {
	switch p {
	case 6:
		return "tcp", true
	case 17:
		return "udp", true
	case 132:
		return "sctp", true
	case 136:
		return "udplite", true
	}
	return "", false
}

// protoName spells a protocol as iptables-save prints it.
func protoName(p uint8, v uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	case 136:
		return "udplite"
	}
	return strconv.Itoa(int(p))
}

// dispatch builds the chain that sends a packet to its endpoint's chain
// (side "-i" for egress, "-o" for ingress) and returns its name.
// Endpoints that share an endpoint chain share one hash:net,iface ipset
// of their (address, interface) pairs, and the chain holds one set lookup
// per distinct endpoint chain, not one rule per endpoint: a new pod whose
// policy matches an existing pod's is an ipset member, no iptables rule at
// all, and a packet from a pod with a forged source address finds no
// chain. Everything else with the workload prefix reaches a DROP: an
// interface without an endpoint (a pod not programmed yet) is cut off,
// fail closed.
func (r *renderer) dispatch(kind, side string, dir compile.Direction) string {
	members := map[string][]string{}
	for _, key := range sortedKeys(r.rs.Endpoints) {
		ep := r.rs.Endpoints[key]
		if ep.Kind == compile.HostEndpoint || !strings.HasPrefix(ep.Interface, compile.InterfacePrefix) {
			continue // host endpoints: see hostDispatch
		}
		var addrs []netip.Addr
		for _, a := range ep.Addrs {
			if fam(a) == r.v {
				addrs = append(addrs, a.Unmap())
			}
		}
		if len(addrs) == 0 {
			// No address in this family: its traffic in this family is
			// dropped like an unknown interface's, and a single-stack
			// pod does not touch the other family's rules.
			continue
		}
		dp := &ep.Egress
		if dir == compile.Ingress {
			dp = &ep.Ingress
		}
		target := r.endpointChain(key, dir, dp)
		for _, a := range addrs {
			members[target] = append(members[target], a.String()+","+ep.Interface)
		}
	}
	flags := "src,src"
	if side == "-o" {
		flags = "dst,dst"
	}
	var bodies []string
	for _, target := range sortedKeys(members) {
		is := &ipset{name: fmt.Sprintf("%s%d-%s", r.n.prefix, r.v, shortHash("dispatch", kind, target)),
			typ: "hash:net,iface", family: "inet", members: members[target]}
		if r.v == 6 {
			is.family = "inet6"
		}
		slices.Sort(is.members)
		is.members = slices.Compact(is.members)
		r.fp.sets[is.name] = is
		bodies = append(bodies, "-m set --match-set "+is.name+" "+flags+" -g "+target)
	}
	bodies = append(bodies, "-j DROP")
	name := r.n.prefix + kind
	r.addChain(name, bodies)
	return name
}

// endpointChain renders one direction of an endpoint: its tiers, then its
// profiles, then drop. Endpoints with equal policy share the chain.
func (r *renderer) endpointChain(key string, dir compile.Direction, dp *compile.DirectionPolicy) string {
	bodies := []string{clearAll}
	for _, t := range dp.Tiers {
		var tk tierKey
		if len(t.Policies) > 0 {
			tk = tierKey{first: &t.Policies[0], n: len(t.Policies), tier: t.Tier, endAction: t.EndAction}
		}
		tm, ok := r.tiers[tk]
		if !ok || tk.first == nil {
			tm = r.cachedTier(key, &t, tk)
			r.tiers[tk] = tm
		}
		bodies = append(bodies, "-j "+tm.name, ifAccepted+" -j RETURN")
		if tm.passes {
			// The next tier, or the profiles, start undecided.
			bodies = append(bodies, clearPass)
		}
	}
	for _, pid := range dp.Profiles {
		pc := r.policyChain(key, pid, true)
		if pc == "" {
			continue
		}
		bodies = append(bodies, "-j "+pc, ifAccepted+" -j RETURN")
	}
	bodies = append(bodies, "-j DROP")
	return r.contentChain("e", bodies)
}

// tierRender is one tier chain with everything it brought along (its
// policies' chains and sets), kept between renders.
type tierRender struct {
	ids    []compile.PolicyID
	pols   []*compile.Policy
	memo   tierMemo
	chains []*chain
	sets   []*ipset
	used   []compile.SetID
	errs   []string
	polrs  map[polKey]*polRender
}

type tierCacheKey struct {
	tierKey
	v         uint8
	logPrefix string
}

// cachedTier renders a tier chain, or takes it from the previous render
// when the tier lists the same policies and every one is the very same
// (unchanged) policy: a new pod on a node of 10,000 policies then costs a
// map lookup per policy, not a render.
func (r *renderer) cachedTier(key string, t *compile.TierPolicies, tk tierKey) tierMemo {
	if r.cache == nil || tk.first == nil {
		return tierMemo{name: r.tierChain(key, t), passes: r.tierPasses(t)}
	}
	ck := tierCacheKey{tierKey: tk, v: r.v, logPrefix: r.rs.Settings.LogPrefix}
	// A tier list seen before (the same slice), or one holding the same
	// policy values (a new pod's list, built afresh, like its
	// neighbours').
	pols := make([]*compile.Policy, len(t.Policies))
	var h maphash.Hash
	h.SetSeed(r.cache.seed)
	h.WriteString(r.rs.Settings.LogPrefix)
	h.WriteString(t.Tier)
	h.WriteByte(byte(t.EndAction))
	h.WriteByte(r.v)
	for i, id := range t.Policies {
		pols[i] = r.rs.Policies[id]
		maphash.WriteComparable(&h, pols[i])
	}
	pk := h.Sum64()
	tr, ok := r.cache.tiers[ck]
	if !ok {
		tr, ok = r.cache.byPols[pk]
	}
	if ok && slices.Equal(tr.ids, t.Policies) && slices.Equal(tr.pols, pols) {
		r.cache.nextTiers[ck] = tr
		r.cache.nextByPols[pk] = tr
		for _, c := range tr.chains {
			r.fp.chains[c.name] = c
		}
		if c, ok := r.cache.chains[tr.memo.name]; ok {
			r.cache.nextChains[c.name] = c
		}
		for _, is := range tr.sets {
			r.fp.sets[is.name] = is
		}
		for _, id := range tr.used {
			r.used[id] = true
		}
		r.errs = append(r.errs, tr.errs...)
		return tr.memo
	}
	fp, used, errs := r.fp, r.used, r.errs
	r.fp = &famPlan{v: r.v, chains: map[string]*chain{}, sets: map[string]*ipset{}}
	r.used, r.errs = map[compile.SetID]bool{}, nil
	tr = &tierRender{ids: slices.Clone(t.Policies), polrs: map[polKey]*polRender{}}
	tr.memo = tierMemo{name: r.tierChain(key, t), passes: r.tierPasses(t)}
	for _, id := range t.Policies {
		pol := r.rs.Policies[id]
		tr.pols = append(tr.pols, pol)
		pk := polKey{pol: pol, profile: false, v: r.v, logPrefix: r.rs.Settings.LogPrefix}
		if pr, ok := r.cache.cur[pk]; ok {
			tr.polrs[pk] = pr
		}
	}
	for _, c := range r.fp.chains {
		tr.chains = append(tr.chains, c)
	}
	for _, is := range r.fp.sets {
		tr.sets = append(tr.sets, is)
	}
	for id := range r.used {
		tr.used = append(tr.used, id)
	}
	tr.errs = r.errs
	scratch := r.fp
	r.fp, r.used, r.errs = fp, used, append(errs, tr.errs...)
	for _, c := range scratch.chains {
		r.fp.chains[c.name] = c
	}
	for _, is := range scratch.sets {
		r.fp.sets[is.name] = is
	}
	for _, id := range tr.used {
		r.used[id] = true
	}
	r.cache.nextTiers[ck] = tr
	r.cache.nextByPols[pk] = tr
	return tr.memo
}

// tierPasses reports whether a policy of the tier has a Pass rule (which
// returns from the tier chain with the pass mark set).
func (r *renderer) tierPasses(t *compile.TierPolicies) bool {
	for _, pid := range t.Policies {
		if pol, ok := r.rs.Policies[pid]; ok {
			for i := range pol.Rules {
				if pol.Rules[i].Action == compile.ActionPass {
					return true
				}
			}
		}
	}
	return false
}

// tierChain renders one tier's policies for an endpoint: the rules of
// small policies written in and merged (renderRules), larger policies
// jumped to, returning as soon as one allowed or passed; then the end
// action.
func (r *renderer) tierChain(key string, t *compile.TierPolicies) string {
	var bodies []string
	var run []irmerge.Rule
	flush := func() {
		out, pending := r.renderRules(run)
		bodies = append(bodies, out...)
		if pending {
			bodies = append(bodies, ifDecided+" -j RETURN")
		}
		run = run[:0]
	}
	for _, pid := range t.Policies {
		if pol, ok := r.rs.Policies[pid]; ok && len(pol.Rules) <= inlineRules {
			for i := range pol.Rules {
				run = append(run, irmerge.Rule{Policy: pol, Index: i, Rule: &pol.Rules[i], N: 1})
			}
			continue
		}
		flush()
		pc := r.policyChain(key, pid, false)
		if pc == "" {
			continue
		}
		bodies = append(bodies, "-j "+pc, ifDecided+" -j RETURN")
	}
	flush()
	if t.EndAction != compile.ActionPass {
		bodies = append(bodies, "-j DROP")
	}
	if len(bodies) == 0 {
		// A tier that passes with nothing in it still needs a chain to
		// jump to.
		bodies = []string{"-j RETURN"}
	}
	return r.contentChain("t", bodies)
}

// policyChain renders a compiled policy (or, with profile set, a profile,
// where Pass rules do nothing) into a chain named by its ID and returns
// the name.
func (r *renderer) policyChain(key string, pid compile.PolicyID, profile bool) string {
	pol, ok := r.rs.Policies[pid]
	if !ok {
		r.errs = append(r.errs, fmt.Sprintf("endpoint %s: unknown policy %s", key, pid))
		return ""
	}
	kind := "p"
	if profile {
		kind = "r"
	}
	var name string
	if r.cache != nil {
		name = r.cache.names[polName{pid, profile}]
	}
	if name == "" {
		name = r.n.prefix + kind + "-" + shortHash(string(pid))
		if r.cache != nil {
			r.cache.names[polName{pid, profile}] = name
		}
	}
	if _, done := r.fp.chains[name]; done {
		return name
	}
	if r.cache == nil {
		r.renderPolicy(name, pol, profile)
		return name
	}
	ck := polKey{pol: pol, profile: profile, v: r.v, logPrefix: r.rs.Settings.LogPrefix}
	pr, ok := r.cache.cur[ck]
	if !ok || pr.name != name {
		// Render into a scratch plan to learn what this policy brings.
		fp, used, errs := r.fp, r.used, r.errs
		r.fp = &famPlan{v: r.v, chains: map[string]*chain{}, sets: map[string]*ipset{}}
		r.used, r.errs = map[compile.SetID]bool{}, nil
		r.renderPolicy(name, pol, profile)
		pr = &polRender{name: name, chain: r.fp.chains[name], errs: r.errs}
		for cn, c := range r.fp.chains {
			if cn != name {
				pr.extra = append(pr.extra, c)
			}
		}
		for _, is := range r.fp.sets {
			pr.sets = append(pr.sets, is)
		}
		for id := range r.used {
			pr.used = append(pr.used, id)
		}
		r.fp, r.used, r.errs = fp, used, errs
	}
	r.cache.cur[ck] = pr
	r.errs = append(r.errs, pr.errs...)
	r.fp.chains[name] = pr.chain
	for _, c := range pr.extra {
		r.fp.chains[c.name] = c
	}
	for _, is := range pr.sets {
		r.fp.sets[is.name] = is
	}
	for _, id := range pr.used {
		r.used[id] = true
	}
	return name
}

// renderPolicy writes a policy's chain.
func (r *renderer) renderPolicy(name string, pol *compile.Policy, profile bool) {
	var bodies []string
	// After an Allow or Pass, the chain must return once the mark is set.
	// The check waits until a rule of another action follows: a run of
	// Allow rules (or of Pass rules) shares one, and the end of the chain
	// needs none, since the caller checks the mark anyway.
	var pending compile.Action
	add := func(a compile.Action, out []string) {
		if len(out) == 0 {
			return
		}
		if pending != 0 && a != pending {
			bodies = append(bodies, ifDecided+" -j RETURN")
			pending = 0
		}
		bodies = append(bodies, out...)
		if a == compile.ActionAllow || a == compile.ActionPass {
			pending = a
		}
	}
	for i := 0; i < len(pol.Rules); i++ {
		ru := &pol.Rules[i]
		if profile && ru.Action == compile.ActionPass {
			continue
		}
		if j, merged := r.mergedRun(pol, i); j > i {
			add(ru.Action, merged)
			i = j - 1
			continue
		}
		add(ru.Action, r.rule(pol, i, ru))
	}
	r.addChain(name, bodies)
}

// mergeMin is the shortest run of same-shaped rules that becomes one set
// lookup; mergePorts the most ports one rule of a run may expand to.
const (
	mergeMin   = 4
	mergePorts = 256
)

// runShape says whether a rule can join a merged run: a port protocol,
// one literal nets set on one side, destination ports and nothing else.
// It returns the side of the nets ("src" or "dst").
func (r *renderer) runShape(ru *compile.Rule) (string, bool) {
	m := &ru.Match
	if ru.Action == compile.ActionLog || !slices.Contains(portProtos, m.Protocol) || m.NotProtocol != 0 ||
		m.ICMP != nil || m.NotICMP != nil || len(m.Dst.Ports) == 0 ||
		len(m.Dst.NamedPorts)+len(m.Dst.NotPorts)+len(m.Dst.NotNamedPorts)+len(m.Dst.NotSets) > 0 ||
		len(m.Src.Ports)+len(m.Src.NamedPorts)+len(m.Src.NotPorts)+len(m.Src.NotNamedPorts)+len(m.Src.NotSets) > 0 {
		return "", false
	}
	n := 0
	for _, rg := range m.Dst.Ports {
		n += int(rg.Max) - int(rg.Min) + 1
	}
	if n > mergePorts {
		return "", false
	}
	side, sets := "src", m.Src.Sets
	if len(m.Src.Sets) == 0 {
		side, sets = "dst", m.Dst.Sets
	} else if len(m.Dst.Sets) > 0 {
		return "", false
	}
	if len(sets) != 1 {
		return "", false
	}
	s, ok := r.rs.Sets[sets[0]]
	if !ok || !s.Literal || s.Kind != compile.SetNets {
		return "", false
	}
	return side, true
}

// mergedRun renders the run of same-shaped rules starting at i (same
// action, a literal net on the same side, a protocol and destination
// ports) as one hash:net,port set lookup: one rule per packet however
// long the run. It returns the index after the run, or i when the run is
// too short to merge.
func (r *renderer) mergedRun(pol *compile.Policy, i int) (int, []string) {
	first := &pol.Rules[i]
	side, ok := r.runShape(first)
	if !ok {
		return i, nil
	}
	j := i
	var members []string
	for ; j < len(pol.Rules); j++ {
		ru := &pol.Rules[j]
		sd, ok := r.runShape(ru)
		if !ok || sd != side || ru.Action != first.Action {
			break
		}
		if ru.Match.IPVersion != 0 && ru.Match.IPVersion != r.v {
			continue
		}
		id := ru.Match.Src.Sets
		if side == "dst" {
			id = ru.Match.Dst.Sets
		}
		pn, _ := ipsetProto(ru.Match.Protocol)
		for _, p := range r.rs.Sets[id[0]].Nets {
			if fam(p.Addr()) != r.v {
				continue
			}
			for _, net := range netMembers(p) {
				for _, rg := range ru.Match.Dst.Ports {
					for port := int(rg.Min); port <= int(rg.Max); port++ {
						members = append(members, fmt.Sprintf("%s,%s:%d", net, pn, port))
					}
				}
			}
		}
	}
	if j-i < mergeMin {
		return i, nil
	}
	slices.Sort(members)
	members = slices.Compact(members)
	if len(members) == 0 {
		return j, nil // nothing of the run is in this family
	}
	is := &ipset{name: fmt.Sprintf("%s%d-%s", r.n.prefix, r.v, shortHash(append([]string{"run"}, members...)...)),
		typ: "hash:net,port", family: "inet", members: members}
	if r.v == 6 {
		is.family = "inet6"
	}
	r.fp.sets[is.name] = is
	alts := []string{"-m set --match-set " + is.name + " " + side + ",dst"}
	return j, r.actionBodies(pol, i, first.Action, alts)
}

// rule renders one IR rule as rule bodies of the policy chain.
func (r *renderer) rule(pol *compile.Policy, idx int, ru *compile.Rule) []string {
	alts, excl := r.matchAlts(pol, &ru.Match)
	if len(alts) == 0 {
		return nil // cannot match in this family
	}
	action := r.actionBodies(pol, idx, ru.Action, alts)
	if len(excl) > 0 {
		// Exclusions (a negation iptables cannot write in one rule) live in
		// a chain of their own: excluded packets return before the action.
		var sub []string
		for _, e := range excl {
			sub = append(sub, e+" -j RETURN")
		}
		sub = append(sub, action...)
		action = []string{"-j " + r.contentChain("x", sub)}
	}
	return action
}

// actionBodies applies an action to every alternative match.
func (r *renderer) actionBodies(pol *compile.Policy, idx int, a compile.Action, alts []string) []string {
	with := func(alt, target string) string {
		if alt == "" {
			return target
		}
		return alt + " " + target
	}
	var target string
	switch a {
	case compile.ActionAllow:
		target = setAccept
	case compile.ActionDeny:
		target = "-j DROP"
	case compile.ActionPass:
		target = setPass
	case compile.ActionLog:
		nflog := "-j NFLOG --nflog-prefix " + strconv.Quote(r.logPrefix(pol, idx))
		if len(alts) == 1 {
			return []string{with(alts[0], nflog)}
		}
		// Alternatives may overlap: log once.
		var out []string
		for _, alt := range alts {
			out = append(out, with(alt, setLog))
		}
		return append(out, ifLogged+" "+nflog, clearLog)
	default:
		r.errs = append(r.errs, fmt.Sprintf("policy %s rule %d: unknown action %d", pol.ID, idx, a))
		return nil
	}
	out := make([]string, 0, len(alts))
	for _, alt := range alts {
		out = append(out, with(alt, target))
	}
	return out
}

// logPrefix names the policy and rule within NFLOG's 63 characters.
func (r *renderer) logPrefix(pol *compile.Policy, idx int) string {
	p := fmt.Sprintf("%s %s/%d ", r.rs.Settings.LogPrefix, pol.Name, idx)
	p = strings.TrimLeft(p, " ")
	p = strings.Map(func(c rune) rune {
		if c == '"' || c == '\\' || c < ' ' || c > '~' {
			return '_'
		}
		return c
	}, p)
	if len(p) > 63 {
		p = p[:63]
	}
	return p
}

// matchAlts returns the alternative match strings of m in this family
// (a packet matches m iff it matches one of them and none of the
// exclusions). None means m cannot match in this family.
func (r *renderer) matchAlts(pol *compile.Policy, m *compile.Match) (alts, excl []string) {
	if m.IPVersion != 0 && m.IPVersion != r.v {
		return nil, nil
	}
	needPorts := hasPortMatch(&m.Src) || hasPortMatch(&m.Dst)
	icmp := r.icmpProto()
	var protos []uint8 // 0: any protocol
	switch {
	case m.ICMP != nil:
		if needPorts || (m.Protocol != 0 && m.Protocol != icmp) {
			return nil, nil
		}
		protos = []uint8{icmp}
	case needPorts:
		for _, p := range portProtos {
			if m.Protocol == 0 || m.Protocol == p {
				protos = append(protos, p)
			}
		}
	case m.Protocol != 0:
		protos = []uint8{m.Protocol}
	default:
		protos = []uint8{0}
	}
	protos = slices.DeleteFunc(protos, func(p uint8) bool { return p != 0 && p == m.NotProtocol })
	if len(protos) == 0 {
		return nil, nil
	}

	for _, pm := range []*compile.PeerMatch{&m.Src, &m.Dst} {
		for _, ids := range [][]compile.SetID{pm.Sets, pm.NotSets, pm.NamedPorts, pm.NotNamedPorts} {
			for _, id := range ids {
				if r.sets.Set(id) == nil {
					r.errs = append(r.errs, fmt.Sprintf("policy %s: unknown set %s", pol.ID, id))
				}
			}
		}
	}

	// Address matches shared by every alternative: a literal set of one
	// net in this family is written inline (-s, -d: one CIDR per match),
	// other sets are ipset lookups.
	var addrs, common []string
	for _, side := range []struct {
		pm        *compile.PeerMatch
		dir, flag string
	}{{&m.Src, "src", "-s"}, {&m.Dst, "dst", "-d"}} {
		inline := false
		for _, id := range side.pm.Sets {
			nets, literal := r.literalNets(id)
			switch {
			case literal && len(nets) == 0:
				return nil, nil // nothing of this family can match
			case literal && len(nets) == 1 && nets[0].Bits() == 0:
				continue // matches every address
			case literal && len(nets) == 1 && !inline:
				inline = true
				addrs = append(addrs, side.flag+" "+nets[0].String())
			case r.sets.Extra[id] != nil:
				common = append(common, "-m set --match-set "+r.mergedIPSet(r.sets.Extra[id])+" "+side.dir)
			default:
				common = append(common, "-m set --match-set "+r.set(id)+" "+side.dir)
			}
		}
		for _, id := range side.pm.NotSets {
			nets, literal := r.literalNets(id)
			switch {
			case literal && len(nets) == 0:
				continue // excludes nothing of this family
			case literal && len(nets) == 1 && nets[0].Bits() == 0:
				return nil, nil // excludes every address
			case literal && len(nets) == 1 && !inline:
				inline = true
				addrs = append(addrs, "! "+side.flag+" "+nets[0].String())
			default:
				common = append(common, "-m set ! --match-set "+r.set(id)+" "+side.dir)
			}
		}
	}

	for _, p := range protos {
		head := slices.Clone(addrs)
		switch {
		case p == 0 && m.NotProtocol != 0:
			head = append(head, "! -p "+protoName(m.NotProtocol, r.v))
		case p != 0:
			head = append(head, "-p "+protoName(p, r.v))
		}
		if p == 0 && m.NotICMP != nil {
			excl = append(excl, "-p "+protoName(icmp, r.v)+" "+r.icmpMatch(m.NotICMP, false))
		}
		if p == icmp && m.ICMP != nil {
			head = append(head, r.icmpMatch(m.ICMP, false))
		}
		if p == icmp && m.NotICMP != nil {
			head = append(head, r.icmpMatch(m.NotICMP, true))
		}
		head = append(head, common...)
		var portAND []string
		srcAlts, dstAlts := []string{""}, []string{""}
		if slices.Contains(portProtos, p) {
			srcAlts = r.portAlts(&m.Src, "src", "--sports")
			dstAlts = r.portAlts(&m.Dst, "dst", "--dports")
			portAND = append(portAND, r.notPorts(&m.Src, "src", "--sports")...)
			portAND = append(portAND, r.notPorts(&m.Dst, "dst", "--dports")...)
		}
		for _, s := range srcAlts {
			for _, d := range dstAlts {
				parts := slices.Clone(head)
				for _, x := range []string{s, d} {
					if x != "" {
						parts = append(parts, x)
					}
				}
				parts = append(parts, portAND...)
				alts = append(alts, strings.Join(parts, " "))
			}
		}
	}
	if len(excl) > 0 {
		slices.Sort(excl)
		excl = slices.Compact(excl)
	}
	return alts, excl
}

// literalNets returns the nets of a literal nets set in this family.
func (r *renderer) literalNets(id compile.SetID) ([]netip.Prefix, bool) {
	s := r.sets.Set(id)
	if s == nil || !s.Literal || s.Kind != compile.SetNets {
		return nil, false
	}
	var out []netip.Prefix
	for _, p := range s.Nets {
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		if fam(p.Addr()) == r.v {
			out = append(out, p.Masked())
		}
	}
	return out, true
}

func hasPortMatch(pm *compile.PeerMatch) bool {
	return len(pm.Ports) > 0 || len(pm.NamedPorts) > 0 || len(pm.NotPorts) > 0 || len(pm.NotNamedPorts) > 0
}

func (r *renderer) icmpMatch(im *compile.ICMPMatch, neg bool) string {
	var b strings.Builder
	if r.v == 4 {
		b.WriteString("-m icmp ")
	} else {
		b.WriteString("-m icmp6 ")
	}
	if neg {
		b.WriteString("! ")
	}
	if r.v == 4 {
		b.WriteString("--icmp-type ")
	} else {
		b.WriteString("--icmpv6-type ")
	}
	b.WriteString(strconv.Itoa(int(im.Type)))
	if im.Code != nil {
		b.WriteString("/" + strconv.Itoa(int(*im.Code)))
	}
	return b.String()
}

// portAlts returns the alternatives of a side's positive port match: one
// per multiport chunk and one per named-port set; [""] when the side has
// none.
func (r *renderer) portAlts(pm *compile.PeerMatch, dir, flag string) []string {
	if len(pm.Ports) == 0 && len(pm.NamedPorts) == 0 {
		return []string{""}
	}
	var out []string
	for _, c := range portChunks(pm.Ports) {
		out = append(out, "-m multiport "+flag+" "+c)
	}
	for _, id := range pm.NamedPorts {
		out = append(out, "-m set --match-set "+r.set(id)+" "+dir+","+dir)
	}
	return out
}

// notPorts returns the conjunction of a side's negative port matches.
func (r *renderer) notPorts(pm *compile.PeerMatch, dir, flag string) []string {
	var out []string
	for _, c := range portChunks(pm.NotPorts) {
		out = append(out, "-m multiport ! "+flag+" "+c)
	}
	for _, id := range pm.NotNamedPorts {
		out = append(out, "-m set ! --match-set "+r.set(id)+" "+dir+","+dir)
	}
	return out
}

// portChunks merges ranges and splits them into multiport arguments of at
// most multiportMax ports (a range counts two).
func portChunks(rs []compile.PortRange) []string {
	if len(rs) == 0 {
		return nil
	}
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b compile.PortRange) int { return int(a.Min) - int(b.Min) })
	merged := s[:1]
	for _, x := range s[1:] {
		last := &merged[len(merged)-1]
		if int(x.Min) <= int(last.Max)+1 {
			last.Max = max(last.Max, x.Max)
			continue
		}
		merged = append(merged, x)
	}
	var out []string
	var cur []string
	n := 0
	for _, x := range merged {
		w, item := 1, strconv.Itoa(int(x.Min))
		if x.Max != x.Min {
			w, item = 2, item+":"+strconv.Itoa(int(x.Max))
		}
		if n+w > multiportMax {
			out = append(out, strings.Join(cur, ","))
			cur, n = nil, 0
		}
		cur = append(cur, item)
		n += w
	}
	return append(out, strings.Join(cur, ","))
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Render returns what Apply would write for rs on a host where nothing
// of the instance name exists yet: the `ipset restore` input, then the
// `iptables-restore --noflush` input of each family, each after a "#"
// line naming the command. It touches nothing.
func Render(rs *compile.Ruleset, name string) ([]byte, error) {
	p, err := render(rs, newNaming(name), nil)
	if err != nil {
		return nil, err
	}
	return p.dump(), nil
}

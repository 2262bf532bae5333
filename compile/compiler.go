package compile

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/calyxnet/calyx/policy"
	"github.com/calyxnet/calyx/selector"
)

// Compiler turns the objects of a policy.Set into the Ruleset of one node,
// fully (Compile) or incrementally (Update), keeping what it needs to make
// an update cost what the change touches, not what the cluster holds.
//
// Selector matching runs on two selector.Index values: one answers which
// endpoints and network sets each IP set's selector picks (every endpoint of
// the cluster: sets hold cluster-wide members), the other which policies
// apply to each local endpoint. A pod's label change therefore re-checks
// only the selectors its labels can affect, and touches only the sets and
// endpoints whose matches changed.
//
// A Compiler is not safe for concurrent use. Rulesets it returns are never
// modified afterwards: an update publishes a new Ruleset that shares the
// unchanged parts with the previous one.
type Compiler struct {
	set  *policy.Set
	node string

	setIdx *selector.Index
	polIdx *selector.Index

	items     map[string]*item
	sets      map[SetID]*setState
	policies  map[policy.ObjectKey]*policyState
	polByID   map[string]*policyState // polIdx selector ID → state
	compiled  map[PolicyID]*Policy    // IR policies of enforced policies
	endpoints map[string]*endpointState
	profiles  map[PolicyID]*profileState
	parents   map[string]struct{}
	tierRank  map[string]int
	tiers     map[string]*policy.TierInfo

	cur        *Ruleset
	dirty      dirtySet
	noOptimize bool
}

type dirtySet struct {
	sets      map[SetID]struct{}
	policies  map[PolicyID]struct{}
	endpoints map[string]struct{}
	settings  bool
}

func newDirty() dirtySet {
	return dirtySet{sets: map[SetID]struct{}{}, policies: map[PolicyID]struct{}{}, endpoints: map[string]struct{}{}}
}

// item is one member source of IP sets: an endpoint or a network set.
type item struct {
	id    string
	nets  []netip.Prefix
	ports []policy.EndpointNamedPort
	sets  map[SetID]struct{}
}

// setState is one set in use: its definition, how many rules use it, and
// its members, counted (an address can come from several items) and kept
// sorted so publishing a change costs a copy, not a sort.
type setState struct {
	def      IPSet // definition only; members live below
	refs     int
	nets     map[netip.Prefix]int
	port     map[PortMember]int
	netList  []netip.Prefix
	portList []PortMember
}

type policyState struct {
	key     policy.ObjectKey
	idxID   string
	pol     *policy.Policy
	ids     [2]PolicyID // per direction; empty when the policy has no such type
	compact [2]*Policy
	sets    []SetID
}

type endpointState struct {
	ep       *policy.Endpoint
	key      string
	policies map[*policyState]struct{}
	profiles []PolicyID
}

type profileState struct {
	refs int
	pol  *Policy
	sets []SetID
}

// New returns a Compiler for node over set. An empty node is the virtual
// node that holds every endpoint of the cluster (simulation, reach). The
// Compiler reads set but never modifies it; after changing set, pass the
// changes it reported to Update.
func New(set *policy.Set, node string, opts ...Option) *Compiler {
	c := &Compiler{set: set, node: node}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Node returns the node the Compiler compiles for.
func (c *Compiler) Node() string { return c.node }

// Ruleset returns the Ruleset of the last Compile or Update (nil before the
// first Compile).
func (c *Compiler) Ruleset() *Ruleset { return c.cur }

// Compile compiles every object of the set from scratch. It feeds every
// object through the same path as Update, so a full compile and any
// sequence of updates agree by construction (and by property test).
func (c *Compiler) Compile() (*Ruleset, error) {
	c.reset()
	// Labelled things first, selectors after: a selector added to a full
	// index is filed under its rarest requirement, and examines only the
	// items that meet it.
	objs := c.set.Objects()
	for _, policies := range []bool{false, true} {
		for _, obj := range objs {
			if isPolicyKind(policy.KindOf(obj)) != policies {
				continue
			}
			if err := c.apply(policy.Change{Key: policy.KeyOf(obj), Op: policy.OpAdded, New: obj}); err != nil {
				return nil, err
			}
		}
	}
	c.dirty.settings = true
	rs, _ := c.publish()
	return rs, nil
}

func (c *Compiler) reset() {
	c.setIdx = selector.NewIndex(c.onSetMatch, c.onSetUnmatch)
	c.polIdx = selector.NewIndex(c.onPolicyMatch, c.onPolicyUnmatch)
	c.items = map[string]*item{}
	c.sets = map[SetID]*setState{}
	c.policies = map[policy.ObjectKey]*policyState{}
	c.polByID = map[string]*policyState{}
	c.compiled = map[PolicyID]*Policy{}
	c.endpoints = map[string]*endpointState{}
	c.profiles = map[PolicyID]*profileState{}
	c.parents = map[string]struct{}{}
	c.cur = &Ruleset{Node: c.node, Sets: map[SetID]*IPSet{}, Policies: map[PolicyID]*Policy{}, Endpoints: map[string]*Endpoint{}}
	c.dirty = newDirty()
	c.loadTiers()
}

func (c *Compiler) loadTiers() {
	c.tierRank = map[string]int{}
	c.tiers = map[string]*policy.TierInfo{}
	for i, t := range c.set.Tiers() {
		c.tierRank[t.Name] = i
		c.tiers[t.Name] = t
	}
}

// Update applies the changes the policy.Set reported (in the order it
// reported them; the set must already hold the new state) and returns the
// new Ruleset and what changed. Compile must have run first.
func (c *Compiler) Update(changes ...policy.Change) (*Ruleset, *Delta, error) {
	if c.cur == nil {
		return nil, nil, fmt.Errorf("compile: Update before Compile")
	}
	for _, ch := range changes {
		if err := c.apply(ch); err != nil {
			return nil, nil, err
		}
	}
	rs, d := c.publish()
	return rs, d, nil
}

func (c *Compiler) apply(ch policy.Change) error {
	k := ch.Key
	if ch.Op == policy.OpNone && !c.originMoved(k) {
		return nil
	}
	deleted := ch.Op == policy.OpDeleted
	switch k.Kind {
	case policy.KindNamespace:
		c.parentChanged(policy.NamespaceParentID(k.Name))
	case policy.KindServiceAccount:
		c.parentChanged(policy.ServiceAccountParentID(k.Namespace, k.Name))
	case policy.KindProfile:
		c.parentChanged(k.Name)
		c.recompileProfile(k.Name)
	case policy.KindTier:
		c.loadTiers()
		for key := range c.endpoints {
			c.dirty.endpoints[key] = struct{}{}
		}
	case policy.KindFelixConfiguration:
		c.dirty.settings = true
	case policy.KindNetworkSet, policy.KindGlobalNetworkSet:
		ns, ok := c.set.NetworkSet(k)
		if deleted || !ok {
			c.deleteItem(itemID(k))
			return nil
		}
		c.upsertNetworkSet(ns)
	case policy.KindPod, policy.KindHostEndpoint:
		ep, ok := c.set.Endpoint(k)
		if deleted || !ok {
			c.deleteEndpoint(k)
			return nil
		}
		c.upsertEndpoint(ep)
	case policy.KindNetworkPolicy, policy.KindGlobalNetworkPolicy, policy.KindK8sNetworkPolicy:
		p, ok := c.set.Policy(k)
		if deleted || !ok {
			c.deletePolicy(k)
			return nil
		}
		return c.upsertPolicy(k, p)
	}
	// Staged kinds never change what is enforced; other kinds (IPPool,
	// Service …) do not concern the Ruleset.
	return nil
}

// originMoved reports whether an unchanged policy object was re-read from
// another place: its rules' origins (part of the IR) must follow.
func (c *Compiler) originMoved(k policy.ObjectKey) bool {
	if k.Kind == policy.KindProfile {
		return true // cheap to recompile; its rules carry origins too
	}
	ps, ok := c.policies[k]
	if !ok {
		return false
	}
	var now policy.Position
	if o := c.set.Origin(k); o != nil {
		now = o.Position
	}
	return ps.pol.Position != now
}

func isPolicyKind(k policy.Kind) bool {
	switch k {
	case policy.KindNetworkPolicy, policy.KindGlobalNetworkPolicy, policy.KindK8sNetworkPolicy,
		policy.KindStagedNetworkPolicy, policy.KindStagedGlobalNetworkPolicy, policy.KindStagedKubernetesNetworkPolicy:
		return true
	}
	return false
}

// itemID names an endpoint or network set in the set index.
func itemID(k policy.ObjectKey) string {
	if k.Namespace == "" {
		return string(k.Kind) + "/" + k.Name
	}
	return string(k.Kind) + "/" + k.Namespace + "/" + k.Name
}

// endpointKey is the Ruleset key of an endpoint.
func endpointKey(ep *policy.Endpoint) string {
	if ep.Kind == policy.KindHostEndpoint {
		return "host:" + ep.Name
	}
	return ep.Namespace + "/" + ep.Name
}

func (c *Compiler) local(ep *policy.Endpoint) bool {
	return c.node == "" || ep.Node == c.node
}

// parentChanged pushes a parent's current labels into both indexes.
func (c *Compiler) parentChanged(id string) {
	labels := c.set.ParentLabels(id)
	c.parents[id] = struct{}{}
	c.setIdx.UpdateParentLabels(id, labels)
	c.polIdx.UpdateParentLabels(id, labels)
}

func (c *Compiler) ensureParents(ids []string) {
	for _, id := range ids {
		if _, ok := c.parents[id]; !ok {
			c.parentChanged(id)
		}
	}
}

func (c *Compiler) upsertNetworkSet(ns *policy.NetworkSetInfo) {
	k := policy.ObjectKey{Kind: ns.Kind, Namespace: ns.Namespace, Name: ns.Name}
	nets := netsOf(ns.Nets, true, true)
	parents := policy.NetworkSetParents(ns)
	c.ensureParents(parents)
	c.upsertItem(itemID(k), nets, nil, policy.NetworkSetOwnLabels(ns), parents)
}

func (c *Compiler) upsertItem(id string, nets []netip.Prefix, ports []policy.EndpointNamedPort, labels map[string]string, parents []string) {
	it, ok := c.items[id]
	if !ok {
		it = &item{id: id, sets: map[SetID]struct{}{}}
		c.items[id] = it
	}
	// Replace this item's contributions to the sets it already matches
	// (only when its addresses or ports changed: a label change leaves
	// them alone); the index then reports the matches that start or stop.
	if !slices.Equal(it.nets, nets) || !slices.Equal(it.ports, ports) {
		for sid := range it.sets {
			c.sets[sid].remove(it)
			c.dirty.sets[sid] = struct{}{}
		}
		it.nets, it.ports = nets, ports
		for sid := range it.sets {
			c.sets[sid].add(it)
		}
	}
	c.setIdx.UpdateLabels(id, labels, parents...)
}

func (c *Compiler) deleteItem(id string) {
	if _, ok := c.items[id]; !ok {
		return
	}
	c.setIdx.DeleteLabels(id)
	delete(c.items, id)
}

func (c *Compiler) upsertEndpoint(ep *policy.Endpoint) {
	k := policy.ObjectKey{Kind: ep.Kind, Namespace: ep.Namespace, Name: ep.Name}
	nets := make([]netip.Prefix, 0, len(ep.IPs))
	for _, a := range ep.IPs {
		a = a.Unmap()
		nets = append(nets, netip.PrefixFrom(a, a.BitLen()))
	}
	parents := policy.EndpointParents(ep)
	c.ensureParents(parents)
	own := policy.EndpointOwnLabels(ep)
	c.upsertItem(itemID(k), nets, ep.Ports, own, parents)

	key := endpointKey(ep)
	if !c.local(ep) {
		c.deleteLocal(key)
		return
	}
	es, ok := c.endpoints[key]
	if !ok {
		es = &endpointState{key: key, policies: map[*policyState]struct{}{}}
		c.endpoints[key] = es
	}
	es.ep = ep
	c.dirty.endpoints[key] = struct{}{}
	c.polIdx.UpdateLabels(key, own, parents...)
}

func (c *Compiler) deleteEndpoint(k policy.ObjectKey) {
	c.deleteItem(itemID(k))
	key := k.Namespace + "/" + k.Name
	if k.Kind == policy.KindHostEndpoint {
		key = "host:" + k.Name
	}
	c.deleteLocal(key)
}

func (c *Compiler) deleteLocal(key string) {
	if _, ok := c.endpoints[key]; !ok {
		return
	}
	c.polIdx.DeleteLabels(key)
	c.dirty.endpoints[key] = struct{}{}
	es := c.endpoints[key]
	delete(c.endpoints, key)
	c.releaseProfiles(es.profiles)
}

// Index callbacks.

func (c *Compiler) onSetMatch(selID, itemID string) {
	sid := SetID(selID)
	it := c.items[itemID]
	st := c.sets[sid]
	it.sets[sid] = struct{}{}
	st.add(it)
	c.dirty.sets[sid] = struct{}{}
}

func (c *Compiler) onSetUnmatch(selID, itemID string) {
	sid := SetID(selID)
	it := c.items[itemID]
	if it == nil {
		// The item is being deleted: its entry is gone from c.items only
		// after DeleteLabels returns, so this cannot happen; be safe.
		return
	}
	delete(it.sets, sid)
	if st := c.sets[sid]; st != nil {
		st.remove(it)
		c.dirty.sets[sid] = struct{}{}
	}
}

func (c *Compiler) onPolicyMatch(selID, epKey string) {
	ps, es := c.polByID[selID], c.endpoints[epKey]
	if ps == nil || es == nil {
		return
	}
	es.policies[ps] = struct{}{}
	c.dirty.endpoints[epKey] = struct{}{}
}

func (c *Compiler) onPolicyUnmatch(selID, epKey string) {
	ps, es := c.polByID[selID], c.endpoints[epKey]
	if ps == nil || es == nil {
		return
	}
	delete(es.policies, ps)
	c.dirty.endpoints[epKey] = struct{}{}
}

func (s *setState) add(it *item) {
	s.each(it, func(n netip.Prefix) {
		if s.nets[n]++; s.nets[n] == 1 {
			s.netList = insertSorted(s.netList, n, comparePrefix)
		}
	}, func(m PortMember) {
		if s.port[m]++; s.port[m] == 1 {
			s.portList = insertSorted(s.portList, m, comparePortMember)
		}
	})
}

func (s *setState) remove(it *item) {
	s.each(it, func(n netip.Prefix) {
		if s.nets[n]--; s.nets[n] <= 0 {
			delete(s.nets, n)
			s.netList = deleteSorted(s.netList, n, comparePrefix)
		}
	}, func(m PortMember) {
		if s.port[m]--; s.port[m] <= 0 {
			delete(s.port, m)
			s.portList = deleteSorted(s.portList, m, comparePortMember)
		}
	})
}

// each calls net or port for every member the item contributes.
func (s *setState) each(it *item, net func(netip.Prefix), port func(PortMember)) {
	switch s.def.Kind {
	case SetNets:
		for _, n := range it.nets {
			net(n)
		}
	case SetNamedPorts:
		for _, p := range it.ports {
			if p.Name != s.def.PortName || p.Protocol != s.def.Protocol {
				continue
			}
			for _, n := range it.nets {
				if n.IsSingleIP() {
					port(PortMember{Addr: n.Addr(), Protocol: p.Protocol, Port: p.Port})
				}
			}
		}
	}
}

func insertSorted[T any](list []T, v T, cmp func(T, T) int) []T {
	i, found := slices.BinarySearchFunc(list, v, cmp)
	if found {
		return list
	}
	return slices.Insert(list, i, v)
}

func deleteSorted[T any](list []T, v T, cmp func(T, T) int) []T {
	i, found := slices.BinarySearchFunc(list, v, cmp)
	if !found {
		return list
	}
	return slices.Delete(list, i, i+1)
}

// snapshot returns the set with a copy of its members.
func (s *setState) snapshot() *IPSet {
	out := s.def
	if s.def.Literal {
		return &out
	}
	out.Nets = slices.Clone(s.netList)
	out.Ports = slices.Clone(s.portList)
	return &out
}

// acquireSet returns the ID of the set with definition def, creating it
// (and registering its selector) on first use.
func (c *Compiler) acquireSet(def IPSet, sel *selector.Selector) SetID {
	def.ID = setID(&def)
	if st, ok := c.sets[def.ID]; ok {
		st.refs++
		return def.ID
	}
	st := &setState{def: def, refs: 1, nets: map[netip.Prefix]int{}, port: map[PortMember]int{}}
	c.sets[def.ID] = st
	c.dirty.sets[def.ID] = struct{}{}
	if sel != nil {
		c.setIdx.UpdateSelector(string(def.ID), sel)
	}
	return def.ID
}

func (c *Compiler) releaseSet(id SetID) {
	st := c.sets[id]
	if st == nil {
		return
	}
	if st.refs--; st.refs > 0 {
		return
	}
	if st.def.Selector != "" {
		c.setIdx.DeleteSelector(string(id))
	}
	for _, it := range c.items {
		delete(it.sets, id)
	}
	delete(c.sets, id)
	c.dirty.sets[id] = struct{}{}
}

func (c *Compiler) upsertPolicy(k policy.ObjectKey, p *policy.Policy) error {
	if p.Staged {
		return nil
	}
	old := c.policies[k]
	ps := &policyState{key: k, idxID: "p/" + itemID(k), pol: p}
	// Compile the new version before releasing the old one, so the sets
	// both use survive with their members.
	if err := c.compilePolicy(ps); err != nil {
		return err
	}
	if old != nil {
		c.releasePolicy(old)
		// Endpoints that keep matching must move to the new state; the
		// index only reports matches that start or stop.
		for _, key := range c.polIdx.ItemsMatching(old.idxID) {
			if es := c.endpoints[key]; es != nil {
				delete(es.policies, old)
				es.policies[ps] = struct{}{}
				c.dirty.endpoints[key] = struct{}{}
			}
		}
	}
	c.policies[k] = ps
	c.polByID[ps.idxID] = ps
	for d, pol := range ps.compact {
		if pol != nil {
			c.compiled[ps.ids[d]] = pol
			c.dirty.policies[ps.ids[d]] = struct{}{}
		}
	}
	c.polIdx.UpdateSelector(ps.idxID, p.Selector)
	return nil
}

func (c *Compiler) deletePolicy(k policy.ObjectKey) {
	ps := c.policies[k]
	if ps == nil {
		return
	}
	c.polIdx.DeleteSelector(ps.idxID)
	c.releasePolicy(ps)
	delete(c.policies, k)
	delete(c.polByID, ps.idxID)
}

func (c *Compiler) releasePolicy(ps *policyState) {
	for _, id := range ps.sets {
		c.releaseSet(id)
	}
	for d, pol := range ps.compact {
		if pol != nil {
			delete(c.compiled, ps.ids[d])
			c.dirty.policies[ps.ids[d]] = struct{}{}
		}
	}
}

// publish builds the next Ruleset from the dirty parts and reports the
// delta.
func (c *Compiler) publish() (*Ruleset, *Delta) {
	old := c.cur
	rs := &Ruleset{Node: c.node, Sets: old.Sets, Policies: old.Policies, Endpoints: old.Endpoints, Settings: old.Settings}
	d := &Delta{}

	// Endpoints first: they acquire and release profile policies.
	if len(c.dirty.endpoints) > 0 {
		rs.Endpoints = maps.Clone(old.Endpoints)
		for _, key := range slices.Sorted(maps.Keys(c.dirty.endpoints)) {
			prev, had := old.Endpoints[key]
			es := c.endpoints[key]
			if es == nil {
				if had {
					delete(rs.Endpoints, key)
					d.EndpointsRemoved = append(d.EndpointsRemoved, key)
				}
				continue
			}
			e := c.buildEndpoint(es)
			switch {
			case !had:
				rs.Endpoints[key] = e
				d.EndpointsAdded = append(d.EndpointsAdded, key)
			case !prev.Equal(e):
				rs.Endpoints[key] = e
				d.EndpointsChanged = append(d.EndpointsChanged, key)
			}
		}
	}
	if len(c.dirty.policies) > 0 {
		rs.Policies = maps.Clone(old.Policies)
		for _, id := range slices.Sorted(maps.Keys(c.dirty.policies)) {
			prev, had := old.Policies[id]
			cur := c.policyByID(id)
			switch {
			case cur == nil && had:
				delete(rs.Policies, id)
				d.PoliciesRemoved = append(d.PoliciesRemoved, id)
			case cur == nil:
			case !had:
				rs.Policies[id] = cur
				d.PoliciesAdded = append(d.PoliciesAdded, id)
			case !prev.Equal(cur):
				rs.Policies[id] = cur
				d.PoliciesChanged = append(d.PoliciesChanged, id)
			}
		}
	}
	if len(c.dirty.sets) > 0 {
		rs.Sets = maps.Clone(old.Sets)
		for _, id := range slices.Sorted(maps.Keys(c.dirty.sets)) {
			prev, had := old.Sets[id]
			st := c.sets[id]
			if st == nil {
				if had {
					delete(rs.Sets, id)
					d.SetsRemoved = append(d.SetsRemoved, id)
				}
				continue
			}
			s := st.snapshot()
			if !had {
				rs.Sets[id] = s
				d.SetsAdded = append(d.SetsAdded, id)
				continue
			}
			if mc, changed := diffMembers(prev, s); changed {
				rs.Sets[id] = s
				d.SetMembers = append(d.SetMembers, mc)
			}
		}
	}
	if c.dirty.settings {
		rs.Settings = c.settings()
		d.SettingsChanged = !old.Settings.Equal(&rs.Settings)
	}
	c.cur = rs
	c.dirty = newDirty()
	return rs, d
}

// policyByID returns the compiled policy or profile with id, if it is in
// use.
func (c *Compiler) policyByID(id PolicyID) *Policy {
	if ps, ok := c.profiles[id]; ok {
		return ps.pol
	}
	return c.compiled[id]
}

// buildEndpoint lays out the tiers and profiles of one local endpoint.
func (c *Compiler) buildEndpoint(es *endpointState) *Endpoint {
	ep := es.ep
	e := &Endpoint{Key: es.key, Node: ep.Node}
	if ep.Kind == policy.KindHostEndpoint {
		e.Kind = HostEndpoint
		e.Interface = ep.InterfaceName
	} else {
		e.Kind = WorkloadEndpoint
		e.Interface = WorkloadInterface(ep.Namespace, ep.Name)
	}
	e.Addrs = make([]netip.Addr, 0, len(ep.IPs))
	for _, a := range ep.IPs {
		e.Addrs = append(e.Addrs, a.Unmap())
	}
	slices.SortFunc(e.Addrs, netip.Addr.Compare)
	e.Addrs = slices.Compact(e.Addrs)

	pols := make([]*policyState, 0, len(es.policies))
	for ps := range es.policies {
		pols = append(pols, ps)
	}
	slices.SortFunc(pols, c.comparePolicies)
	for d, dp := range []*DirectionPolicy{&e.Ingress, &e.Egress} {
		for _, ps := range pols {
			if ps.compact[d] == nil {
				continue
			}
			tier := ps.pol.Tier
			if n := len(dp.Tiers); n == 0 || dp.Tiers[n-1].Tier != tier {
				dp.Tiers = append(dp.Tiers, TierPolicies{Tier: tier, EndAction: c.tierEndAction(tier)})
			}
			t := &dp.Tiers[len(dp.Tiers)-1]
			t.Policies = append(t.Policies, ps.ids[d])
		}
	}
	c.releaseProfiles(es.profiles)
	es.profiles = c.acquireProfiles(ep)
	for _, id := range es.profiles {
		if strings.HasPrefix(string(id), "in:") {
			e.Ingress.Profiles = append(e.Ingress.Profiles, id)
		} else {
			e.Egress.Profiles = append(e.Egress.Profiles, id)
		}
	}
	return e
}

func (c *Compiler) tierEndAction(tier string) Action {
	if t, ok := c.tiers[tier]; ok && t.DefaultAction == policy.Pass {
		return ActionPass
	}
	return ActionDeny
}

// comparePolicies orders policies as Calico evaluates them: by tier, then
// order (unset last), then namespace/name, then kind.
func (c *Compiler) comparePolicies(a, b *policyState) int {
	ra, oka := c.tierRank[a.pol.Tier]
	rb, okb := c.tierRank[b.pol.Tier]
	if !oka {
		ra = len(c.tierRank)
	}
	if !okb {
		rb = len(c.tierRank)
	}
	if ra != rb {
		return ra - rb
	}
	if a.pol.Tier != b.pol.Tier {
		return strings.Compare(a.pol.Tier, b.pol.Tier)
	}
	switch {
	case a.pol.Order == nil && b.pol.Order != nil:
		return 1
	case a.pol.Order != nil && b.pol.Order == nil:
		return -1
	case a.pol.Order != nil && b.pol.Order != nil && *a.pol.Order != *b.pol.Order:
		return cmp.Compare(*a.pol.Order, *b.pol.Order)
	}
	if c := strings.Compare(a.pol.Key(), b.pol.Key()); c != 0 {
		return c
	}
	return strings.Compare(string(a.pol.Kind), string(b.pol.Kind))
}

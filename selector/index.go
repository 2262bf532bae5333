package selector

import (
	"cmp"
	"maps"
	"slices"
)

// Index is an incremental inverted index that keeps, for a changing set of
// selectors and a changing set of labelled items, the relation "selector S
// matches item I", and reports every change of that relation.
//
// Items are what selectors pick (endpoints, network sets, …). An item may
// inherit labels from parents (its namespace, say): its effective labels
// are its own labels, then those of its parents in the order given to
// [Index.UpdateLabels], the first one holding a key winning, as in
// Calico's label index. Updating a parent's labels updates the matches of
// all its items.
//
// The index does not evaluate every selector on every change: each selector
// is filed under one requirement it places on labels (a key restricted to
// a few values, as in app == "x" or tier in {…}, else a key that must be
// present, as in has(k); among several, the one whose buckets hold the
// fewest selectors at the time), and an item is only checked against the
// selectors filed under its own labels plus the few selectors that require
// nothing usable (such as env != "prod"). Among those, only the selectors
// that read a label whose value changed are evaluated again (for a parent
// update, the readers of its changed labels are marked once for all its
// items). Likewise, a new selector only examines the items (and the items
// of parents) that carry its requirement.
//
// Callbacks are called synchronously, after the index has been updated,
// once per change of the relation: OnMatchStopped first, then
// OnMatchStarted, each batch sorted by selector ID then item ID, so the
// sequence of calls is deterministic. Callbacks may query the index but
// must not modify it (doing so panics).
//
// An Index is not safe for concurrent use.
type Index struct {
	onStarted, onStopped func(selectorID, itemID string)

	selectors map[string]*selEntry
	items     map[string]*itemEntry
	parents   map[string]*parentEntry

	// Selectors by the requirement they are filed under (see planIndex).
	selByValue map[string]map[string]*ptrSet[*selEntry]
	selByKey   map[string]*ptrSet[*selEntry]
	selAny     ptrSet[*selEntry]
	// Selectors by every label key they read.
	readers map[string]*ptrSet[*selEntry]

	// Items and parents by their own labels.
	itemByValue   map[string]map[string]*ptrSet[*itemEntry]
	parentByValue map[string]map[string]*ptrSet[*parentEntry]

	// Scratch state of the operation in progress.
	epoch            uint64
	readEpoch        uint64 // marks the selectors reading a changed parent label
	started, stopped []match
	notifying        bool
}

type selEntry struct {
	id      string
	sel     *Selector
	keys    []string // label keys the selector reads, without duplicates
	plan    indexPlan
	matches ptrSet[*itemEntry]
	hit     uint64 // epoch in which it last matched the item being checked
	reads   uint64 // readEpoch in which it read a changed parent label
}

type itemEntry struct {
	id      string
	labels  map[string]string // own labels
	eff     map[string]string // effective labels; labels itself unless effOwn
	effOwn  bool              // eff is a map of its own (something is inherited)
	parents []*parentEntry
	matches ptrSet[*selEntry]
	seen    uint64 // epoch in which it was last examined for a selector
	hit     uint64 // epoch in which it last matched the selector being checked
}

// refreshEffective recomputes it.eff: its own labels, then for each key it
// lacks, the value of the first parent holding the key. Materialising the
// merge costs a map per item with parents, but makes every evaluation one
// map lookup per leaf.
func (it *itemEntry) refreshEffective() {
	inherits := false
	for _, p := range it.parents {
		if len(p.labels) > 0 {
			inherits = true
			break
		}
	}
	if !inherits {
		it.eff, it.effOwn = it.labels, false
		return
	}
	eff := make(map[string]string, len(it.labels)+len(it.parents[0].labels))
	maps.Copy(eff, it.labels)
	for _, p := range it.parents {
		for k, v := range p.labels {
			if _, ok := eff[k]; !ok {
				eff[k] = v
			}
		}
	}
	it.eff, it.effOwn = eff, true
}

// refreshKeys brings it.eff up to date after a parent changed the labels
// keys, in place when it can.
func (it *itemEntry) refreshKeys(keys []string) {
	if !it.effOwn {
		it.refreshEffective()
		return
	}
	for _, k := range keys {
		if v, ok := it.labels[k]; ok {
			it.eff[k] = v
			continue
		}
		found := false
		for _, p := range it.parents {
			if v, ok := p.labels[k]; ok {
				it.eff[k], found = v, true
				break
			}
		}
		if !found {
			delete(it.eff, k)
		}
	}
	if len(it.eff) == len(it.labels) {
		// Nothing is inherited any more: share the own labels again.
		it.eff, it.effOwn = it.labels, false
	}
}

type parentEntry struct {
	id       string
	labels   map[string]string
	children ptrSet[*itemEntry]
}

type match struct {
	sel  *selEntry
	item *itemEntry
}

// NewIndex returns an empty index that reports changes of the match
// relation to onMatchStarted and onMatchStopped; either may be nil.
func NewIndex(onMatchStarted, onMatchStopped func(selectorID, itemID string)) *Index {
	return &Index{
		onStarted:     onMatchStarted,
		onStopped:     onMatchStopped,
		selectors:     map[string]*selEntry{},
		items:         map[string]*itemEntry{},
		parents:       map[string]*parentEntry{},
		selByValue:    map[string]map[string]*ptrSet[*selEntry]{},
		selByKey:      map[string]*ptrSet[*selEntry]{},
		readers:       map[string]*ptrSet[*selEntry]{},
		itemByValue:   map[string]map[string]*ptrSet[*itemEntry]{},
		parentByValue: map[string]map[string]*ptrSet[*parentEntry]{},
	}
}

func (ix *Index) checkNotNotifying() {
	if ix.notifying {
		panic("selector: Index modified from one of its callbacks")
	}
}

// UpdateSelector adds the selector id, or replaces its expression. A nil
// selector is all(). Replacing a selector by one with the same canonical
// form changes nothing.
func (ix *Index) UpdateSelector(id string, s *Selector) {
	ix.checkNotNotifying()
	if s == nil {
		s = All()
	}
	e := ix.selectors[id]
	if e != nil {
		if e.sel.String() == s.String() {
			return
		}
		ix.unfileSelector(e)
	} else {
		e = &selEntry{id: id}
		ix.selectors[id] = e
	}
	e.sel = s
	e.keys = keysOf(s.root, nil)
	slices.Sort(e.keys)
	e.keys = slices.Compact(e.keys)
	e.plan = choosePlan(s.root,
		func(k, v string) int {
			if set := ix.selByValue[k][v]; set != nil {
				return set.len()
			}
			return 0
		},
		func(k string) int {
			if set := ix.selByKey[k]; set != nil {
				return set.len()
			}
			return 0
		})
	ix.fileSelector(e)
	ix.recomputeSelector(e)
	ix.flush()
}

// DeleteSelector removes the selector id; its matches stop.
func (ix *Index) DeleteSelector(id string) {
	ix.checkNotNotifying()
	e := ix.selectors[id]
	if e == nil {
		return
	}
	for it := range e.matches.all() {
		ix.stopped = append(ix.stopped, match{e, it})
	}
	ix.unfileSelector(e)
	delete(ix.selectors, id)
	ix.flush()
}

// UpdateLabels adds the item id, or replaces its labels and parents.
// labels are the item's own labels (the index keeps a copy); parents are
// the IDs of the parents it inherits labels from, earlier ones winning.
// A parent need not be known yet: until [Index.UpdateParentLabels] is
// called for it, it has no labels.
func (ix *Index) UpdateLabels(id string, labels map[string]string, parents ...string) {
	ix.checkNotNotifying()
	// changed lists the own labels that changed, so that only the
	// selectors reading them are evaluated again; nil means all.
	changed := []string{}
	it := ix.items[id]
	if it == nil {
		it = &itemEntry{id: id}
		ix.items[id] = it
		changed = nil
	} else if maps.Equal(it.labels, labels) && sameParents(it.parents, parents) {
		return
	}
	for k, v := range it.labels {
		if nv, ok := labels[k]; !ok || nv != v {
			removeFiled(ix.itemByValue, k, v, it)
			if changed != nil {
				changed = append(changed, k)
			}
		}
	}
	for k, v := range labels {
		if ov, ok := it.labels[k]; !ok || ov != v {
			addFiled(ix.itemByValue, k, v, it)
			if !ok && changed != nil {
				changed = append(changed, k)
			}
		}
	}
	it.labels = maps.Clone(labels)

	if !sameParents(it.parents, parents) {
		changed = nil
		old := it.parents
		it.parents = make([]*parentEntry, 0, len(parents))
		for _, pid := range parents {
			p := ix.parent(pid)
			if !slices.Contains(it.parents, p) {
				it.parents = append(it.parents, p)
				p.children.add(it)
			}
		}
		for _, p := range old {
			if !slices.Contains(it.parents, p) {
				p.children.remove(it)
				ix.collectParent(p)
			}
		}
		if len(it.parents) == 0 {
			it.parents = nil
		}
	}

	it.refreshEffective()
	var affected func(*selEntry) bool
	if changed != nil {
		affected = func(e *selEntry) bool { return readsAny(e.keys, changed) }
	}
	ix.recomputeItem(it, affected)
	ix.flush()
}

func sameParents(have []*parentEntry, want []string) bool {
	// have is want with duplicates dropped; compare in order.
	i := 0
	for j, pid := range want {
		if slices.Contains(want[:j], pid) {
			continue
		}
		if i >= len(have) || have[i].id != pid {
			return false
		}
		i++
	}
	return i == len(have)
}

// DeleteLabels removes the item id; its matches stop.
func (ix *Index) DeleteLabels(id string) {
	ix.checkNotNotifying()
	it := ix.items[id]
	if it == nil {
		return
	}
	for e := range it.matches.all() {
		ix.stopped = append(ix.stopped, match{e, it})
	}
	for k, v := range it.labels {
		removeFiled(ix.itemByValue, k, v, it)
	}
	for _, p := range it.parents {
		p.children.remove(it)
		ix.collectParent(p)
	}
	delete(ix.items, id)
	ix.flush()
}

// UpdateParentLabels sets the labels of the parent parentID (the index
// keeps a copy) and updates the matches of every item inheriting from it.
func (ix *Index) UpdateParentLabels(parentID string, labels map[string]string) {
	ix.checkNotNotifying()
	p := ix.parent(parentID)
	if maps.Equal(p.labels, labels) {
		ix.collectParent(p)
		return
	}
	var changed []string
	for k, v := range p.labels {
		if nv, ok := labels[k]; !ok || nv != v {
			removeFiled(ix.parentByValue, k, v, p)
			changed = append(changed, k)
		}
	}
	for k, v := range labels {
		if ov, ok := p.labels[k]; !ok || ov != v {
			addFiled(ix.parentByValue, k, v, p)
			if !ok {
				changed = append(changed, k)
			}
		}
	}
	p.labels = maps.Clone(labels)
	// Every child is checked against the same changed keys: mark their
	// readers once rather than asking each candidate of each child.
	ix.readEpoch++
	mark := ix.readEpoch
	for _, k := range changed {
		if set := ix.readers[k]; set != nil {
			for e := range set.all() {
				e.reads = mark
			}
		}
	}
	affected := func(e *selEntry) bool { return e.reads == mark }
	for it := range p.children.all() {
		if inheritsAny(it, p, changed) {
			it.refreshKeys(changed)
			ix.recomputeItem(it, affected)
		}
	}
	ix.collectParent(p)
	ix.flush()
}

// DeleteParentLabels removes the labels of parentID; its items keep
// referring to it (with no labels) until they are updated or deleted.
func (ix *Index) DeleteParentLabels(parentID string) {
	ix.UpdateParentLabels(parentID, nil)
}

// inheritsAny reports whether it takes any of keys from p, that is whether
// neither its own labels nor an earlier parent hold the key.
func inheritsAny(it *itemEntry, p *parentEntry, keys []string) bool {
next:
	for _, k := range keys {
		if _, own := it.labels[k]; own {
			continue
		}
		for _, q := range it.parents {
			if q == p {
				return true
			}
			if _, ok := q.labels[k]; ok {
				continue next
			}
		}
	}
	return false
}

func (ix *Index) parent(id string) *parentEntry {
	p := ix.parents[id]
	if p == nil {
		p = &parentEntry{id: id}
		ix.parents[id] = p
	}
	return p
}

// collectParent forgets p once nothing refers to it and it has no labels.
func (ix *Index) collectParent(p *parentEntry) {
	if p.children.len() == 0 && len(p.labels) == 0 {
		delete(ix.parents, p.id)
	}
}

// ItemsMatching returns the IDs of the items the selector selectorID
// matches, sorted.
func (ix *Index) ItemsMatching(selectorID string) []string {
	e := ix.selectors[selectorID]
	if e == nil {
		return nil
	}
	out := make([]string, 0, e.matches.len())
	for it := range e.matches.all() {
		out = append(out, it.id)
	}
	slices.Sort(out)
	return out
}

// SelectorsMatching returns the IDs of the selectors that match the item
// itemID, sorted.
func (ix *Index) SelectorsMatching(itemID string) []string {
	it := ix.items[itemID]
	if it == nil {
		return nil
	}
	out := make([]string, 0, it.matches.len())
	for e := range it.matches.all() {
		out = append(out, e.id)
	}
	slices.Sort(out)
	return out
}

// Selector returns the selector filed as id.
func (ix *Index) Selector(id string) (*Selector, bool) {
	e := ix.selectors[id]
	if e == nil {
		return nil, false
	}
	return e.sel, true
}

func (ix *Index) fileSelector(e *selEntry) {
	for _, k := range e.keys {
		set := ix.readers[k]
		if set == nil {
			set = &ptrSet[*selEntry]{}
			ix.readers[k] = set
		}
		set.add(e)
	}
	switch e.plan.kind {
	case indexByValue:
		for _, v := range e.plan.values {
			addFiled(ix.selByValue, e.plan.key, v, e)
		}
	case indexByKey:
		set := ix.selByKey[e.plan.key]
		if set == nil {
			set = &ptrSet[*selEntry]{}
			ix.selByKey[e.plan.key] = set
		}
		set.add(e)
	case indexAny:
		ix.selAny.add(e)
	}
}

func (ix *Index) unfileSelector(e *selEntry) {
	for _, k := range e.keys {
		if set := ix.readers[k]; set != nil {
			set.remove(e)
			if set.len() == 0 {
				delete(ix.readers, k)
			}
		}
	}
	switch e.plan.kind {
	case indexByValue:
		for _, v := range e.plan.values {
			removeFiled(ix.selByValue, e.plan.key, v, e)
		}
	case indexByKey:
		if set := ix.selByKey[e.plan.key]; set != nil {
			set.remove(e)
			if set.len() == 0 {
				delete(ix.selByKey, e.plan.key)
			}
		}
	case indexAny:
		ix.selAny.remove(e)
	}
}

func addFiled[T comparable](m map[string]map[string]*ptrSet[T], k, v string, x T) {
	byValue := m[k]
	if byValue == nil {
		byValue = map[string]*ptrSet[T]{}
		m[k] = byValue
	}
	set := byValue[v]
	if set == nil {
		set = &ptrSet[T]{}
		byValue[v] = set
	}
	set.add(x)
}

func removeFiled[T comparable](m map[string]map[string]*ptrSet[T], k, v string, x T) {
	byValue := m[k]
	set := byValue[v]
	if set == nil {
		return
	}
	set.remove(x)
	if set.len() == 0 {
		delete(byValue, v)
		if len(byValue) == 0 {
			delete(m, k)
		}
	}
}

// matchesItem evaluates e on the effective labels of it.
func matchesItem(e *selEntry, it *itemEntry) bool {
	return e.sel.prog.evalMap(it.eff)
}

// recomputeItem queues the changes of it's matches: it is checked against
// the selectors filed under its effective labels and the unrestricted ones;
// a selector it matched that is not among those cannot match any more.
// Unless affected is nil, only the selectors it reports can have changed
// their result (they read a label that changed); the others keep theirs
// without being evaluated.
func (ix *Index) recomputeItem(it *itemEntry, affected func(*selEntry) bool) {
	ix.epoch++
	epoch := ix.epoch
	check := func(e *selEntry) {
		if affected != nil && !affected(e) {
			if it.matches.has(e) {
				e.hit = epoch
			}
			return
		}
		if matchesItem(e, it) {
			e.hit = epoch
			if !it.matches.has(e) {
				ix.started = append(ix.started, match{e, it})
			}
		}
	}
	visit := func(k, v string) {
		if set := ix.selByValue[k][v]; set != nil {
			for e := range set.all() {
				check(e)
			}
		}
		if set := ix.selByKey[k]; set != nil {
			for e := range set.all() {
				check(e)
			}
		}
	}
	for k, v := range it.eff {
		visit(k, v)
	}
	for e := range ix.selAny.all() {
		check(e)
	}
	for e := range it.matches.all() {
		if e.hit != epoch {
			ix.stopped = append(ix.stopped, match{e, it})
		}
	}
}

// recomputeSelector queues the changes of e's matches, examining only the
// items (own labels or parents' labels) that carry e's requirement.
func (ix *Index) recomputeSelector(e *selEntry) {
	ix.epoch++
	epoch := ix.epoch
	check := func(it *itemEntry) {
		if it.seen == epoch {
			return
		}
		it.seen = epoch
		if matchesItem(e, it) {
			it.hit = epoch
			if !e.matches.has(it) {
				ix.started = append(ix.started, match{e, it})
			}
		}
	}
	checkParents := func(set *ptrSet[*parentEntry]) {
		for p := range set.all() {
			for it := range p.children.all() {
				check(it)
			}
		}
	}
	switch e.plan.kind {
	case indexByValue:
		for _, v := range e.plan.values {
			if set := ix.itemByValue[e.plan.key][v]; set != nil {
				for it := range set.all() {
					check(it)
				}
			}
			if set := ix.parentByValue[e.plan.key][v]; set != nil {
				checkParents(set)
			}
		}
	case indexByKey:
		for _, set := range ix.itemByValue[e.plan.key] {
			for it := range set.all() {
				check(it)
			}
		}
		for _, set := range ix.parentByValue[e.plan.key] {
			checkParents(set)
		}
	case indexAny:
		for _, it := range ix.items {
			check(it)
		}
	}
	for it := range e.matches.all() {
		if it.hit != epoch {
			ix.stopped = append(ix.stopped, match{e, it})
		}
	}
}

// readsAny reports whether any of changed is among keys. Both are short:
// a linear scan of string equality (length first) beats a binary search.
func readsAny(keys, changed []string) bool {
	for _, c := range changed {
		for _, k := range keys {
			if k == c {
				return true
			}
		}
	}
	return false
}

// keysOf appends the label keys n reads.
func keysOf(n *node, keys []string) []string {
	if n.key != "" {
		keys = append(keys, n.key)
	}
	for _, a := range n.args {
		keys = keysOf(a, keys)
	}
	return keys
}

func compareMatches(a, b match) int {
	if c := cmp.Compare(a.sel.id, b.sel.id); c != 0 {
		return c
	}
	return cmp.Compare(a.item.id, b.item.id)
}

// flush applies the queued changes, then reports them.
func (ix *Index) flush() {
	defer func() {
		ix.notifying = false
		clear(ix.stopped)
		clear(ix.started)
		ix.stopped = ix.stopped[:0]
		ix.started = ix.started[:0]
	}()
	for _, m := range ix.stopped {
		m.sel.matches.remove(m.item)
		m.item.matches.remove(m.sel)
	}
	for _, m := range ix.started {
		m.sel.matches.add(m.item)
		m.item.matches.add(m.sel)
	}
	ix.notifying = true
	if ix.onStopped != nil {
		slices.SortFunc(ix.stopped, compareMatches)
		for _, m := range ix.stopped {
			ix.onStopped(m.sel.id, m.item.id)
		}
	}
	if ix.onStarted != nil {
		slices.SortFunc(ix.started, compareMatches)
		for _, m := range ix.started {
			ix.onStarted(m.sel.id, m.item.id)
		}
	}
}

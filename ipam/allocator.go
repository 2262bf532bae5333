package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/calyxnet/calyx/selector"
)

// Config holds the allocator's optional settings; the zero value works.
type Config struct {
	// StrictAffinity forbids borrowing addresses from blocks affine to
	// other nodes when no block can be claimed.
	StrictAffinity bool
	// Cooldown is how long a released address stays unused, so that a
	// late packet for the old pod never reaches a new one (default 30s;
	// negative: none).
	Cooldown time.Duration
	// GCGrace is how long a handle must exist, and be seen dead, before GC
	// frees it (default 15m; negative: none).
	GCGrace time.Duration
	// MaxRetries bounds the retries of a conflicting commit (default 64).
	MaxRetries int
	// RetryBackoff is the base of the jittered exponential backoff between
	// retries (default 1ms).
	RetryBackoff time.Duration
	// MatchNode evaluates a pool's node selector against node labels
	// (default: the Calico selector language of package selector).
	MatchNode func(selector string, labels map[string]string) (bool, error)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives debug logs (default: discarded).
	Logger *slog.Logger
}

// Allocator hands out addresses from pools, block by block, with node
// affinity. It is safe for concurrent use, and any number of allocators
// (in any number of processes) may share one [Store].
type Allocator struct {
	s   Store
	cfg Config
	rp  retryPolicy

	gcMu     sync.Mutex
	suspects map[string]suspect

	// combiners group this process's concurrent assignments per node on
	// stores without their own write lock: one commit for many, and no
	// goroutines of one agent fighting over the same block.
	combiners sync.Map // node name → *combiner
}

type suspect struct {
	first   int64 // when first seen dead
	created int64 // the handle's creation time, to tell a reused ID apart
}

func defaultMatchNode(expr string, labels map[string]string) (bool, error) {
	sel, err := selector.Parse(expr)
	if err != nil {
		return false, fmt.Errorf("%w: node selector %q: %w", ErrInvalid, expr, err)
	}
	return sel.Matches(selector.Set(labels)), nil
}

// New returns an allocator over s.
func New(s Store, cfg Config) *Allocator {
	if cfg.Cooldown == 0 {
		cfg.Cooldown = 30 * time.Second
	} else if cfg.Cooldown < 0 {
		cfg.Cooldown = 0
	}
	if cfg.GCGrace == 0 {
		cfg.GCGrace = 15 * time.Minute
	} else if cfg.GCGrace < 0 {
		cfg.GCGrace = 0
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 64
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Millisecond
	}
	if cfg.MatchNode == nil {
		cfg.MatchNode = defaultMatchNode
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Allocator{s: s, cfg: cfg, rp: retryPolicy{max: cfg.MaxRetries, base: cfg.RetryBackoff}, suspects: map[string]suspect{}}
}

// Store returns the allocator's store.
func (a *Allocator) Store() Store { return a.s }

// run executes fn as one read-modify-write with bounded retries.
func (a *Allocator) run(ctx context.Context, fn func(t *txn) error) error {
	return update(ctx, a.s, a.rp, func(r Reader) ([]Op, error) {
		t := newTxn(r, a.cfg.Now().UnixNano())
		if err := fn(t); err != nil {
			return nil, &validateError{err: err, reads: t.reads()}
		}
		return t.ops()
	})
}

// read executes fn against the store without writing.
func (a *Allocator) read(ctx context.Context, fn func(t *txn) error) error {
	return fn(newTxn(storeReader{ctx, a.s}, a.cfg.Now().UnixNano()))
}

// AssignRequest asks for addresses for one handle (typically one pod's
// network attachment).
type AssignRequest struct {
	// Handle identifies the holder; its addresses are released together.
	// Assigning to an existing handle adds addresses to it.
	Handle string
	// Node is the node the addresses are for; its affine blocks are used
	// first.
	Node string
	// NodeLabels are matched against the pools' node selectors.
	NodeLabels map[string]string
	// IPv4 and IPv6 are how many addresses of each family to assign.
	IPv4, IPv6 int
	// Attrs are kept with the handle (namespace, pod, container …).
	Attrs map[string]string
	// Pools, when set, restricts the request to these pools by name; it
	// is the only way to use a Manual pool.
	Pools []string
	// Use is what the addresses are for (default Workload).
	Use Use
	// Idempotent counts the addresses the handle already holds towards
	// the request and assigns only what is missing, so a retried request
	// (say, after a timeout whose commit did land) gets the same
	// addresses back instead of more.
	Idempotent bool
}

// AssignResult lists the assigned addresses.
type AssignResult struct {
	IPv4 []netip.Addr
	IPv6 []netip.Addr
}

// AutoAssign assigns addresses from the pools the request may use: first
// from blocks affine to the node, then from a newly claimed block, and
// only when no block can be claimed and StrictAffinity is off, from
// another node's block. It is all or nothing: on error nothing is held.
func (a *Allocator) AutoAssign(ctx context.Context, req AssignRequest) (AssignResult, error) {
	if err := validName("handle", req.Handle); err != nil {
		return AssignResult{}, err
	}
	if err := validName("node", req.Node); err != nil {
		return AssignResult{}, err
	}
	if req.IPv4 < 0 || req.IPv6 < 0 || req.IPv4+req.IPv6 == 0 || req.IPv4+req.IPv6 > 64 {
		return AssignResult{}, fmt.Errorf("%w: asked for %d IPv4 and %d IPv6 addresses", ErrInvalid, req.IPv4, req.IPv6)
	}
	if req.Use == "" {
		req.Use = UseWorkload
	}
	var res AssignResult
	var err error
	if _, ok := a.s.(Updater); ok {
		// The store groups concurrent commits itself.
		res, err = a.assignOne(ctx, req)
	} else {
		res, err = a.combined(ctx, req)
	}
	if err != nil {
		return AssignResult{}, fmt.Errorf("ipam: assign %s on %s: %w", req.Handle, req.Node, err)
	}
	return res, nil
}

func (a *Allocator) assignOne(ctx context.Context, req AssignRequest) (AssignResult, error) {
	var res AssignResult
	err := a.run(ctx, func(t *txn) error {
		var err error
		res, err = a.assignIn(t, req)
		return err
	})
	return res, err
}

// maxCombined bounds the requests in one combined commit, far below
// etcd's default limit of 128 operations per transaction.
const maxCombined = 32

// combinedTimeout bounds a commit made on behalf of several callers.
const combinedTimeout = 30 * time.Second

// assignCall is one AutoAssign waiting for a combined commit.
type assignCall struct {
	ctx  context.Context
	req  AssignRequest
	res  AssignResult
	err  error
	done chan struct{} // closed when res and err are set
	lead chan struct{} // closed when this call must commit for the others
}

// combiner queues one node's concurrent assignments.
type combiner struct {
	mu      sync.Mutex
	pending []*assignCall
	running bool
}

// combined commits concurrent assignments for one node together, on
// stores where each commit is a network round trip and concurrent
// commits on one block would only conflict. A leader commits batches
// until its own call is done, then hands over to the oldest waiter.
func (a *Allocator) combined(ctx context.Context, req AssignRequest) (AssignResult, error) {
	v, _ := a.combiners.LoadOrStore(req.Node, &combiner{})
	cb := v.(*combiner)
	c := &assignCall{ctx: ctx, req: req, done: make(chan struct{}), lead: make(chan struct{})}
	cb.mu.Lock()
	cb.pending = append(cb.pending, c)
	if cb.running {
		cb.mu.Unlock()
		select {
		case <-c.done:
			return c.res, c.err
		case <-c.lead:
		}
		cb.mu.Lock()
	} else {
		cb.running = true
	}
	for {
		n := min(len(cb.pending), maxCombined)
		batch := slices.Clone(cb.pending[:n])
		cb.pending = slices.Delete(cb.pending, 0, n)
		cb.mu.Unlock()
		if len(batch) > 0 {
			a.assignBatch(ctx, batch)
		}
		cb.mu.Lock()
		select {
		case <-c.done:
		default:
			continue
		}
		if len(cb.pending) > 0 {
			close(cb.pending[0].lead)
		} else {
			cb.running = false
		}
		cb.mu.Unlock()
		return c.res, c.err
	}
}

// batchMemberError says which request of a combined commit failed on its
// own account (exhausted, no pool …), as opposed to the store failing.
type batchMemberError struct {
	i   int
	err error
}

func (e *batchMemberError) Error() string { return e.err.Error() }
func (e *batchMemberError) Unwrap() error { return e.err }

// assignBatch commits batch as one transaction. If one request fails on
// its own account nothing was written, and every request runs alone, so
// one exhausted request never fails its neighbours. A store error (which
// for etcd may leave the outcome unknown) is every request's error: none
// is retried behind the caller's back.
func (a *Allocator) assignBatch(ctx context.Context, batch []*assignCall) {
	finish := func() {
		for _, c := range batch {
			close(c.done)
		}
	}
	if len(batch) == 1 {
		c := batch[0]
		c.res, c.err = a.assignOne(c.ctx, c.req)
		finish()
		return
	}
	// The leader commits for everyone: its own cancellation must not
	// fail the others.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), combinedTimeout)
	defer cancel()
	results := make([]AssignResult, len(batch))
	err := a.run(ctx, func(t *txn) error {
		for i, c := range batch {
			r, err := a.assignIn(t, c.req)
			if err != nil {
				return &batchMemberError{i: i, err: err}
			}
			results[i] = r
		}
		return nil
	})
	var bm *batchMemberError
	switch {
	case err == nil:
		for i, c := range batch {
			c.res = results[i]
		}
	case errors.As(err, &bm):
		for _, c := range batch {
			c.res, c.err = a.assignOne(c.ctx, c.req)
		}
	default:
		for _, c := range batch {
			c.err = err
		}
	}
	finish()
}

// assignIn assigns req's addresses within one run.
func (a *Allocator) assignIn(t *txn, req AssignRequest) (AssignResult, error) {
	var res AssignResult
	var held []netip.Addr
	if req.Idempotent {
		h, err := t.handle(req.Handle)
		if err != nil {
			return res, err
		}
		if h != nil {
			for _, x := range h.Addrs {
				switch {
				case x.Is4() && len(res.IPv4) < req.IPv4:
					res.IPv4 = append(res.IPv4, x)
				case x.Is6() && len(res.IPv6) < req.IPv6:
					res.IPv6 = append(res.IPv6, x)
				}
			}
			held = append(slices.Clone(res.IPv4), res.IPv6...)
		}
	}
	pools, err := t.loadPools()
	if err != nil {
		return res, err
	}
	for _, fam := range []struct {
		n   int
		v6  bool
		out *[]netip.Addr
	}{{req.IPv4, false, &res.IPv4}, {req.IPv6, true, &res.IPv6}} {
		if fam.n == len(*fam.out) {
			continue
		}
		cands, err := a.candidates(pools, req, fam.v6)
		if err != nil {
			return res, err
		}
		if len(cands) == 0 {
			return res, fmt.Errorf("%w: no usable IPv%d pool for node %s", ErrNoPool, map[bool]int{false: 4, true: 6}[fam.v6], req.Node)
		}
		for len(*fam.out) < fam.n {
			addr, err := a.allocOne(t, req, cands)
			if err != nil {
				return res, err
			}
			*fam.out = append(*fam.out, addr)
		}
	}
	var added []netip.Addr
	for _, x := range append(slices.Clone(res.IPv4), res.IPv6...) {
		if !slices.Contains(held, x) {
			added = append(added, x)
		}
	}
	if len(added) == 0 {
		return res, nil
	}
	return res, a.addToHandle(t, req.Handle, req.Node, req.Attrs, added)
}

func (a *Allocator) addToHandle(t *txn, id, node string, attrs map[string]string, addrs []netip.Addr) error {
	h, err := t.handle(id)
	if err != nil {
		return err
	}
	if h == nil {
		h = &handleRecord{Node: node, Attrs: attrs, Created: t.now}
	}
	h.Addrs = append(h.Addrs, addrs...)
	t.put(handleKey(id), h)
	return nil
}

// candidates returns the pools of one family the request may use, in name
// order.
func (a *Allocator) candidates(pools []Pool, req AssignRequest, v6 bool) ([]Pool, error) {
	var out []Pool
	for _, p := range pools {
		if p.CIDR.Addr().Is6() != v6 || p.Disabled || !p.allows(req.Use) {
			continue
		}
		if len(req.Pools) > 0 {
			if !slices.Contains(req.Pools, p.Name) {
				continue
			}
		} else if p.Manual {
			continue
		}
		ok, err := a.cfg.MatchNode(p.NodeSelector, req.NodeLabels)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", p.Name, err)
		}
		if ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func poolFor(pools []Pool, p netip.Prefix) (Pool, bool) {
	for _, pool := range pools {
		if pool.CIDR.Contains(p.Addr()) && pool.BlockSize == p.Bits() {
			return pool, true
		}
	}
	return Pool{}, false
}

func (a *Allocator) allocOne(t *txn, req AssignRequest, cands []Pool) (netip.Addr, error) {
	cool := int64(a.cfg.Cooldown)
	nr, err := t.node(req.Node)
	if err != nil {
		return netip.Addr{}, err
	}
	// 1. The node's affine blocks that are not full.
	if nr != nil {
		var keys []string
		var mine []netip.Prefix
		for p, full := range nr.Blocks {
			if _, ok := poolFor(cands, p); ok && !full {
				mine = append(mine, p)
			}
		}
		slices.SortFunc(mine, netip.Prefix.Compare)
		for _, p := range mine {
			keys = append(keys, blockKey(p))
		}
		if err := t.prefetch(keys...); err != nil {
			return netip.Addr{}, err
		}
		for _, p := range mine {
			b, err := t.block(p)
			if err != nil {
				return netip.Addr{}, err
			}
			if b == nil || b.Affinity != req.Node {
				continue // an inconsistency Check reports
			}
			if o, ok := b.pick(t.now, cool); ok {
				return a.take(t, b, o, req.Handle)
			}
		}
	}
	// 2. Claim a new block.
	for _, pool := range cands {
		p, ok, err := t.freeBlock(pool)
		if err != nil {
			return netip.Addr{}, err
		}
		if !ok {
			continue
		}
		b := newBlock(p, pool.Name, req.Node)
		if nr == nil {
			nr = &nodeRecord{Blocks: map[netip.Prefix]bool{}}
		}
		nr.Blocks[p] = false
		t.put(nodeKey(req.Node), nr)
		t.put(blockKey(p), b)
		// Claims rewrite the pool record so that DeletePool's
		// compare-and-swap fails if a block appeared after it looked.
		t.touch(poolKey(pool.Name))
		a.cfg.Logger.Debug("ipam: claimed block", "block", p, "node", req.Node)
		o, _ := b.pick(t.now, cool)
		return a.take(t, b, o, req.Handle)
	}
	// 3. Borrow from any block, unless affinity is strict.
	if !a.cfg.StrictAffinity {
		blocks, err := t.listBlocks()
		if err != nil {
			return netip.Addr{}, err
		}
		for _, pool := range cands {
			for _, p := range blocks {
				if !pool.CIDR.Overlaps(p) {
					continue
				}
				b, err := t.block(p)
				if err != nil {
					return netip.Addr{}, err
				}
				if b == nil || b.Affinity == req.Node {
					continue
				}
				if o, ok := b.pick(t.now, cool); ok {
					return a.take(t, b, o, req.Handle)
				}
			}
		}
	}
	return netip.Addr{}, ErrExhausted
}

// take gives ordinal o of b to handle, keeping the affine node's full flag.
func (a *Allocator) take(t *txn, b *blockRecord, o int, handle string) (netip.Addr, error) {
	b.Handles[o] = handle
	t.put(blockKey(b.CIDR), b)
	if b.full() {
		if err := setFull(t, b, true); err != nil {
			return netip.Addr{}, err
		}
	}
	return b.addr(o), nil
}

// free releases ordinal o of b and starts its cool-down.
func (a *Allocator) free(t *txn, b *blockRecord, o int) error {
	wasFull := b.full()
	b.Handles[o] = ""
	b.Freed[o] = t.now
	t.put(blockKey(b.CIDR), b)
	if wasFull {
		return setFull(t, b, false)
	}
	return nil
}

func setFull(t *txn, b *blockRecord, full bool) error {
	if b.Affinity == "" {
		return nil
	}
	nr, err := t.node(b.Affinity)
	if err != nil || nr == nil {
		return err
	}
	if f, ok := nr.Blocks[b.CIDR]; ok && f != full {
		nr.Blocks[b.CIDR] = full
		t.put(nodeKey(b.Affinity), nr)
	}
	return nil
}

// freeBlock finds the first block of pool that no existing block overlaps.
func (t *txn) freeBlock(pool Pool) (netip.Prefix, bool, error) {
	blocks, err := t.listBlocks()
	if err != nil {
		return netip.Prefix{}, false, err
	}
	var in []netip.Prefix
	uniform := true
	for _, p := range blocks {
		if pool.CIDR.Overlaps(p) {
			in = append(in, p)
			uniform = uniform && p.Bits() == pool.BlockSize && pool.CIDR.Contains(p.Addr())
		}
	}
	taken := make(map[netip.Addr]bool, len(in))
	for _, p := range in {
		taken[p.Addr()] = true
	}
	n := pool.blocks()
	for i := uint64(0); i < n && i <= uint64(len(in)); i++ {
		c := pool.blockAt(i)
		if uniform {
			if !taken[c.Addr()] {
				return c, true, nil
			}
			continue
		}
		if !slices.ContainsFunc(in, c.Overlaps) {
			return c, true, nil
		}
	}
	if !uniform {
		// Odd-sized leftovers can hide free blocks beyond len(in).
		for i := uint64(len(in)) + 1; i < n && i < 1<<16; i++ {
			if c := pool.blockAt(i); !slices.ContainsFunc(in, c.Overlaps) {
				return c, true, nil
			}
		}
	}
	return netip.Prefix{}, false, nil
}

// AssignAddrRequest asks for one specific address.
type AssignAddrRequest struct {
	Addr   netip.Addr
	Handle string
	// Node claims the address's block when no one holds it yet.
	Node  string
	Attrs map[string]string
}

// Assign assigns one specific address. It fails with [ErrInUse] if the
// address is held, [ErrCoolingDown] if it was released too recently, and
// [ErrNoPool] if no enabled pool holds it. Manual pools may be used.
func (a *Allocator) Assign(ctx context.Context, req AssignAddrRequest) error {
	if err := validName("handle", req.Handle); err != nil {
		return err
	}
	if err := validName("node", req.Node); err != nil {
		return err
	}
	addr := req.Addr.Unmap()
	err := a.run(ctx, func(t *txn) error {
		pools, err := t.loadPools()
		if err != nil {
			return err
		}
		var pool Pool
		found := false
		for _, p := range pools {
			if p.CIDR.Contains(addr) {
				pool, found = p, true
				break
			}
		}
		if !found {
			return ErrNoPool
		}
		if pool.Disabled {
			return fmt.Errorf("%w: pool %s is disabled", ErrNoPool, pool.Name)
		}
		bp := pool.blockOf(addr)
		b, err := t.block(bp)
		if err != nil {
			return err
		}
		if b == nil {
			blocks, err := t.listBlocks()
			if err != nil {
				return err
			}
			if slices.ContainsFunc(blocks, bp.Overlaps) {
				return fmt.Errorf("%w: block %s overlaps an existing block", ErrInvalid, bp)
			}
			b = newBlock(bp, pool.Name, req.Node)
			nr, err := t.node(req.Node)
			if err != nil {
				return err
			}
			if nr == nil {
				nr = &nodeRecord{Blocks: map[netip.Prefix]bool{}}
			}
			nr.Blocks[bp] = false
			t.put(nodeKey(req.Node), nr)
			t.put(blockKey(bp), b)
			t.touch(poolKey(pool.Name))
		}
		o, _ := b.ordinal(addr)
		if b.Handles[o] != "" {
			return fmt.Errorf("%w: held by %s", ErrInUse, b.Handles[o])
		}
		if f := b.Freed[o]; f != 0 && t.now-f < int64(a.cfg.Cooldown) {
			return ErrCoolingDown
		}
		if _, err := a.take(t, b, o, req.Handle); err != nil {
			return err
		}
		return a.addToHandle(t, req.Handle, req.Node, req.Attrs, []netip.Addr{addr})
	})
	if err != nil {
		return fmt.Errorf("ipam: assign %s to %s: %w", addr, req.Handle, err)
	}
	return nil
}

// blockFor finds the stored block holding addr, or nil.
func (t *txn) blockFor(addr netip.Addr) (*blockRecord, error) {
	pools, err := t.loadPools()
	if err != nil {
		return nil, err
	}
	for _, p := range pools {
		if p.CIDR.Contains(addr) {
			if b, err := t.block(p.blockOf(addr)); b != nil || err != nil {
				return b, err
			}
		}
	}
	// The pool may be gone or the block of another size: search.
	blocks, err := t.listBlocks()
	if err != nil {
		return nil, err
	}
	for _, p := range blocks {
		if p.Contains(addr) {
			return t.block(p)
		}
	}
	return nil, nil
}

// Release frees addresses, whoever holds them, and returns those that
// were not allocated.
func (a *Allocator) Release(ctx context.Context, addrs ...netip.Addr) ([]netip.Addr, error) {
	var unallocated []netip.Addr
	err := a.run(ctx, func(t *txn) error {
		unallocated = nil
		for _, addr := range addrs {
			addr = addr.Unmap()
			b, err := t.blockFor(addr)
			if err != nil {
				return err
			}
			o, ok := 0, false
			if b != nil {
				o, ok = b.ordinal(addr)
			}
			if !ok || b.Handles[o] == "" {
				unallocated = append(unallocated, addr)
				continue
			}
			id := b.Handles[o]
			if err := a.free(t, b, o); err != nil {
				return err
			}
			h, err := t.handle(id)
			if err != nil {
				return err
			}
			if h == nil {
				continue
			}
			h.Addrs = slices.DeleteFunc(h.Addrs, func(x netip.Addr) bool { return x == addr })
			if len(h.Addrs) == 0 {
				t.del(handleKey(id))
			} else {
				t.put(handleKey(id), h)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ipam: release: %w", err)
	}
	return unallocated, nil
}

// ReleaseByHandle frees every address of a handle and deletes it; it
// returns the freed addresses, or [ErrNotFound].
func (a *Allocator) ReleaseByHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	var freed []netip.Addr
	err := a.run(ctx, func(t *txn) error {
		freed = nil
		h, err := t.handle(handle)
		if err != nil {
			return err
		}
		if h == nil {
			return ErrNotFound
		}
		return a.releaseHandle(t, handle, h, &freed)
	})
	if err != nil {
		return nil, fmt.Errorf("ipam: release handle %s: %w", handle, err)
	}
	return freed, nil
}

func (a *Allocator) releaseHandle(t *txn, id string, h *handleRecord, freed *[]netip.Addr) error {
	for _, addr := range h.Addrs {
		b, err := t.blockFor(addr)
		if err != nil {
			return err
		}
		if b == nil {
			continue
		}
		if o, ok := b.ordinal(addr); ok && b.Handles[o] == id {
			if err := a.free(t, b, o); err != nil {
				return err
			}
			*freed = append(*freed, addr)
		}
	}
	t.del(handleKey(id))
	return nil
}

// Allocation describes one held address.
type Allocation struct {
	Addr   netip.Addr
	Block  netip.Prefix
	Handle string
	// Node is the node the handle was assigned for.
	Node  string
	Attrs map[string]string
}

// Lookup returns who holds addr, or [ErrNotFound].
func (a *Allocator) Lookup(ctx context.Context, addr netip.Addr) (Allocation, error) {
	var out Allocation
	addr = addr.Unmap()
	err := a.read(ctx, func(t *txn) error {
		b, err := t.blockFor(addr)
		if err != nil {
			return err
		}
		if b == nil {
			return ErrNotFound
		}
		o, _ := b.ordinal(addr)
		if b.Handles[o] == "" {
			return ErrNotFound
		}
		out = Allocation{Addr: addr, Block: b.CIDR, Handle: b.Handles[o]}
		h, err := t.handle(out.Handle)
		if err != nil {
			return err
		}
		if h != nil {
			out.Node, out.Attrs = h.Node, h.Attrs
		}
		return nil
	})
	if err != nil {
		return Allocation{}, fmt.Errorf("ipam: lookup %s: %w", addr, err)
	}
	return out, nil
}

// Handle is what a handle holds.
type Handle struct {
	ID      string
	Node    string
	Attrs   map[string]string
	Created time.Time
	Addrs   []netip.Addr
}

func handleOf(id string, h *handleRecord) Handle {
	return Handle{ID: id, Node: h.Node, Attrs: h.Attrs, Created: time.Unix(0, h.Created).UTC(), Addrs: h.Addrs}
}

// LookupHandle returns a handle, or [ErrNotFound].
func (a *Allocator) LookupHandle(ctx context.Context, id string) (Handle, error) {
	var out Handle
	err := a.read(ctx, func(t *txn) error {
		h, err := t.handle(id)
		if err != nil {
			return err
		}
		if h == nil {
			return ErrNotFound
		}
		out = handleOf(id, h)
		return nil
	})
	if err != nil {
		return Handle{}, fmt.Errorf("ipam: handle %s: %w", id, err)
	}
	return out, nil
}

// Handles lists every handle, sorted by ID.
func (a *Allocator) Handles(ctx context.Context) ([]Handle, error) {
	kvs, err := a.s.List(ctx, handlePrefix)
	if err != nil {
		return nil, err
	}
	out := make([]Handle, 0, len(kvs))
	for _, kv := range kvs {
		h, err := decodeHandle(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, handleOf(kv.Key[len(handlePrefix):], h))
	}
	return out, nil
}

// UpsertPool creates or updates a pool. A pool's CIDR and block size
// cannot change, and pools may not overlap.
func (a *Allocator) UpsertPool(ctx context.Context, p Pool) error {
	p, err := p.normalize()
	if err != nil {
		return err
	}
	return a.run(ctx, func(t *txn) error {
		pools, err := t.loadPools()
		if err != nil {
			return err
		}
		for _, q := range pools {
			if q.Name == p.Name {
				if q.CIDR != p.CIDR || q.BlockSize != p.BlockSize {
					return fmt.Errorf("%w: pool %s: cidr and blockSize cannot change (%s/%d)", ErrInvalid, p.Name, q.CIDR, q.BlockSize)
				}
				continue
			}
			if q.CIDR.Overlaps(p.CIDR) {
				return fmt.Errorf("%w: pool %s overlaps pool %s", ErrInvalid, p.Name, q.Name)
			}
		}
		t.put(poolKey(p.Name), p)
		return nil
	})
}

// DeletePool deletes a pool that has no blocks left; otherwise it fails
// with [ErrInUse] (disable it, release its addresses, let GC free the
// blocks, then delete).
func (a *Allocator) DeletePool(ctx context.Context, name string) error {
	return a.run(ctx, func(t *txn) error {
		v, err := t.get(poolKey(name))
		if err != nil {
			return err
		}
		p, ok := v.(Pool)
		if !ok {
			return ErrNotFound
		}
		blocks, err := t.listBlocks()
		if err != nil {
			return err
		}
		if slices.ContainsFunc(blocks, p.CIDR.Overlaps) {
			return fmt.Errorf("%w: pool %s still has blocks", ErrInUse, name)
		}
		t.del(poolKey(name))
		return nil
	})
}

// Pools lists the pools, sorted by name.
func (a *Allocator) Pools(ctx context.Context) ([]Pool, error) {
	var out []Pool
	err := a.read(ctx, func(t *txn) error {
		var err error
		out, err = t.loadPools()
		return err
	})
	return out, err
}

// ReleaseNode drops a node's affinity to all its blocks (the node is
// gone): empty blocks past their cool-down are deleted, others stay
// without affinity until their last address is released and GC frees
// them.
func (a *Allocator) ReleaseNode(ctx context.Context, node string) error {
	const chunk = 16 // keeps each commit far below etcd's txn limit
	for {
		done := false
		err := a.run(ctx, func(t *txn) error {
			done = false
			nr, err := t.node(node)
			if err != nil {
				return err
			}
			if nr == nil {
				done = true
				return nil
			}
			ps := make([]netip.Prefix, 0, len(nr.Blocks))
			for p := range nr.Blocks {
				ps = append(ps, p)
			}
			slices.SortFunc(ps, netip.Prefix.Compare)
			if len(ps) > chunk {
				ps = ps[:chunk]
			}
			for _, p := range ps {
				delete(nr.Blocks, p)
				b, err := t.block(p)
				if err != nil {
					return err
				}
				if b == nil || b.Affinity != node {
					continue
				}
				if b.allocated() == 0 && b.cooled(t.now, int64(a.cfg.Cooldown)) {
					t.del(blockKey(p))
				} else {
					b.Affinity = ""
					t.put(blockKey(p), b)
				}
			}
			if len(nr.Blocks) == 0 {
				t.del(nodeKey(node))
				done = true
			} else {
				t.put(nodeKey(node), nr)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("ipam: release node %s: %w", node, err)
		}
		if done {
			return nil
		}
	}
}

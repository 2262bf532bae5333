package ipam

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
)

// ProblemKind names one kind of inconsistency found by [Allocator.Check].
type ProblemKind string

// Kinds of problem.
const (
	// An address held in its block by a handle that does not list it.
	ProblemAllocWithoutHandle ProblemKind = "address-without-handle"
	// A handle listing an address that its block says is free or held by
	// another handle (or whose block is gone).
	ProblemHandleFreeAddr ProblemKind = "handle-points-at-free-address"
	// An address listed by two handles.
	ProblemDuplicateAddress ProblemKind = "address-in-two-handles"
	// A block listed by a node other than its affine node, or by two nodes.
	ProblemBlockClaimedTwice ProblemKind = "block-claimed-by-two-nodes"
	// A block affine to a node whose record does not list it.
	ProblemAffinityMissing ProblemKind = "affinity-not-recorded"
	// A node listing a block that does not exist.
	ProblemMissingBlock ProblemKind = "node-lists-missing-block"
	// A node's "full" flag for a block that disagrees with the block.
	ProblemFullFlag ProblemKind = "full-flag-wrong"
	// Two blocks sharing addresses.
	ProblemOverlappingBlocks ProblemKind = "overlapping-blocks"
	// A block inside no pool, or not aligned to its pool's block size.
	ProblemBlockOutsidePool ProblemKind = "block-outside-pool"
	// A record that cannot be decoded.
	ProblemCorrupt ProblemKind = "corrupt-record"
)

// Problem is one inconsistency.
type Problem struct {
	Kind   ProblemKind
	Key    string       // the store key at fault
	Block  netip.Prefix // when a block is involved
	Addr   netip.Addr   // when one address is involved
	Handle string
	Node   string
	Detail string
}

// String writes the problem on one line: kind, then what is involved.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(string(p.Kind))
	if p.Key != "" {
		fmt.Fprintf(&b, " key=%s", p.Key)
	}
	if p.Block.IsValid() {
		fmt.Fprintf(&b, " block=%s", p.Block)
	}
	if p.Addr.IsValid() {
		fmt.Fprintf(&b, " addr=%s", p.Addr)
	}
	if p.Handle != "" {
		fmt.Fprintf(&b, " handle=%s", p.Handle)
	}
	if p.Node != "" {
		fmt.Fprintf(&b, " node=%s", p.Node)
	}
	if p.Detail != "" {
		fmt.Fprintf(&b, ": %s", p.Detail)
	}
	return b.String()
}

// Report is the result of [Allocator.Check].
type Report struct {
	Pools, Blocks, Nodes, Handles, Allocated int
	Problems                                 []Problem
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// WriteText writes the report for people, one problem per line.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "checked %d pools, %d blocks, %d nodes, %d handles, %d allocated addresses\n",
		r.Pools, r.Blocks, r.Nodes, r.Handles, r.Allocated)
	if r.OK() {
		b.WriteString("no problems found\n")
	} else {
		fmt.Fprintf(&b, "%d problems:\n", len(r.Problems))
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  %s\n", p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// snapshot is the whole IPAM state, decoded.
type snapshot struct {
	pools   map[string]Pool
	blocks  map[netip.Prefix]*blockRecord
	bkeys   map[netip.Prefix]string
	nodes   map[string]*nodeRecord
	handles map[string]*handleRecord
	corrupt []Problem
}

// loadSnapshot reads everything in one List, which every store serves
// from one consistent view.
func loadSnapshot(ctx context.Context, s Store) (*snapshot, error) {
	kvs, err := s.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("ipam: read state: %w", err)
	}
	sn := &snapshot{pools: map[string]Pool{}, blocks: map[netip.Prefix]*blockRecord{}, bkeys: map[netip.Prefix]string{},
		nodes: map[string]*nodeRecord{}, handles: map[string]*handleRecord{}}
	for _, kv := range kvs {
		bad := func(err error) {
			sn.corrupt = append(sn.corrupt, Problem{Kind: ProblemCorrupt, Key: kv.Key, Detail: err.Error()})
		}
		switch {
		case strings.HasPrefix(kv.Key, poolPrefix):
			p, err := decodePool(kv.Value)
			if err != nil {
				bad(err)
				continue
			}
			sn.pools[p.Name] = p
		case strings.HasPrefix(kv.Key, blockPrefix):
			b, err := decodeBlock(kv.Value)
			if err != nil {
				bad(err)
				continue
			}
			if p, err := parseBlockKey(kv.Key); err != nil || p != b.CIDR {
				bad(fmt.Errorf("key does not match block %s", b.CIDR))
				continue
			}
			sn.blocks[b.CIDR] = b
			sn.bkeys[b.CIDR] = kv.Key
		case strings.HasPrefix(kv.Key, nodePrefix):
			n, err := decodeNode(kv.Value)
			if err != nil {
				bad(err)
				continue
			}
			sn.nodes[kv.Key[len(nodePrefix):]] = n
		case strings.HasPrefix(kv.Key, handlePrefix):
			h, err := decodeHandle(kv.Value)
			if err != nil {
				bad(err)
				continue
			}
			sn.handles[kv.Key[len(handlePrefix):]] = h
		}
	}
	return sn, nil
}

func (sn *snapshot) sortedBlocks() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(sn.blocks))
	for p := range sn.blocks {
		out = append(out, p)
	}
	slices.SortFunc(out, netip.Prefix.Compare)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// blockOf finds the block holding addr in the snapshot.
func (sn *snapshot) blockOf(addr netip.Addr) *blockRecord {
	for _, p := range sn.pools {
		if p.CIDR.Contains(addr) {
			if b := sn.blocks[p.blockOf(addr)]; b != nil {
				return b
			}
		}
	}
	for p, b := range sn.blocks {
		if p.Contains(addr) {
			return b
		}
	}
	return nil
}

// check computes every problem of the snapshot, in a stable order.
func (sn *snapshot) check() *Report {
	r := &Report{Pools: len(sn.pools), Blocks: len(sn.blocks), Nodes: len(sn.nodes), Handles: len(sn.handles)}
	r.Problems = append(r.Problems, sn.corrupt...)
	blocks := sn.sortedBlocks()

	// Blocks: overlap, pool membership, affinity recorded.
	for i, p := range blocks {
		b := sn.blocks[p]
		r.Allocated += b.allocated()
		if i+1 < len(blocks) && p.Overlaps(blocks[i+1]) {
			r.Problems = append(r.Problems, Problem{Kind: ProblemOverlappingBlocks, Key: sn.bkeys[p], Block: p, Detail: "overlaps " + blocks[i+1].String()})
		}
		pool, ok := sn.pools[b.Pool]
		if !ok || !pool.CIDR.Contains(p.Addr()) || pool.BlockSize != p.Bits() {
			r.Problems = append(r.Problems, Problem{Kind: ProblemBlockOutsidePool, Key: sn.bkeys[p], Block: p, Detail: "pool " + b.Pool})
		}
		if b.Affinity != "" {
			if _, ok := sn.nodes[b.Affinity].getBlock(p); !ok {
				r.Problems = append(r.Problems, Problem{Kind: ProblemAffinityMissing, Key: nodeKey(b.Affinity), Block: p, Node: b.Affinity})
			}
		}
	}
	// Nodes: listed blocks exist, are affine to them, full flag right.
	for _, n := range sortedKeys(sn.nodes) {
		ps := make([]netip.Prefix, 0, len(sn.nodes[n].Blocks))
		for p := range sn.nodes[n].Blocks {
			ps = append(ps, p)
		}
		slices.SortFunc(ps, netip.Prefix.Compare)
		for _, p := range ps {
			full := sn.nodes[n].Blocks[p]
			b := sn.blocks[p]
			switch {
			case b == nil:
				r.Problems = append(r.Problems, Problem{Kind: ProblemMissingBlock, Key: nodeKey(n), Block: p, Node: n})
			case b.Affinity != n:
				r.Problems = append(r.Problems, Problem{Kind: ProblemBlockClaimedTwice, Key: nodeKey(n), Block: p, Node: n,
					Detail: fmt.Sprintf("block is affine to %q", b.Affinity)})
			case b.full() != full:
				r.Problems = append(r.Problems, Problem{Kind: ProblemFullFlag, Key: nodeKey(n), Block: p, Node: n,
					Detail: fmt.Sprintf("recorded full=%v, block has %d of %d", full, b.allocated(), len(b.Handles))})
			}
		}
	}
	// Block slots against handles.
	listed := map[netip.Addr][]string{}
	for _, id := range sortedKeys(sn.handles) {
		for _, a := range sn.handles[id].Addrs {
			listed[a] = append(listed[a], id)
		}
	}
	for _, p := range blocks {
		b := sn.blocks[p]
		for o, id := range b.Handles {
			if id == "" {
				continue
			}
			a := b.addr(o)
			if !slices.Contains(listed[a], id) {
				r.Problems = append(r.Problems, Problem{Kind: ProblemAllocWithoutHandle, Key: sn.bkeys[p], Block: p, Addr: a, Handle: id})
			}
		}
	}
	// Handles against block slots.
	for _, id := range sortedKeys(sn.handles) {
		seen := map[netip.Addr]bool{}
		for _, a := range sn.handles[id].Addrs {
			if seen[a] {
				r.Problems = append(r.Problems, Problem{Kind: ProblemDuplicateAddress, Key: handleKey(id), Addr: a, Handle: id, Detail: "listed twice by the handle"})
				continue
			}
			seen[a] = true
			if hs := listed[a]; len(hs) > 1 && hs[0] == id {
				r.Problems = append(r.Problems, Problem{Kind: ProblemDuplicateAddress, Key: handleKey(id), Addr: a, Handle: id, Detail: "also listed by " + strings.Join(hs[1:], ", ")})
			}
			b := sn.blockOf(a)
			var holder string
			if b != nil {
				o, _ := b.ordinal(a)
				holder = b.Handles[o]
			}
			if holder != id {
				d := "address is free"
				if b == nil {
					d = "no block holds the address"
				} else if holder != "" {
					d = "address is held by " + holder
				}
				r.Problems = append(r.Problems, Problem{Kind: ProblemHandleFreeAddr, Key: handleKey(id), Addr: a, Handle: id, Detail: d})
			}
		}
	}
	return r
}

// Check reads the whole state at once and reports every inconsistency.
// The allocator's own commits never create one; Check exists for state
// written by older versions, by hand, or by bugs, and as the invariant the
// tests hold after every step.
func (a *Allocator) Check(ctx context.Context) (*Report, error) {
	sn, err := loadSnapshot(ctx, a.s)
	if err != nil {
		return nil, err
	}
	return sn.check(), nil
}

// RepairResult lists what [Allocator.Repair] fixed and what it left for
// an operator.
type RepairResult struct {
	Fixed     []Problem
	Remaining []Problem
}

// Repair fixes what is safe to fix, each fix one small compare-and-swap
// that re-checks the problem first:
//   - an address held without a handle record gets one (it stays
//     allocated; GC frees it if its holder is gone);
//   - a handle listing a free or foreign address stops listing it;
//   - a node's affinity record is rebuilt from its blocks' affinity.
//
// Overlapping blocks, blocks outside every pool and corrupt records are
// left for an operator: no automatic choice is safe for them.
func (a *Allocator) Repair(ctx context.Context) (*RepairResult, error) {
	res := &RepairResult{}
	rep, err := a.Check(ctx)
	if err != nil {
		return nil, err
	}
	nodesToFix := map[string]bool{}
	for _, p := range rep.Problems {
		var fixed bool
		var err error
		switch p.Kind {
		case ProblemAllocWithoutHandle:
			fixed, err = a.repairAllocWithoutHandle(ctx, p)
		case ProblemHandleFreeAddr, ProblemDuplicateAddress:
			fixed, err = a.repairHandleAddr(ctx, p)
		case ProblemBlockClaimedTwice, ProblemAffinityMissing, ProblemMissingBlock, ProblemFullFlag:
			nodesToFix[p.Node] = true
			fixed = true
		}
		if err != nil {
			return res, fmt.Errorf("ipam: repair %s: %w", p, err)
		}
		if fixed {
			res.Fixed = append(res.Fixed, p)
		} else {
			res.Remaining = append(res.Remaining, p)
		}
	}
	for _, n := range sortedKeys(nodesToFix) {
		if err := a.rebuildNode(ctx, n); err != nil {
			return res, fmt.Errorf("ipam: repair node %s: %w", n, err)
		}
	}
	return res, nil
}

func (a *Allocator) repairAllocWithoutHandle(ctx context.Context, p Problem) (bool, error) {
	fixed := false
	err := a.run(ctx, func(t *txn) error {
		fixed = false
		b, err := t.block(p.Block)
		if err != nil || b == nil {
			return err
		}
		o, ok := b.ordinal(p.Addr)
		if !ok || b.Handles[o] != p.Handle {
			return nil
		}
		h, err := t.handle(p.Handle)
		if err != nil {
			return err
		}
		if h != nil && slices.Contains(h.Addrs, p.Addr) {
			fixed = true
			return nil
		}
		if h == nil {
			h = &handleRecord{Node: b.Affinity, Created: t.now, Attrs: map[string]string{"calyx.repaired": "true"}}
		}
		h.Addrs = append(h.Addrs, p.Addr)
		// The block must not change under the repair.
		t.check(blockKey(p.Block))
		t.put(handleKey(p.Handle), h)
		fixed = true
		return nil
	})
	return fixed, err
}

func (a *Allocator) repairHandleAddr(ctx context.Context, p Problem) (bool, error) {
	fixed := false
	err := a.run(ctx, func(t *txn) error {
		fixed = false
		h, err := t.handle(p.Handle)
		if err != nil || h == nil {
			return err
		}
		b, err := t.blockFor(p.Addr)
		if err != nil {
			return err
		}
		holder := ""
		if b != nil {
			o, _ := b.ordinal(p.Addr)
			holder = b.Handles[o]
			t.check(blockKey(b.CIDR))
		}
		// Keep one listing if this handle really holds the address.
		keep := holder == p.Handle
		var out []netip.Addr
		for _, x := range h.Addrs {
			if x == p.Addr {
				if keep {
					out = append(out, x)
					keep = false
				}
				continue
			}
			out = append(out, x)
		}
		// Either this run removes a listing, or the handle is already
		// right (the other handle of a duplicate gets its own fix).
		fixed = true
		if len(out) == len(h.Addrs) {
			return nil
		}
		if len(out) == 0 {
			t.del(handleKey(p.Handle))
			return nil
		}
		h.Addrs = out
		t.put(handleKey(p.Handle), h)
		return nil
	})
	return fixed, err
}

// rebuildNode rewrites a node's record from the blocks affine to it.
func (a *Allocator) rebuildNode(ctx context.Context, node string) error {
	return a.run(ctx, func(t *txn) error {
		blocks, err := t.listBlocks()
		if err != nil {
			return err
		}
		nr := &nodeRecord{Blocks: map[netip.Prefix]bool{}}
		// Every change of a listed block's affinity or fullness also
		// rewrites the node record, so its compare-and-swap covers them;
		// checking the blocks too closes the gap for unlisted ones, as far
		// as etcd's limit on compares in one transaction allows.
		checkBlocks := len(blocks) <= 100
		for _, p := range blocks {
			b, err := t.block(p)
			if err != nil {
				continue // corrupt: left for the operator
			}
			if b != nil && b.Affinity == node {
				nr.Blocks[p] = b.full()
				if checkBlocks {
					t.check(blockKey(p))
				}
			}
		}
		old, err := t.node(node)
		if err != nil {
			return err
		}
		if len(nr.Blocks) == 0 {
			if old != nil {
				t.del(nodeKey(node))
			}
			return nil
		}
		t.put(nodeKey(node), nr)
		return nil
	})
}

// Usage is the state for people: pools and blocks per node.
type Usage struct {
	Pools  []PoolUsage
	Blocks []BlockUsage
}

// PoolUsage is one pool's utilisation.
type PoolUsage struct {
	Pool      Pool
	Size      float64 // addresses in the pool (float: IPv6 pools are huge)
	Blocks    int
	Allocated int
}

// BlockUsage is one block's utilisation.
type BlockUsage struct {
	Block     netip.Prefix
	Pool      string
	Node      string // "" when the block has no affinity
	Allocated int
	Size      int
}

// Usage reports pools, blocks per node and utilisation.
func (a *Allocator) Usage(ctx context.Context) (*Usage, error) {
	sn, err := loadSnapshot(ctx, a.s)
	if err != nil {
		return nil, err
	}
	u := &Usage{}
	idx := map[string]int{}
	for _, name := range sortedKeys(sn.pools) {
		p := sn.pools[name]
		idx[name] = len(u.Pools)
		size := 1.0
		for range p.CIDR.Addr().BitLen() - p.CIDR.Bits() {
			size *= 2
		}
		u.Pools = append(u.Pools, PoolUsage{Pool: p, Size: size})
	}
	for _, p := range sn.sortedBlocks() {
		b := sn.blocks[p]
		n := b.allocated()
		u.Blocks = append(u.Blocks, BlockUsage{Block: p, Pool: b.Pool, Node: b.Affinity, Allocated: n, Size: len(b.Handles)})
		if i, ok := idx[b.Pool]; ok {
			u.Pools[i].Blocks++
			u.Pools[i].Allocated += n
		}
	}
	slices.SortStableFunc(u.Blocks, func(x, y BlockUsage) int { return strings.Compare(x.Node, y.Node) })
	return u, nil
}

// WriteText writes the usage as two aligned tables.
func (u *Usage) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tCIDR\tBLOCK SIZE\tBLOCKS\tALLOCATED\tUSED\tSTATE")
	for _, p := range u.Pools {
		state := "enabled"
		if p.Pool.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t/%d\t%d\t%d\t%s\t%s\n", p.Pool.Name, p.Pool.CIDR, p.Pool.BlockSize, p.Blocks, p.Allocated,
			percent(float64(p.Allocated), p.Size), state)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NODE\tBLOCK\tPOOL\tALLOCATED\tUSED")
	for _, b := range u.Blocks {
		node := b.Node
		if node == "" {
			node = "(none)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", node, b.Block, b.Pool, b.Allocated, b.Size, percent(float64(b.Allocated), float64(b.Size)))
	}
	return tw.Flush()
}

func percent(n, d float64) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*n/d)
}

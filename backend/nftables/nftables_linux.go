//go:build linux

package nftables

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns"
)

// Name is the registry name of this backend.
const Name = "nftables"

// elemChunk bounds the elements of one netlink message: a nested netlink
// attribute cannot exceed 64 KiB.
const elemChunk = 512

// sockBuf sizes the netlink socket buffers: a batch is sent in one
// sendmsg and every message is acknowledged.
const sockBuf = 256 << 20

// Backend is the nftables dataplane. It is safe for concurrent use; calls
// are serialised.
type Backend struct {
	mu    sync.Mutex
	opts  backend.Options
	log   *slog.Logger
	table *nftables.Table
	ns    *netns.NS
	cur   *desired // what the kernel holds; nil: unknown, read it
	// nl is the netlink connection kept between calls: closing one makes
	// the kernel wait for the previous batch's deferred frees (an RCU
	// grace period, milliseconds) before the close returns.
	nl     *nftables.Conn
	cache  *renderCache
	closed bool
	last   Stats
	// verified says the kernel held cur when the namespace's nftables
	// generation was gen (see generation): while it still is, nothing
	// has changed and Reconcile need not read the table back.
	verified bool
	gen      uint32
	genConn  *netlink.Conn // asks for the generation (kept open)

	// beforeFlush lets tests add to a batch (to make the kernel reject it).
	beforeFlush func(c *nftables.Conn)
}

var _ backend.Backend = (*Backend)(nil)

// Open is a backend.Factory.
func Open(ctx context.Context, opts backend.Options) (backend.Backend, error) {
	return New(ctx, opts)
}

// New opens the backend. Nothing is changed until Apply.
func New(ctx context.Context, opts backend.Options) (*Backend, error) {
	b := &Backend{opts: opts, log: opts.Logger}
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b.table = &nftables.Table{Name: TableName(opts.Name), Family: nftables.TableFamilyINet}
	if opts.NetNS != "" {
		ns, err := netns.Open(opts.NetNS)
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		b.ns = ns
	}
	c, err := b.conn()
	if err != nil {
		_ = b.closeNS()
		return nil, err
	}
	defer c.CloseLasting()
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		_ = b.closeNS()
		return nil, fmt.Errorf("%w: nftables: %w", backend.ErrNotSupported, err)
	}
	return b, nil
}

// TableName returns the table a backend with Options.Name name owns.
func TableName(name string) string {
	if name == "" {
		return "calyx"
	}
	return "calyx-" + name
}

// Name returns "nftables".
func (b *Backend) Name() string { return Name }

// Table returns the name of the table the backend owns.
func (b *Backend) Table() string { return b.table.Name }

func (b *Backend) conn() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(sizeBuffers)}
	if b.ns != nil {
		opts = append(opts, nftables.WithNetNSFd(b.ns.Fd()))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: netlink: %w", err)
	}
	return c, nil
}

func sizeBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], sockBuf) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], sockBuf)
			}
		}
	})
}

// lasting returns the connection kept between calls, dialling it first if
// need be.
func (b *Backend) lasting() (*nftables.Conn, error) {
	if b.nl == nil {
		c, err := b.conn()
		if err != nil {
			return nil, err
		}
		b.nl = c
	}
	return b.nl, nil
}

// dropConn closes the kept connection: after an error it may hold queued
// messages or unread replies.
func (b *Backend) dropConn() {
	if b.nl != nil {
		_ = b.nl.CloseLasting()
		b.nl = nil
	}
}

func (b *Backend) closeNS() error {
	if b.ns == nil {
		return nil
	}
	err := b.ns.Close()
	b.ns = nil
	return err
}

// Apply makes the table enforce rs in one netlink batch holding only what
// changed since the last Apply.
func (b *Backend) Apply(ctx context.Context, rs *compile.Ruleset) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cache == nil {
		b.cache = newRenderCache()
	}
	start := time.Now()
	d, err := renderCached(rs, b.cache)
	rendered := time.Since(start)
	if err != nil {
		return err
	}
	if b.closed {
		return backend.ErrClosed
	}
	c, err := b.lasting()
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			b.dropConn()
		}
	}()
	// The kernel holds d after this batch if it held cur when the batch
	// was planned and the batch is the only commit since: cur was
	// verified at a generation that has not moved, or is read now after
	// the generation is.
	was := b.verified && b.cur != nil
	b.verified = false
	var gen0 uint32
	if was || b.cur == nil {
		g, err := b.generation()
		was = err == nil && (b.cur == nil || g == b.gen)
		gen0 = g
	}
	cur := b.cur
	if cur == nil {
		if cur, err = b.read(c); err != nil {
			return err
		}
	}
	start = time.Now()
	st, err := b.plan(c, cur, d)
	if err != nil {
		return err
	}
	st.Render, st.Plan = rendered, time.Since(start)
	start = time.Now()
	err = b.flush(c)
	st.Kernel = time.Since(start)
	if err != nil {
		// The kernel either rejected the whole batch (previous state
		// intact) or we lost track; read it back next time.
		b.cur = nil
		return err
	}
	b.cur = d
	if was {
		b.verifyAfter(gen0, st.messages == 0)
	}
	b.last = st
	ok = true
	b.log.Debug("nftables apply", "table", b.table.Name, "messages", st.messages, "chains", len(d.chains), "sets", len(d.sets))
	return nil
}

// LastApply returns what the last successful Apply sent.
func (b *Backend) LastApply() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// Messages returns how many netlink messages the batch held (besides the
// table and batch markers).
func (s Stats) Messages() int { return s.messages }

// Stats counts what one Apply or Reconcile sent.
type Stats struct {
	ChainsAdded, ChainsRewritten, ChainsDeleted int
	SetsAdded, SetsRewritten, SetsDeleted       int
	ElementsAdded, ElementsDeleted              int
	// Changed names every chain and set touched ("~chain pol-…").
	Changed []string
	// Render is the time spent turning the Ruleset into nft objects,
	// Plan the time spent diffing them with what the kernel holds and
	// queueing the batch, Kernel the time from sending the batch to its
	// last acknowledgement.
	Render, Plan, Kernel time.Duration
	messages             int
}

func (b *Backend) flush(c *nftables.Conn) error {
	if b.beforeFlush != nil {
		b.beforeFlush(c)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("%w: %w", ErrKernelRejected, err)
	}
	return nil
}

func (b *Backend) nftChain(name string, h *hook) *nftables.Chain {
	ch := &nftables.Chain{Name: name, Table: b.table}
	if h != nil {
		num, prio := h.num, h.prio
		pol := nftables.ChainPolicyAccept
		ch.Hooknum, ch.Priority, ch.Type, ch.Policy = &num, &prio, nftables.ChainTypeFilter, &pol
	}
	return ch
}

func (b *Backend) nftSet(s *nset) *nftables.Set {
	ns := &nftables.Set{Table: b.table, Name: s.name, KeyType: s.keyType, Interval: s.interval,
		Concatenation: s.concat, IsMap: s.isMap, Comment: s.comment}
	if s.isMap {
		ns.DataType = nftables.TypeVerdict
	}
	if s.keyType == nftables.TypeIFName {
		// Interface names are strings in host order: with the byte order
		// in the set's user data, nft list prints the names instead of "".
		ns.KeyByteOrder = binaryutil.NativeEndian
	}
	return ns
}

func chunks(els []nftables.SetElement, fn func([]nftables.SetElement) error) error {
	for len(els) > 0 {
		n := min(len(els), elemChunk)
		// Never split an interval between two messages.
		if n < len(els) && els[n].IntervalEnd {
			n++
		}
		if err := fn(els[:n]); err != nil {
			return err
		}
		els = els[n:]
	}
	return nil
}

// setOrder sorts set names in the order to create them: the kernel finds
// a set a rule reads by walking the table's sets in creation order, so
// sets many rules read (selectors, named ports, maps) go first and the
// content sets one or two rules read go last.
func setOrder(names []string) {
	slices.SortFunc(names, func(a, b string) int {
		if d := boolInt(strings.HasPrefix(a, "c-")) - boolInt(strings.HasPrefix(b, "c-")); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
}

// chainOrder sorts chain names: base chains first, in their fixed order,
// then the rest by name.
func chainOrder(names []string) {
	slices.SortFunc(names, func(a, b string) int {
		ia, ib := slices.Index(baseChains, a), slices.Index(baseChains, b)
		switch {
		case ia >= 0 && ib >= 0:
			return ia - ib
		case ia >= 0:
			return -1
		case ib >= 0:
			return 1
		}
		return strings.Compare(a, b)
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func flatten(groups [][]nftables.SetElement) []nftables.SetElement {
	var out []nftables.SetElement
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// plan queues on c the messages that turn cur into d.
func (b *Backend) plan(c *nftables.Conn, cur, d *desired) (Stats, error) {
	var st Stats
	var errs []error
	c.AddTable(b.table)
	addElems := func(s *nftables.Set, els []nftables.SetElement) {
		errs = append(errs, chunks(els, func(ch []nftables.SetElement) error { st.messages++; return c.SetAddElements(s, ch) }))
		st.ElementsAdded += len(els)
	}
	delElems := func(s *nftables.Set, els []nftables.SetElement) {
		errs = append(errs, chunks(els, func(ch []nftables.SetElement) error { st.messages++; return c.SetDeleteElements(s, ch) }))
		st.ElementsDeleted += len(els)
	}
	// Sets and maps: create what is missing, fix elements of plain sets
	// now; map elements point at chains and wait until the chains exist.
	// Only the sets that need work are sorted: a small change to a big
	// table must not cost a sort of every name.
	var todo []string
	kept := 0 // sets of cur that d has too
	for name, ds := range d.sets {
		cs, ok := cur.sets[name]
		if ok {
			kept++
		}
		if ok && cs == ds && !cur.observed {
			// The same value: rendered from the same IPSet, nothing changed.
			continue
		}
		todo = append(todo, name)
	}
	setOrder(todo)
	var mapFixes []func()
	for _, name := range todo {
		ds := d.sets[name]
		ks := b.nftSet(ds)
		cs, ok := cur.sets[name]
		var fix func()
		switch {
		case !ok:
			errs = append(errs, c.AddSet(ks, nil))
			st.SetsAdded++
			fix = func() { addElems(ks, ds.elems) }
		case !cs.sameType(ds) || cur.observed && !cs.sameElements(ds):
			st.SetsRewritten++
			st.Changed = append(st.Changed, "~set "+name)
			fix = func() { c.FlushSet(ks); addElems(ks, ds.elems) }
		case cur.observed, cs == ds:
			// Observed: elements were compared above.
			continue
		default:
			added, removed := diffGroups(cs, ds)
			if len(added)+len(removed) == 0 {
				continue
			}
			fix = func() { delElems(ks, flatten(removed)); addElems(ks, flatten(added)) }
		}
		if ds.isMap {
			mapFixes = append(mapFixes, fix)
		} else {
			fix()
		}
	}
	// Chains: the new ones, base chains whose hook changed, and chains
	// whose rules changed; sorted for a deterministic batch.
	var chains []string
	for name, dc := range d.chains {
		cc, ok := cur.chains[name]
		if ok && cc == dc {
			continue
		}
		if !ok || dc.base != nil && !sameBase(cc, dc) || !sameRules(cc, dc) {
			chains = append(chains, name)
		}
	}
	chainOrder(chains)
	// Create every missing chain before any rule jumps to it.
	for _, name := range chains {
		dc := d.chains[name]
		cc, ok := cur.chains[name]
		switch {
		case !ok:
			c.AddChain(b.nftChain(name, dc.base))
			st.messages++
		case dc.base != nil && !sameBase(cc, dc):
			// Re-adding a base chain resets its hook, type and policy.
			c.AddChain(b.nftChain(name, dc.base))
			st.messages++
			st.ChainsRewritten++
			st.Changed = append(st.Changed, "~base "+name)
		}
	}
	for _, name := range chains {
		dc := d.chains[name]
		cc, ok := cur.chains[name]
		switch {
		case !ok:
			st.ChainsAdded++
		case sameRules(cc, dc):
			continue
		default:
			c.FlushChain(b.nftChain(name, nil))
			st.ChainsRewritten++
			st.Changed = append(st.Changed, "~chain "+name)
		}
		for _, ru := range dc.rules {
			n, err := b.addRule(c, name, ru)
			st.messages += n
			errs = append(errs, err)
		}
	}
	for _, fix := range mapFixes {
		fix()
	}
	// Deletions: chains that jump first, then what they jumped to; then
	// sets no rule reads any more.
	var dead []string
	for name := range cur.chains {
		if _, ok := d.chains[name]; !ok {
			dead = append(dead, name)
		}
	}
	slices.Sort(dead)
	slices.SortStableFunc(dead, func(a, b string) int { return chainLevel(b) - chainLevel(a) })
	for _, name := range dead {
		c.DelChain(b.nftChain(name, nil))
		st.ChainsDeleted++
	}
	var deadSets []string
	for name := range cur.sets {
		if kept == len(cur.sets) {
			break // d has every set of cur
		}
		if _, ok := d.sets[name]; !ok {
			deadSets = append(deadSets, name)
		}
	}
	slices.Sort(deadSets)
	for _, name := range deadSets {
		c.DelSet(&nftables.Set{Table: b.table, Name: name})
		st.SetsDeleted++
	}
	st.messages += st.ChainsDeleted + st.SetsDeleted + st.SetsAdded + st.ChainsRewritten
	if err := errors.Join(errs...); err != nil {
		return st, fmt.Errorf("nftables: build batch: %w", err)
	}
	return st, nil
}

// addRule queues one rule and the anonymous sets it reads. An anonymous
// set is filled by the message that creates it (the kernel refuses later
// additions), so render keeps those small.
func (b *Backend) addRule(c *nftables.Conn, chain string, ru *nrule) (int, error) {
	msgs := 1
	exprs := ru.exprs
	if len(ru.anon) > 0 {
		exprs = slices.Clone(ru.exprs)
		for idx, as := range ru.anon {
			s := &nftables.Set{Table: b.table, Anonymous: true, Constant: true, Interval: as.interval,
				Concatenation: as.concat, KeyType: as.keyType}
			if err := c.AddSet(s, as.elems); err != nil {
				return msgs, err
			}
			msgs += 2
			lk := ru.exprs[idx].(*expr.Lookup)
			exprs[idx] = &expr.Lookup{SourceRegister: lk.SourceRegister, Invert: lk.Invert, SetName: s.Name, SetID: s.ID}
		}
	}
	c.AddRule(&nftables.Rule{
		Table:    b.table,
		Chain:    &nftables.Chain{Name: chain, Table: b.table},
		Exprs:    exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, ru.comment),
	})
	return msgs, nil
}

// Check renders rs and applies it, from scratch, in a throw-away network
// namespace: the kernel validates every message, nothing real changes.
func (b *Backend) Check(ctx context.Context, rs *compile.Ruleset) error {
	if _, err := render(rs); err != nil {
		return err
	}
	var rnd [4]byte
	_, _ = io.ReadFull(randReader{}, rnd[:])
	ns, err := netns.Create(fmt.Sprintf("calyx-check-%x", rnd))
	if err != nil {
		return fmt.Errorf("nftables: check: %w", err)
	}
	defer ns.Delete()
	tmp, err := New(ctx, backend.Options{NetNS: ns.Path(), Name: b.opts.Name, Logger: b.opts.Logger})
	if err != nil {
		return err
	}
	defer tmp.Close(ctx)
	return tmp.Apply(ctx, rs)
}

// Dump returns the table as `nft -f` syntax: what the backend last
// applied (Reconcile keeps the kernel equal to it).
func (b *Backend) Dump(ctx context.Context) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	if b.cur == nil || b.cur.observed {
		return []byte(fmt.Sprintf("table inet %s {\n}\n", b.table.Name)), nil
	}
	return []byte(b.cur.text(b.table.Name)), nil
}

// Close deletes the table and nothing else. Closing twice is a no-op.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.verified = false
	defer b.closeNS()
	b.closeGen()
	c, err := b.lasting()
	if err != nil {
		return err
	}
	defer b.dropConn()
	c.DelTable(b.table)
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nftables: delete table %s: %w", b.table.Name, err)
	}
	return nil
}

// Drift says what Reconcile found changed from outside and repaired.
type Drift struct {
	Stats
	// TableMissing is set when the whole table was gone.
	TableMissing bool
}

// Empty reports whether nothing had drifted.
func (d *Drift) Empty() bool {
	s := d.Stats
	return !d.TableMissing && s.ChainsAdded+s.ChainsRewritten+s.ChainsDeleted+s.SetsAdded+s.SetsRewritten+s.SetsDeleted+s.ElementsAdded+s.ElementsDeleted == 0
}

// String lists the repairs.
func (d *Drift) String() string {
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	if d.TableMissing {
		parts = append(parts, "table recreated")
	}
	add(d.ChainsAdded, "chains re-added")
	add(d.ChainsRewritten, "chains rewritten")
	add(d.ChainsDeleted, "foreign chains deleted")
	add(d.SetsAdded, "sets re-added")
	add(d.SetsRewritten, "sets rewritten")
	add(d.SetsDeleted, "foreign sets deleted")
	add(d.ElementsAdded, "elements added")
	add(d.ElementsDeleted, "elements deleted")
	if len(parts) == 0 {
		return "no drift"
	}
	return strings.Join(parts, ", ")
}

// Reconcile reads the table back from the kernel and repairs, in one
// batch, whatever differs from what the backend last applied: rules
// deleted, replaced or appended, chains or sets added or removed, set
// elements changed. Before the first Apply it does nothing.
func (b *Backend) Reconcile(ctx context.Context) (*Drift, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	if b.cur == nil {
		return &Drift{}, nil
	}
	c, err := b.lasting()
	if err != nil {
		return nil, err
	}
	// Every change to any nftables object of the namespace is a commit,
	// and every commit moves the generation: unmoved since the kernel was
	// known to hold cur, it still does.
	gen, genErr := b.generation()
	if genErr == nil && b.verified && gen == b.gen {
		return &Drift{}, nil
	}
	b.verified = false
	actual, err := b.read(c)
	if err != nil {
		b.dropConn()
		return nil, err
	}
	dr := &Drift{TableMissing: !actual.tableExists}
	// Plan first on a connection that never sends: with nothing to repair,
	// nothing is sent (plan always queues the table's creation).
	dry, err := nftables.New()
	if err != nil {
		return nil, err
	}
	if dr.Stats, err = b.plan(dry, actual, b.cur); err != nil {
		return nil, err
	}
	if dr.Empty() {
		// Read after the generation was: a commit during the read moved
		// it, and the next Reconcile reads again.
		b.verified, b.gen = genErr == nil, gen
		return dr, nil
	}
	if _, err = b.plan(c, actual, b.cur); err != nil {
		b.dropConn()
		return nil, err
	}
	if err := b.flush(c); err != nil {
		b.dropConn()
		return nil, err
	}
	if genErr == nil {
		// The repair was the only commit since before the read: the
		// kernel holds cur.
		b.verifyAfter(gen, false)
	}
	b.log.Info("nftables drift repaired", "table", b.table.Name, "drift", dr.String())
	return dr, nil
}

// verifyAfter marks cur as what the kernel holds when the generation is
// one past before: the batch just committed was the only commit since the
// kernel was known to hold what the batch was planned from. A batch that
// changed nothing (only the table's creation, a no-op on an existing
// table) commits nothing: then the generation must not have moved (one
// more would be someone else's commit).
func (b *Backend) verifyAfter(before uint32, empty bool) {
	want := before + 1
	if empty {
		want = before
	}
	if g, err := b.generation(); err == nil && g == want {
		b.verified, b.gen = true, g
	}
}

// forgetVerified makes the next Reconcile read the table back even if the
// generation has not moved (tests: check what an Apply left in the kernel).
func (b *Backend) forgetVerified() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.verified = false
}

type randReader struct{}

func (randReader) Read(p []byte) (int, error) { return unix.Getrandom(p, 0) }

// Repair is Reconcile behind the backend.Repairer interface.
func (b *Backend) Repair(ctx context.Context) (backend.Drift, error) {
	d, err := b.Reconcile(ctx)
	if err != nil {
		return nil, err
	}
	return d, nil
}

var _ backend.Repairer = (*Backend)(nil)

package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for cool-down and GC tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mustPool(t testing.TB, a *Allocator, name, cidr string, blockSize int) {
	t.Helper()
	require.NoError(t, a.UpsertPool(context.Background(), Pool{Name: name, CIDR: netip.MustParsePrefix(cidr), BlockSize: blockSize}))
}

func requireClean(t testing.TB, a *Allocator) *Report {
	t.Helper()
	rep, err := a.Check(context.Background())
	require.NoError(t, err)
	require.Empty(t, rep.Problems, "check must be clean")
	return rep
}

func assign(t testing.TB, a *Allocator, handle, node string) netip.Addr {
	t.Helper()
	res, err := a.AutoAssign(context.Background(), AssignRequest{Handle: handle, Node: node, IPv4: 1})
	require.NoError(t, err)
	require.Len(t, res.IPv4, 1)
	return res.IPv4[0]
}

func TestAutoAssignAffinityClaimAndBorrow(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	a := New(NewMemoryStore(), Config{Now: clk.Now})
	// Two /30 blocks: four addresses each.
	mustPool(t, a, "p", "10.0.0.0/29", 30)

	got := []netip.Addr{}
	for i := range 4 {
		got = append(got, assign(t, a, fmt.Sprint("a", i), "node-a"))
	}
	require.Equal(t, []netip.Addr{
		netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.0.0.1"),
		netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"),
	}, got, "node-a fills its first block in order")

	// node-b claims the second block.
	b0 := assign(t, a, "b0", "node-b")
	require.Equal(t, netip.MustParseAddr("10.0.0.4"), b0)
	u, err := a.Usage(ctx)
	require.NoError(t, err)
	require.Len(t, u.Blocks, 2)
	require.Equal(t, "node-a", u.Blocks[0].Node)
	require.Equal(t, "node-b", u.Blocks[1].Node)

	// node-a's block is full and no block is left: it borrows from node-b.
	a4 := assign(t, a, "a4", "node-a")
	require.Equal(t, netip.MustParseAddr("10.0.0.5"), a4)
	al, err := a.Lookup(ctx, a4)
	require.NoError(t, err)
	require.Equal(t, Allocation{Addr: a4, Block: netip.MustParsePrefix("10.0.0.4/30"), Handle: "a4", Node: "node-a"}, al)
	requireClean(t, a)

	// With strict affinity node-a may not borrow.
	strict := New(a.Store(), Config{Now: clk.Now, StrictAffinity: true})
	_, err = strict.AutoAssign(ctx, AssignRequest{Handle: "a5", Node: "node-a", IPv4: 1})
	require.ErrorIs(t, err, ErrExhausted)
	// ...but node-b still can, from its own block.
	_, err = strict.AutoAssign(ctx, AssignRequest{Handle: "b1", Node: "node-b", IPv4: 1})
	require.NoError(t, err)
	// node-c has no block and none is left: it borrows the last address.
	require.Equal(t, netip.MustParseAddr("10.0.0.7"), assign(t, a, "c", "node-c"))
	// Now everything is taken.
	_, err = a.AutoAssign(ctx, AssignRequest{Handle: "d", Node: "node-c", IPv4: 1})
	require.ErrorIs(t, err, ErrExhausted)
	_, err = a.LookupHandle(ctx, "d")
	require.ErrorIs(t, err, ErrNotFound, "a failed assign leaves no handle")
	requireClean(t, a)
}

func TestAutoAssignDualStackAllOrNothing(t *testing.T) {
	ctx := context.Background()
	a := New(NewMemoryStore(), Config{})
	mustPool(t, a, "v4", "10.1.0.0/24", 0)
	mustPool(t, a, "v6", "fd00::/122", 0)

	res, err := a.AutoAssign(ctx, AssignRequest{Handle: "pod", Node: "n", IPv4: 1, IPv6: 2, Attrs: map[string]string{"namespace": "ns", "pod": "p"}})
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("10.1.0.0")}, res.IPv4)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("fd00::"), netip.MustParseAddr("fd00::1")}, res.IPv6)
	h, err := a.LookupHandle(ctx, "pod")
	require.NoError(t, err)
	require.Equal(t, "n", h.Node)
	require.Equal(t, map[string]string{"namespace": "ns", "pod": "p"}, h.Attrs)
	require.Len(t, h.Addrs, 3)

	// Asking for more IPv6 addresses than exist fails and holds nothing.
	_, err = a.AutoAssign(ctx, AssignRequest{Handle: "big", Node: "n", IPv4: 1, IPv6: 63})
	require.ErrorIs(t, err, ErrExhausted)
	rep := requireClean(t, a)
	require.Equal(t, 3, rep.Allocated)
}

func TestPoolSelection(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		pools   []Pool
		req     AssignRequest
		want    string // prefix the address must fall in
		wantErr error
	}{
		{
			name:  "disabled pool skipped",
			pools: []Pool{{Name: "a", CIDR: netip.MustParsePrefix("10.0.0.0/24"), Disabled: true}, {Name: "b", CIDR: netip.MustParsePrefix("10.0.1.0/24")}},
			want:  "10.0.1.0/24",
		},
		{
			name:    "only disabled",
			pools:   []Pool{{Name: "a", CIDR: netip.MustParsePrefix("10.0.0.0/24"), Disabled: true}},
			wantErr: ErrNoPool,
		},
		{
			name:  "manual pool only when named",
			pools: []Pool{{Name: "a", CIDR: netip.MustParsePrefix("10.0.0.0/24"), Manual: true}, {Name: "b", CIDR: netip.MustParsePrefix("10.0.1.0/24")}},
			want:  "10.0.1.0/24",
		},
		{
			name:  "named manual pool",
			pools: []Pool{{Name: "a", CIDR: netip.MustParsePrefix("10.0.0.0/24"), Manual: true}, {Name: "b", CIDR: netip.MustParsePrefix("10.0.1.0/24")}},
			req:   AssignRequest{Pools: []string{"a"}},
			want:  "10.0.0.0/24",
		},
		{
			name:  "allowed uses",
			pools: []Pool{{Name: "a", CIDR: netip.MustParsePrefix("10.0.0.0/24"), AllowedUses: []Use{UseLoadBalancer}}, {Name: "b", CIDR: netip.MustParsePrefix("10.0.1.0/24")}},
			want:  "10.0.1.0/24",
		},
		{
			name:  "tunnel use",
			pools: []Pool{{Name: "a", CIDR: netip.MustParsePrefix("10.0.0.0/24"), AllowedUses: []Use{UseTunnel}}, {Name: "b", CIDR: netip.MustParsePrefix("10.0.1.0/24"), AllowedUses: []Use{UseWorkload}}},
			req:   AssignRequest{Use: UseTunnel},
			want:  "10.0.0.0/24",
		},
		{
			name: "node selector",
			pools: []Pool{
				{Name: "a", CIDR: netip.MustParsePrefix("10.0.0.0/24"), NodeSelector: `zone == "east"`},
				{Name: "b", CIDR: netip.MustParsePrefix("10.0.1.0/24"), NodeSelector: `zone in {"west", "south"} && !has(edge)`},
			},
			req:  AssignRequest{NodeLabels: map[string]string{"zone": "west"}},
			want: "10.0.1.0/24",
		},
		{
			name:    "node selector matches no pool",
			pools:   []Pool{{Name: "a", CIDR: netip.MustParsePrefix("10.0.0.0/24"), NodeSelector: `zone == "east"`}},
			req:     AssignRequest{NodeLabels: map[string]string{"zone": "west"}},
			wantErr: ErrNoPool,
		},
		{
			name:  "all() selector",
			pools: []Pool{{Name: "a", CIDR: netip.MustParsePrefix("10.0.0.0/24"), NodeSelector: "all()"}},
			want:  "10.0.0.0/24",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(NewMemoryStore(), Config{})
			for _, p := range tt.pools {
				require.NoError(t, a.UpsertPool(ctx, p))
			}
			req := tt.req
			req.Handle, req.Node, req.IPv4 = "h", "n", 1
			res, err := a.AutoAssign(ctx, req)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.True(t, netip.MustParsePrefix(tt.want).Contains(res.IPv4[0]), "%s not in %s", res.IPv4[0], tt.want)
		})
	}
}

func TestNodeSelectorMatcher(t *testing.T) {
	ctx := context.Background()
	// A custom matcher replaces the selector language, e.g. to cache.
	var asked []string
	match := func(sel string, labels map[string]string) (bool, error) {
		asked = append(asked, sel)
		return sel == fmt.Sprintf("zone == %q", labels["zone"]), nil
	}
	a := New(NewMemoryStore(), Config{MatchNode: match})
	require.NoError(t, a.UpsertPool(ctx, Pool{Name: "a", CIDR: netip.MustParsePrefix("10.0.0.0/24"), NodeSelector: `zone == "east"`}))
	require.NoError(t, a.UpsertPool(ctx, Pool{Name: "b", CIDR: netip.MustParsePrefix("10.0.1.0/24"), NodeSelector: `zone == "west"`}))
	res, err := a.AutoAssign(ctx, AssignRequest{Handle: "h", Node: "n", IPv4: 1, NodeLabels: map[string]string{"zone": "west"}})
	require.NoError(t, err)
	require.Equal(t, netip.MustParseAddr("10.0.1.0"), res.IPv4[0])
	require.Equal(t, []string{`zone == "east"`, `zone == "west"`}, asked)
}

func TestPoolValidation(t *testing.T) {
	ctx := context.Background()
	a := New(NewMemoryStore(), Config{})
	mustPool(t, a, "p", "10.0.0.0/16", 0)
	tests := []struct {
		name string
		pool Pool
	}{
		{"no name", Pool{CIDR: netip.MustParsePrefix("10.1.0.0/16")}},
		{"no cidr", Pool{Name: "x"}},
		{"block too small", Pool{Name: "x", CIDR: netip.MustParsePrefix("10.1.0.0/16"), BlockSize: 19}},
		{"block larger than pool", Pool{Name: "x", CIDR: netip.MustParsePrefix("10.1.0.0/28"), BlockSize: 26}},
		{"v6 block size", Pool{Name: "x", CIDR: netip.MustParsePrefix("fd00::/64"), BlockSize: 26}},
		{"overlap", Pool{Name: "x", CIDR: netip.MustParsePrefix("10.0.128.0/20")}},
		{"cidr change", Pool{Name: "p", CIDR: netip.MustParsePrefix("10.9.0.0/16")}},
		{"block size change", Pool{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/16"), BlockSize: 24}},
		{"unknown use", Pool{Name: "x", CIDR: netip.MustParsePrefix("10.1.0.0/16"), AllowedUses: []Use{"Other"}}},
		{"bad node selector", Pool{Name: "x", CIDR: netip.MustParsePrefix("10.1.0.0/16"), NodeSelector: "zone =="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, a.UpsertPool(ctx, tt.pool), ErrInvalid)
		})
	}
	// Disabling keeps CIDR and block size: allowed.
	require.NoError(t, a.UpsertPool(ctx, Pool{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/16"), Disabled: true}))
	pools, err := a.Pools(ctx)
	require.NoError(t, err)
	require.Equal(t, []Pool{{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/16"), BlockSize: 26, Disabled: true}}, pools)
}

func TestAssignSpecificAndCooldown(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	a := New(NewMemoryStore(), Config{Now: clk.Now, Cooldown: time.Minute})
	mustPool(t, a, "p", "10.0.0.0/24", 28)
	addr := netip.MustParseAddr("10.0.0.37")

	require.NoError(t, a.Assign(ctx, AssignAddrRequest{Addr: addr, Handle: "h1", Node: "n1"}))
	require.ErrorIs(t, a.Assign(ctx, AssignAddrRequest{Addr: addr, Handle: "h2", Node: "n1"}), ErrInUse)
	require.ErrorIs(t, a.Assign(ctx, AssignAddrRequest{Addr: netip.MustParseAddr("10.9.0.1"), Handle: "h2", Node: "n1"}), ErrNoPool)
	require.NoError(t, a.UpsertPool(ctx, Pool{Name: "off", CIDR: netip.MustParsePrefix("10.9.0.0/24"), Disabled: true}))
	require.ErrorIs(t, a.Assign(ctx, AssignAddrRequest{Addr: netip.MustParseAddr("10.9.0.1"), Handle: "h2", Node: "n1"}), ErrNoPool)
	u, err := a.Usage(ctx)
	require.NoError(t, err)
	require.Equal(t, []BlockUsage{{Block: netip.MustParsePrefix("10.0.0.32/28"), Pool: "p", Node: "n1", Allocated: 1, Size: 16}}, u.Blocks)

	freed, err := a.ReleaseByHandle(ctx, "h1")
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{addr}, freed)
	_, err = a.ReleaseByHandle(ctx, "h1")
	require.ErrorIs(t, err, ErrNotFound)

	require.ErrorIs(t, a.Assign(ctx, AssignAddrRequest{Addr: addr, Handle: "h2", Node: "n1"}), ErrCoolingDown)
	clk.Advance(time.Minute)
	require.NoError(t, a.Assign(ctx, AssignAddrRequest{Addr: addr, Handle: "h2", Node: "n1"}))
	requireClean(t, a)
}

func TestAutoAssignSkipsCoolingAddresses(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	a := New(NewMemoryStore(), Config{Now: clk.Now, Cooldown: time.Minute})
	mustPool(t, a, "p", "10.0.0.0/30", 30)
	var addrs []netip.Addr
	for i := range 4 {
		addrs = append(addrs, assign(t, a, fmt.Sprint("h", i), "n"))
	}
	// Release two; neither may come back before the cool-down.
	unalloc, err := a.Release(ctx, addrs[1], addrs[2], netip.MustParseAddr("10.0.0.200"))
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("10.0.0.200")}, unalloc)
	_, err = a.AutoAssign(ctx, AssignRequest{Handle: "x", Node: "n", IPv4: 1})
	require.ErrorIs(t, err, ErrExhausted)
	clk.Advance(30 * time.Second)
	// Release addrs[0] later: addrs[1] (released first) is reused first.
	_, err = a.Release(ctx, addrs[0])
	require.NoError(t, err)
	clk.Advance(31 * time.Second)
	require.Equal(t, addrs[1], assign(t, a, "x", "n"))
	require.Equal(t, addrs[2], assign(t, a, "y", "n"))
	_, err = a.AutoAssign(ctx, AssignRequest{Handle: "z", Node: "n", IPv4: 1})
	require.ErrorIs(t, err, ErrExhausted, "addrs[0] is still cooling down")
	requireClean(t, a)
}

func TestReleaseNodeAndDeletePool(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	a := New(NewMemoryStore(), Config{Now: clk.Now, Cooldown: time.Second})
	mustPool(t, a, "p", "10.0.0.0/28", 30)
	x := assign(t, a, "x", "n1")
	// A second block that ends up empty.
	require.NoError(t, a.Assign(ctx, AssignAddrRequest{Addr: netip.MustParseAddr("10.0.0.9"), Handle: "y", Node: "n1"}))
	_, err := a.ReleaseByHandle(ctx, "y")
	require.NoError(t, err)
	clk.Advance(2 * time.Second)

	require.ErrorIs(t, a.DeletePool(ctx, "p"), ErrInUse)
	require.NoError(t, a.ReleaseNode(ctx, "n1"))
	u, err := a.Usage(ctx)
	require.NoError(t, err)
	require.Equal(t, []BlockUsage{{Block: netip.MustParsePrefix("10.0.0.0/30"), Pool: "p", Allocated: 1, Size: 4}}, u.Blocks,
		"the empty block is gone, the used one stays without affinity")
	requireClean(t, a)

	_, err = a.Release(ctx, x)
	require.NoError(t, err)
	clk.Advance(2 * time.Second)
	blocks, err := a.ReleaseEmptyBlocks(ctx)
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/30")}, blocks)
	require.NoError(t, a.DeletePool(ctx, "p"))
	require.ErrorIs(t, a.DeletePool(ctx, "p"), ErrNotFound)
	rep := requireClean(t, a)
	require.Zero(t, rep.Blocks+rep.Handles+rep.Nodes+rep.Pools)
}

func TestAddToExistingHandle(t *testing.T) {
	ctx := context.Background()
	a := New(NewMemoryStore(), Config{})
	mustPool(t, a, "p", "10.0.0.0/24", 0)
	first := assign(t, a, "h", "n")
	second := assign(t, a, "h", "n")
	h, err := a.LookupHandle(ctx, "h")
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{first, second}, h.Addrs)
	_, err = a.Release(ctx, first)
	require.NoError(t, err)
	h, err = a.LookupHandle(ctx, "h")
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{second}, h.Addrs)
	requireClean(t, a)
}

func TestInvalidRequests(t *testing.T) {
	ctx := context.Background()
	a := New(NewMemoryStore(), Config{})
	mustPool(t, a, "p", "10.0.0.0/24", 0)
	for _, req := range []AssignRequest{
		{Node: "n", IPv4: 1},
		{Handle: "h", IPv4: 1},
		{Handle: "h", Node: "n"},
		{Handle: "h", Node: "n", IPv4: -1, IPv6: 2},
		{Handle: "h", Node: "n", IPv4: 65},
	} {
		t.Run(fmt.Sprintf("%+v", req), func(t *testing.T) {
			_, err := a.AutoAssign(ctx, req)
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
}

// TestCombinedAssignments drives many concurrent assignments for one node
// through a store without its own lock, so they are combined into shared
// commits; the requests that cannot be served fail alone.
func TestCombinedAssignments(t *testing.T) {
	ctx := context.Background()
	a := New(NewMemoryStore(), Config{})
	mustPool(t, a, "p", "10.0.0.0/28", 28) // 16 addresses
	const callers = 40
	errs := make([]error, callers)
	addrs := make([]netip.Addr, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := a.AutoAssign(ctx, AssignRequest{Handle: fmt.Sprint("h", i), Node: "n", IPv4: 1})
			errs[i] = err
			if err == nil {
				addrs[i] = res.IPv4[0]
			}
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	ok := 0
	for i, err := range errs {
		if err != nil {
			require.ErrorIs(t, err, ErrExhausted)
			continue
		}
		ok++
		require.False(t, seen[addrs[i]], "duplicate %s", addrs[i])
		seen[addrs[i]] = true
		al, err := a.Lookup(ctx, addrs[i])
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint("h", i), al.Handle)
	}
	require.Equal(t, 16, ok)
	rep := requireClean(t, a)
	require.Equal(t, 16, rep.Allocated)
}

func TestIdempotentAssign(t *testing.T) {
	ctx := context.Background()
	a := New(NewMemoryStore(), Config{})
	mustPool(t, a, "v4", "10.0.0.0/24", 0)
	mustPool(t, a, "v6", "fd00::/120", 0)
	req := AssignRequest{Handle: "cni.abc", Node: "n", IPv4: 1, Idempotent: true}
	first, err := a.AutoAssign(ctx, req)
	require.NoError(t, err)
	// A retry (say after an ambiguous timeout) gets the same address.
	again, err := a.AutoAssign(ctx, req)
	require.NoError(t, err)
	require.Equal(t, first, again)
	// Asking for more adds only what is missing.
	req.IPv6 = 1
	dual, err := a.AutoAssign(ctx, req)
	require.NoError(t, err)
	require.Equal(t, first.IPv4, dual.IPv4)
	require.Len(t, dual.IPv6, 1)
	h, err := a.LookupHandle(ctx, "cni.abc")
	require.NoError(t, err)
	require.Equal(t, append(slices.Clone(first.IPv4), dual.IPv6...), h.Addrs)
	// Without Idempotent a second request adds addresses to the handle.
	req.Idempotent = false
	more, err := a.AutoAssign(ctx, req)
	require.NoError(t, err)
	require.NotEqual(t, first.IPv4, more.IPv4)
	rep := requireClean(t, a)
	require.Equal(t, 4, rep.Allocated)
}

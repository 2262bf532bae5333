package ipam

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// heldSet is the parent's view of who holds what; a second holder of an
// address is a duplicate.
type heldSet struct {
	mu   sync.Mutex
	by   map[netip.Addr]string
	errs []string
}

func (h *heldSet) add(addr netip.Addr, handle string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if other, ok := h.by[addr]; ok {
		h.errs = append(h.errs, fmt.Sprintf("%s held by %s and %s", addr, other, handle))
	}
	h.by[addr] = handle
}

func (h *heldSet) remove(addr netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.by, addr)
}

// TestConcurrentEtcdNodes runs 3 nodes × 16 goroutines allocating and
// releasing against one real etcd, with no cool-down so addresses are
// reused as fast as possible, and small blocks so nodes claim and borrow.
func TestConcurrentEtcdNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	url := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const nodes, workers, rounds = 3, 16, 8
	var allocs []*Allocator
	for range nodes {
		// One client per node, as separate agents would have.
		allocs = append(allocs, New(newEtcdStore(t, url), Config{Cooldown: -1, MaxRetries: 500}))
	}
	require.NoError(t, allocs[0].UpsertPool(ctx, Pool{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/24"), BlockSize: 28}))

	held := &heldSet{by: map[netip.Addr]string{}}
	var g errgroup.Group
	for n := range nodes {
		for w := range workers {
			g.Go(func() error {
				a := allocs[n]
				node := fmt.Sprint("node-", n)
				var mine []string
				for r := range rounds {
					h := fmt.Sprintf("n%d-w%d-r%d", n, w, r)
					res, err := a.AutoAssign(ctx, AssignRequest{Handle: h, Node: node, IPv4: 1})
					if err != nil {
						return err
					}
					held.add(res.IPv4[0], h)
					mine = append(mine, h)
					if r%2 == 1 {
						// Forget it before releasing: once the commit
						// lands anyone may get it.
						held.remove(res.IPv4[0])
						if _, err := a.ReleaseByHandle(ctx, h); err != nil {
							return err
						}
						mine = mine[:len(mine)-1]
					}
				}
				for _, h := range mine {
					hi, err := a.LookupHandle(ctx, h)
					if err != nil {
						return err
					}
					held.remove(hi.Addrs[0])
					if _, err := a.ReleaseByHandle(ctx, h); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	require.NoError(t, g.Wait())
	require.Empty(t, held.errs, "duplicates")
	rep := requireClean(t, allocs[0])
	require.Zero(t, rep.Allocated, "leaks after release")
	require.Zero(t, rep.Handles)
	require.Greater(t, rep.Blocks, 1, "nodes claimed blocks")
	// With nothing held (and no cool-down) every block is released too.
	_, err := allocs[1].ReleaseEmptyBlocks(ctx)
	require.NoError(t, err)
	rep = requireClean(t, allocs[2])
	require.Zero(t, rep.Blocks+rep.Nodes, "no block or affinity left behind")
}

// TestConcurrentBoltProcesses runs 32 processes allocating and releasing
// against one bbolt file.
func TestConcurrentBoltProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ipam.db")
	s := openTestBolt(t, path)
	a := New(s, Config{})
	require.NoError(t, a.UpsertPool(ctx, Pool{Name: "p", CIDR: netip.MustParsePrefix("10.1.0.0/22"), BlockSize: 26}))

	const procs, perProc = 32, 8
	held := &heldSet{by: map[netip.Addr]string{}}
	var g errgroup.Group
	for p := range procs {
		g.Go(func() error {
			cmd := childCmd(t, "churn", "IPAM_STORE=bolt:"+path, fmt.Sprint("IPAM_NAME=p", p), fmt.Sprint("IPAM_N=", perProc))
			out, err := cmd.StdoutPipe()
			if err != nil {
				return err
			}
			if err := cmd.Start(); err != nil {
				return err
			}
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				ev, ok, err := parseEvent(sc.Text())
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				held.add(ev.addr, ev.handle)
			}
			if err := waitOrKill(cmd, 90*time.Second); err != nil {
				return fmt.Errorf("process %d: %w", p, err)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	require.Empty(t, held.errs, "duplicates")
	require.Len(t, held.by, procs*perProc/2)
	for addr, h := range held.by {
		al, err := a.Lookup(ctx, addr)
		require.NoError(t, err)
		require.Equal(t, h, al.Handle)
	}
	rep := requireClean(t, a)
	require.Equal(t, procs*perProc/2, rep.Allocated)
	for _, h := range held.by {
		_, err := a.ReleaseByHandle(ctx, h)
		require.NoError(t, err)
	}
	rep = requireClean(t, a)
	require.Zero(t, rep.Allocated, "leaks after release")
	require.Zero(t, rep.Handles)
	blocks, err := New(s, Config{Cooldown: -1}).ReleaseEmptyBlocks(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, blocks)
	rep = requireClean(t, a)
	require.Zero(t, rep.Blocks+rep.Nodes, "no block or affinity left behind")
}

// TestConcurrentMemoryAllocators runs several allocators (as separate
// agents would be) on one compare-and-swap store with a pool so small
// that nodes claim, fill and borrow from each other's blocks all the time.
func TestConcurrentMemoryAllocators(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	const nodes, workers, rounds = 4, 8, 40
	var allocs []*Allocator
	for range nodes {
		allocs = append(allocs, New(s, Config{Cooldown: -1, MaxRetries: 1000, RetryBackoff: 10 * time.Microsecond}))
	}
	require.NoError(t, allocs[0].UpsertPool(ctx, Pool{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/27"), BlockSize: 30}))
	held := &heldSet{by: map[netip.Addr]string{}}
	var g errgroup.Group
	for n := range nodes {
		for w := range workers {
			g.Go(func() error {
				for r := range rounds {
					h := fmt.Sprintf("n%d-w%d-r%d", n, w, r)
					res, err := allocs[n].AutoAssign(ctx, AssignRequest{Handle: h, Node: fmt.Sprint("node-", n), IPv4: 1})
					if errors.Is(err, ErrExhausted) {
						continue
					}
					if err != nil {
						return err
					}
					held.add(res.IPv4[0], h)
					// Until released, the address is ours, whoever asks.
					al, err := allocs[(n+1)%nodes].Lookup(ctx, res.IPv4[0])
					if err != nil {
						return err
					}
					if al.Handle != h {
						return fmt.Errorf("%s assigned to %s but held by %s", res.IPv4[0], h, al.Handle)
					}
					held.remove(res.IPv4[0])
					if _, err := allocs[(n+r)%nodes].ReleaseByHandle(ctx, h); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	require.NoError(t, g.Wait())
	require.Empty(t, held.errs, "duplicates")
	rep := requireClean(t, allocs[0])
	require.Zero(t, rep.Allocated+rep.Handles)
}

package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// model is the simple truth the allocator is compared with: who holds
// each address and when each was released.
type model struct {
	holder   map[netip.Addr]string
	freed    map[netip.Addr]time.Time
	handles  map[string][]netip.Addr
	created  map[string]time.Time
	suspects map[string][2]time.Time // first seen dead, handle created
}

func (m *model) usable(a netip.Addr, now time.Time, cool time.Duration) bool {
	if m.holder[a] != "" {
		return false
	}
	f, ok := m.freed[a]
	return !ok || now.Sub(f) >= cool
}

func (m *model) release(a netip.Addr, now time.Time) {
	h := m.holder[a]
	delete(m.holder, a)
	m.freed[a] = now
	m.handles[h] = slices.DeleteFunc(m.handles[h], func(x netip.Addr) bool { return x == a })
	if len(m.handles[h]) == 0 {
		delete(m.handles, h)
		delete(m.created, h)
	}
}

func prefixAddrs(p netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for a := p.Addr(); p.Contains(a); a = a.Next() {
		out = append(out, a)
	}
	return out
}

// TestPropertyAllocatorMatchesModel runs random sequences of assign,
// release, claim and GC over several nodes and checks, after every step,
// that the allocator agrees with the model, that no address is ever held
// twice, and that Check is clean.
func TestPropertyAllocatorMatchesModel(t *testing.T) {
	// The memory store goes through the optimistic compare-and-swap loop,
	// bbolt through its locked update with group commit.
	stores := []struct {
		name string
		open func() Store
	}{
		{"memory", func() Store { return NewMemoryStore() }},
		{"bolt", func() Store {
			s, err := OpenBolt(context.Background(), filepath.Join(t.TempDir(), "ipam.db"), &BoltOptions{KeepOpen: true})
			if err != nil {
				t.Fatal(err)
			}
			s.noSync = true // logic, not durability: TestCrashSafety covers that
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) { propertyAllocator(t, st.open) })
	}
}

func propertyAllocator(t *testing.T, open func() Store) {
	const cool = 10 * time.Second
	const grace = 30 * time.Second
	pool4 := netip.MustParsePrefix("10.0.0.0/28")
	pool6 := netip.MustParsePrefix("fd00::/124")
	all4, all6 := prefixAddrs(pool4), prefixAddrs(pool6)
	nodes := []string{"n0", "n1", "n2"}

	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		clk := newFakeClock()
		a := New(open(), Config{Now: clk.Now, Cooldown: cool, GCGrace: grace})
		for _, p := range []Pool{{Name: "v4", CIDR: pool4, BlockSize: 30}, {Name: "v6", CIDR: pool6, BlockSize: 126}} {
			if err := a.UpsertPool(ctx, p); err != nil {
				rt.Fatal(err)
			}
		}
		m := &model{holder: map[netip.Addr]string{}, freed: map[netip.Addr]time.Time{}, handles: map[string][]netip.Addr{},
			created: map[string]time.Time{}, suspects: map[string][2]time.Time{}}
		handleGen := rapid.StringMatching(`h[0-9]`)

		hold := func(h string, addrs ...netip.Addr) {
			for _, x := range addrs {
				if m.holder[x] != "" {
					rt.Fatalf("%s handed to %s but held by %s", x, h, m.holder[x])
				}
				if !m.usable(x, clk.Now(), cool) {
					rt.Fatalf("%s handed to %s inside its cool-down", x, h)
				}
				m.holder[x] = h
				if _, ok := m.created[h]; !ok {
					m.created[h] = clk.Now()
				}
				m.handles[h] = append(m.handles[h], x)
			}
		}
		count := func(addrs []netip.Addr) int {
			n := 0
			for _, x := range addrs {
				if m.usable(x, clk.Now(), cool) {
					n++
				}
			}
			return n
		}

		rt.Repeat(map[string]func(*rapid.T){
			"autoAssign": func(rt *rapid.T) {
				h := handleGen.Draw(rt, "handle")
				n4 := rapid.IntRange(0, 3).Draw(rt, "v4")
				n6 := rapid.IntRange(0, 2).Draw(rt, "v6")
				if n4+n6 == 0 {
					n4 = 1
				}
				node := rapid.SampledFrom(nodes).Draw(rt, "node")
				idem := rapid.Bool().Draw(rt, "idempotent")
				// With Idempotent, what the handle holds counts first.
				var have4, have6 []netip.Addr
				if idem {
					for _, x := range m.handles[h] {
						if x.Is4() && len(have4) < n4 {
							have4 = append(have4, x)
						} else if x.Is6() && len(have6) < n6 {
							have6 = append(have6, x)
						}
					}
				}
				res, err := a.AutoAssign(ctx, AssignRequest{Handle: h, Node: node, IPv4: n4, IPv6: n6, Idempotent: idem})
				possible := count(all4) >= n4-len(have4) && count(all6) >= n6-len(have6)
				switch {
				case err == nil:
					if !possible {
						rt.Fatalf("assigned %v but the model has no room", res)
					}
					if len(res.IPv4) != n4 || len(res.IPv6) != n6 {
						rt.Fatalf("asked %d+%d, got %v", n4, n6, res)
					}
					if !slices.Equal(res.IPv4[:len(have4)], have4) || !slices.Equal(res.IPv6[:len(have6)], have6) {
						rt.Fatalf("idempotent request got %v, handle held %v %v", res, have4, have6)
					}
					hold(h, append(slices.Clone(res.IPv4[len(have4):]), res.IPv6[len(have6):]...)...)
				case errors.Is(err, ErrExhausted):
					if possible {
						rt.Fatalf("exhausted although the model has room: %v", err)
					}
				default:
					rt.Fatal(err)
				}
			},
			"assign": func(rt *rapid.T) {
				h := handleGen.Draw(rt, "handle")
				x := rapid.SampledFrom(append(slices.Clone(all4), all6...)).Draw(rt, "addr")
				node := rapid.SampledFrom(nodes).Draw(rt, "node")
				err := a.Assign(ctx, AssignAddrRequest{Addr: x, Handle: h, Node: node})
				switch {
				case err == nil:
					hold(h, x)
				case errors.Is(err, ErrInUse):
					if m.holder[x] == "" {
						rt.Fatalf("%s in use but free in the model", x)
					}
				case errors.Is(err, ErrCoolingDown):
					if m.holder[x] != "" || m.usable(x, clk.Now(), cool) {
						rt.Fatalf("%s cooling down, model disagrees", x)
					}
				default:
					rt.Fatal(err)
				}
			},
			"release": func(rt *rapid.T) {
				xs := rapid.SliceOfNDistinct(rapid.SampledFrom(append(slices.Clone(all4), all6...)), 1, 3, func(a netip.Addr) netip.Addr { return a }).Draw(rt, "addrs")
				un, err := a.Release(ctx, xs...)
				if err != nil {
					rt.Fatal(err)
				}
				var want []netip.Addr
				for _, x := range xs {
					if m.holder[x] == "" {
						want = append(want, x)
					} else {
						m.release(x, clk.Now())
					}
				}
				if !slices.Equal(un, want) {
					rt.Fatalf("unallocated %v, want %v", un, want)
				}
			},
			"releaseByHandle": func(rt *rapid.T) {
				h := handleGen.Draw(rt, "handle")
				freed, err := a.ReleaseByHandle(ctx, h)
				if _, ok := m.handles[h]; !ok {
					if !errors.Is(err, ErrNotFound) {
						rt.Fatalf("release of unknown handle: %v", err)
					}
					return
				}
				if err != nil {
					rt.Fatal(err)
				}
				want := slices.Clone(m.handles[h])
				if !slices.Equal(freed, want) {
					rt.Fatalf("freed %v, want %v", freed, want)
				}
				for _, x := range want {
					m.release(x, clk.Now())
				}
			},
			"gc": func(rt *rapid.T) {
				live := map[string]bool{}
				for _, h := range sortedKeys(m.handles) {
					live[h] = rapid.Bool().Draw(rt, "live "+h)
				}
				res, err := a.GC(ctx, func(_ context.Context, h Handle) (bool, error) { return live[h.ID], nil })
				if err != nil {
					rt.Fatal(err)
				}
				// The model's rule: older than grace, seen dead by the
				// previous pass at least grace ago.
				now := clk.Now()
				var want []string
				next := map[string][2]time.Time{}
				for _, h := range sortedKeys(m.handles) {
					created := m.created[h]
					if now.Sub(created) < grace || live[h] {
						continue
					}
					s, ok := m.suspects[h]
					ok = ok && s[1].Equal(created) // a recreated handle starts over
					switch {
					case ok && now.Sub(s[0]) >= grace:
						want = append(want, h)
					case ok:
						next[h] = s
					default:
						next[h] = [2]time.Time{now, created}
					}
				}
				m.suspects = next
				if !slices.Equal(res.Released, want) {
					rt.Fatalf("gc released %v, want %v", res.Released, want)
				}
				for _, h := range want {
					for _, x := range slices.Clone(m.handles[h]) {
						m.release(x, now)
					}
				}
			},
			"releaseNode": func(rt *rapid.T) {
				if err := a.ReleaseNode(ctx, rapid.SampledFrom(nodes).Draw(rt, "node")); err != nil {
					rt.Fatal(err)
				}
			},
			"tick": func(rt *rapid.T) {
				clk.Advance(time.Duration(rapid.IntRange(1, 20).Draw(rt, "seconds")) * time.Second)
			},
			"": func(rt *rapid.T) {
				rep, err := a.Check(ctx)
				if err != nil {
					rt.Fatal(err)
				}
				if !rep.OK() {
					rt.Fatalf("check: %v", rep.Problems)
				}
				if rep.Allocated != len(m.holder) {
					rt.Fatalf("allocated %d, model %d", rep.Allocated, len(m.holder))
				}
				hs, err := a.Handles(ctx)
				if err != nil {
					rt.Fatal(err)
				}
				if len(hs) != len(m.handles) {
					rt.Fatalf("handles %d, model %d", len(hs), len(m.handles))
				}
				for _, h := range hs {
					if !slices.Equal(h.Addrs, m.handles[h.ID]) {
						rt.Fatalf("handle %s holds %v, model %v", h.ID, h.Addrs, m.handles[h.ID])
					}
				}
			},
		})
	})
}

func TestPropertyBlockArithmetic(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		v6 := rapid.Bool().Draw(rt, "v6")
		var addr netip.Addr
		bits, size := 32, rapid.IntRange(20, 32).Draw(rt, "blockSize")
		if v6 {
			var b [16]byte
			copy(b[:], rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(rt, "bytes"))
			addr, bits, size = netip.AddrFrom16(b), 128, rapid.IntRange(116, 128).Draw(rt, "blockSize6")
		} else {
			var b [4]byte
			copy(b[:], rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(rt, "bytes"))
			addr = netip.AddrFrom4(b)
		}
		_ = bits
		blk := netip.PrefixFrom(addr, size).Masked()
		b := newBlock(blk, "p", "")
		o, ok := b.ordinal(addr)
		if !ok || o < 0 || o >= len(b.Handles) {
			rt.Fatalf("ordinal of %s in %s: %d %v", addr, blk, o, ok)
		}
		if got := b.addr(o); got != addr {
			rt.Fatalf("addr(%d) = %s, want %s", o, got, addr)
		}
		if k, err := parseBlockKey(blockKey(blk)); err != nil || k != blk {
			rt.Fatalf("block key round trip %s: %v %v", blk, k, err)
		}
		poolBits := rapid.IntRange(max(0, size-16), size).Draw(rt, "poolBits")
		pool := Pool{CIDR: netip.PrefixFrom(addr, poolBits).Masked(), BlockSize: size}
		i := rapid.Uint64Range(0, pool.blocks()-1).Draw(rt, "i")
		bp := pool.blockAt(i)
		if !pool.CIDR.Contains(bp.Addr()) || bp != bp.Masked() || pool.blockOf(bp.Addr()) != bp {
			rt.Fatalf("blockAt(%d) of %s = %s", i, pool.CIDR, bp)
		}
		if fmt.Sprint(bp.Bits()) != fmt.Sprint(size) {
			rt.Fatalf("size")
		}
	})
}

package ipam

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// rawPut writes a record behind the allocator's back, as a bug, an old
// version or a hand edit would.
func rawPut(t *testing.T, s Store, key string, v any) {
	t.Helper()
	ctx := context.Background()
	kvs, err := s.Get(ctx, key)
	require.NoError(t, err)
	var raw []byte
	if b, ok := v.([]byte); ok {
		raw = b
	} else if b, ok := v.(*blockRecord); ok {
		raw = b.encode()
	} else if n, ok := v.(nodeRecord); ok {
		raw = n.encode()
	} else {
		raw, err = json.Marshal(v)
		require.NoError(t, err)
	}
	_, err = s.Commit(ctx, Op{Kind: OpPut, Key: key, Revision: kvs[0].Revision, Value: raw})
	require.NoError(t, err)
}

func rawDelete(t *testing.T, s Store, key string) {
	t.Helper()
	ctx := context.Background()
	kvs, err := s.Get(ctx, key)
	require.NoError(t, err)
	_, err = s.Commit(ctx, Op{Kind: OpDelete, Key: key, Revision: kvs[0].Revision})
	require.NoError(t, err)
}

func kinds(ps []Problem) []ProblemKind {
	var out []ProblemKind
	for _, p := range ps {
		out = append(out, p.Kind)
	}
	return out
}

func TestCheckFindsAndRepairFixes(t *testing.T) {
	ctx := context.Background()
	blk := netip.MustParsePrefix("10.0.0.0/26")
	a0, a1 := netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.0.0.1")
	tests := []struct {
		name     string
		corrupt  func(t *testing.T, s Store)
		want     []ProblemKind
		repaired bool
	}{
		{
			name:     "address without handle",
			corrupt:  func(t *testing.T, s Store) { rawDelete(t, s, handleKey("h0")) },
			want:     []ProblemKind{ProblemAllocWithoutHandle},
			repaired: true,
		},
		{
			name: "handle points at free address",
			corrupt: func(t *testing.T, s Store) {
				rawPut(t, s, handleKey("ghost"), handleRecord{Node: "n1", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.9")}})
			},
			want:     []ProblemKind{ProblemHandleFreeAddr},
			repaired: true,
		},
		{
			name: "address in two handles",
			corrupt: func(t *testing.T, s Store) {
				rawPut(t, s, handleKey("h1"), handleRecord{Node: "n1", Addrs: []netip.Addr{a1, a0}})
			},
			want:     []ProblemKind{ProblemDuplicateAddress, ProblemHandleFreeAddr},
			repaired: true,
		},
		{
			name: "block claimed by two nodes",
			corrupt: func(t *testing.T, s Store) {
				rawPut(t, s, nodeKey("n2"), nodeRecord{Blocks: map[netip.Prefix]bool{blk: false}})
			},
			want:     []ProblemKind{ProblemBlockClaimedTwice},
			repaired: true,
		},
		{
			name:     "affinity not recorded",
			corrupt:  func(t *testing.T, s Store) { rawDelete(t, s, nodeKey("n1")) },
			want:     []ProblemKind{ProblemAffinityMissing},
			repaired: true,
		},
		{
			name: "full flag wrong and missing block",
			corrupt: func(t *testing.T, s Store) {
				rawPut(t, s, nodeKey("n1"), nodeRecord{Blocks: map[netip.Prefix]bool{blk: true, netip.MustParsePrefix("10.0.1.0/26"): false}})
			},
			want:     []ProblemKind{ProblemFullFlag, ProblemMissingBlock},
			repaired: true,
		},
		{
			name: "overlapping blocks",
			corrupt: func(t *testing.T, s Store) {
				b := newBlock(netip.MustParsePrefix("10.0.0.0/28"), "p", "")
				rawPut(t, s, blockKey(b.CIDR), b)
			},
			want: []ProblemKind{ProblemOverlappingBlocks, ProblemBlockOutsidePool},
		},
		{
			name:    "corrupt record",
			corrupt: func(t *testing.T, s Store) { rawPut(t, s, blockKey(netip.MustParsePrefix("10.0.2.0/26")), []byte("{")) },
			want:    []ProblemKind{ProblemCorrupt},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewMemoryStore()
			a := New(s, Config{})
			mustPool(t, a, "p", "10.0.0.0/16", 26)
			assign(t, a, "h0", "n1")
			assign(t, a, "h1", "n1")
			requireClean(t, a)

			tt.corrupt(t, s)
			rep, err := a.Check(ctx)
			require.NoError(t, err)
			require.ElementsMatch(t, tt.want, kinds(rep.Problems), "%v", rep.Problems)

			res, err := a.Repair(ctx)
			require.NoError(t, err)
			after, err := a.Check(ctx)
			require.NoError(t, err)
			if tt.repaired {
				require.Empty(t, res.Remaining)
				require.Empty(t, after.Problems, "repair must leave check clean")
				// The allocator keeps working and never hands out a0/a1 twice.
				for _, x := range []string{"x1", "x2", "x3"} {
					got := assign(t, a, x, "n1")
					require.NotEqual(t, a0, got)
					require.NotEqual(t, a1, got)
				}
				requireClean(t, a)
			} else {
				require.ElementsMatch(t, tt.want, kinds(res.Remaining))
				require.ElementsMatch(t, tt.want, kinds(after.Problems))
			}
		})
	}
}

package ipam

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type storeFactory struct {
	name string
	open func(t *testing.T) Store
}

func storeFactories(t *testing.T, withEtcd bool) []storeFactory {
	t.Helper()
	fs := []storeFactory{
		{"memory", func(t *testing.T) Store { return NewMemoryStore() }},
		{"bolt", func(t *testing.T) Store { return openTestBolt(t, filepath.Join(t.TempDir(), "ipam.db")) }},
	}
	if withEtcd {
		var url string
		fs = append(fs, storeFactory{"etcd", func(t *testing.T) Store {
			if url == "" {
				url = startEtcd(t)
			}
			return newEtcdStore(t, url)
		}})
	}
	return fs
}

func openTestBolt(t testing.TB, path string) *BoltStore {
	t.Helper()
	s, err := OpenBolt(context.Background(), path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestStoreContract holds every store to the same compare-and-swap
// contract.
func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	for _, f := range storeFactories(t, true) {
		t.Run(f.name, func(t *testing.T) {
			s := f.open(t)
			kvs, err := s.Get(ctx, "a/1", "a/2")
			require.NoError(t, err)
			require.Equal(t, []KV{{Key: "a/1"}, {Key: "a/2"}}, kvs)

			r1, err := s.Commit(ctx, Op{Kind: OpPut, Key: "a/1", Value: []byte("one")})
			require.NoError(t, err)
			// Creating again must conflict: the key exists now.
			_, err = s.Commit(ctx, Op{Kind: OpPut, Key: "a/1", Value: []byte("again")})
			require.ErrorIs(t, err, ErrConflict)
			var ce *ConflictError
			require.True(t, errors.As(err, &ce))

			kvs, err = s.Get(ctx, "a/1")
			require.NoError(t, err)
			require.Equal(t, "one", string(kvs[0].Value))
			require.Equal(t, r1, kvs[0].Revision)

			// A multi-key commit with one stale condition writes nothing.
			_, err = s.Commit(ctx,
				Op{Kind: OpPut, Key: "a/2", Value: []byte("two")},
				Op{Kind: OpPut, Key: "a/1", Revision: r1 + 100, Value: []byte("x")})
			require.ErrorIs(t, err, ErrConflict)
			kvs, err = s.Get(ctx, "a/2")
			require.NoError(t, err)
			require.Zero(t, kvs[0].Revision, "a failed commit must write nothing")

			r2, err := s.Commit(ctx,
				Op{Kind: OpPut, Key: "a/2", Value: []byte("two")},
				Op{Kind: OpPut, Key: "a/1", Revision: r1, Value: []byte("uno")},
				Op{Kind: OpCheck, Key: "b/none"})
			require.NoError(t, err)
			require.Greater(t, r2, r1)

			_, err = s.Commit(ctx, Op{Kind: OpPut, Key: "b/1", Value: []byte("b")})
			require.NoError(t, err)
			list, err := s.List(ctx, "a/")
			require.NoError(t, err)
			require.Len(t, list, 2)
			require.Equal(t, "a/1", list[0].Key)
			require.Equal(t, "uno", string(list[0].Value))
			require.Equal(t, "a/2", list[1].Key)
			require.Equal(t, r2, list[1].Revision)

			// Check ops guard reads: a stale check fails the commit.
			_, err = s.Commit(ctx, Op{Kind: OpCheck, Key: "a/2", Revision: r1}, Op{Kind: OpDelete, Key: "b/1", Revision: list[0].Revision})
			require.ErrorIs(t, err, ErrConflict)

			_, err = s.Commit(ctx, Op{Kind: OpDelete, Key: "a/1", Revision: r2})
			require.NoError(t, err)
			list, err = s.List(ctx, "a/")
			require.NoError(t, err)
			require.Len(t, list, 1)
			all, err := s.List(ctx, "")
			require.NoError(t, err)
			require.Len(t, all, 2)
		})
	}
}

func TestBoltReleasesFileLockWhenIdle(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ipam.db")
	a := openTestBolt(t, path)
	b := openTestBolt(t, path)
	// With the default options neither store holds the lock while idle,
	// so two handles on one file (as two CNI processes) take turns.
	_, err := a.Commit(ctx, Op{Kind: OpPut, Key: "k", Value: []byte("a")})
	require.NoError(t, err)
	kvs, err := b.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "a", string(kvs[0].Value))
	_, err = b.Commit(ctx, Op{Kind: OpPut, Key: "k", Revision: kvs[0].Revision, Value: []byte("b")})
	require.NoError(t, err)
	require.NoError(t, a.Close())
	_, err = a.Get(ctx, "k")
	require.ErrorIs(t, err, ErrClosed)
}

func TestBoltLockTimeout(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ipam.db")
	owner, err := OpenBolt(ctx, path, &BoltOptions{KeepOpen: true})
	require.NoError(t, err)
	// A KeepOpen store holds the file lock; another handle (as another
	// process would) waits for LockTimeout, then fails.
	other, err := OpenBolt(ctx, path, &BoltOptions{LockTimeout: 50 * time.Millisecond})
	require.Error(t, err)
	require.Nil(t, other)
	require.NoError(t, owner.Close())
	other = openTestBolt(t, path)
	_, err = other.List(ctx, "")
	require.NoError(t, err)
}

// TestEtcdSnapshotPinsRevision: every read of one update sees the store
// as of its first read, so a decision that writes nothing (exhausted) is
// true of one moment.
func TestEtcdSnapshotPinsRevision(t *testing.T) {
	ctx := context.Background()
	s := newEtcdStore(t, startEtcd(t))
	r1, err := s.Commit(ctx, Op{Kind: OpPut, Key: "a", Value: []byte("1")})
	require.NoError(t, err)
	snap := s.Snapshot(ctx)
	kvs, err := snap.Get("a")
	require.NoError(t, err)
	require.Equal(t, "1", string(kvs[0].Value))

	_, err = s.Commit(ctx, Op{Kind: OpPut, Key: "a", Revision: r1, Value: []byte("2")}, Op{Kind: OpPut, Key: "b", Value: []byte("new")})
	require.NoError(t, err)

	kvs, err = snap.Get("a", "b")
	require.NoError(t, err)
	require.Equal(t, "1", string(kvs[0].Value), "pinned to the first read")
	require.Zero(t, kvs[1].Revision)
	list, err := snap.List("")
	require.NoError(t, err)
	require.Len(t, list, 1)
	// A fresh snapshot sees the present.
	kvs, err = s.Snapshot(ctx).Get("a", "b")
	require.NoError(t, err)
	require.Equal(t, "2", string(kvs[0].Value))
	require.Equal(t, "new", string(kvs[1].Value))
}

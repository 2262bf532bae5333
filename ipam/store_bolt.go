package ipam

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	boltBucket = []byte("calyx-ipam")
	boltMeta   = []byte("calyx-ipam-meta")
	boltRevKey = []byte("revision")
)

// BoltOptions tunes [OpenBolt]. The zero value is the default.
type BoltOptions struct {
	// LockTimeout bounds the wait for the file lock held by another
	// process (default 30s).
	LockTimeout time.Duration
	// KeepOpen holds the file open (and its lock) from OpenBolt until
	// Close. Only for a process that owns the file alone; otherwise the
	// file is opened for each operation and closed when no operation of
	// this process is in flight, so that short-lived processes (one per
	// CNI call) take turns.
	KeepOpen bool
	// Mode is the permission of a created file (default 0600).
	Mode os.FileMode
	// MustExist refuses to create a missing file (the error matches
	// fs.ErrNotExist): for tools that only inspect.
	MustExist bool
}

// BoltStore is the embedded, durable [Store]: one bbolt file, every commit
// fsynced before it is acknowledged. Several processes may use one file:
// bbolt's exclusive file lock serialises them, and each process holds the
// lock only while it has operations in flight.
//
// Concurrent commits from goroutines of one process are grouped into one
// bbolt transaction and one fsync (group commit); each caller returns only
// after that fsync, so no acknowledged write can be lost.
//
// It implements [Updater]: a read-modify-write runs inside the write
// transaction, so writers on one file never conflict.
type BoltStore struct {
	path string
	opts BoltOptions

	mu     sync.Mutex // guards db, refs, closed
	db     *bolt.DB
	refs   int
	closed bool

	gmu     sync.Mutex // guards pending, running
	pending []*boltCall
	running bool

	// noSync skips fsync; only tests that exercise logic, not
	// durability, set it.
	noSync bool
}

type boltCall struct {
	fn   UpdateFunc
	ops  []Op
	rev  int64
	err  error
	done chan struct{} // closed once the call's batch committed or failed
	lead chan struct{} // closed when the call must lead the next commits
}

// OpenBolt opens (creating if needed) the bbolt file at path.
func OpenBolt(ctx context.Context, path string, opts *BoltOptions) (*BoltStore, error) {
	s := &BoltStore{path: path}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.LockTimeout <= 0 {
		s.opts.LockTimeout = 30 * time.Second
	}
	if s.opts.Mode == 0 {
		s.opts.Mode = 0o600
	}
	if s.opts.MustExist {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("ipam: %w", err)
		}
	}
	db, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer s.release()
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(boltBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(boltMeta)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ipam: init %s: %w", path, err)
	}
	return s, nil
}

// Path returns the file's path.
func (s *BoltStore) Path() string { return s.path }

func (s *BoltStore) acquire(ctx context.Context) (*bolt.DB, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.db == nil {
		timeout := s.opts.LockTimeout
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
			timeout = max(time.Until(dl), time.Millisecond)
		}
		db, err := bolt.Open(s.path, s.opts.Mode, &bolt.Options{Timeout: timeout})
		if err != nil {
			return nil, fmt.Errorf("ipam: open %s: %w", s.path, err)
		}
		db.NoSync, db.NoGrowSync = s.noSync, s.noSync
		s.db = db
	}
	s.refs++
	return s.db, nil
}

func (s *BoltStore) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs--
	if s.refs == 0 && (!s.opts.KeepOpen || s.closed) && s.db != nil {
		_ = s.db.Close() // read-only use of a closed handle cannot lose data
		s.db = nil
	}
}

// Close implements [Store].
func (s *BoltStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.refs == 0 && s.db != nil {
		err := s.db.Close()
		s.db = nil
		return err
	}
	return nil
}

func (s *BoltStore) view(ctx context.Context, fn func(boltReader) error) error {
	db, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer s.release()
	return db.View(func(tx *bolt.Tx) error { return fn(boltReader{tx}) })
}

// Get implements [Store].
func (s *BoltStore) Get(ctx context.Context, keys ...string) ([]KV, error) {
	var out []KV
	err := s.view(ctx, func(r boltReader) error {
		var err error
		out, err = r.Get(keys...)
		return err
	})
	return out, err
}

// List implements [Store].
func (s *BoltStore) List(ctx context.Context, prefix string) ([]KV, error) {
	var out []KV
	err := s.view(ctx, func(r boltReader) error {
		var err error
		out, err = r.List(prefix)
		return err
	})
	return out, err
}

// Commit implements [Store].
func (s *BoltStore) Commit(ctx context.Context, ops ...Op) (int64, error) {
	c := &boltCall{ops: ops, done: make(chan struct{})}
	if err := s.run(ctx, c); err != nil {
		return 0, err
	}
	return c.rev, nil
}

// Update implements [Updater].
func (s *BoltStore) Update(ctx context.Context, fn UpdateFunc) error {
	return s.run(ctx, &boltCall{fn: fn, done: make(chan struct{})})
}

// run queues c for the next group commit. The first caller to find no
// commit running becomes the leader: it commits batches of queued calls
// until its own call is done (and a few batches more), then hands the lead
// to the oldest waiting call, so no caller commits for others for long.
func (s *BoltStore) run(ctx context.Context, c *boltCall) error {
	db, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer s.release()
	c.lead = make(chan struct{})
	s.gmu.Lock()
	s.pending = append(s.pending, c)
	if s.running {
		s.gmu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-c.lead:
		}
		s.gmu.Lock()
	} else {
		s.running = true
	}
	// After its own call is done the leader keeps going for a few more
	// batches (handing over costs a wake-up), then hands over.
	const extra = 4
	for after := 0; ; {
		batch := s.pending
		s.pending = nil
		s.gmu.Unlock()
		if len(batch) > 0 {
			s.commitBatch(db, batch)
		}
		s.gmu.Lock()
		select {
		case <-c.done:
			after++
		default:
			continue
		}
		if len(s.pending) == 0 {
			s.running = false
			s.gmu.Unlock()
			return c.err
		}
		if after > extra {
			close(s.pending[0].lead)
			s.gmu.Unlock()
			return c.err
		}
	}
}

// commitBatch runs every call in one write transaction. A call whose own
// function or conditions fail gets its error and writes nothing; a failure
// while writing removes that call and retries the rest, so one bad call
// never fails its neighbours.
func (s *BoltStore) commitBatch(db *bolt.DB, batch []*boltCall) {
	for len(batch) > 0 {
		var failed int = -1
		var failErr error
		err := db.Update(func(tx *bolt.Tx) error {
			r := boltReader{tx}
			meta := tx.Bucket(boltMeta)
			b := tx.Bucket(boltBucket)
			if meta == nil || b == nil {
				return fmt.Errorf("%w: %s has no ipam buckets", ErrInvalid, s.path)
			}
			rev := int64(0)
			if v := meta.Get(boltRevKey); len(v) == 8 {
				rev = int64(binary.BigEndian.Uint64(v))
			}
			for i, c := range batch {
				c.err, c.rev = nil, 0
				ops := c.ops
				if c.fn != nil {
					var err error
					if ops, err = c.fn(r); err != nil {
						c.err = err
						continue
					}
				}
				if err := checkOps(ops, r.rev); err != nil {
					c.err = err
					continue
				}
				if !hasWrites(ops) {
					c.rev = rev
					continue
				}
				rev++
				if err := applyBolt(b, ops, rev); err != nil {
					failed, failErr = i, err
					return err
				}
				c.rev = rev
			}
			var buf [8]byte
			binary.BigEndian.PutUint64(buf[:], uint64(rev))
			return meta.Put(boltRevKey, buf[:])
		})
		if err == nil {
			for _, c := range batch {
				close(c.done)
			}
			return
		}
		if failed < 0 {
			// The transaction itself failed (disk, fsync): nothing was
			// acknowledged, every caller sees the error.
			for _, c := range batch {
				c.err = fmt.Errorf("ipam: commit %s: %w", s.path, err)
				close(c.done)
			}
			return
		}
		c := batch[failed]
		c.err = fmt.Errorf("ipam: commit %s: %w", s.path, failErr)
		close(c.done)
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
}

func hasWrites(ops []Op) bool {
	for _, op := range ops {
		if op.Kind != OpCheck {
			return true
		}
	}
	return false
}

func applyBolt(b *bolt.Bucket, ops []Op, rev int64) error {
	for _, op := range ops {
		switch op.Kind {
		case OpPut:
			v := make([]byte, 8+len(op.Value))
			binary.BigEndian.PutUint64(v, uint64(rev))
			copy(v[8:], op.Value)
			if err := b.Put([]byte(op.Key), v); err != nil {
				return err
			}
		case OpDelete:
			if err := b.Delete([]byte(op.Key)); err != nil {
				return err
			}
		}
	}
	return nil
}

// boltReader reads inside one bbolt transaction.
type boltReader struct{ tx *bolt.Tx }

var errBoltLayout = errors.New("ipam: bbolt value without revision")

func (r boltReader) rev(key string) int64 {
	v := r.tx.Bucket(boltBucket).Get([]byte(key))
	if len(v) < 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func decodeBolt(k, v []byte) (KV, error) {
	if len(v) < 8 {
		return KV{}, fmt.Errorf("%w: key %q", errBoltLayout, k)
	}
	return KV{Key: string(k), Revision: int64(binary.BigEndian.Uint64(v)), Value: bytes.Clone(v[8:])}, nil
}

func (r boltReader) Get(keys ...string) ([]KV, error) {
	b := r.tx.Bucket(boltBucket)
	if b == nil {
		return nil, fmt.Errorf("%w: no ipam bucket", ErrInvalid)
	}
	out := make([]KV, len(keys))
	for i, k := range keys {
		v := b.Get([]byte(k))
		if v == nil {
			out[i] = KV{Key: k}
			continue
		}
		kv, err := decodeBolt([]byte(k), v)
		if err != nil {
			return nil, err
		}
		out[i] = kv
	}
	return out, nil
}

func (r boltReader) List(prefix string) ([]KV, error) {
	b := r.tx.Bucket(boltBucket)
	if b == nil {
		return nil, fmt.Errorf("%w: no ipam bucket", ErrInvalid)
	}
	var out []KV
	c := b.Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		kv, err := decodeBolt(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, kv)
	}
	return out, nil
}

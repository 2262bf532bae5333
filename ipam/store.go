package ipam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// KV is one stored object with the revision of its last modification.
// Revision 0 means the key does not exist.
type KV struct {
	Key      string
	Value    []byte
	Revision int64
}

// OpKind says what an [Op] does once every condition of its commit holds.
type OpKind int

// Kinds of [Op].
const (
	// OpCheck only compares the key's revision; it writes nothing.
	OpCheck OpKind = iota
	// OpPut writes Value under Key.
	OpPut
	// OpDelete removes Key.
	OpDelete
)

// Op is one element of an atomic compare-and-swap commit: the key must be
// at Revision (0: must not exist) for the commit to happen.
type Op struct {
	Kind     OpKind
	Key      string
	Revision int64
	Value    []byte
}

// Store is the persistence the allocator needs: reads that report each
// key's revision, and an atomic multi-key compare-and-swap. Every
// allocator write is such a commit, so two writers that read the same
// revision can never both succeed.
//
// Implementations: [NewMemoryStore], [OpenBolt], [NewEtcdStore].
type Store interface {
	// Get reads keys; missing keys come back with Revision 0 and nil Value,
	// in the order asked.
	Get(ctx context.Context, keys ...string) ([]KV, error)
	// List returns every key starting with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]KV, error)
	// Commit applies ops atomically if every op's key is at its Revision,
	// and returns the store revision after the commit. When a condition
	// fails nothing is written and the error matches [ErrConflict].
	Commit(ctx context.Context, ops ...Op) (int64, error)
	// Close releases the store's resources.
	Close() error
}

// Updater is implemented by stores that can run a read-modify-write under
// their own lock (bbolt: one write transaction, shared by concurrent
// callers; memory: a mutex). The allocator then never sees a conflict from
// writers on the same store; the ops are still checked as compare-and-swap.
type Updater interface {
	// Update runs fn against a consistent view and commits the ops it
	// returns atomically. fn may run more than once and must not keep state
	// between runs.
	Update(ctx context.Context, fn UpdateFunc) error
}

// Snapshotter is implemented by stores that can serve every read of one
// update from a single revision (etcd). A decision that writes nothing,
// such as "exhausted", is then true of one moment of the store. For other
// stores the update loop validates the revisions it read instead.
type Snapshotter interface {
	// Snapshot returns a reader whose reads all come from the revision of
	// its first read.
	Snapshot(ctx context.Context) Reader
}

// Reader reads a store during an update, with the semantics of
// [Store.Get] and [Store.List].
type Reader interface {
	Get(keys ...string) ([]KV, error)
	List(prefix string) ([]KV, error)
}

// UpdateFunc computes the ops of one read-modify-write.
type UpdateFunc func(r Reader) ([]Op, error)

// Store and allocator errors. Callers branch on them with errors.Is.
var (
	// ErrConflict: a compare-and-swap found a key at another revision.
	ErrConflict = errors.New("ipam: store conflict")
	// ErrNotFound: no such handle, address, block or pool.
	ErrNotFound = errors.New("ipam: not found")
	// ErrExhausted: no pool the request may use has a free address.
	ErrExhausted = errors.New("ipam: addresses exhausted")
	// ErrInUse: the address is allocated, or the pool still has blocks.
	ErrInUse = errors.New("ipam: in use")
	// ErrCoolingDown: the address was released less than the cool-down ago.
	ErrCoolingDown = errors.New("ipam: address cooling down")
	// ErrNoPool: the address or request matches no usable pool.
	ErrNoPool = errors.New("ipam: no matching pool")
	// ErrInvalid: a malformed request, pool or stored record.
	ErrInvalid = errors.New("ipam: invalid")
	// ErrTooManyRetries: conflicts kept winning over the bounded retries.
	ErrTooManyRetries = errors.New("ipam: too many conflicting retries")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("ipam: store closed")
)

// ConflictError is the detail behind [ErrConflict].
type ConflictError struct {
	// Key is the first key found at an unexpected revision ("" when the
	// store cannot tell which one).
	Key string
	// Want and Got are the expected and actual revisions (Got is -1 when
	// unknown).
	Want, Got int64
}

// Error implements error.
func (e *ConflictError) Error() string {
	if e.Key == "" {
		return "ipam: store conflict"
	}
	return fmt.Sprintf("ipam: store conflict on %q: want revision %d, have %d", e.Key, e.Want, e.Got)
}

// Is makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// storeReader adapts a Store to a Reader bound to one context.
type storeReader struct {
	ctx context.Context
	s   Store
}

func (r storeReader) Get(keys ...string) ([]KV, error) { return r.s.Get(r.ctx, keys...) }
func (r storeReader) List(prefix string) ([]KV, error) { return r.s.List(r.ctx, prefix) }

// retryPolicy bounds the optimistic retry loop.
type retryPolicy struct {
	max  int
	base time.Duration
}

// update runs fn then commits its ops, retrying on conflict with jittered
// exponential backoff. Stores that implement Updater run it under their
// own lock instead, where a conflict cannot come from a local writer.
func update(ctx context.Context, s Store, rp retryPolicy, fn UpdateFunc) error {
	if u, ok := s.(Updater); ok {
		var err error
		for attempt := 0; attempt <= rp.max; attempt++ {
			err = u.Update(ctx, fn)
			var ve *validateError
			if errors.As(err, &ve) {
				err = ve.err // the view was consistent: the error stands
			}
			if !errors.Is(err, ErrConflict) {
				return err
			}
			if werr := backoff(ctx, rp, attempt); werr != nil {
				return werr
			}
		}
		return fmt.Errorf("%w: %w", ErrTooManyRetries, err)
	}
	snap, _ := s.(Snapshotter)
	var err error
	for attempt := 0; attempt <= rp.max; attempt++ {
		var r Reader = storeReader{ctx, s}
		if snap != nil {
			r = snap.Snapshot(ctx)
		}
		var ops []Op
		ops, err = fn(r)
		var ve *validateError
		if errors.As(err, &ve) {
			if errors.Is(ve.err, ErrConflict) {
				// A read hit a compacted revision: start over.
				err = ve.err
				if werr := backoff(ctx, rp, attempt); werr != nil {
					return werr
				}
				continue
			}
			if snap != nil || len(ve.reads) == 0 {
				return ve.err
			}
			// The reads came from several moments: the error stands only
			// if none of them changed since.
			_, err = s.Commit(ctx, ve.reads...)
			if err == nil {
				return ve.err
			}
			if !errors.Is(err, ErrConflict) {
				return err
			}
			if werr := backoff(ctx, rp, attempt); werr != nil {
				return werr
			}
			continue
		}
		if err != nil {
			return err
		}
		if len(ops) == 0 {
			return nil
		}
		_, err = s.Commit(ctx, ops...)
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if werr := backoff(ctx, rp, attempt); werr != nil {
			return werr
		}
	}
	return fmt.Errorf("%w: %w", ErrTooManyRetries, err)
}

func backoff(ctx context.Context, rp retryPolicy, attempt int) error {
	d := rp.base << min(attempt, 6)
	if d <= 0 {
		return ctx.Err()
	}
	d = d/2 + rand.N(d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// validateError carries an update function's error with the reads it was
// based on, so the update loop can confirm the reads were current.
type validateError struct {
	err   error
	reads []Op
}

func (e *validateError) Error() string { return e.err.Error() }
func (e *validateError) Unwrap() error { return e.err }

// checkOps validates ops against current revisions given by rev; it is
// shared by the stores that evaluate conditions themselves.
func checkOps(ops []Op, rev func(key string) int64) error {
	for _, op := range ops {
		if op.Key == "" || strings.ContainsRune(op.Key, 0) {
			return fmt.Errorf("%w: key %q", ErrInvalid, op.Key)
		}
		if got := rev(op.Key); got != op.Revision {
			return &ConflictError{Key: op.Key, Want: op.Revision, Got: got}
		}
	}
	return nil
}

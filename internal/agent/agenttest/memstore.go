// Package agenttest holds in-memory stand-ins for the node agent's
// collaborators: a datastore.Store and a backend.Backend that tests can
// watch, break and count. They are fast and race-free, so the agent's loop
// is tested without a kernel or a file system.
package agenttest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// MemStore is a datastore.Store held in memory. Every write is seen by
// every Watch in order; a watcher's queue is unbounded, so writers never
// wait for a slow consumer. Revisions are a store-wide counter.
type MemStore struct {
	// Source names the store in events ("memory" when empty).
	Source string

	mu     sync.Mutex
	items  map[policy.ObjectKey]datastore.Item
	rev    int64
	subs   map[*sub]struct{}
	closed bool
}

// NewMemStore returns a store holding objs (which must be valid).
func NewMemStore(objs ...policy.Object) (*MemStore, error) {
	s := &MemStore{items: map[policy.ObjectKey]datastore.Item{}, subs: map[*sub]struct{}{}}
	for _, o := range objs {
		if _, err := s.Apply(context.Background(), o); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *MemStore) source() string {
	if s.Source == "" {
		return "memory"
	}
	return s.Source
}

// keyOf is policy.KeyOf with the Set's namespace default.
func keyOf(obj policy.Object) policy.ObjectKey {
	k := policy.KeyOf(obj)
	if k.Kind.Namespaced() && k.Namespace == "" {
		k.Namespace = "default"
	}
	return k
}

// List implements datastore.Store.
func (s *MemStore) List(context.Context) ([]datastore.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, datastore.ErrClosed
	}
	return s.sortedLocked(), nil
}

func (s *MemStore) sortedLocked() []datastore.Item {
	out := make([]datastore.Item, 0, len(s.items))
	for _, it := range s.items {
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b datastore.Item) int {
		ka, kb := keyOf(a.Object), keyOf(b.Object)
		return cmp.Or(cmp.Compare(ka.Kind, kb.Kind), cmp.Compare(ka.Namespace, kb.Namespace), cmp.Compare(ka.Name, kb.Name))
	})
	return out
}

// Get implements datastore.Store.
func (s *MemStore) Get(_ context.Context, key policy.ObjectKey) (datastore.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return datastore.Item{}, datastore.ErrClosed
	}
	it, ok := s.items[key]
	if !ok {
		return datastore.Item{}, fmt.Errorf("%w: %s", datastore.ErrNotFound, key)
	}
	return it, nil
}

// Create implements datastore.Store.
func (s *MemStore) Create(_ context.Context, obj policy.Object) (datastore.Item, error) {
	return s.write(obj, func(_ datastore.Item, exists bool) error {
		if exists {
			return fmt.Errorf("%w: %s", datastore.ErrExists, keyOf(obj))
		}
		return nil
	})
}

// Replace implements datastore.Store.
func (s *MemStore) Replace(_ context.Context, obj policy.Object, revision string) (datastore.Item, error) {
	return s.write(obj, func(cur datastore.Item, exists bool) error {
		switch {
		case !exists:
			return fmt.Errorf("%w: %s", datastore.ErrNotFound, keyOf(obj))
		case revision != "" && revision != cur.Revision:
			return fmt.Errorf("%w: %s is at %s, not %s", datastore.ErrConflict, keyOf(obj), cur.Revision, revision)
		}
		return nil
	})
}

// Apply implements datastore.Store.
func (s *MemStore) Apply(_ context.Context, obj policy.Object) (datastore.Item, error) {
	return s.write(obj, func(datastore.Item, bool) error { return nil })
}

func (s *MemStore) write(obj policy.Object, check func(cur datastore.Item, exists bool) error) (datastore.Item, error) {
	if err := policy.Validate(obj, nil); err != nil {
		return datastore.Item{}, err
	}
	key := keyOf(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return datastore.Item{}, datastore.ErrClosed
	}
	cur, exists := s.items[key]
	if err := check(cur, exists); err != nil {
		return datastore.Item{}, err
	}
	s.rev++
	it := datastore.Item{Object: obj, Revision: strconv.FormatInt(s.rev, 10)}
	s.items[key] = it
	s.broadcastLocked(datastore.Event{Type: datastore.EventUpsert, Key: key, Item: it, Source: s.source()})
	return it, nil
}

// Delete implements datastore.Store.
func (s *MemStore) Delete(_ context.Context, key policy.ObjectKey, revision string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return datastore.ErrClosed
	}
	cur, ok := s.items[key]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s", datastore.ErrNotFound, key)
	case revision != "" && revision != cur.Revision:
		return fmt.Errorf("%w: %s is at %s, not %s", datastore.ErrConflict, key, cur.Revision, revision)
	}
	s.rev++
	delete(s.items, key)
	s.broadcastLocked(datastore.Event{Type: datastore.EventDelete, Key: key, Source: s.source()})
	return nil
}

// InjectError sends an EventError from source to every watcher, as a store
// does for a file it cannot read; the objects stay as they are.
func (s *MemStore) InjectError(source string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broadcastLocked(datastore.Event{Type: datastore.EventError, Source: source, Err: err})
}

// Disconnect ends every watch (their channels close) without closing the
// store, as a lost connection to etcd or the API server would.
func (s *MemStore) Disconnect() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.subs {
		w.end()
	}
	clear(s.subs)
}

// Watchers returns how many watches are open.
func (s *MemStore) Watchers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// Watch implements datastore.Store.
func (s *MemStore) Watch(ctx context.Context) (<-chan datastore.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, datastore.ErrClosed
	}
	w := &sub{wake: make(chan struct{}, 1), done: make(chan struct{})}
	for _, it := range s.sortedLocked() {
		w.queue = append(w.queue, datastore.Event{Type: datastore.EventUpsert, Key: keyOf(it.Object), Item: it, Source: s.source()})
	}
	w.queue = append(w.queue, datastore.Event{Type: datastore.EventSynced, Source: s.source()})
	s.subs[w] = struct{}{}
	out := make(chan datastore.Event)
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.subs, w)
			s.mu.Unlock()
		}()
		for {
			ev, ok := w.pop(ctx)
			if !ok {
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			case <-w.done:
				return
			}
		}
	}()
	return out, nil
}

func (s *MemStore) broadcastLocked(ev datastore.Event) {
	for w := range s.subs {
		w.push(ev)
	}
}

// Close implements datastore.Store: every watch ends.
func (s *MemStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for w := range s.subs {
		w.end()
	}
	clear(s.subs)
	return nil
}

// sub is one watcher's unbounded queue.
type sub struct {
	mu    sync.Mutex
	queue []datastore.Event
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func (w *sub) push(ev datastore.Event) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *sub) end() { w.once.Do(func() { close(w.done) }) }

func (w *sub) pop(ctx context.Context) (datastore.Event, bool) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			ev := w.queue[0]
			w.queue[0] = datastore.Event{}
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return ev, true
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-w.done:
			return datastore.Event{}, false
		case <-ctx.Done():
			return datastore.Event{}, false
		}
	}
}

var _ datastore.Store = (*MemStore)(nil)

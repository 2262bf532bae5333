// Package memory is a datastore.Store held in memory: for tests of what
// consumes a store (the agent loop, calyxctl), and as the reference the
// shared contract suite (datastore/storetest) is checked against.
//
// Revisions are a counter shared by every object, as in etcd. Watchers
// each have an unbounded queue, so writers never wait for a slow watcher
// and no event is lost.
package memory

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// Store is an in-memory datastore.Store. The zero value is not ready: use
// New.
type Store struct {
	// Source is what the store's events name as their source; empty
	// means "memory". Tests of consumers set it to stand for one file.
	Source string

	mu       sync.Mutex
	items    map[policy.ObjectKey]datastore.Item
	rev      int64
	watchers map[*watcher]struct{}
	broken   map[string]error // sources in error (ReportError)
	closed   bool
}

var _ datastore.Store = (*Store)(nil)

// New returns an empty store holding objs (each validated as Create
// would; the first invalid one is returned as the error).
func New(objs ...policy.Object) (*Store, error) {
	s := &Store{items: map[policy.ObjectKey]datastore.Item{}, watchers: map[*watcher]struct{}{}, broken: map[string]error{}}
	for _, o := range objs {
		if _, err := s.Apply(context.Background(), o); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// List implements datastore.Store.
func (s *Store) List(ctx context.Context) ([]datastore.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, datastore.ErrClosed
	}
	out := make([]datastore.Item, 0, len(s.items))
	for _, it := range s.items {
		cp, err := copyItem(it)
		if err != nil {
			return nil, err
		}
		out = append(out, cp)
	}
	datastore.SortItems(out)
	return out, nil
}

// Get implements datastore.Store.
func (s *Store) Get(ctx context.Context, key policy.ObjectKey) (datastore.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return datastore.Item{}, datastore.ErrClosed
	}
	it, ok := s.items[key]
	if !ok {
		return datastore.Item{}, fmt.Errorf("%s: %w", key, datastore.ErrNotFound)
	}
	return copyItem(it)
}

// copyItem gives callers their own object: Get, change, Replace must not
// change what the store (and its watchers) hold.
func copyItem(it datastore.Item) (datastore.Item, error) {
	obj, err := datastore.Copy(it.Object)
	if err != nil {
		return datastore.Item{}, err
	}
	it.Object = obj
	return it, nil
}

// Create implements datastore.Store.
func (s *Store) Create(ctx context.Context, obj policy.Object) (datastore.Item, error) {
	return s.write(obj, func(cur datastore.Item, exists bool) error {
		if exists {
			return datastore.ErrExists
		}
		return nil
	})
}

// Replace implements datastore.Store.
func (s *Store) Replace(ctx context.Context, obj policy.Object, revision string) (datastore.Item, error) {
	return s.write(obj, func(cur datastore.Item, exists bool) error {
		switch {
		case !exists:
			return datastore.ErrNotFound
		case revision != "" && revision != cur.Revision:
			return datastore.ErrConflict
		}
		return nil
	})
}

// Apply implements datastore.Store.
func (s *Store) Apply(ctx context.Context, obj policy.Object) (datastore.Item, error) {
	return s.write(obj, func(datastore.Item, bool) error { return nil })
}

func (s *Store) write(obj policy.Object, check func(cur datastore.Item, exists bool) error) (datastore.Item, error) {
	obj, err := datastore.Prepare(obj)
	if err != nil {
		return datastore.Item{}, err
	}
	key := policy.KeyOf(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return datastore.Item{}, datastore.ErrClosed
	}
	cur, exists := s.items[key]
	if err := check(cur, exists); err != nil {
		return datastore.Item{}, fmt.Errorf("%s: %w", key, err)
	}
	s.rev++
	rev := strconv.FormatInt(s.rev, 10)
	obj.SetResourceVersion(rev)
	it := datastore.Item{Object: obj, Revision: rev}
	s.items[key] = it
	s.notify(datastore.Event{Type: datastore.EventUpsert, Key: key, Item: it, Source: s.source()})
	delete(s.broken, s.source()) // the upsert says the source is fine
	return copyItem(it)
}

// Delete implements datastore.Store.
func (s *Store) Delete(ctx context.Context, key policy.ObjectKey, revision string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return datastore.ErrClosed
	}
	cur, exists := s.items[key]
	switch {
	case !exists:
		return fmt.Errorf("%s: %w", key, datastore.ErrNotFound)
	case revision != "" && revision != cur.Revision:
		return fmt.Errorf("%s: %w", key, datastore.ErrConflict)
	}
	delete(s.items, key)
	s.rev++
	s.notify(datastore.Event{Type: datastore.EventDelete, Key: key, Source: s.source()})
	delete(s.broken, s.source()) // the delete says the source is fine
	return nil
}

func (s *Store) source() string {
	if s.Source == "" {
		return "memory"
	}
	return s.Source
}

// Disconnect ends every watch (their channels close) without closing the
// store, as a lost connection to etcd or the API server would.
func (s *Store) Disconnect() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		w.close()
	}
	clear(s.watchers)
}

// Watchers returns how many watches are open.
func (s *Store) Watchers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watchers)
}

// ReportError sends an EventError to every watcher, as a store does when a
// source cannot be read; tests of consumers use it. The source stays in
// error (later watches report it too) until ReportRecovered, or until a
// write sends an event from it (Source).
func (s *Store) ReportError(source string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broken[source] = err
	s.notify(datastore.Event{Type: datastore.EventError, Source: source, Err: err})
}

// ReportRecovered sends an EventRecovered to every watcher, as a store
// does when a source that ReportError named reads well again (or is gone);
// a source not in error is ignored.
func (s *Store) ReportRecovered(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.broken[source]; !ok {
		return
	}
	delete(s.broken, source)
	s.notify(datastore.Event{Type: datastore.EventRecovered, Source: source})
}

// Watch implements datastore.Store.
func (s *Store) Watch(ctx context.Context) (<-chan datastore.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, datastore.ErrClosed
	}
	w := &watcher{wake: make(chan struct{}, 1)}
	items := make([]datastore.Item, 0, len(s.items))
	for _, it := range s.items {
		items = append(items, it)
	}
	datastore.SortItems(items)
	for _, it := range items {
		w.queue = append(w.queue, datastore.Event{Type: datastore.EventUpsert, Key: policy.KeyOf(it.Object), Item: it, Source: s.source()})
	}
	sources := make([]string, 0, len(s.broken))
	for src := range s.broken {
		sources = append(sources, src)
	}
	slices.Sort(sources)
	for _, src := range sources {
		w.queue = append(w.queue, datastore.Event{Type: datastore.EventError, Source: src, Err: s.broken[src]})
	}
	w.queue = append(w.queue, datastore.Event{Type: datastore.EventSynced})
	s.watchers[w] = struct{}{}
	ch := make(chan datastore.Event)
	go w.pump(ctx, ch, func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	})
	w.signal()
	return ch, nil
}

// notify queues ev for every watcher; s.mu is held.
func (s *Store) notify(ev datastore.Event) {
	for w := range s.watchers {
		w.push(ev)
	}
}

// Close implements datastore.Store: watches end, later calls fail with
// datastore.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for w := range s.watchers {
		w.close()
	}
	return nil
}

// watcher is one Watch: an unbounded queue drained into its channel.
type watcher struct {
	mu    sync.Mutex
	queue []datastore.Event
	done  bool
	wake  chan struct{}
}

func (w *watcher) push(ev datastore.Event) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) pump(ctx context.Context, ch chan<- datastore.Event, unregister func()) {
	defer close(ch)
	defer unregister()
	for {
		w.mu.Lock()
		q, done := w.queue, w.done
		w.queue = nil
		w.mu.Unlock()
		for _, ev := range q {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
		if done {
			return
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return
		}
	}
}

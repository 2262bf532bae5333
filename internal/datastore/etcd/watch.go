package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// Watch implements datastore.Store.
func (s *Store) Watch(ctx context.Context) (<-chan datastore.Event, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, datastore.ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	w := &watcher{s: s, ch: make(chan datastore.Event), sent: map[string]string{}, bad: map[string]bool{}}
	go func() {
		defer close(w.ch)
		defer cancel()
		w.run(ctx)
	}()
	return w.ch, nil
}

// watcher is one Watch: what it has told its consumer, by etcd key.
type watcher struct {
	s    *Store
	ch   chan datastore.Event
	sent map[string]string // etcd key → revision sent
	bad  map[string]bool   // sources (keys, the prefix) told in error
}

// fail sends an EventError and remembers its source is broken.
func (w *watcher) fail(ctx context.Context, source string, err error) bool {
	w.bad[source] = true
	return w.send(ctx, datastore.Event{Type: datastore.EventError, Source: source, Err: err})
}

// recovered sends the EventRecovered of a source told broken, if it was.
func (w *watcher) recovered(ctx context.Context, source string) bool {
	if !w.bad[source] {
		return true
	}
	delete(w.bad, source)
	return w.send(ctx, datastore.Event{Type: datastore.EventRecovered, Source: source})
}

func (w *watcher) send(ctx context.Context, ev datastore.Event) bool {
	select {
	case w.ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *watcher) run(ctx context.Context) {
	rev, ok := w.relist(ctx)
	if !ok || !w.send(ctx, datastore.Event{Type: datastore.EventSynced, Source: w.s.prefix}) {
		return
	}
	for {
		// follow's revision is not resumed from: a lost watch may have
		// missed events, and only a list says what is there now.
		if _, ok := w.follow(ctx, rev); !ok {
			return
		}
		if rev, ok = w.relist(ctx); !ok {
			return
		}
	}
}

// relist lists the prefix (retrying until it succeeds or ctx ends) and
// sends the differences from what was sent: upserts of new or changed
// keys, deletes of keys gone. It returns the revision of the list.
func (w *watcher) relist(ctx context.Context) (int64, bool) {
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		items, problems, rev, err := w.s.list(ctx)
		if err == nil {
			return rev, w.sendDiff(ctx, items, problems)
		}
		if ctx.Err() != nil {
			return 0, false
		}
		if !w.fail(ctx, w.s.prefix, err) {
			return 0, false
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(delay):
		}
	}
}

func (w *watcher) sendDiff(ctx context.Context, items []listed, problems []datastore.Event) bool {
	present := make(map[string]bool, len(items))
	for _, it := range items {
		present[it.key] = true
		if w.sent[it.key] == it.Revision {
			continue
		}
		w.sent[it.key] = it.Revision
		if !w.send(ctx, datastore.Event{Type: datastore.EventUpsert, Key: keyOf(it.Item), Item: it.Item, Source: it.key}) {
			return false
		}
	}
	broken := make(map[string]bool, len(problems))
	for _, p := range problems {
		broken[p.Source] = true
		if !w.fail(ctx, p.Source, p.Err) {
			return false
		}
	}
	for key := range w.sent {
		if present[key] {
			continue
		}
		k, ok := w.s.parseKey(key)
		delete(w.sent, key)
		if ok && !w.send(ctx, datastore.Event{Type: datastore.EventDelete, Key: k, Source: key}) {
			return false
		}
	}
	// The list went well, and the keys told broken that it did not find
	// broken were fixed or deleted.
	recovered := make([]string, 0, len(w.bad))
	for src := range w.bad {
		if !broken[src] {
			recovered = append(recovered, src)
		}
	}
	slices.Sort(recovered)
	for _, src := range recovered {
		if !w.recovered(ctx, src) {
			return false
		}
	}
	return true
}

// follow watches from rev+1 and sends the changes until ctx ends (false)
// or the watch is lost or compacted (true with the last revision seen:
// the caller lists again).
func (w *watcher) follow(ctx context.Context, rev int64) (int64, bool) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.s.c.Watch(wctx, w.s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if ctx.Err() != nil {
				return rev, false
			}
			if resp.CompactRevision != 0 || errors.Is(err, rpctypes.ErrCompacted) {
				w.s.log.Info("etcd watch compacted; listing again", "revision", rev, "compacted", resp.CompactRevision)
				return rev, true
			}
			if !w.fail(ctx, w.s.prefix, fmt.Errorf("etcd store: watch: %w", err)) {
				return rev, false
			}
			return rev, true
		}
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			switch ev.Type {
			case mvccpb.PUT:
				it, ok, err := w.s.decodeKeep(key, ev.Kv.Value, ev.Kv.ModRevision)
				if err != nil {
					if !w.fail(ctx, key, err) {
						return rev, false
					}
					continue
				}
				if ok {
					w.sent[key] = it.Revision
					if !w.send(ctx, datastore.Event{Type: datastore.EventUpsert, Key: keyOf(it), Item: it, Source: key}) {
						return rev, false
					}
				}
				if !w.recovered(ctx, key) {
					return rev, false
				}
			case mvccpb.DELETE:
				w.s.forget(key)
				if _, known := w.sent[key]; known {
					delete(w.sent, key)
					k, _ := w.s.parseKey(key)
					if !w.send(ctx, datastore.Event{Type: datastore.EventDelete, Key: k, Source: key}) {
						return rev, false
					}
				}
				if !w.recovered(ctx, key) {
					return rev, false
				}
			}
		}
		rev = resp.Header.Revision
	}
	// The channel closed: ctx ended, or the client gave the watch up.
	return rev, ctx.Err() == nil
}

func keyOf(it datastore.Item) policy.ObjectKey { return policy.KeyOf(it.Object) }

package dir

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// Watch implements datastore.Store; see the package doc for how changes
// are found and batched.
func (s *Store) Watch(ctx context.Context) (<-chan datastore.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, datastore.ErrClosed
	}
	if !s.loaded {
		// Follow the tree (and read it whole) before the first
		// listing, so no change between the two is lost.
		if err := s.syncLocked(ctx, false); err != nil {
			return nil, err
		}
	}
	if s.tr == nil {
		return nil, fmt.Errorf("directory store: watch %s: fsnotify is unavailable", s.root)
	}
	// A watch sends objects: decode what the persisted index spared.
	if err := s.decodeLazyLocked(ctx, nil); err != nil {
		return nil, err
	}
	w := &watch{
		s:        s,
		sent:     map[policy.ObjectKey]sentItem{},
		reported: map[string]string{},
		all:      true,
		dirty:    map[policy.ObjectKey]struct{}{},
		wake:     make(chan struct{}, 1),
		wakeNow:  make(chan struct{}, 1),
	}
	s.idx.subs[w] = struct{}{}
	ch := make(chan datastore.Event)
	go w.run(ctx, ch)
	return ch, nil
}

// sentItem is what a watch told of a key: the revision, and the file it
// came from (the source of its delete).
type sentItem struct {
	rev, source string
}

// watch is the state of one Watch: what it has told its consumer, and
// the keys that changed since.
type watch struct {
	s        *Store
	sent     map[policy.ObjectKey]sentItem
	reported map[string]string // problem (source and text) sent → its source
	// rootBad: an error of the whole tree (a failed read, an fsnotify
	// error) was sent; the next good read sends its EventRecovered.
	rootBad bool
	// Under s.mu: the keys that may have changed since the last flush
	// (all: every key, the first listing).
	all   bool
	dirty map[policy.ObjectKey]struct{}
	errs  int // s.trErrs already sent
	// problemsSeen is the index's problemsChanged at the last flush.
	problemsSeen uint64
	wake         chan struct{} // the tree changed: flush after a quiet period
	wakeNow      chan struct{} // a whole write is done: flush now
}

func (w *watch) run(ctx context.Context, ch chan<- datastore.Event) {
	defer close(ch)
	defer func() {
		w.s.mu.Lock()
		delete(w.s.idx.subs, w)
		w.s.mu.Unlock()
	}()
	send := func(evs []datastore.Event) bool {
		for _, ev := range evs {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return false
			case <-w.s.done:
				return false
			}
		}
		return true
	}
	evs, err := w.changes(ctx, false, false)
	if err != nil {
		w.rootBad = true
		evs = append(evs, datastore.Event{Type: datastore.EventError, Source: w.s.root, Err: err})
	}
	if !send(append(evs, datastore.Event{Type: datastore.EventSynced, Source: w.s.root})) {
		return
	}

	var (
		timer      = time.NewTimer(time.Hour)
		pending    bool
		burstStart time.Time
		resync     <-chan time.Time
	)
	timer.Stop()
	defer timer.Stop()
	if w.s.opts.Resync > 0 {
		t := time.NewTicker(w.s.opts.Resync)
		defer t.Stop()
		resync = t.C
	}
	flush := func(journalOnly, walk bool) bool {
		evs, err := w.changes(ctx, journalOnly, walk)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			w.rootBad = true
			evs = append(evs, datastore.Event{Type: datastore.EventError, Source: w.s.root, Err: err})
		}
		return send(evs)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.s.done:
			return
		case <-w.wake:
			now := time.Now()
			if !pending {
				pending, burstStart = true, now
			}
			if now.Sub(burstStart) < w.s.opts.MaxDelay {
				timer.Reset(w.s.opts.Debounce)
			}
		case <-w.wakeNow:
			// A write through a store is whole when its journal entry
			// (or, in this process, its index update) is made: no quiet
			// period. Files that changed otherwise wait for theirs.
			if !flush(true, false) {
				return
			}
		case <-timer.C:
			pending = false
			if !flush(false, false) {
				return
			}
		case <-resync:
			if !flush(false, true) {
				return
			}
		}
	}
}

// changes brings the store up to date (journalOnly: only with other
// writers' journal; walk: walking the whole tree) and returns what this
// watch has not told yet: upserts in key order, then deletes, then the
// recoveries of sources it told were broken, then new problems.
func (w *watch) changes(ctx context.Context, journalOnly, walk bool) ([]datastore.Event, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if walk {
		s.needWalk = true
	}
	if err := s.syncLocked(ctx, journalOnly); err != nil {
		return nil, err
	}
	if err := s.decodeLazyLocked(ctx, nil); err != nil {
		return nil, err
	}
	var keys []policy.ObjectKey
	if w.all {
		keys = s.idx.sortedKeys()
		w.all = false
	} else {
		if len(w.dirty) == 0 && s.idx.problemsChanged == w.problemsSeen && w.errs == len(s.trErrs) && !w.rootBad {
			return nil, nil
		}
		keys = make([]policy.ObjectKey, 0, len(w.dirty))
		for k := range w.dirty {
			keys = append(keys, k)
		}
		clear(w.dirty)
		sortKeys(keys)
	}
	var evs []datastore.Event
	var gone []policy.ObjectKey
	for _, k := range keys {
		it, ok := s.idx.items[k]
		if !ok {
			if _, was := w.sent[k]; was {
				gone = append(gone, k)
			}
			continue
		}
		prev, was := w.sent[k]
		src := s.idx.where(k)
		if was && prev.rev == it.Revision {
			// The same object may have moved to another file: its
			// delete will name that one.
			prev.source = src
			w.sent[k] = prev
			continue
		}
		w.sent[k] = sentItem{rev: it.Revision, source: src}
		evs = append(evs, datastore.Event{Type: datastore.EventUpsert, Key: k, Item: it, Source: src})
	}
	for _, k := range gone {
		src := w.sent[k].source
		if src == "" {
			src = s.root
		}
		delete(w.sent, k)
		evs = append(evs, datastore.Event{Type: datastore.EventDelete, Key: k, Source: src})
	}
	if w.rootBad {
		// This read of the tree went well (a failure returned above).
		w.rootBad = false
		evs = append(evs, datastore.Event{Type: datastore.EventRecovered, Source: s.root})
	}
	problems := s.problemsLocked()
	now := make(map[string]string, len(problems))
	broken := make(map[string]bool, len(problems))
	for _, p := range problems {
		now[p.source+"\x00"+p.err.Error()] = p.source
		broken[p.source] = true
	}
	// A source still broken is told its problems again when this batch
	// names it otherwise (an upsert or delete read from it, which a
	// consumer may take as news that it is fine) or when some of its
	// problems are gone (the last one told may be one of them).
	resend := map[string]bool{}
	for _, ev := range evs {
		if broken[ev.Source] {
			resend[ev.Source] = true
		}
	}
	// Sources told broken that have no problem left: fixed (whether or
	// not their objects changed) or removed.
	var recovered []string
	for id, src := range w.reported {
		_, still := now[id]
		switch {
		case still:
		case broken[src]:
			resend[src] = true
		case !resend[src]:
			resend[src] = true // (once: src has no problem to resend)
			recovered = append(recovered, src)
		}
	}
	slices.Sort(recovered)
	for _, src := range recovered {
		evs = append(evs, datastore.Event{Type: datastore.EventRecovered, Source: src})
	}
	for _, err := range s.trErrs[w.errs:] {
		// Events may have been lost: reported until a later read.
		w.rootBad = true
		evs = append(evs, datastore.Event{Type: datastore.EventError, Source: s.root, Err: err})
	}
	w.errs = len(s.trErrs)
	w.problemsSeen = s.idx.problemsChanged
	for _, p := range problems {
		id := p.source + "\x00" + p.err.Error()
		if _, told := w.reported[id]; told && !resend[p.source] {
			continue
		}
		evs = append(evs, datastore.Event{Type: datastore.EventError, Source: p.source, Err: p.err})
	}
	w.reported = now
	return evs, nil
}

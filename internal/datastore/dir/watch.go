package dir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// Watch implements datastore.Store; see the package doc for how changes
// are found and batched.
func (s *Store) Watch(ctx context.Context) (<-chan datastore.Event, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, datastore.ErrClosed
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("directory store: watch: %w", err)
	}
	w := &watch{s: s, fw: fw, sent: map[policy.ObjectKey]string{}, reported: map[string]string{}, watched: map[string]bool{}}
	// Watch the directories before the first read, so no change between
	// the read and the watch is lost.
	if err := w.addTree(s.root); err != nil {
		fw.Close()
		return nil, err
	}
	ch := make(chan datastore.Event)
	go w.run(ctx, ch)
	return ch, nil
}

// watch is the state of one Watch: what it has told its consumer.
type watch struct {
	s        *Store
	fw       *fsnotify.Watcher
	sent     map[policy.ObjectKey]string // key → revision sent
	reported map[string]string           // source → problem text sent
	watched  map[string]bool             // directories added to fw
}

// addTree watches dir and the non-hidden directories below it.
func (w *watch) addTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && dir == w.s.root {
				return fmt.Errorf("directory store: watch: %w", err)
			}
			return fs.SkipDir
		}
		if !d.IsDir() {
			return nil
		}
		if p != w.s.root && hidden(d.Name()) {
			return fs.SkipDir
		}
		if w.watched[p] {
			return nil
		}
		if err := w.fw.Add(p); err != nil {
			if p == w.s.root {
				return fmt.Errorf("directory store: watch %s: %w", p, err)
			}
			w.s.log.Warn("cannot watch policy directory", "dir", p, "err", err)
			return nil
		}
		w.watched[p] = true
		return nil
	})
}

func (w *watch) run(ctx context.Context, ch chan<- datastore.Event) {
	defer close(ch)
	defer w.fw.Close()
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
	evs, err := w.changes(ctx, nil)
	if err != nil {
		evs = append(evs, datastore.Event{Type: datastore.EventError, Source: w.s.root, Err: err})
	}
	if !send(append(evs, datastore.Event{Type: datastore.EventSynced, Source: w.s.root})) {
		return
	}

	var (
		timer      = time.NewTimer(time.Hour)
		pending    bool
		burstStart time.Time
		dirty      = map[string]bool{}
		resync     <-chan time.Time
	)
	timer.Stop()
	defer timer.Stop()
	if w.s.opts.Resync > 0 {
		t := time.NewTicker(w.s.opts.Resync)
		defer t.Stop()
		resync = t.C
	}
	flush := func(force map[string]bool) bool {
		evs, err := w.changes(ctx, force)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
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
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Create) {
				// A new directory (mkdir, git checkout, a ConfigMap's
				// new ..data target) must be watched too, with what it
				// already holds.
				if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
					_ = w.addTree(ev.Name)
				}
			}
			dirty[ev.Name] = true
			now := time.Now()
			if !pending {
				pending, burstStart = true, now
			}
			if now.Sub(burstStart) < w.s.opts.MaxDelay {
				timer.Reset(w.s.opts.Debounce)
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.s.log.Warn("fsnotify queue overflow; rescanning the policy directory")
				if !flush(map[string]bool{}) {
					return
				}
				continue
			}
			if !send([]datastore.Event{{Type: datastore.EventError, Source: w.s.root, Err: fmt.Errorf("directory store: watch: %w", err)}}) {
				return
			}
		case <-timer.C:
			pending = false
			force := dirty
			dirty = map[string]bool{}
			if !flush(force) {
				return
			}
		case <-resync:
			if !flush(nil) {
				return
			}
		}
	}
}

// changes re-reads the tree (force: files named by events, read whatever
// their stat says) and returns what this watch has not told yet: upserts
// in key order, then deletes, then new problems.
func (w *watch) changes(ctx context.Context, force map[string]bool) ([]datastore.Event, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.refreshPathsLocked(force) {
		if err := s.refreshLocked(ctx, force); err != nil {
			return nil, err
		}
	}
	v := s.viewLocked()
	var evs []datastore.Event
	for _, k := range v.keys {
		it := v.items[k]
		if w.sent[k] == it.Revision {
			continue
		}
		w.sent[k] = it.Revision
		evs = append(evs, datastore.Event{Type: datastore.EventUpsert, Key: k, Item: it, Source: v.where[k]})
	}
	var gone []policy.ObjectKey
	for k := range w.sent {
		if _, ok := v.items[k]; !ok {
			gone = append(gone, k)
		}
	}
	sortKeys(gone)
	for _, k := range gone {
		delete(w.sent, k)
		evs = append(evs, datastore.Event{Type: datastore.EventDelete, Key: k, Source: s.root})
	}
	now := map[string]string{}
	for _, p := range v.problems {
		id := p.source + "\x00" + p.err.Error()
		now[id] = p.source
		if _, told := w.reported[id]; told {
			continue
		}
		evs = append(evs, datastore.Event{Type: datastore.EventError, Source: p.source, Err: p.err})
	}
	w.reported = now
	return evs, nil
}

// refreshPathsLocked re-reads just the files events named, when that is
// enough: every path is a regular policy file (or one that is gone) or
// one of the store's own temporary files. Anything else (a directory, a
// symlink, a hidden name such as a ConfigMap's ..data) needs the whole
// tree walked: it returns false and reads nothing.
func (s *Store) refreshPathsLocked(paths map[string]bool) bool {
	if len(paths) == 0 || s.closed {
		return false
	}
	var files []string
	for p := range paths {
		base := filepath.Base(p)
		if strings.HasPrefix(base, ownPrefix) {
			continue
		}
		if hidden(base) || !policyFile(p) {
			return false
		}
		info, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil || !info.Mode().IsRegular():
			return false
		}
		files = append(files, p)
	}
	for _, p := range files {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			s.forgetLocked(p)
			continue
		}
		s.readFile(p, true)
	}
	return true
}

func sortKeys(keys []policy.ObjectKey) { slices.SortFunc(keys, datastore.CompareKeys) }

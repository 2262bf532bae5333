package dir

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// tracker follows the tree with fsnotify for the store: the paths it sees
// change are read at the store's next operation, so neither a write nor a
// watch's flush walks the tree.
type tracker struct {
	fw      *fsnotify.Watcher
	watched map[string]bool // directories added to fw
}

// startTrackerLocked starts following the tree, before it is read whole
// (so no change between the read and the tracking is lost). Without
// fsnotify (no inotify instance left, say) the store walks the tree at
// every operation instead.
func (s *Store) startTrackerLocked() {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("cannot follow the policy directory; it is walked at every operation", "dir", s.root, "err", err)
		return
	}
	t := &tracker{fw: fw, watched: map[string]bool{}}
	// The root only: the walk that reads the tree next follows each
	// directory below as it comes to it, before listing it (a tree of
	// many files is listed once, not twice).
	if err := fw.Add(s.root); err != nil {
		s.log.Warn("cannot follow the policy directory; it is walked at every operation", "dir", s.root, "err", err)
		fw.Close()
		return
	}
	t.watched[s.root] = true
	s.tr = t
	go s.track(t)
}

// followLocked follows directory dir, met by a walk, if it is not yet.
func (s *Store) followLocked(dir string) {
	t := s.tr
	if t == nil || t.watched[dir] {
		return
	}
	if err := t.fw.Add(dir); err != nil {
		s.log.Warn("cannot watch policy directory", "dir", dir, "err", err)
		return
	}
	t.watched[dir] = true
}

// addTreeLocked follows dir and the non-hidden directories below it.
func (s *Store) addTreeLocked(t *tracker, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && dir == s.root {
				return fmt.Errorf("directory store: watch: %w", err)
			}
			return fs.SkipDir
		}
		if !d.IsDir() {
			return nil
		}
		if p != s.root && hidden(d.Name()) {
			return fs.SkipDir
		}
		if t.watched[p] {
			return nil
		}
		if err := t.fw.Add(p); err != nil {
			if p == s.root {
				return fmt.Errorf("directory store: watch %s: %w", p, err)
			}
			s.log.Warn("cannot watch policy directory", "dir", p, "err", err)
			return nil
		}
		t.watched[p] = true
		return nil
	})
}

// track records what fsnotify reports until the store is closed.
func (s *Store) track(t *tracker) {
	defer t.fw.Close()
	for {
		select {
		case <-s.done:
			return
		case ev, ok := <-t.fw.Events:
			if !ok {
				return
			}
			s.mu.Lock()
			if ev.Has(fsnotify.Create) {
				// A new directory (mkdir, git checkout, a ConfigMap's
				// new ..data target) must be followed too, with what it
				// already holds.
				if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
					_ = s.addTreeLocked(t, ev.Name)
				}
			}
			// A writer's journal, renamed into place once its write is
			// complete: watches need not wait for the quiet period.
			urgent := filepath.Dir(ev.Name) == s.root && filepath.Base(ev.Name) == journalName
			if !urgent {
				s.pending[ev.Name] = true
			}
			s.wakeLocked(urgent)
			s.mu.Unlock()
		case err, ok := <-t.fw.Errors:
			if !ok {
				return
			}
			s.mu.Lock()
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				s.log.Warn("fsnotify queue overflow; rescanning the policy directory")
				s.needWalk = true
			} else {
				// Changes may have been lost: the next read walks.
				s.trErrs = append(s.trErrs, fmt.Errorf("directory store: watch: %w", err))
				s.needWalk = true
			}
			s.wakeLocked(false)
			s.mu.Unlock()
		}
	}
}

// wakeLocked tells the watches that something changed; urgent: a whole
// write is complete, flush without waiting for a quiet period.
func (s *Store) wakeLocked(urgent bool) {
	for w := range s.idx.subs {
		c := w.wake
		if urgent {
			c = w.wakeNow
		}
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// The journal: writers that hold the lock record the files they wrote in
// <root>/.calyx.journal (replaced atomically, after the files), so every
// store sees another's writes at its next operation without waiting for
// fsnotify or walking the tree. It holds a random epoch (a new journal is
// a new epoch), a generation counting the writes, and the paths of the
// last journalKeep writes, oldest first, relative to the root.
const (
	journalName = ownPrefix + ".journal"
	journalKeep = 256
)

// journalPos is how far a store has read the journal.
type journalPos struct {
	epoch string
	gen   uint64
	known bool
}

type journal struct {
	journalPos
	paths []string // the paths of writes gen-len(paths)+1 … gen
}

func (s *Store) journalPath() string { return filepath.Join(s.root, journalName) }

// readJournal reads the journal; a missing or unreadable one is empty.
func (s *Store) readJournal() journal {
	data, err := os.ReadFile(s.journalPath())
	if err != nil {
		return journal{journalPos: journalPos{known: errors.Is(err, fs.ErrNotExist)}}
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	head := strings.Fields(lines[0])
	if len(head) != 3 || head[0] != "calyx-journal-v1" {
		return journal{}
	}
	gen, err := strconv.ParseUint(head[2], 10, 64)
	if err != nil {
		return journal{}
	}
	return journal{journalPos: journalPos{epoch: head[1], gen: gen, known: true}, paths: lines[1:]}
}

func (s *Store) readJournalPos() journalPos { return s.readJournal().journalPos }

// followJournalLocked reads again the files written since the store last
// looked; when it cannot tell which (a new journal, too many writes), it
// walks the tree.
func (s *Store) followJournalLocked(ctx context.Context) error {
	j := s.readJournal()
	if j.known && s.jr.known && j.epoch == s.jr.epoch && j.gen == s.jr.gen {
		return nil
	}
	from := s.jr.gen
	if s.jr.known && s.jr.epoch == "" {
		// There was no journal: this one started after, at 0.
		from = 0
	}
	if j.known && s.jr.known && (j.epoch == s.jr.epoch || s.jr.epoch == "") && j.gen >= from && j.gen-from <= uint64(len(j.paths)) {
		for _, rel := range j.paths[uint64(len(j.paths))-(j.gen-from):] {
			s.rereadLocked(filepath.Join(s.root, filepath.FromSlash(rel)))
		}
		s.jr = j.journalPos
		return nil
	}
	if !j.known && !s.jr.known {
		// No journal to follow (unreadable): nothing to learn from it.
		return nil
	}
	if err := s.refreshLocked(ctx, nil); err != nil {
		return err
	}
	s.jr = j.journalPos
	return nil
}

// recordLocked appends the writes of paths to the journal; the caller
// holds the lock and has followed the journal. Best effort: a journal
// that cannot be written makes the other stores walk the tree.
func (s *Store) recordLocked(paths ...string) {
	j := s.readJournal()
	if !j.known || j.epoch == "" || j.epoch != s.jr.epoch || j.gen != s.jr.gen {
		// No journal yet, or one this store did not follow: a new epoch.
		var b [8]byte
		_, _ = rand.Read(b[:])
		j = journal{journalPos: journalPos{epoch: hex.EncodeToString(b[:]), known: true}}
	}
	for _, p := range paths {
		rel, err := filepath.Rel(s.root, p)
		if err != nil || strings.ContainsAny(rel, "\n\r") {
			// Not a name the journal can hold: a new epoch makes
			// the other stores walk the tree.
			var b [8]byte
			_, _ = rand.Read(b[:])
			// (gen beyond what paths can hold: a store that saw no
			// journal walks too.)
			j = journal{journalPos: journalPos{epoch: hex.EncodeToString(b[:]), gen: journalKeep + 1, known: true}}
			continue
		}
		j.paths = append(j.paths, filepath.ToSlash(rel))
		j.gen++
	}
	if len(j.paths) > journalKeep {
		j.paths = j.paths[len(j.paths)-journalKeep:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "calyx-journal-v1 %s %d\n", j.epoch, j.gen)
	for _, p := range j.paths {
		b.WriteString(p)
		b.WriteByte('\n')
	}
	if err := writeFileAtomic(s.journalPath(), []byte(b.String()), 0o644, false); err != nil {
		s.log.Warn("cannot write the directory store's journal", "err", err)
		return
	}
	s.jr = j.journalPos
}

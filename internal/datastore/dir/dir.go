// Package dir is the directory datastore: policy kept as YAML (or JSON)
// files in a directory tree, the embedded default and the GitOps way.
//
// # Reading
//
// Every *.yaml, *.yml and *.json file below the root is read, in lexical
// order of path, with policy.DecodeWithOptions: any number of documents per
// file, kind: List included. Hidden files and directories (a leading dot:
// .git, editors' swap files, Kubernetes' ..data links of a mounted
// ConfigMap) are skipped; files a symlink points at are read.
//
// A file that cannot be read or decoded is reported (an EventError whose
// Err is a *SourceError naming the file and wrapping its
// policy.ValidationErrors) and the objects last read from it stay in force:
// a typo never drops enforcement. The last good version is what this
// process has seen or, with Options.StateDir, what an earlier process saw:
// the store keeps a copy of each file's last good content there, so an
// agent restarted while a file is broken still enforces what it held
// (without StateDir, a process starting while a file is broken has
// nothing for it). A file that is valid but holds no objects (only comments, say)
// removes what it held; so does deleting the file. Once a broken file
// reads well again (whether or not its objects changed: a revert to the
// last good content changes none) or is removed, the watch sends an
// EventRecovered naming it; its deletes name it too. An empty file (zero
// bytes) is taken as one being written: what it held stays until it has
// content, or is removed.
//
// The same object defined in two places is reported as a *DuplicateError;
// the first definition, in path order, is used.
//
// # Keeping up to date
//
// A store reads the whole tree once, at its first operation, and then
// follows it: fsnotify reports the files that change (subdirectories
// included, new ones as they appear), and the store reads again only
// those, at its next operation. Its merged view (which file defines each
// object, which definition is in force, which files are broken) is
// updated file by file, so a change costs what the changed file holds,
// whatever the size of the tree. A rename, a symlink or a new directory
// (a ConfigMap's ..data swap, a git checkout) makes it walk the tree and
// read the files whose size, modification time or inode changed; so do a
// periodic rescan (Options.Resync) and an fsnotify queue overflow. Where
// fsnotify is unavailable, every operation walks the tree.
//
// A store's first read decodes only what it must: <root>/.calyx.index,
// which stores rewrite now and then, lists each good file's stat and
// content hash, and for each of its YAML documents the document's byte
// range and content hash and the keys and revisions of its objects. A
// new store (every calyxctl command) reads the index's file records, and
// the rest of a file's record only when it needs that file: the files
// listing a key it is asked about, the files whose stat changed. Of a
// file whose stat changed it decodes the documents whose content the
// index does not list; of the others, only the document holding an
// object asked for (Get and writes decode one document; List and Watch
// decode all).
//
// Writers that hold the lock (below) also record the files they wrote in
// <root>/.calyx.journal, replaced atomically after the files: every store
// reads the journal at its next operation and reads those files again, so
// a write through one store (another calyxctl) is seen by the next read of
// any other at once, without waiting for fsnotify. When the journal has
// moved on further than it remembers, the reader walks the tree.
//
// # Watching
//
// Watch reports the changes of the merged view. After a burst of fsnotify
// events it waits for a quiet period (Options.Debounce, at most
// Options.MaxDelay after the burst began) before reading, so an editor's
// write-truncate-write or a git checkout is seen once, whole; quick
// successive changes of one object may therefore be merged into one
// event. A write through a store is whole when its journal entry is made:
// it is reported at once, with no quiet period.
//
// # Writing
//
// Create, Replace, Apply and Delete (calyxctl) hold an exclusive lock on
// <root>/.calyx.lock, bring the store up to date (above), check the
// revision, and write one file atomically (a temporary file renamed over
// it), then the journal. An object that
// already lives in a file is rewritten in place in that file: the YAML
// document holding it is re-encoded with policy.Encode (its comments are
// lost; the other documents of the file are kept byte for byte, and not
// decoded when the store knows where the document is and the file's
// content hash is still the one it knows); deleting the last object of a
// file removes the file. A new object goes to
// <root>/<kind>.<namespace>.<name>.yaml (<kind>.<name>.yaml for
// cluster-scoped kinds; kind in lower case). While any file has errors,
// writes are refused (a *SourceError): the broken file's objects could not
// be told apart from new ones.
//
// Revisions are content hashes of an object's canonical encoding
// (datastore.ContentRevision), so every process computes the same
// revision for the same object, and a file rewritten with the same content
// changes nothing.
package dir

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// Options are the optional knobs of Open.
type Options struct {
	// Debounce is the quiet period after the last filesystem event before
	// the tree is re-read; 0 means 50 ms.
	Debounce time.Duration
	// MaxDelay bounds how long a continuous burst of events can hold a
	// re-read back; 0 means 1 s.
	MaxDelay time.Duration
	// Resync is the period of a full rescan that catches what fsnotify
	// missed; 0 means 1 min, negative disables it.
	Resync time.Duration
	// StateDir, when set, is where the store keeps a copy of each file's
	// last good content (see the package doc); the directory is created
	// as needed. The agent sets it, e.g. /var/lib/calyx/dirstore.
	StateDir string
	// Logger receives debug and warning logs; nil discards them.
	Logger *slog.Logger
}

// SourceError is a file the store could not read or decode.
type SourceError struct {
	// Path is the file.
	Path string
	// Err says why: a policy.ValidationErrors, or an I/O error.
	Err error
}

func (e *SourceError) Error() string {
	var verrs policy.ValidationErrors
	if errors.As(e.Err, &verrs) {
		return fmt.Sprintf("%s: %s (its last good objects stay in force)", e.Path, plural(len(verrs), "problem")) + "\n" + verrs.Error()
	}
	return fmt.Sprintf("%s: %v (its last good objects stay in force)", e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *SourceError) Unwrap() error { return e.Err }

// DuplicateError is one object defined in two places.
type DuplicateError struct {
	// Key is the object.
	Key policy.ObjectKey
	// Used is where the definition in force is; Ignored the other one.
	Used, Ignored policy.Position
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%s: %s is already defined at %s; this definition is ignored", e.Ignored, e.Key, e.Used)
}

// Store is a directory datastore. Use Open.
type Store struct {
	root string
	opts Options
	log  *slog.Logger
	done chan struct{}

	mu     sync.Mutex
	files  map[string]*file
	idx    index     // the merged view of files, kept up to date per file
	last   *lastGood // nil without Options.StateDir
	closed bool

	// How the store learns of changes without reading the tree again.
	loaded   bool            // the tree was read whole once
	tr       *tracker        // fsnotify on the tree; nil until loaded, or without fsnotify
	pending  map[string]bool // paths the tracker saw change, not read yet
	needWalk bool            // something the tracker saw needs the tree walked
	trErrs   []error         // the tracker's errors, for the watches
	jr       journalPos      // the writers' journal as far as this store read it
	walks    int             // of the whole tree, for tests
	lazy     int             // files with lazy entries
	decoded  int             // files decoded since the persisted index was written
	decodes  int             // files decoded good, for tests
	// docDecodes counts the YAML documents decoded, for tests.
	docDecodes int
	unparsed   int // files with a block of the persisted index not parsed
	// The persisted index as read, while files are unparsed: its text,
	// where their blocks start in it, the keys searched for so far.
	indexText   string
	indexBlocks []indexBlock
	ensured     map[policy.ObjectKey]bool
}

var _ datastore.Store = (*Store)(nil)

// file is what the store knows of one file.
type file struct {
	stat    fileStat
	sum     [32]byte // of the content last decoded
	badSum  error    // that content's decode error, nil when it was good
	entries []entry  // the last good objects
	err     error    // the current problem, nil when the file is good
	// recalled: the last good copy of a previous process was looked for.
	recalled bool
	// lazy: some entries come from the persisted index (keys and
	// revisions, no objects); their documents are decoded when an object
	// is needed.
	lazy bool
	// truncated: the file was found empty, its entries are from before.
	truncated bool
	// block, when not empty, is the file's documents and entries as the
	// persisted index lists them, not parsed yet (the file is unparsed;
	// see materializeLocked); stat and sum are the index's.
	block string
	// encoded is the file's documents and entries as the persisted index
	// lists them (its block, parsed), kept so that writing the index
	// again encodes only the files that changed; "" when not known.
	encoded string
	// docs are the entries of each YAML document of the last good
	// content, so that reading the file again decodes only the
	// documents that changed.
	docs []docCache
}

type fileStat struct {
	size  int64
	mtime int64 // Unix nanoseconds
	ino   uint64
}

// entry is one object of a file.
type entry struct {
	obj    policy.Object // resourceVersion set to rev; never modified
	key    policy.ObjectKey
	origin *policy.Origin
	rev    string
}

// Open returns the store of the directory root, creating it if missing.
// It reads nothing yet: List, Get and Watch read on demand.
func Open(ctx context.Context, root string, opts Options) (*Store, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = 50 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = time.Second
	}
	if opts.Resync == 0 {
		opts.Resync = time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("directory store: %w", err)
	}
	info, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("directory store: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("directory store: %s is not a directory", root)
	}
	s := &Store{root: filepath.Clean(root), opts: opts, log: log, done: make(chan struct{}), files: map[string]*file{}, idx: newIndex(), pending: map[string]bool{}}
	if opts.StateDir != "" {
		s.last = &lastGood{dir: opts.StateDir, log: log}
	}
	return s, nil
}

// Root returns the directory.
func (s *Store) Root() string { return s.root }

// List implements datastore.Store. Objects of broken files are their last
// good versions; Problems says which files are broken.
func (s *Store) List(ctx context.Context) ([]datastore.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.syncLocked(ctx, false); err != nil {
		return nil, err
	}
	if err := s.decodeLazyLocked(ctx, nil); err != nil {
		return nil, err
	}
	keys := s.idx.sortedKeys()
	out := make([]datastore.Item, 0, len(keys))
	for _, k := range keys {
		it, err := copyItem(s.idx.items[k])
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// Problems returns what is wrong with the tree now: a *SourceError per
// broken file and a *DuplicateError per object defined twice.
func (s *Store) Problems(ctx context.Context) ([]error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.syncLocked(ctx, false); err != nil {
		return nil, err
	}
	if err := s.decodeLazyLocked(ctx, nil); err != nil {
		return nil, err
	}
	var out []error
	for _, p := range s.problemsLocked() {
		out = append(out, p.err)
	}
	return out, nil
}

// Get implements datastore.Store.
func (s *Store) Get(ctx context.Context, key policy.ObjectKey) (datastore.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.syncLocked(ctx, false); err != nil {
		return datastore.Item{}, err
	}
	it, ok, err := s.itemLocked(ctx, key)
	if err != nil {
		return datastore.Item{}, err
	}
	if !ok {
		return datastore.Item{}, fmt.Errorf("%s: %w", key, datastore.ErrNotFound)
	}
	return copyItem(it)
}

func copyItem(it datastore.Item) (datastore.Item, error) {
	obj, err := datastore.Copy(it.Object)
	if err != nil {
		return datastore.Item{}, err
	}
	it.Object = obj
	return it, nil
}

// Close implements datastore.Store: watches end, later calls fail with
// datastore.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	return nil
}

// syncLocked brings the store up to date with the tree. The first call
// reads the tree whole and starts the tracker; later calls read only the
// files the tracker saw change and those other writers wrote (the
// journal), so their cost does not grow with the size of the tree.
// Without a tracker (fsnotify unavailable) every call walks the tree and
// reads the files whose size, modification time or inode changed. With
// journalOnly, the tracker's paths are left for later (a watch's urgent
// flush must not read an editor's half-written file). s.mu is held.
func (s *Store) syncLocked(ctx context.Context, journalOnly bool) error {
	if s.closed {
		return datastore.ErrClosed
	}
	if !s.loaded {
		s.startTrackerLocked()
		// The journal's position before the walk: writes after it are
		// read again from the journal, at worst twice.
		s.jr = s.readJournalPos()
		// The persisted index spares decoding the files whose stat
		// has not changed since it was written.
		s.loadIndexLocked()
		if err := s.refreshLocked(ctx, nil); err != nil {
			return err
		}
		s.loaded = true
		s.maybeSaveIndexLocked(indexFirst)
		return nil
	}
	if s.tr == nil {
		return s.refreshLocked(ctx, nil)
	}
	if !journalOnly {
		if s.needWalk {
			s.needWalk = false
			s.pending = map[string]bool{}
			if err := s.refreshLocked(ctx, nil); err != nil {
				return err
			}
		} else if len(s.pending) > 0 {
			paths := s.pending
			s.pending = map[string]bool{}
			if !s.refreshPathsLocked(paths) {
				if err := s.refreshLocked(ctx, paths); err != nil {
					return err
				}
			}
		}
	}
	if err := s.followJournalLocked(ctx); err != nil {
		return err
	}
	s.maybeSaveIndexLocked(indexEvery)
	return nil
}

// refreshLocked walks the tree: files whose size, modification time or
// inode changed, and those in force, are read again. s.mu is held.
func (s *Store) refreshLocked(ctx context.Context, force map[string]bool) error {
	if s.closed {
		return datastore.ErrClosed
	}
	paths, err := s.walk()
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(paths))
	var jobs []*readJob
	for i, st := range statAll(paths) {
		p := paths[i]
		seen[p] = true
		if j := s.probeStat(p, force[p], st.info, st.err); j != nil {
			jobs = append(jobs, j)
		}
	}
	if err := runJobs(ctx, jobs); err != nil {
		return err
	}
	if !s.loaded {
		n := 0
		for _, j := range jobs {
			n += len(j.entries)
		}
		s.idx.grow(n)
	}
	for _, j := range jobs {
		s.apply(j)
	}
	if s.last != nil {
		s.last.sweep(paths)
	}
	for p := range s.files {
		if !seen[p] {
			s.log.Debug("policy file removed", "file", p)
			s.forgetLocked(p)
		}
	}
	return nil
}

// refreshPathsLocked re-reads just the files named, when that is enough:
// every path is a regular policy file (or one that is gone) or one of the
// store's own files. Anything else (a directory, a symlink, a hidden name
// such as a ConfigMap's ..data) needs the whole tree walked: it returns
// false and reads nothing.
func (s *Store) refreshPathsLocked(paths map[string]bool) bool {
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
		s.rereadLocked(p)
	}
	return true
}

// rereadLocked reads p again whatever its stat says, or forgets it when
// it is gone.
func (s *Store) rereadLocked(p string) {
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		if _, known := s.files[p]; known {
			s.forgetLocked(p)
		}
		return
	}
	s.readFile(p, true)
}

type statResult struct {
	info os.FileInfo
	err  error
}

// statAll stats paths on every CPU: a walk of a tree of 10,000 files
// spends most of its time there.
func statAll(paths []string) []statResult {
	out := make([]statResult, len(paths))
	workers := min(runtime.GOMAXPROCS(0), len(paths)/256+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(paths); i += workers {
				out[i].info, out[i].err = os.Stat(paths[i])
			}
		})
	}
	wg.Wait()
	return out
}

// runJobs reads and decodes files on every CPU: a directory of 10,000
// policies is read at start (the agent) and by every calyxctl process.
func runJobs(ctx context.Context, jobs []*readJob) error {
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	next := make(chan *readJob)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				j.run()
			}
		}()
	}
	var err error
feed:
	for _, j := range jobs {
		select {
		case next <- j:
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	return err
}

// walk lists the policy files below the root in lexical order.
func (s *Store) walk() ([]string, error) {
	s.walks++
	var paths []string
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == s.root {
				return err
			}
			// A directory that vanished or cannot be listed mid-walk:
			// skip it; its files keep their cache entries only if seen.
			s.log.Warn("cannot list policy directory", "dir", p, "err", err)
			return fs.SkipDir
		}
		if p != s.root && hidden(d.Name()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			// Followed before it is listed: nothing added to it
			// after is missed.
			s.followLocked(p)
			return nil
		}
		if policyFile(p) {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("directory store: %w", err)
	}
	slices.Sort(paths)
	return paths, nil
}

func hidden(name string) bool { return strings.HasPrefix(name, ".") }

func policyFile(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// readFile updates the cache entry of one file.
func (s *Store) readFile(p string, force bool) {
	if j := s.probe(p, force); j != nil {
		j.run()
		s.apply(j)
	}
}

// readJob is the reading of one file: probe decides it is needed (from
// the cache, under s.mu), run reads and decodes (touching nothing shared,
// so jobs run in parallel), apply updates the cache (under s.mu).
type readJob struct {
	p        string
	st       fileStat
	prevSum  [32]byte
	prevDocs []docCache // of the content last decoded
	docs     []docCache
	err      error // stat or read error
	empty    bool
	data     []byte // kept for the last good copy
	sum      [32]byte
	same     bool // the content is the one last decoded
	entries  []entry
	decErr   error
	// decodedDocs counts the documents decoded (not found unchanged).
	decodedDocs int
}

func (s *Store) probe(p string, force bool) *readJob {
	info, err := os.Stat(p)
	return s.probeStat(p, force, info, err)
}

// probeStat is probe with the file's stat taken already.
func (s *Store) probeStat(p string, force bool, info os.FileInfo, err error) *readJob {
	f := s.files[p]
	if err == nil && f != nil && !force && f.stat == statOf(info) {
		return nil
	}
	if f != nil && f.block != "" {
		// Its entries must be in the view before they are replaced.
		s.materializeLocked(p, f)
		f = s.files[p]
	}
	if err != nil {
		return &readJob{p: p, err: err}
	}
	st := statOf(info)
	j := &readJob{p: p, st: st}
	if f != nil {
		// A lazy file's documents are reused where found again; only
		// those that differ from the persisted index are decoded.
		j.prevSum, j.prevDocs = f.sum, f.docs
	}
	return j
}

// probeDecode is probe for a file whose objects are needed: its lazy
// documents are decoded, whatever its stat and content.
func (s *Store) probeDecode(p string) *readJob {
	j := s.probe(p, true)
	if j.err != nil {
		return j
	}
	j.prevSum = [32]byte{}
	j.prevDocs = slices.DeleteFunc(slices.Clone(j.prevDocs), docCache.lazyDoc)
	return j
}

func (j *readJob) run() {
	if j.err != nil {
		return
	}
	data, err := os.ReadFile(j.p)
	if err != nil {
		j.err = err
		return
	}
	if len(data) == 0 {
		j.empty = true
		return
	}
	j.sum = sha256.Sum256(data)
	if j.sum == j.prevSum {
		j.same = true
		return
	}
	j.entries, j.docs, j.decodedDocs, j.decErr = decodeFile(data, j.p, j.prevDocs)
	j.data = data
}

func (s *Store) apply(j *readJob) {
	f := s.files[j.p]
	if f == nil {
		f = &file{}
		s.files[j.p] = f
	}
	if f.lazy && (j.err != nil || j.empty || (!j.same && j.decErr != nil)) {
		// The persisted index's keys, without objects: a broken or
		// empty file has no last good objects to keep (as at a first
		// read).
		s.setLazyLocked(f, false)
		f.docs = nil
		s.idx.setEntries(s.files, j.p, f, nil)
	}
	defer func() { s.idx.setBroken(j.p, f.err) }()
	switch {
	case j.err != nil:
		f.err = &SourceError{Path: j.p, Err: j.err}
		s.recallLocked(j.p, f)
		return
	case j.empty:
		// Truncated by a writer that has not written yet (os.WriteFile,
		// editors, git): not a decision to drop the file's objects.
		f.stat = j.st
		f.truncated = true
		return
	}
	if f.stat != j.st && j.same && f.err == nil {
		// The same content with a new stat (a copy, a restore, a
		// touch): the persisted index is stale all the same.
		s.decoded++
	}
	f.stat, f.truncated = j.st, false
	s.docDecodes += j.decodedDocs
	if j.same {
		f.err = f.badSum
		return
	}
	f.sum = j.sum
	if j.decErr != nil {
		s.log.Warn("policy file has errors; its last good objects stay in force", "file", j.p, "err", j.decErr)
		f.err = &SourceError{Path: j.p, Err: j.decErr}
		f.badSum = f.err
		s.recallLocked(j.p, f)
		return
	}
	f.err, f.badSum = nil, nil
	s.decoded++
	s.decodes++
	f.docs = j.docs
	s.idx.setEntries(s.files, j.p, f, j.entries)
	s.setLazyLocked(f, slices.ContainsFunc(j.entries, func(e entry) bool { return e.obj == nil }))
	if s.last != nil {
		s.last.save(j.p, j.sum, j.data)
	}
}

// recallLocked gives a broken file this process never read good the last
// good objects a previous process kept.
func (s *Store) recallLocked(p string, f *file) {
	if s.last == nil || f.entries != nil || f.recalled {
		return
	}
	f.recalled = true
	if entries, ok := s.last.load(p); ok {
		s.idx.setEntries(s.files, p, f, entries)
	}
}

// decode reads the objects of one file's content.
func decode(data []byte, p string) ([]entry, error) {
	res, err := policy.DecodeWithOptions(bytes.NewReader(data), p, policy.DecodeOptions{})
	if errors.Is(err, policy.ErrNoObjects) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	entries := make([]entry, 0, len(res.Objects))
	for i, obj := range res.Objects {
		rev, err := datastore.ContentRevision(obj)
		if err != nil {
			return nil, err
		}
		obj.SetResourceVersion(rev)
		entries = append(entries, entry{obj: obj, key: policy.KeyOf(obj), origin: res.Origins[i], rev: rev})
	}
	return entries, nil
}

// forgetLocked drops a file that is gone.
func (s *Store) forgetLocked(p string) {
	if f := s.files[p]; f != nil {
		if f.block != "" {
			f.block = ""
			s.unparsedDone()
		}
		s.setLazyLocked(f, false)
		s.idx.setEntries(s.files, p, f, nil)
		s.decoded++
	}
	s.idx.setBroken(p, nil)
	delete(s.files, p)
	if s.last != nil {
		s.last.forget(p)
	}
}

// setLazyLocked marks f lazy (some of its entries have no objects) or
// not, keeping count.
func (s *Store) setLazyLocked(f *file, lazy bool) {
	switch {
	case lazy && !f.lazy:
		s.lazy++
	case !lazy && f.lazy:
		s.lazy--
	}
	f.lazy = lazy
}

func statOf(info os.FileInfo) fileStat {
	return fileStat{size: info.Size(), mtime: info.ModTime().UnixNano(), ino: inode(info)}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

package dir

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// index is the merged view of the tree's files, updated file by file: a
// change of one file costs what that file holds, whatever the size of the
// tree. The first definition of a key in path order is the one in force.
type index struct {
	defs   map[policy.ObjectKey][]loc // every definition of a key, in path order
	items  map[policy.ObjectKey]datastore.Item
	keys   []policy.ObjectKey        // sorted; nil when keys came or went
	dups   map[policy.ObjectKey]bool // keys defined more than once
	broken map[string]error          // files with a problem
	subs   map[*watch]struct{}       // told of every key that changes
	// problemsChanged counts changes of broken and dups (and of the
	// definitions of duplicated keys).
	problemsChanged uint64
}

// loc is one definition: entry i of file path.
type loc struct {
	path string
	i    int
}

func newIndex() index {
	return index{
		defs:   map[policy.ObjectKey][]loc{},
		items:  map[policy.ObjectKey]datastore.Item{},
		dups:   map[policy.ObjectKey]bool{},
		broken: map[string]error{},
		subs:   map[*watch]struct{}{},
	}
}

// grow sizes the maps for n more objects (the first read of a tree).
func (x *index) grow(n int) {
	if len(x.items) > 0 || n == 0 {
		return
	}
	x.defs = make(map[policy.ObjectKey][]loc, n)
	x.items = make(map[policy.ObjectKey]datastore.Item, n)
}

// load fills an empty index with the entries of files, in path order, n
// entries in all (a new store's persisted index): setEntries for each
// file would give the same, at several times the cost.
func (x *index) load(files []indexedFile, n int) {
	x.defs = make(map[policy.ObjectKey][]loc, n)
	x.items = make(map[policy.ObjectKey]datastore.Item, n)
	x.keys = nil
	locs := make([]loc, n)
	at := 0
	for _, f := range files {
		for i, e := range f.entries {
			locs[at] = loc{f.path, i}
			if ds, ok := x.defs[e.key]; ok {
				// Defined before, in an earlier file or entry: that
				// definition stays in force.
				x.defs[e.key] = append(ds, locs[at])
				x.dups[e.key] = true
				x.problemsChanged++
			} else {
				x.defs[e.key] = locs[at : at+1 : at+1]
				x.items[e.key] = datastore.Item{Revision: e.rev}
			}
			at++
		}
	}
}

// setEntries makes entries the objects of file p (f is files[p]).
func (x *index) setEntries(files map[string]*file, p string, f *file, entries []entry) {
	old := f.entries
	f.entries = entries
	f.encoded = ""
	// A key may come twice (old and new, or defined twice in the file):
	// deleting and resolving again are no-ops.
	touched := make([]policy.ObjectKey, 0, len(old)+len(entries))
	for _, e := range old {
		touched = append(touched, e.key)
		if ds := x.defs[e.key]; len(ds) == 1 && ds[0].path == p {
			x.defs[e.key] = ds[:0]
		} else {
			x.defs[e.key] = slices.DeleteFunc(ds, func(l loc) bool { return l.path == p })
		}
	}
	for i, e := range entries {
		touched = append(touched, e.key)
		ds := x.defs[e.key]
		if len(ds) == 0 {
			x.defs[e.key] = append(ds, loc{p, i})
			continue
		}
		at, _ := slices.BinarySearchFunc(ds, loc{p, i}, compareLoc)
		x.defs[e.key] = slices.Insert(ds, at, loc{p, i})
	}
	for _, k := range touched {
		x.resolve(files, k)
	}
}

func compareLoc(a, b loc) int {
	if c := strings.Compare(a.path, b.path); c != 0 {
		return c
	}
	return cmp.Compare(a.i, b.i)
}

// resolve sets the item in force for k from its definitions.
func (x *index) resolve(files map[string]*file, k policy.ObjectKey) {
	ds := x.defs[k]
	defer x.touch(k)
	if x.dups[k] || len(ds) > 1 {
		x.problemsChanged++
	}
	if len(ds) == 0 {
		delete(x.defs, k)
		delete(x.dups, k)
		if _, ok := x.items[k]; ok {
			delete(x.items, k)
			x.keys = nil
		}
		return
	}
	if len(ds) > 1 {
		x.dups[k] = true
	} else {
		delete(x.dups, k)
	}
	e := files[ds[0].path].entries[ds[0].i]
	if _, ok := x.items[k]; !ok {
		x.keys = nil
	}
	x.items[k] = datastore.Item{Object: e.obj, Revision: e.rev, Origin: e.origin}
}

// touch tells the watches that k may have changed.
func (x *index) touch(k policy.ObjectKey) {
	for w := range x.subs {
		if !w.all {
			w.dirty[k] = struct{}{}
		}
	}
}

// where returns the file of the definition of k in force.
func (x *index) where(k policy.ObjectKey) string {
	if ds := x.defs[k]; len(ds) > 0 {
		return ds[0].path
	}
	return ""
}

// setBroken records the problem of file p (nil: none).
func (x *index) setBroken(p string, err error) {
	if prev, ok := x.broken[p]; ok != (err != nil) || prev != err {
		x.problemsChanged++
	}
	if err == nil {
		delete(x.broken, p)
	} else {
		x.broken[p] = err
	}
}

// sortedKeys returns the keys in force, sorted. Shared: do not modify.
func (x *index) sortedKeys() []policy.ObjectKey {
	if x.keys == nil {
		x.keys = make([]policy.ObjectKey, 0, len(x.items))
		for k := range x.items {
			x.keys = append(x.keys, k)
		}
		sortKeys(x.keys)
	}
	return x.keys
}

type problem struct {
	source string
	err    error
	at     int // -1 for the file's own problem, else the definition's entry
}

// problemsLocked lists the broken files and the ignored definitions of
// duplicated keys, in path order.
func (s *Store) problemsLocked() []problem {
	x := &s.idx
	var out []problem
	for p, err := range x.broken {
		out = append(out, problem{source: p, err: err, at: -1})
	}
	for k := range x.dups {
		ds := x.defs[k]
		used := s.files[ds[0].path].entries[ds[0].i].origin
		for _, l := range ds[1:] {
			ignored := s.files[l.path].entries[l.i].origin
			out = append(out, problem{source: l.path, err: &DuplicateError{Key: k, Used: used.Position, Ignored: ignored.Position}, at: l.i})
		}
	}
	slices.SortFunc(out, func(a, b problem) int {
		if c := strings.Compare(a.source, b.source); c != 0 {
			return c
		}
		return cmp.Compare(a.at, b.at)
	})
	return out
}

// brokenErr returns an error naming the broken files, or nil.
func (s *Store) brokenErr() error {
	if len(s.idx.broken) == 0 {
		return nil
	}
	paths := make([]string, 0, len(s.idx.broken))
	for p := range s.idx.broken {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	broken := make([]error, 0, len(paths))
	for _, p := range paths {
		broken = append(broken, s.idx.broken[p])
	}
	return fmt.Errorf("directory store: no new objects while files have errors (fix them first): %w", errors.Join(broken...))
}

func sortKeys(keys []policy.ObjectKey) { slices.SortFunc(keys, datastore.CompareKeys) }

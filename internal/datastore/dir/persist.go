package dir

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// The persisted index: <root>/.calyx.index lists, for each good file, its
// stat, the hash of its content and the keys and revisions of its
// objects. A store starting (calyxctl, at every command) trusts it for
// the files whose stat has not changed and decodes only the others: the
// objects of those files are decoded when one is asked for (Get, a
// write) or all are (List, Watch). Any store rewrites it, atomically,
// once indexEvery files were decoded since it last did (indexFirst at
// its first read: the index was that stale), so keeping it costs a
// fraction of a full encoding per change.
const (
	indexName  = ownPrefix + ".index"
	indexMagic = "calyx-index-v1"
	indexEvery = 64
	indexFirst = 16
)

func (s *Store) indexPath() string { return filepath.Join(s.root, indexName) }

// loadIndexLocked makes lazy files of the persisted index's entries;
// the walk that follows decodes those whose stat changed and forgets
// those that are gone. An unreadable or malformed index is ignored.
func (s *Store) loadIndexLocked() {
	data, err := os.ReadFile(s.indexPath())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("cannot read the directory store's index; decoding every file", "err", err)
		}
		return
	}
	files, err := parseIndex(data, s.root)
	if err != nil {
		s.log.Warn("the directory store's index is malformed; decoding every file", "err", err)
		return
	}
	n := 0
	for _, lf := range files {
		n += len(lf.entries)
	}
	s.idx.grow(n)
	for _, lf := range files {
		f := &file{stat: lf.stat, sum: lf.sum, lazy: true}
		s.files[lf.path] = f
		s.lazy++
		s.idx.setEntries(s.files, lf.path, f, lf.entries)
	}
}

type indexedFile struct {
	path    string
	stat    fileStat
	sum     [32]byte
	entries []entry
}

func parseIndex(data []byte, root string) ([]indexedFile, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	if !sc.Scan() || sc.Text() != indexMagic {
		return nil, errors.New("no header")
	}
	var out []indexedFile
	for line := 1; sc.Scan(); line++ {
		fields := strings.Split(sc.Text(), "\t")
		bad := fmt.Errorf("line %d", line+1)
		switch {
		case fields[0] == "F" && len(fields) == 6:
			size, err1 := strconv.ParseInt(fields[1], 10, 64)
			mtime, err2 := strconv.ParseInt(fields[2], 10, 64)
			ino, err3 := strconv.ParseUint(fields[3], 10, 64)
			sum, err4 := hex.DecodeString(fields[4])
			if err := errors.Join(err1, err2, err3, err4); err != nil || len(sum) != 32 || fields[5] == "" {
				return nil, bad
			}
			f := indexedFile{path: filepath.Join(root, filepath.FromSlash(fields[5])), stat: fileStat{size: size, mtime: mtime, ino: ino}}
			copy(f.sum[:], sum)
			out = append(out, f)
		case fields[0] == "E" && len(fields) == 5 && len(out) > 0:
			k := policy.ObjectKey{Kind: policy.Kind(fields[1]), Namespace: fields[2], Name: fields[3]}
			if k.Kind == "" || k.Name == "" || fields[4] == "" {
				return nil, bad
			}
			f := &out[len(out)-1]
			f.entries = append(f.entries, entry{key: k, rev: fields[4]})
		default:
			return nil, bad
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// maybeSaveIndexLocked writes the persisted index when enough files were
// decoded since it was last written. Best effort: without it, the next
// store decodes more.
func (s *Store) maybeSaveIndexLocked(every int) {
	if s.decoded < every || s.closed {
		return
	}
	s.decoded = 0
	var b bytes.Buffer
	b.WriteString(indexMagic + "\n")
	for p, f := range s.files {
		if f.err != nil || f.truncated || f.sum == ([32]byte{}) {
			continue
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil || strings.ContainsAny(rel, "\t\n\r") {
			continue
		}
		ok := true
		for _, e := range f.entries {
			if strings.ContainsAny(string(e.key.Kind)+e.key.Namespace+e.key.Name+e.rev, "\t\n\r") {
				ok = false
			}
		}
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "F\t%d\t%d\t%d\t%s\t%s\n", f.stat.size, f.stat.mtime, f.stat.ino, hex.EncodeToString(f.sum[:]), filepath.ToSlash(rel))
		for _, e := range f.entries {
			fmt.Fprintf(&b, "E\t%s\t%s\t%s\t%s\n", e.key.Kind, e.key.Namespace, e.key.Name, e.rev)
		}
	}
	if err := writeFileAtomic(s.indexPath(), b.Bytes(), 0o644, false); err != nil {
		s.log.Warn("cannot write the directory store's index", "err", err)
	}
}

// itemLocked returns the item in force for key, decoding its file if the
// persisted index spared it.
func (s *Store) itemLocked(ctx context.Context, key policy.ObjectKey) (datastore.Item, bool, error) {
	it, ok := s.idx.items[key]
	if ok && it.Object == nil {
		if err := s.decodeLazyLocked(ctx, []string{s.idx.where(key)}); err != nil {
			return datastore.Item{}, false, err
		}
		it, ok = s.idx.items[key]
	}
	if ok && it.Object == nil {
		return datastore.Item{}, false, fmt.Errorf("directory store: %s: cannot decode its file", key)
	}
	return it, ok, nil
}

// decodeLazyLocked decodes the lazy files among paths (all of them when
// paths is nil).
func (s *Store) decodeLazyLocked(ctx context.Context, paths []string) error {
	if s.lazy == 0 {
		return nil
	}
	var jobs []*readJob
	add := func(p string) {
		if f := s.files[p]; f != nil && f.lazy {
			jobs = append(jobs, s.probe(p, true))
		}
	}
	if paths == nil {
		for p := range s.files {
			add(p)
		}
	} else {
		for _, p := range paths {
			add(p)
		}
	}
	if err := runJobs(ctx, jobs); err != nil {
		return err
	}
	for _, j := range jobs {
		s.apply(j)
	}
	return nil
}

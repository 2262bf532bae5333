package dir

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// ownPrefix starts the names of the store's own files: the lock and
// temporary files. Hidden, so never read as policy.
const ownPrefix = ".calyx"

// lockName is the lock file writers hold.
const lockName = ownPrefix + ".lock"

// Create implements datastore.Store.
func (s *Store) Create(ctx context.Context, obj policy.Object) (datastore.Item, error) {
	return s.put(ctx, obj, func(cur datastore.Item, exists bool) error {
		if exists {
			return datastore.ErrExists
		}
		return nil
	})
}

// Replace implements datastore.Store.
func (s *Store) Replace(ctx context.Context, obj policy.Object, revision string) (datastore.Item, error) {
	return s.put(ctx, obj, func(cur datastore.Item, exists bool) error {
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
	return s.put(ctx, obj, func(datastore.Item, bool) error { return nil })
}

// Delete implements datastore.Store. An object defined in several files
// is removed from each of them.
func (s *Store) Delete(ctx context.Context, key policy.ObjectKey, revision string) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.syncLocked(ctx, false); err != nil {
		return err
	}
	s.ensureKeyLocked(key)
	cur, ok := s.idx.items[key]
	switch {
	case !ok:
		return fmt.Errorf("%s: %w", key, datastore.ErrNotFound)
	case revision != "" && revision != cur.Revision:
		return fmt.Errorf("%s: %w", key, datastore.ErrConflict)
	}
	paths := s.pathsDefiningLocked(key)
	for _, p := range paths {
		if err := s.files[p].err; err != nil {
			return fmt.Errorf("directory store: %s lives in a file with errors (fix it first): %w", key, err)
		}
	}
	defer s.wroteLocked(paths...)
	for _, p := range paths {
		if err := s.rewriteLocked(p, key, nil); err != nil {
			return err
		}
	}
	return nil
}

// wroteLocked records files written under the lock: in the journal, for
// the other stores, and to this store's watches, which need not wait for
// fsnotify's events or a quiet period.
func (s *Store) wroteLocked(paths ...string) {
	s.recordLocked(paths...)
	s.wakeLocked(true)
}

func (s *Store) put(ctx context.Context, obj policy.Object, check func(cur datastore.Item, exists bool) error) (datastore.Item, error) {
	obj, err := datastore.Prepare(obj)
	if err != nil {
		return datastore.Item{}, err
	}
	key := policy.KeyOf(obj)
	unlock, err := s.lock(ctx)
	if err != nil {
		return datastore.Item{}, err
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.syncLocked(ctx, false); err != nil {
		return datastore.Item{}, err
	}
	cur, exists, err := s.itemLocked(ctx, key)
	if err != nil {
		return datastore.Item{}, err
	}
	if err := check(cur, exists); err != nil {
		return datastore.Item{}, fmt.Errorf("%s: %w", key, err)
	}
	if !exists {
		// A broken file may define this key: a new file would then
		// define it twice once the broken one is fixed.
		if err := s.brokenErr(); err != nil {
			return datastore.Item{}, err
		}
	}
	rev, err := datastore.ContentRevision(obj)
	if err != nil {
		return datastore.Item{}, err
	}
	var p string
	switch {
	case exists && cur.Revision == rev:
		// The same content: nothing to write.
		return copyItem(cur)
	case exists:
		p = s.idx.where(key)
		if err := s.files[p].err; err != nil {
			return datastore.Item{}, fmt.Errorf("directory store: %s lives in a file with errors (fix it first): %w", key, err)
		}
		defer s.wroteLocked(p)
		if err := s.rewriteLocked(p, key, obj); err != nil {
			return datastore.Item{}, err
		}
	default:
		data, err := encodeYAML([]policy.Object{obj})
		if err != nil {
			return datastore.Item{}, err
		}
		p = s.newPathLocked(key)
		defer s.wroteLocked(p)
		if err := writeAtomic(p, data, 0o644); err != nil {
			return datastore.Item{}, err
		}
		s.readFile(p, true)
	}
	// The object as read back from its file (the merged view need not
	// be rebuilt for it: this file is where the key is in force).
	if f := s.files[p]; f != nil && f.err == nil {
		for _, e := range f.entries {
			if e.key == key && e.rev == rev {
				return copyItem(datastore.Item{Object: e.obj, Revision: e.rev, Origin: e.origin})
			}
		}
	}
	// Someone outside calyxctl changed the file under us.
	return datastore.Item{}, fmt.Errorf("%s: %w: the file changed while it was written", key, datastore.ErrConflict)
}

// lock takes the directory's write lock.
func (s *Store) lock(ctx context.Context) (func(), error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, datastore.ErrClosed
	}
	return lockFile(ctx, filepath.Join(s.root, lockName))
}

// pathsDefiningLocked lists the files holding an object with key.
func (s *Store) pathsDefiningLocked(key policy.ObjectKey) []string {
	var out []string
	for _, l := range s.idx.defs[key] {
		if len(out) == 0 || out[len(out)-1] != l.path {
			out = append(out, l.path)
		}
	}
	return out
}

// newPathLocked picks the file of a new object: <kind>.<ns>.<name>.yaml,
// with a -2, -3 … suffix if that name is taken.
func (s *Store) newPathLocked(key policy.ObjectKey) string {
	base := strings.ToLower(string(key.Kind))
	if key.Namespace != "" {
		base += "." + key.Namespace
	}
	base += "." + key.Name
	for i := 1; ; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		p := filepath.Join(s.root, name+".yaml")
		if _, known := s.files[p]; known {
			continue
		}
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			return p
		}
	}
}

// rewriteLocked writes file p again with the object key replaced by obj,
// or removed when obj is nil. YAML files keep every document that does
// not hold the object byte for byte; JSON files are re-encoded whole. A
// file left without objects is removed.
//
// Only the document holding the object is decoded, when the store knows
// where it is (the file was read or is listed in the persisted index as
// cut into documents) and the file is still what the store knows: its
// bytes are replaced, the others copied. Otherwise the file is decoded
// whole and its documents are found from its objects' lines.
func (s *Store) rewriteLocked(p string, key policy.ObjectKey, obj policy.Object) error {
	json := strings.EqualFold(filepath.Ext(p), ".json")
	d := -1
	if f := s.files[p]; f != nil && !json {
		d = holdingDoc(f, key)
		if d >= 0 && f.docs[d].lazyDoc() && !s.decodeDocLocked(p, key) {
			d = -1
		}
	}
	if d < 0 {
		if err := s.decodeLazyLocked(context.Background(), []string{p}); err != nil {
			return err
		}
	}
	f := s.files[p]
	info, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("directory store: %w", err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("directory store: %w", err)
	}
	if sha256.Sum256(data) != f.sum {
		// Changed outside the store's writers since it was read (the
		// tracker's event is on its way): the rewrite must start from
		// what the file holds now, decoded whole.
		s.readFile(p, true)
		if err := s.decodeLazyLocked(context.Background(), []string{p}); err != nil {
			return err
		}
		f = s.files[p]
		if f == nil || f.err != nil || f.sum != sha256.Sum256(data) || !slices.ContainsFunc(f.entries, func(e entry) bool { return e.key == key }) {
			return fmt.Errorf("%s: %w: %s changed while it was written", key, datastore.ErrConflict, p)
		}
		d = -1
	}
	var remaining int
	for _, e := range f.entries {
		if e.key != key || obj != nil {
			remaining++
		}
	}
	if remaining == 0 {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("directory store: %w", err)
		}
		syncDir(filepath.Dir(p))
		s.forgetLocked(p)
		return nil
	}
	var out []byte
	switch {
	case json:
		out, err = rewriteJSON(f.entries, key, obj)
	case d >= 0:
		out, err = spliceYAML(data, f.docs[d], key, obj)
	default:
		out, err = rewriteYAML(data, f.entries, key, obj)
	}
	if err != nil {
		return err
	}
	if err := writeAtomic(p, out, info.Mode().Perm()); err != nil {
		return err
	}
	// Read back: the documents found unchanged are not decoded again.
	s.readFile(p, true)
	return nil
}

// holdingDoc returns the index of the one document of f that holds key,
// or -1 when none or several do, or f's documents are not known whole.
func holdingDoc(f *file, key policy.ObjectKey) int {
	if !docsCover(f) {
		return -1
	}
	d := -1
	for i, c := range f.docs {
		if slices.ContainsFunc(c.entries, func(e entry) bool { return e.key == key }) {
			if d >= 0 {
				return -1
			}
			d = i
		}
	}
	return d
}

// spliceYAML is rewriteYAML for a file whose document c (decoded) is
// the one holding key: that document's bytes are replaced by the
// encoding of its objects with key replaced by obj (or dropped when obj
// is nil; the document goes when it held nothing else), every other byte
// is kept. The result is rewriteYAML's.
func spliceYAML(data []byte, c docCache, key policy.ObjectKey, obj policy.Object) ([]byte, error) {
	objs, err := swap(c.entries, key, obj)
	if err != nil {
		return nil, err
	}
	var enc []byte
	if len(objs) > 0 {
		if enc, err = encodeYAML(objs); err != nil {
			return nil, err
		}
	}
	out := make([]byte, 0, len(data)-c.n+len(enc)+5)
	out = append(out, data[:c.off]...)
	if len(objs) > 0 {
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		if len(out) > 0 || isSeparator(firstLine(data[c.off:])) {
			out = append(out, "---\n"...)
		}
		out = append(out, enc...)
	}
	return append(out, data[c.off+c.n:]...), nil
}

func firstLine(b []byte) []byte {
	if n := bytes.IndexByte(b, '\n'); n >= 0 {
		return b[:n+1]
	}
	return b
}

// swap returns the objects of entries with key replaced by obj (or
// dropped when obj is nil), resourceVersions cleared.
func swap(entries []entry, key policy.ObjectKey, obj policy.Object) ([]policy.Object, error) {
	var out []policy.Object
	for _, e := range entries {
		o := e.obj
		if policy.KeyOf(o) == key {
			if obj == nil {
				continue
			}
			o = obj
		}
		cp, err := datastore.Copy(o)
		if err != nil {
			return nil, err
		}
		cp.SetResourceVersion("")
		out = append(out, cp)
	}
	return out, nil
}

func encodeYAML(objs []policy.Object) ([]byte, error) {
	for i, o := range objs {
		if o.GetResourceVersion() != "" {
			cp, err := datastore.Copy(o)
			if err != nil {
				return nil, err
			}
			cp.SetResourceVersion("")
			objs[i] = cp
		}
	}
	var b bytes.Buffer
	if err := policy.Encode(&b, objs); err != nil {
		return nil, fmt.Errorf("directory store: %w", err)
	}
	return b.Bytes(), nil
}

// rewriteYAML re-encodes only the YAML documents that hold key.
func rewriteYAML(data []byte, entries []entry, key policy.ObjectKey, obj policy.Object) ([]byte, error) {
	segs := splitDocuments(data)
	// Which entries each document holds, by the line the object starts on.
	held := make([][]entry, len(segs))
	for _, e := range entries {
		i := segmentOf(segs, e.origin)
		if i < 0 {
			// Position unknown: fall back to re-encoding the whole file.
			objs, err := swap(entries, key, obj)
			if err != nil {
				return nil, err
			}
			return encodeYAML(objs)
		}
		held[i] = append(held[i], e)
	}
	var out bytes.Buffer
	for i, seg := range segs {
		touched := false
		for _, e := range held[i] {
			if policy.KeyOf(e.obj) == key {
				touched = true
			}
		}
		if !touched {
			out.Write(seg.text)
			continue
		}
		objs, err := swap(held[i], key, obj)
		if err != nil {
			return nil, err
		}
		if len(objs) == 0 {
			continue // the document held only the deleted object
		}
		enc, err := encodeYAML(objs)
		if err != nil {
			return nil, err
		}
		if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
			out.WriteByte('\n')
		}
		if seg.separated || out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(enc)
	}
	return out.Bytes(), nil
}

// segment is one YAML document of a file, with its "---" line if any.
type segment struct {
	first, last int // one-based lines, inclusive
	off         int // of its first byte
	separated   bool
	text        []byte
}

// splitDocuments cuts a YAML stream at its document separators: lines
// starting with "---" followed by nothing or a blank, at column 0 (where
// YAML ends a document even inside a block scalar).
func splitDocuments(data []byte) []segment {
	var segs []segment
	all := data
	cur := segment{first: 1}
	line, off := 0, 0
	for len(data) > 0 {
		n := bytes.IndexByte(data, '\n')
		if n < 0 {
			n = len(data) - 1
		}
		l := data[:n+1]
		data = data[n+1:]
		line++
		if isSeparator(l) && line > 1 {
			cur.last = line - 1
			segs = append(segs, cur)
			cur = segment{first: line, off: off, separated: true}
		} else if isSeparator(l) {
			cur.separated = true
		}
		off += len(l)
		// A sub-slice of the input, not a copy.
		cur.text = all[cur.off:off:off]
	}
	cur.last = line
	return append(segs, cur)
}

func isSeparator(l []byte) bool {
	if !bytes.HasPrefix(l, []byte("---")) {
		return false
	}
	rest := l[3:]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r'
}

func segmentOf(segs []segment, o *policy.Origin) int {
	if o == nil || o.Line <= 0 {
		return -1
	}
	for i, s := range segs {
		if o.Line >= s.first && o.Line <= s.last {
			return i
		}
	}
	return -1
}

// rewriteJSON encodes a JSON file's objects again: one object as itself,
// several as a v1 List.
func rewriteJSON(entries []entry, key policy.ObjectKey, obj policy.Object) ([]byte, error) {
	objs, err := swap(entries, key, obj)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		k := policy.KindOf(o)
		o.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(k.APIVersion(), k.WireName()))
	}
	var v any = objs[0]
	if len(objs) > 1 {
		v = map[string]any{"apiVersion": "v1", "kind": "List", "items": objs}
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("directory store: %w", err)
	}
	return append(b, '\n'), nil
}

// writeAtomic replaces p by a complete new file: readers (the agent, an
// editor) see the old content or the new, never a mix.
func writeAtomic(p string, data []byte, mode fs.FileMode) error {
	return writeFileAtomic(p, data, mode, true)
}

// writeFileAtomic is writeAtomic, durable (file and directory synced)
// when durable is set.
func writeFileAtomic(p string, data []byte, mode fs.FileMode, durable bool) error {
	dir := filepath.Dir(p)
	tmp, err := os.CreateTemp(dir, ownPrefix+"-tmp-*")
	if err != nil {
		return fmt.Errorf("directory store: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("directory store: write %s: %w", p, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("directory store: %w", err)
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return fmt.Errorf("directory store: write %s: %w", p, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("directory store: write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("directory store: %w", err)
	}
	if durable {
		syncDir(dir)
	}
	return nil
}

// syncDir makes a rename or removal in dir durable; best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

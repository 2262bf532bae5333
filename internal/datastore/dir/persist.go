package dir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// The persisted index: <root>/.calyx.index lists, for each good file, its
// stat, the hash of its content, and for each of its YAML documents the
// document's byte range, first line, index and content hash, then the
// keys and revisions of its objects. A store starting (calyxctl, at every
// command) trusts it for the files whose stat has not changed and decodes
// only the others, and of those only the documents whose content hash the
// index does not list: the objects of the other documents are decoded when
// one is asked for (Get and a write decode the document holding the
// object; List and Watch decode all). Of the index itself it reads the
// file records at once, a file's documents and entries only when it needs
// that file (see materializeLocked). Any store rewrites it, atomically,
// once indexEvery files were decoded since it last did (indexFirst at its
// first read: the index was that stale), so keeping it costs a fraction
// of a full encoding per change.
//
// The format is text, one record a line, fields separated by tabs:
//
//	calyx-index-v2
//	F <size> <mtime ns> <inode> <sha256 of the content, hex> <path relative to the root, slashes>
//	D <byte offset> <byte length> <first line> <document index> <sha256 of the document, first 16 bytes, hex>
//	E <kind> <namespace> <name> <revision>
//	Z <CRC-32C of every byte before this line, hex>
//
// An F is followed by its D and E lines: E lines before the file's first
// D belong to a file cut into no documents (JSON), the others to the D
// before them. The D lines of a file cover it whole, in order. The
// trailer makes an index cut short or damaged be ignored; so is one of
// another version: the tree is then decoded, and the index written anew.
// Files are listed in path order.
const (
	indexName  = ownPrefix + ".index"
	indexMagic = "calyx-index-v2"
	indexEvery = 64
	indexFirst = 16
)

// castagnoli is the CRC-32C table (computed once by hash/crc32).
func castagnoli() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

func (s *Store) indexPath() string { return filepath.Join(s.root, indexName) }

// loadIndexLocked makes unparsed files of the persisted index's records:
// their stat and content hash are known at once (the walk that follows
// decodes the files whose stat changed and forgets those that are gone),
// their documents and entries are read from the index when needed (see
// materializeLocked). An unreadable or malformed index is ignored.
func (s *Store) loadIndexLocked() {
	data, err := os.ReadFile(s.indexPath())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("cannot read the directory store's index; decoding every file", "err", err)
		}
		return
	}
	files, text, err := parseIndex(data, s.root)
	if err != nil {
		s.log.Warn("the directory store's index is malformed or of another version; decoding every file", "err", err)
		return
	}
	first := len(s.files) == 0
	s.indexText, s.indexBlocks = text, make([]indexBlock, 0, len(files))
	for _, lf := range files {
		if old := s.files[lf.path]; old != nil {
			continue // read already
		}
		s.files[lf.path] = &file{stat: lf.stat, sum: lf.sum, block: lf.block}
		if lf.block != "" {
			s.unparsed++
			s.indexBlocks = append(s.indexBlocks, indexBlock{start: lf.blockAt, path: lf.path})
		}
	}
	slices.SortFunc(s.indexBlocks, func(a, b indexBlock) int { return a.start - b.start })
	if !first {
		// Not a first read: the merged view is not empty.
		s.materializeAllLocked()
	}
}

// The index's documents and entries of a file are parsed, and its keys
// merged into the store's view, only when needed: a store that touches
// one object (calyxctl) parses the files holding that key (found by a
// search of the index's text), those whose stat changed, and no other.
// Anything that needs the whole view (List, Watch, Problems) parses all.

// materializeLocked makes an unparsed file lazy: its documents and entries
// parsed from the index, its keys merged. A block of the index that does
// not parse (it passed the checksum: a bug) makes the file read whole.
func (s *Store) materializeLocked(p string, f *file) {
	if f.block == "" {
		return
	}
	lf, ok := s.takeBlockLocked(p, f)
	if !ok {
		s.readFile(p, true)
		return
	}
	f.docs = lf.docs
	s.idx.setEntries(s.files, p, f, lf.entries)
	f.encoded = lf.block[1:] + "\n"
	s.setLazyLocked(f, len(lf.entries) > 0)
}

// takeBlockLocked parses an unparsed file's block of the index and counts
// it done. A block that does not parse (it passed the checksum: a bug) is
// logged and the file's stat and sum forgotten, so that it is read whole;
// ok is false then.
func (s *Store) takeBlockLocked(p string, f *file) (lf indexedFile, ok bool) {
	lf = indexedFile{path: p, stat: f.stat, block: f.block}
	f.block = ""
	s.unparsedDone()
	if err := lf.parseBlock(); err != nil {
		s.log.Warn("the directory store's index is malformed; reading the file", "file", p, "err", err)
		f.sum, f.stat = [32]byte{}, fileStat{}
		return lf, false
	}
	return lf, true
}

// unparsedDone counts a file's block parsed (or dropped); the index's
// text is let go with the last.
func (s *Store) unparsedDone() {
	s.unparsed--
	if s.unparsed == 0 {
		s.indexText, s.indexBlocks, s.ensured = "", nil, nil
	}
}

// materializeAllLocked makes every unparsed file lazy.
func (s *Store) materializeAllLocked() {
	if s.unparsed == 0 {
		return
	}
	paths := make([]string, 0, s.unparsed)
	for p, f := range s.files {
		if f.block != "" {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	if len(s.idx.items) > 0 {
		for _, p := range paths {
			s.materializeLocked(p, s.files[p])
		}
		return
	}
	// A first read: the view is built in one pass.
	files := make([]indexedFile, 0, len(paths))
	n := 0
	var bad []string
	for _, p := range paths {
		f := s.files[p]
		lf, ok := s.takeBlockLocked(p, f)
		if !ok {
			bad = append(bad, p)
			continue
		}
		files = append(files, lf)
		n += len(lf.entries)
	}
	s.idx.load(files, n)
	for _, lf := range files {
		f := s.files[lf.path]
		f.docs, f.entries, f.encoded = lf.docs, lf.entries, lf.block[1:]+"\n"
		s.setLazyLocked(f, len(lf.entries) > 0)
	}
	for _, p := range bad {
		s.readFile(p, true)
	}
}

// ensureKeyLocked makes the unparsed files whose index lists key lazy,
// so that the view knows every definition of key. A store asked about
// many keys (a long-lived one, calyxctl applying a whole directory)
// parses the rest of the index at once instead of searching it for each.
func (s *Store) ensureKeyLocked(key policy.ObjectKey) {
	if s.unparsed == 0 || s.ensured[key] {
		return
	}
	if len(s.ensured) >= ensureMax {
		s.materializeAllLocked()
		return
	}
	if s.ensured == nil {
		s.ensured = map[policy.ObjectKey]bool{}
	}
	s.ensured[key] = true
	needle := "\nE\t" + string(key.Kind) + "\t" + key.Namespace + "\t" + key.Name + "\t"
	var paths []string
	text := s.indexText
	for at := 0; ; {
		i := strings.Index(text[at:], needle)
		if i < 0 {
			break
		}
		at += i
		// The block holding the hit: the last starting at or before it.
		b := sort.Search(len(s.indexBlocks), func(j int) bool { return s.indexBlocks[j].start > at }) - 1
		if b >= 0 {
			p := s.indexBlocks[b].path
			if f := s.files[p]; f != nil && f.block != "" && (len(paths) == 0 || paths[len(paths)-1] != p) {
				paths = append(paths, p)
			}
		}
		at++
	}
	slices.Sort(paths)
	for _, p := range paths {
		s.materializeLocked(p, s.files[p])
	}
}

// ensureMax is how many keys a store searches the index for before it
// parses it whole.
const ensureMax = 16

// indexBlock is where a file's block starts in the index's text.
type indexBlock struct {
	start int
	path  string
}

type indexedFile struct {
	path    string
	stat    fileStat
	sum     [32]byte
	block   string // the file's D and E lines, each after a newline
	blockAt int    // where block starts in the index's text
	// Parsed from block:
	docs    []docCache
	entries []entry
}

// parseIndex reads an index's header, trailer and file records, in path
// order (as written), their blocks not parsed; text is the
// index's, which their blocks are substrings of.
func parseIndex(data []byte, root string) (files []indexedFile, text string, err error) {
	text = string(data) // one allocation: the keys and revisions are its substrings
	if !strings.HasPrefix(text, indexMagic+"\n") {
		return nil, "", errors.New("no " + indexMagic + " header")
	}
	// The trailer: Z <crc>\n, last.
	body, whole := strings.CutSuffix(text, "\n")
	z := strings.LastIndexByte(body, '\n')
	if !whole || z < 0 || !strings.HasPrefix(body[z+1:], "Z\t") {
		return nil, "", errors.New("no trailer: cut short")
	}
	want, err := strconv.ParseUint(body[z+3:], 16, 32)
	if err != nil || crc32.Checksum(data[:z+1], castagnoli()) != uint32(want) {
		return nil, "", errors.New("checksum mismatch")
	}
	// From the newline ending the header to the one before the trailer.
	text = text[len(indexMagic) : z+1]
	var fields [7]string
	blockStart := 0
	endBlock := func(at int) {
		if len(files) > 0 {
			files[len(files)-1].block = text[blockStart:at]
			files[len(files)-1].blockAt = blockStart
		}
	}
	for at, line := 0, 2; at < len(text)-1; line++ {
		eol := at + 1 + strings.IndexByte(text[at+1:], '\n')
		if text[at+1] != 'F' {
			if len(files) == 0 {
				return nil, "", lineError(line)
			}
			at = eol
			continue
		}
		endBlock(at)
		if nf := splitFields(text[at+1:eol], fields[:]); nf != 6 || fields[0] != "F" {
			return nil, "", lineError(line)
		}
		size, err1 := strconv.ParseInt(fields[1], 10, 64)
		mtime, err2 := strconv.ParseInt(fields[2], 10, 64)
		ino, err3 := strconv.ParseUint(fields[3], 10, 64)
		var sum [32]byte
		_, err4 := hex.Decode(sum[:], []byte(fields[4]))
		if errors.Join(err1, err2, err3, err4) != nil || len(fields[4]) != 64 || fields[5] == "" {
			return nil, "", lineError(line)
		}
		p := filepath.Join(root, filepath.FromSlash(fields[5]))
		if len(files) > 0 && p <= files[len(files)-1].path {
			return nil, "", fmt.Errorf("line %d: %s out of order", line, p)
		}
		files = append(files, indexedFile{path: p, stat: fileStat{size: size, mtime: mtime, ino: ino}, sum: sum})
		at, blockStart = eol, eol
	}
	endBlock(len(text) - 1)
	return files, text, nil
}

// splitFields cuts a line at its tabs into fields, and returns how many
// there are (len(fields)+1 when there are more).
func splitFields(l string, fields []string) int {
	nf := 0
	for ; nf < len(fields); nf++ {
		tab := strings.IndexByte(l, '\t')
		if tab < 0 {
			fields[nf] = l
			return nf + 1
		}
		fields[nf] = l[:tab]
		l = l[tab+1:]
	}
	return nf + 1
}

// parseBlock parses the file's D and E lines into its documents and
// entries, checking the documents cover the file in order.
func (f *indexedFile) parseBlock() error {
	var (
		doc    *docCache
		counts []int // counts[i] is how many entries document i holds
		fields [7]string
	)
	text := f.block
	for line := 1; len(text) > 1; line++ {
		eol := 1 + strings.IndexByte(text[1:], '\n')
		if eol == 0 {
			eol = len(text)
		}
		l := text[1:eol]
		text = text[eol:]
		nf := splitFields(l, fields[:])
		bad := blockError{f.path, line}
		switch {
		case nf == 6 && fields[0] == "D" && (doc != nil || len(f.entries) == 0):
			off, err1 := strconv.Atoi(fields[1])
			size, err2 := strconv.Atoi(fields[2])
			first, err3 := strconv.Atoi(fields[3])
			di, err4 := strconv.Atoi(fields[4])
			var sum [16]byte
			_, err5 := hex.Decode(sum[:], []byte(fields[5]))
			if errors.Join(err1, err2, err3, err4, err5) != nil || len(fields[5]) != 32 || size < 0 || first < 1 || di < 0 {
				return bad
			}
			if doc == nil && off != 0 || doc != nil && (off != doc.off+doc.n || first <= doc.key.first || di < doc.key.doc) {
				return bad
			}
			f.docs = append(f.docs, docCache{key: docKey{first: first, doc: di, sum: sum}, off: off, n: size})
			doc = &f.docs[len(f.docs)-1]
			counts = append(counts, 0)
		case nf == 5 && fields[0] == "E":
			e := entry{key: policy.ObjectKey{Kind: policy.Kind(fields[1]), Namespace: fields[2], Name: fields[3]}, rev: fields[4]}
			if e.key.Kind == "" || e.key.Name == "" || e.rev == "" {
				return bad
			}
			f.entries = append(f.entries, e)
			if doc != nil {
				counts[len(counts)-1]++
			}
		default:
			return bad
		}
	}
	if len(f.docs) == 0 {
		return nil
	}
	last := f.docs[len(f.docs)-1]
	if int64(last.off+last.n) != f.stat.size {
		return fmt.Errorf("%s: documents do not cover the file", f.path)
	}
	at := 0
	for i, c := range counts {
		f.docs[i].entries = f.entries[at : at+c : at+c]
		at += c
	}
	return nil
}

// blockError is a malformed line of a file's block of the index.
type blockError struct {
	path string
	line int
}

func (e blockError) Error() string { return fmt.Sprintf("%s: line %d of its block", e.path, e.line) }

// lineError is a malformed line of the index.
type lineError int

func (l lineError) Error() string { return fmt.Sprintf("line %d", int(l)) }

// maybeSaveIndexLocked writes the persisted index when enough files were
// decoded since it was last written. Best effort: without it, the next
// store decodes more.
func (s *Store) maybeSaveIndexLocked(every int) {
	if s.decoded < every || s.closed {
		return
	}
	s.decoded = 0
	if err := writeFileAtomic(s.indexPath(), s.encodeIndexLocked(), 0o644, false); err != nil {
		s.log.Warn("cannot write the directory store's index", "err", err)
	}
}

// encodeIndexLocked is the persisted index of the store's good files.
func (s *Store) encodeIndexLocked() []byte {
	n := 0
	for _, f := range s.files {
		n += len(f.entries) + len(f.docs)
	}
	b := make([]byte, 0, 64+len(s.files)*160+n*72)
	b = append(b, indexMagic+"\n"...)
	// In path order: a store reading it need not sort.
	for _, p := range slices.Sorted(maps.Keys(s.files)) {
		f := s.files[p]
		if f.err != nil || f.truncated || f.sum == ([32]byte{}) {
			continue
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil || strings.ContainsAny(rel, "\t\n\r") {
			continue
		}
		if f.block == "" && f.encoded == "" {
			blk, ok := encodeBlock(f)
			if !ok {
				continue
			}
			f.encoded = blk
		}
		b = append(b, 'F', '\t')
		b = strconv.AppendInt(b, f.stat.size, 10)
		b = append(b, '\t')
		b = strconv.AppendInt(b, f.stat.mtime, 10)
		b = append(b, '\t')
		b = strconv.AppendUint(b, f.stat.ino, 10)
		b = append(b, '\t')
		b = hex.AppendEncode(b, f.sum[:])
		b = append(append(append(b, '\t'), filepath.ToSlash(rel)...), '\n')
		if f.block != "" {
			// As the index read gave it: the file has not changed.
			b = append(b, f.block[1:]...)
			b = append(b, '\n')
			continue
		}
		b = append(b, f.encoded...)
	}
	sum := crc32.Checksum(b, castagnoli())
	b = append(b, "Z\t"...)
	b = strconv.AppendUint(b, uint64(sum), 16)
	return append(b, '\n')
}

// encodeBlock is the D and E lines of file f, each ending in a newline;
// not ok when a key or revision cannot be written.
func encodeBlock(f *file) (string, bool) {
	if slices.ContainsFunc(f.entries, func(e entry) bool {
		return badField(string(e.key.Kind)) || badField(e.key.Namespace) || badField(e.key.Name) || badField(e.rev)
	}) {
		return "", false
	}
	b := make([]byte, 0, len(f.docs)*64+len(f.entries)*72)
	tab := func(b []byte, field string) []byte { return append(append(b, '\t'), field...) }
	writeEntry := func(e entry) {
		b = append(b, 'E')
		b = tab(tab(tab(tab(b, string(e.key.Kind)), e.key.Namespace), e.key.Name), e.rev)
		b = append(b, '\n')
	}
	if !docsCover(f) {
		for _, e := range f.entries {
			writeEntry(e)
		}
		return string(b), true
	}
	for _, d := range f.docs {
		b = append(b, 'D', '\t')
		b = strconv.AppendInt(b, int64(d.off), 10)
		b = append(b, '\t')
		b = strconv.AppendInt(b, int64(d.n), 10)
		b = append(b, '\t')
		b = strconv.AppendInt(b, int64(d.key.first), 10)
		b = append(b, '\t')
		b = strconv.AppendInt(b, int64(d.key.doc), 10)
		b = append(b, '\t')
		b = hex.AppendEncode(b, d.key.sum[:])
		b = append(b, '\n')
		for _, e := range d.entries {
			writeEntry(e)
		}
	}
	return string(b), true
}

// badField reports whether s cannot be a field of the index.
func badField(s string) bool {
	for i := range len(s) {
		if c := s[i]; c == '\t' || c == '\n' || c == '\r' {
			return true
		}
	}
	return false
}

// docsCover reports whether f's documents are its content cut whole,
// holding its entries in order: what the index's D lines must say.
func docsCover(f *file) bool {
	if len(f.docs) == 0 {
		return false
	}
	off, i := 0, 0
	for _, d := range f.docs {
		if d.off != off {
			return false
		}
		off += d.n
		for _, e := range d.entries {
			if i >= len(f.entries) || f.entries[i].key != e.key || f.entries[i].rev != e.rev {
				return false
			}
			i++
		}
	}
	return int64(off) == f.stat.size && i == len(f.entries)
}

// itemLocked returns the item in force for key, decoding the document
// that holds it if the persisted index spared it.
func (s *Store) itemLocked(ctx context.Context, key policy.ObjectKey) (datastore.Item, bool, error) {
	s.ensureKeyLocked(key)
	it, ok := s.idx.items[key]
	if ok && it.Object == nil {
		p := s.idx.where(key)
		if !s.decodeDocLocked(p, key) {
			if err := s.decodeLazyLocked(ctx, []string{p}); err != nil {
				return datastore.Item{}, false, err
			}
		}
		it, ok = s.idx.items[key]
	}
	if ok && it.Object == nil {
		return datastore.Item{}, false, fmt.Errorf("directory store: %s: cannot decode its file", key)
	}
	return it, ok, nil
}

// decodeDocLocked decodes the lazy document of file p that holds key,
// and only it, when the file is what the store knows of it: the same
// stat and content hash, and the document's bytes where it says, with
// their hash, holding the keys and revisions it lists. It reports false
// when any of that does not hold; the caller then decodes the file.
func (s *Store) decodeDocLocked(p string, key policy.ObjectKey) bool {
	f := s.files[p]
	if f == nil || !f.lazy || f.err != nil {
		return false
	}
	d, start := -1, 0
	for i, c := range f.docs {
		if slices.ContainsFunc(c.entries, func(e entry) bool { return e.key == key }) {
			d = i
			break
		}
		start += len(c.entries)
	}
	if d < 0 || !f.docs[d].lazyDoc() {
		return false
	}
	data, ok := s.readKnownLocked(p, f)
	if !ok {
		return false
	}
	c := f.docs[d]
	text, ok := docText(data, c)
	if !ok {
		return false
	}
	es, err := decodeDoc(text, c.key, p)
	s.docDecodes++
	if err != nil || len(es) != len(c.entries) || start+len(es) > len(f.entries) {
		return false
	}
	for i, e := range es {
		if e.key != c.entries[i].key || e.rev != c.entries[i].rev || f.entries[start+i].key != e.key {
			return false
		}
	}
	entries := slices.Clone(f.entries)
	copy(entries[start:], es)
	docs := slices.Clone(f.docs)
	docs[d].entries = es
	f.entries, f.docs = entries, docs
	for _, e := range es {
		s.idx.resolve(s.files, e.key)
	}
	s.setLazyLocked(f, slices.ContainsFunc(f.entries, func(e entry) bool { return e.obj == nil }))
	return true
}

// readKnownLocked reads file p if it is still the content the store
// knows (f): the same stat and content hash.
func (s *Store) readKnownLocked(p string, f *file) ([]byte, bool) {
	info, err := os.Stat(p)
	if err != nil || statOf(info) != f.stat {
		return nil, false
	}
	data, err := os.ReadFile(p)
	if err != nil || sha256.Sum256(data) != f.sum {
		return nil, false
	}
	return data, true
}

// docText returns the bytes of document c in data, checking they are one
// whole document as splitDocuments cuts data, at the line and index c
// says, with c's content hash.
func docText(data []byte, c docCache) ([]byte, bool) {
	segs := splitDocuments(data)
	for i, k := range docKeys(segs) {
		if k.first == c.key.first {
			ok := k == c.key && segs[i].off == c.off && len(segs[i].text) == c.n
			return segs[i].text, ok
		}
	}
	return nil, false
}

// decodeLazyLocked decodes the lazy files among paths (all of them when
// paths is nil).
func (s *Store) decodeLazyLocked(ctx context.Context, paths []string) error {
	if paths == nil {
		s.materializeAllLocked()
	}
	for _, p := range paths {
		if f := s.files[p]; f != nil {
			s.materializeLocked(p, f)
		}
	}
	if s.lazy == 0 {
		return nil
	}
	var jobs []*readJob
	add := func(p string) {
		if f := s.files[p]; f != nil && f.lazy {
			jobs = append(jobs, s.probeDecode(p))
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

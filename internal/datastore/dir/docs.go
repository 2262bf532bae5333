package dir

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"

	"github.com/calyxnet/calyx/policy"
)

// docCache is what one YAML document of a file decoded to. A file read
// again reuses the entries of every document found unchanged at the same
// line and index (a change of one policy in a file of hundreds decodes
// that one document).
//
// The documents of a file known only from the persisted index are lazy:
// their entries have keys and revisions but no objects (nor origins).
// Such a document (and one that holds no object) is reused wherever its
// content is found again, at any line (there is no position to get
// wrong), so a store that knows a file
// from the index decodes only the documents that differ from it.
type docCache struct {
	key     docKey
	off, n  int // the document's bytes in the file: [off, off+n)
	entries []entry
}

type docKey struct {
	first int      // the document's first line
	doc   int      // its index in the file
	sum   [16]byte // of its bytes: SHA-256, truncated
}

// docSum is the content hash of one document.
func docSum(text []byte) [16]byte {
	full := sha256.Sum256(text)
	return [16]byte(full[:16])
}

// lazyDoc reports whether the document's entries have no objects.
func (c docCache) lazyDoc() bool {
	return len(c.entries) > 0 && c.entries[0].obj == nil
}

// decodeFile decodes a file's content, reusing what prev (the documents
// of its previous content) holds for the documents that did not change,
// and returns the documents of this content for the next time (nil when
// the file cannot be cut into documents: JSON, or objects whose position
// is unknown) and how many documents it decoded (one for a JSON file).
func decodeFile(data []byte, p string, prev []docCache) ([]entry, []docCache, int, error) {
	if strings.EqualFold(filepath.Ext(p), ".json") {
		entries, err := decode(data, p)
		return entries, nil, 1, err
	}
	segs := splitDocuments(data)
	keys := docKeys(segs)
	known := make(map[docKey][]entry, len(prev))
	var lazy map[[16]byte][]entry
	for _, c := range prev {
		// Neither a lazy document nor one without objects has
		// positions to get wrong: found anywhere, it is reused.
		if c.lazyDoc() || len(c.entries) == 0 {
			if lazy == nil {
				lazy = make(map[[16]byte][]entry, len(prev))
			}
			lazy[c.key.sum] = c.entries
			continue
		}
		known[c.key] = c.entries
	}
	lookup := func(k docKey) ([]entry, bool) {
		if es, ok := known[k]; ok {
			return es, true
		}
		es, ok := lazy[k.sum]
		return es, ok
	}
	reuse := false
	for _, k := range keys {
		if _, ok := lookup(k); ok {
			reuse = true
			break
		}
	}
	if !reuse {
		// Nothing to reuse: one decoding of the whole stream.
		entries, err := decode(data, p)
		if err != nil {
			return nil, nil, len(segs), err
		}
		held := make([][]entry, len(segs))
		for _, e := range entries {
			i := segmentOf(segs, e.origin)
			if i < 0 {
				return entries, nil, len(segs), nil
			}
			held[i] = append(held[i], e)
		}
		docs := make([]docCache, len(segs))
		for i, k := range keys {
			docs[i] = docCache{key: k, off: segs[i].off, n: len(segs[i].text), entries: held[i]}
		}
		return entries, docs, len(segs), nil
	}
	var (
		entries []entry
		docs    = make([]docCache, 0, len(segs))
		verrs   policy.ValidationErrors
		decoded int
	)
	for i, seg := range segs {
		k := keys[i]
		if es, ok := lookup(k); ok {
			entries = append(entries, es...)
			docs = append(docs, docCache{key: k, off: seg.off, n: len(seg.text), entries: es})
			continue
		}
		decoded++
		es, err := decodeDoc(seg.text, k, p)
		if err != nil {
			var ve policy.ValidationErrors
			if !errors.As(err, &ve) {
				return nil, nil, len(segs), err
			}
			verrs = append(verrs, ve...)
			continue
		}
		entries = append(entries, es...)
		docs = append(docs, docCache{key: k, off: seg.off, n: len(seg.text), entries: es})
	}
	if len(verrs) > 0 {
		return nil, nil, decoded, verrs
	}
	return entries, docs, decoded, nil
}

// docKeys gives each segment of a file its line, document index and
// content hash.
func docKeys(segs []segment) []docKey {
	keys := make([]docKey, len(segs))
	doc := 0
	for i, seg := range segs {
		keys[i] = docKey{first: seg.first, doc: doc, sum: docSum(seg.text)}
		if i > 0 || seg.separated || !blank(seg.text) {
			doc++
		}
	}
	return keys
}

// decodeDoc decodes one document of file p alone: after as many empty
// lines as precede it, so that its lines are the file's, and with the
// document indexes of its objects and problems made the file's.
func decodeDoc(text []byte, k docKey, p string) ([]entry, error) {
	buf := make([]byte, 0, k.first-1+len(text))
	buf = append(append(buf, bytes.Repeat([]byte{'\n'}, k.first-1)...), text...)
	es, err := decode(buf, p)
	if err != nil {
		var ve policy.ValidationErrors
		if errors.As(err, &ve) {
			for _, e := range ve {
				e.Position.Doc += k.doc
			}
		}
		return nil, err
	}
	for _, e := range es {
		if e.origin != nil {
			e.origin.Doc += k.doc
		}
	}
	return es, nil
}

// blank reports whether text holds only empty lines and comments.
func blank(text []byte) bool {
	for line := range bytes.Lines(text) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}

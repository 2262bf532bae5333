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
type docCache struct {
	key     docKey
	entries []entry
}

type docKey struct {
	first int // the document's first line
	doc   int // its index in the file
	sum   [32]byte
}

// decodeFile decodes a file's content, reusing what prev (the documents
// of its previous content) holds for the documents that did not change,
// and returns the documents of this content for the next time (nil when
// the file cannot be cut into documents: JSON, or objects whose position
// is unknown).
func decodeFile(data []byte, p string, prev []docCache) ([]entry, []docCache, error) {
	if strings.EqualFold(filepath.Ext(p), ".json") {
		entries, err := decode(data, p)
		return entries, nil, err
	}
	segs := splitDocuments(data)
	keys := make([]docKey, len(segs))
	doc := 0
	for i, seg := range segs {
		keys[i] = docKey{first: seg.first, doc: doc, sum: sha256.Sum256(seg.text)}
		if i > 0 || seg.separated || !blank(seg.text) {
			doc++
		}
	}
	known := make(map[docKey][]entry, len(prev))
	for _, c := range prev {
		known[c.key] = c.entries
	}
	reuse := false
	for _, k := range keys {
		if _, ok := known[k]; ok {
			reuse = true
			break
		}
	}
	if !reuse {
		// Nothing to reuse: one decoding of the whole stream.
		entries, err := decode(data, p)
		if err != nil {
			return nil, nil, err
		}
		held := make([][]entry, len(segs))
		for _, e := range entries {
			i := segmentOf(segs, e.origin)
			if i < 0 {
				return entries, nil, nil
			}
			held[i] = append(held[i], e)
		}
		docs := make([]docCache, len(segs))
		for i, k := range keys {
			docs[i] = docCache{key: k, entries: held[i]}
		}
		return entries, docs, nil
	}
	var (
		entries []entry
		docs    = make([]docCache, 0, len(segs))
		verrs   policy.ValidationErrors
	)
	for i, seg := range segs {
		k := keys[i]
		if es, ok := known[k]; ok {
			entries = append(entries, es...)
			docs = append(docs, docCache{key: k, entries: es})
			continue
		}
		// Decoded alone, after as many empty lines as precede it, so
		// that its lines are the file's.
		text := append(bytes.Repeat([]byte{'\n'}, seg.first-1), seg.text...)
		es, err := decode(text, p)
		if err != nil {
			var ve policy.ValidationErrors
			if !errors.As(err, &ve) {
				return nil, nil, err
			}
			for _, e := range ve {
				e.Position.Doc += k.doc
			}
			verrs = append(verrs, ve...)
			continue
		}
		for _, e := range es {
			if e.origin != nil {
				e.origin.Doc += k.doc
			}
		}
		entries = append(entries, es...)
		docs = append(docs, docCache{key: k, entries: es})
	}
	if len(verrs) > 0 {
		return nil, nil, verrs
	}
	return entries, docs, nil
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

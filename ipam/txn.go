package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// txn is one run of a read-modify-write: it caches every record read,
// tracks which ones change, and turns the changes into compare-and-swap
// ops against the revisions it read. A run is discarded and redone on
// conflict, so it holds no state beyond one run.
type txn struct {
	r     Reader
	now   int64
	ents  map[string]*entry
	pools []Pool
	// blocks lists every block prefix once listBlocks ran, including blocks
	// created by this run.
	blocks []netip.Prefix
	listed bool
}

type entry struct {
	rev    int64
	raw    []byte
	val    any // *blockRecord, *nodeRecord, *handleRecord or Pool; nil if absent
	dirty  bool
	del    bool
	touch  bool // rewrite unchanged, to bump the revision
	check  bool // commit only if unchanged
	loaded bool
}

func newTxn(r Reader, now int64) *txn {
	return &txn{r: r, now: now, ents: map[string]*entry{}}
}

func decodeAny(key string, raw []byte) (any, error) {
	switch {
	case strings.HasPrefix(key, blockPrefix):
		return decodeBlock(raw)
	case strings.HasPrefix(key, nodePrefix):
		return decodeNode(raw)
	case strings.HasPrefix(key, handlePrefix):
		return decodeHandle(raw)
	case strings.HasPrefix(key, poolPrefix):
		return decodePool(raw)
	}
	return nil, fmt.Errorf("%w: key %q", ErrInvalid, key)
}

// remember records a read value unless the key is already cached.
func (t *txn) remember(kv KV) {
	if _, ok := t.ents[kv.Key]; ok {
		return
	}
	t.ents[kv.Key] = &entry{rev: kv.Revision, raw: kv.Value}
}

// get returns the decoded record under key, or nil when absent.
func (t *txn) get(key string) (any, error) {
	e, ok := t.ents[key]
	if !ok {
		kvs, err := t.r.Get(key)
		if err != nil {
			return nil, err
		}
		e = &entry{rev: kvs[0].Revision, raw: kvs[0].Value}
		t.ents[key] = e
	}
	if !e.loaded {
		e.loaded = true
		if e.raw != nil {
			v, err := decodeAny(key, e.raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			e.val = v
		}
	}
	if e.del {
		return nil, nil
	}
	return e.val, nil
}

// prefetch reads keys not yet cached in one store call.
func (t *txn) prefetch(keys ...string) error {
	var miss []string
	for _, k := range keys {
		if _, ok := t.ents[k]; !ok {
			miss = append(miss, k)
		}
	}
	if len(miss) == 0 {
		return nil
	}
	kvs, err := t.r.Get(miss...)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		t.remember(kv)
	}
	return nil
}

func (t *txn) block(p netip.Prefix) (*blockRecord, error) {
	v, err := t.get(blockKey(p))
	if v == nil || err != nil {
		return nil, err
	}
	return v.(*blockRecord), nil
}

func (t *txn) node(name string) (*nodeRecord, error) {
	v, err := t.get(nodeKey(name))
	if v == nil || err != nil {
		return nil, err
	}
	return v.(*nodeRecord), nil
}

func (t *txn) handle(id string) (*handleRecord, error) {
	v, err := t.get(handleKey(id))
	if v == nil || err != nil {
		return nil, err
	}
	return v.(*handleRecord), nil
}

// put stores v under key in this run's writes.
func (t *txn) put(key string, v any) {
	e, ok := t.ents[key]
	if !ok {
		// Never read: the key must not exist (revision 0).
		e = &entry{}
		t.ents[key] = e
	}
	e.loaded, e.val, e.dirty, e.del = true, v, true, false
	if b, ok := v.(*blockRecord); ok && t.listed && !slices.Contains(t.blocks, b.CIDR) {
		t.blocks = append(t.blocks, b.CIDR)
	}
}

func (t *txn) del(key string) {
	if e, ok := t.ents[key]; ok {
		e.del, e.dirty = true, true
	}
	if p, err := parseBlockKey(key); err == nil && t.listed {
		t.blocks = slices.DeleteFunc(t.blocks, func(q netip.Prefix) bool { return q == p })
	}
}

func (t *txn) touch(key string) {
	if e, ok := t.ents[key]; ok && e.raw != nil {
		e.touch = true
	}
}

// check makes the commit conditional on key being unchanged since read.
func (t *txn) check(key string) {
	if e, ok := t.ents[key]; ok {
		e.check = true
	}
}

// loadPools reads every pool once per run.
func (t *txn) loadPools() ([]Pool, error) {
	if t.pools != nil {
		return t.pools, nil
	}
	kvs, err := t.r.List(poolPrefix)
	if err != nil {
		return nil, err
	}
	t.pools = []Pool{}
	for _, kv := range kvs {
		t.remember(kv)
		v, err := t.get(kv.Key)
		if err != nil {
			return nil, err
		}
		if p, ok := v.(Pool); ok {
			t.pools = append(t.pools, p)
		}
	}
	return t.pools, nil
}

// listBlocks returns every block prefix in the store (and this run).
func (t *txn) listBlocks() ([]netip.Prefix, error) {
	if t.listed {
		return t.blocks, nil
	}
	kvs, err := t.r.List(blockPrefix)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		p, err := parseBlockKey(kv.Key)
		if err != nil {
			continue // Check reports malformed keys
		}
		t.remember(kv)
		if e := t.ents[kv.Key]; e.del {
			continue
		}
		t.blocks = append(t.blocks, p)
	}
	// Blocks this run created before listing.
	for _, e := range t.ents {
		if b, ok := e.val.(*blockRecord); ok && e.dirty && !e.del && e.rev == 0 {
			t.blocks = append(t.blocks, b.CIDR)
		}
	}
	t.listed = true
	return t.blocks, nil
}

func encodeRecord(v any) ([]byte, error) {
	switch r := v.(type) {
	case *blockRecord:
		return r.encode(), nil
	case *nodeRecord:
		return r.encode(), nil
	}
	return json.Marshal(v)
}

// reads returns a check op for every key this run read, to confirm that
// a decision taken on them still holds.
func (t *txn) reads() []Op {
	ops := make([]Op, 0, len(t.ents))
	for k, e := range t.ents {
		if !e.dirty || e.rev != 0 {
			ops = append(ops, Op{Kind: OpCheck, Key: k, Revision: e.rev})
		}
	}
	slices.SortFunc(ops, func(a, b Op) int { return strings.Compare(a.Key, b.Key) })
	return ops
}

// ops turns this run's changes into compare-and-swap ops, sorted by key.
func (t *txn) ops() ([]Op, error) {
	var ops []Op
	for k, e := range t.ents {
		switch {
		case e.del && e.dirty:
			if e.rev != 0 {
				ops = append(ops, Op{Kind: OpDelete, Key: k, Revision: e.rev})
			}
		case e.dirty:
			raw, err := encodeRecord(e.val)
			if err != nil {
				return nil, fmt.Errorf("ipam: encode %s: %w", k, err)
			}
			ops = append(ops, Op{Kind: OpPut, Key: k, Revision: e.rev, Value: raw})
		case e.touch:
			ops = append(ops, Op{Kind: OpPut, Key: k, Revision: e.rev, Value: e.raw})
		case e.check:
			ops = append(ops, Op{Kind: OpCheck, Key: k, Revision: e.rev})
		}
	}
	slices.SortFunc(ops, func(a, b Op) int { return strings.Compare(a.Key, b.Key) })
	return ops, nil
}

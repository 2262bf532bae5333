package ipam

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// MemoryStore is a [Store] held in memory, for tests and examples. It is
// safe for concurrent use. It deliberately does not implement [Updater],
// so code running on it goes through the optimistic compare-and-swap loop
// that the etcd store uses.
type MemoryStore struct {
	mu     sync.Mutex
	rev    int64
	data   map[string]KV
	keys   []string // sorted, so List costs what it returns
	closed bool
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{data: map[string]KV{}}
}

// Get implements [Store].
func (m *MemoryStore) Get(ctx context.Context, keys ...string) ([]KV, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make([]KV, len(keys))
	for i, k := range keys {
		kv, ok := m.data[k]
		if !ok {
			kv = KV{Key: k}
		}
		out[i] = kv
	}
	return out, nil
}

// List implements [Store].
func (m *MemoryStore) List(ctx context.Context, prefix string) ([]KV, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []KV
	i, _ := slices.BinarySearch(m.keys, prefix)
	for ; i < len(m.keys) && strings.HasPrefix(m.keys[i], prefix); i++ {
		out = append(out, m.data[m.keys[i]])
	}
	return out, nil
}

// Commit implements [Store].
func (m *MemoryStore) Commit(ctx context.Context, ops ...Op) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	if err := checkOps(ops, func(k string) int64 { return m.data[k].Revision }); err != nil {
		return 0, err
	}
	m.rev++
	for _, op := range ops {
		switch op.Kind {
		case OpPut:
			if _, ok := m.data[op.Key]; !ok {
				i, _ := slices.BinarySearch(m.keys, op.Key)
				m.keys = slices.Insert(m.keys, i, op.Key)
			}
			m.data[op.Key] = KV{Key: op.Key, Value: slices.Clone(op.Value), Revision: m.rev}
		case OpDelete:
			if _, ok := m.data[op.Key]; ok {
				i, _ := slices.BinarySearch(m.keys, op.Key)
				m.keys = slices.Delete(m.keys, i, i+1)
			}
			delete(m.data, op.Key)
		}
	}
	return m.rev, nil
}

// Close implements [Store]; later calls fail with [ErrClosed].
func (m *MemoryStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

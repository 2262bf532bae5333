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
	for k, kv := range m.data {
		if strings.HasPrefix(k, prefix) {
			out = append(out, kv)
		}
	}
	slices.SortFunc(out, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
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
			m.data[op.Key] = KV{Key: op.Key, Value: slices.Clone(op.Value), Revision: m.rev}
		case OpDelete:
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

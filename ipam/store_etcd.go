package ipam

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdStore is the multi-node [Store]: etcd v3, every commit one
// transaction whose conditions compare each key's mod revision (or, for
// "must not exist", its create revision). Keys live under a prefix so one
// etcd can hold other data too.
//
// etcd limits the number of operations in one transaction (--max-txn-ops,
// 128 by default); the allocator keeps its commits far below that.
type EtcdStore struct {
	c      *clientv3.Client
	prefix string
	own    bool
}

const dialTimeout = 5 * time.Second

// DefaultEtcdPrefix is where [NewEtcdStore] keeps keys when given "".
const DefaultEtcdPrefix = "/calyx/ipam/v1/"

// NewEtcdStore uses an existing client; Close does not close it.
func NewEtcdStore(c *clientv3.Client, prefix string) *EtcdStore {
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	return &EtcdStore{c: c, prefix: prefix}
}

// DialEtcd connects to etcd endpoints (such as http://127.0.0.1:2379);
// Close closes the connection.
func DialEtcd(ctx context.Context, endpoints []string, prefix string) (*EtcdStore, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, Context: ctx, DialTimeout: dialTimeout})
	if err != nil {
		return nil, fmt.Errorf("ipam: dial etcd %v: %w", endpoints, err)
	}
	s := NewEtcdStore(c, prefix)
	s.own = true
	return s, nil
}

// Get implements [Store]; all keys are read in one transaction, so they
// come from one revision.
func (s *EtcdStore) Get(ctx context.Context, keys ...string) ([]KV, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(s.prefix + k)
	}
	resp, err := s.c.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("ipam: etcd get: %w", err)
	}
	out := make([]KV, len(keys))
	for i, r := range resp.Responses {
		out[i] = KV{Key: keys[i]}
		if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			out[i].Value = rr.Kvs[0].Value
			out[i].Revision = rr.Kvs[0].ModRevision
		}
	}
	return out, nil
}

// List implements [Store].
func (s *EtcdStore) List(ctx context.Context, prefix string) ([]KV, error) {
	resp, err := s.c.Get(ctx, s.prefix+prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("ipam: etcd list %q: %w", prefix, err)
	}
	out := make([]KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, KV{Key: strings.TrimPrefix(string(kv.Key), s.prefix), Value: kv.Value, Revision: kv.ModRevision})
	}
	return out, nil
}

// Commit implements [Store].
func (s *EtcdStore) Commit(ctx context.Context, ops ...Op) (int64, error) {
	var cmps []clientv3.Cmp
	var then []clientv3.Op
	for _, op := range ops {
		k := s.prefix + op.Key
		if op.Revision == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", op.Revision))
		}
		switch op.Kind {
		case OpPut:
			then = append(then, clientv3.OpPut(k, string(op.Value)))
		case OpDelete:
			then = append(then, clientv3.OpDelete(k))
		}
	}
	resp, err := s.c.Txn(ctx).If(cmps...).Then(then...).Commit()
	if err != nil {
		return 0, fmt.Errorf("ipam: etcd commit: %w", err)
	}
	if !resp.Succeeded {
		return 0, &ConflictError{Got: -1}
	}
	return resp.Header.Revision, nil
}

// Close implements [Store].
func (s *EtcdStore) Close() error {
	if s.own {
		return s.c.Close()
	}
	return nil
}

package ipam

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
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

// Snapshot implements [Snapshotter].
func (s *EtcdStore) Snapshot(ctx context.Context) Reader {
	return &etcdSnapshot{s: s, ctx: ctx}
}

// etcdSnapshot pins every read to the revision of its first read.
type etcdSnapshot struct {
	s   *EtcdStore
	ctx context.Context
	rev int64
}

func (r *etcdSnapshot) opts() []clientv3.OpOption {
	if r.rev == 0 {
		return nil
	}
	return []clientv3.OpOption{clientv3.WithRev(r.rev)}
}

func (r *etcdSnapshot) Get(keys ...string) ([]KV, error) {
	kvs, rev, err := r.s.get(r.ctx, r.opts(), keys...)
	if r.rev == 0 {
		r.rev = rev
	}
	return kvs, err
}

func (r *etcdSnapshot) List(prefix string) ([]KV, error) {
	kvs, rev, err := r.s.list(r.ctx, r.opts(), prefix)
	if r.rev == 0 {
		r.rev = rev
	}
	return kvs, err
}

// Get implements [Store]; all keys are read in one transaction, so they
// come from one revision.
func (s *EtcdStore) Get(ctx context.Context, keys ...string) ([]KV, error) {
	kvs, _, err := s.get(ctx, nil, keys...)
	return kvs, err
}

func (s *EtcdStore) get(ctx context.Context, opts []clientv3.OpOption, keys ...string) ([]KV, int64, error) {
	if len(keys) == 0 {
		return nil, 0, nil
	}
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(s.prefix+k, opts...)
	}
	resp, err := s.c.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, 0, etcdReadErr("get", err)
	}
	out := make([]KV, len(keys))
	for i, r := range resp.Responses {
		out[i] = KV{Key: keys[i]}
		if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			out[i].Value = rr.Kvs[0].Value
			out[i].Revision = rr.Kvs[0].ModRevision
		}
	}
	return out, resp.Header.Revision, nil
}

// etcdReadErr turns a read of a compacted revision into a conflict, so
// the update starts over from the present.
func etcdReadErr(what string, err error) error {
	if errors.Is(err, rpctypes.ErrCompacted) {
		return &ConflictError{Got: -1}
	}
	return fmt.Errorf("ipam: etcd %s: %w", what, err)
}

// List implements [Store].
func (s *EtcdStore) List(ctx context.Context, prefix string) ([]KV, error) {
	kvs, _, err := s.list(ctx, nil, prefix)
	return kvs, err
}

func (s *EtcdStore) list(ctx context.Context, opts []clientv3.OpOption, prefix string) ([]KV, int64, error) {
	opts = append([]clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}, opts...)
	resp, err := s.c.Get(ctx, s.prefix+prefix, opts...)
	if err != nil {
		return nil, 0, etcdReadErr("list", err)
	}
	out := make([]KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, KV{Key: strings.TrimPrefix(string(kv.Key), s.prefix), Value: kv.Value, Revision: kv.ModRevision})
	}
	return out, resp.Header.Revision, nil
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

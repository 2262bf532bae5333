// Package etcd is the etcd v3 datastore, for clusters: every object is one
// key under a prefix,
//
//	<prefix><kind>/<namespace>/<name>   namespaced kinds
//	<prefix><kind>/<name>               cluster-scoped kinds
//
// with the kind in lower case (globalnetworkpolicy, networkpolicy,
// kubernetesnetworkpolicy, pod …) and the default prefix /calyx/v1/. The
// value is the object as JSON, apiVersion and kind included, without
// metadata.resourceVersion.
//
// An object's revision is its key's mod revision (decimal); Create,
// Replace and Delete are transactions comparing it, so concurrent writers
// never lose each other's changes. Watch lists the prefix at a revision R,
// then watches from R+1; after a compaction or a lost watch it lists again
// and sends only the differences, so consumers see every object's latest
// state and every delete exactly as if nothing had been missed.
//
// A value that does not decode (written by hand with etcdctl) is reported
// as an EventError naming the key, and the last good version read by this
// process stays in force; an EventRecovered names the key once it decodes
// again or is deleted. A failed list or watch is an EventError naming the
// prefix, recovered at the next list that works.
package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// DefaultPrefix is where objects live unless Options.Prefix says
// otherwise.
const DefaultPrefix = "/calyx/v1/"

// Options are the optional knobs of New and Dial.
type Options struct {
	// Prefix is the key prefix; "" means DefaultPrefix. A missing
	// trailing slash is added.
	Prefix string
	// RequestTimeout bounds each read or write; 0 means 10 s.
	RequestTimeout time.Duration
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Config is how to reach an etcd cluster.
type Config struct {
	// Endpoints are the client URLs, e.g. http://127.0.0.1:2379.
	Endpoints []string
	// CACertFile, CertFile and KeyFile configure TLS (all optional).
	CACertFile, CertFile, KeyFile string
	// Username and Password authenticate, when set.
	Username, Password string
	// DialTimeout bounds connecting; 0 means 5 s.
	DialTimeout time.Duration
}

// Store is an etcd datastore. Use New or Dial.
type Store struct {
	c       *clientv3.Client
	own     bool
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	kinds   map[string]policy.Kind

	mu       sync.Mutex
	lastGood map[string]datastore.Item // by etcd key: for values that stop decoding
	closed   bool
	done     chan struct{}
}

var _ datastore.Store = (*Store)(nil)

// New returns a store over an existing client; Close does not close it.
func New(c *clientv3.Client, opts Options) *Store {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kinds := map[string]policy.Kind{}
	for _, k := range datastore.Kinds() {
		kinds[strings.ToLower(string(k))] = k
	}
	return &Store{c: c, prefix: prefix, timeout: opts.RequestTimeout, log: log, kinds: kinds,
		lastGood: map[string]datastore.Item{}, done: make(chan struct{})}
}

// Dial connects to etcd and returns a store that owns the client.
func Dial(ctx context.Context, cfg Config, opts Options) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints")
	}
	// The client's own logger would print retries to stderr: errors
	// reach the caller as errors instead.
	cc := clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: cfg.DialTimeout, Username: cfg.Username, Password: cfg.Password, Logger: zap.NewNop()}
	if cc.DialTimeout == 0 {
		cc.DialTimeout = 5 * time.Second
	}
	if cfg.CACertFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" {
		tls, err := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CACertFile}.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd store: TLS: %w", err)
		}
		cc.TLS = tls
	}
	c, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd store: dial %v: %w", cfg.Endpoints, err)
	}
	s := New(c, opts)
	s.own = true
	return s, nil
}

// Client returns the etcd client.
func (s *Store) Client() *clientv3.Client { return s.c }

// Key returns the etcd key of an object.
func (s *Store) Key(k policy.ObjectKey) string {
	kind := strings.ToLower(string(k.Kind))
	if k.Kind.Namespaced() {
		return s.prefix + kind + "/" + k.Namespace + "/" + k.Name
	}
	return s.prefix + kind + "/" + k.Name
}

// parseKey is the inverse of Key; ok is false for keys that are not ours.
func (s *Store) parseKey(key string) (policy.ObjectKey, bool) {
	rest, found := strings.CutPrefix(key, s.prefix)
	if !found {
		return policy.ObjectKey{}, false
	}
	parts := strings.Split(rest, "/")
	k, ok := s.kinds[parts[0]]
	switch {
	case !ok:
		return policy.ObjectKey{}, false
	case k.Namespaced() && len(parts) == 3 && parts[1] != "" && parts[2] != "":
		return policy.ObjectKey{Kind: k, Namespace: parts[1], Name: parts[2]}, true
	case !k.Namespaced() && len(parts) == 2 && parts[1] != "":
		return policy.ObjectKey{Kind: k, Name: parts[1]}, true
	}
	return policy.ObjectKey{}, false
}

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, datastore.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	return ctx, cancel, nil
}

// decode reads one value; the object must be the one its key names.
func (s *Store) decode(key string, value []byte, modRev int64) (datastore.Item, error) {
	want, ok := s.parseKey(key)
	if !ok {
		return datastore.Item{}, fmt.Errorf("etcd store: %s: not a key of this store", key)
	}
	obj, ok := fastDecode(want.Kind, value)
	if !ok {
		// The strict decoder says what is wrong, with field paths.
		res, err := policy.DecodeWithOptions(bytes.NewReader(value), key, policy.DecodeOptions{})
		if err != nil {
			return datastore.Item{}, fmt.Errorf("etcd store: %s: %w", key, err)
		}
		if len(res.Objects) != 1 {
			return datastore.Item{}, fmt.Errorf("etcd store: %s: %d objects in one value", key, len(res.Objects))
		}
		obj = res.Objects[0]
	}
	if got := policy.KeyOf(obj); got != want {
		return datastore.Item{}, fmt.Errorf("etcd store: %s holds %s", key, got)
	}
	rev := strconv.FormatInt(modRev, 10)
	obj.SetResourceVersion(rev)
	return datastore.Item{Object: obj, Revision: rev}, nil
}

// fastDecode reads a value as this store writes it: the JSON of the
// object, with nothing unknown, valid. Anything else (a value written by
// hand) is left to the strict decoder; false says so.
func fastDecode(k policy.Kind, value []byte) (policy.Object, bool) {
	obj := datastore.NewObject(k)
	if obj == nil {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil || dec.More() {
		return nil, false
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind != k.WireName() || gvk.GroupVersion().String() != k.APIVersion() {
		return nil, false
	}
	if policy.Validate(obj, nil) != nil {
		return nil, false
	}
	return obj, true
}

// decodeKeep decodes a value and remembers it as the key's last good
// version; a value that does not decode gives the last good version (ok)
// and the error.
func (s *Store) decodeKeep(key string, value []byte, modRev int64) (it datastore.Item, ok bool, err error) {
	it, err = s.decode(key, value, modRev)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.lastGood[key] = it
		return it, true, nil
	}
	s.log.Warn("etcd value does not decode; its last good version stays in force", "key", key, "err", err)
	it, ok = s.lastGood[key]
	return it, ok, err
}

func (s *Store) forget(key string) {
	s.mu.Lock()
	delete(s.lastGood, key)
	s.mu.Unlock()
}

// List implements datastore.Store. A value that does not decode is
// listed at its last good version (if this process read one), else left
// out and logged.
func (s *Store) List(ctx context.Context) ([]datastore.Item, error) {
	items, _, _, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]datastore.Item, 0, len(items))
	for _, it := range items {
		cp, err := copyItem(it.Item)
		if err != nil {
			return nil, err
		}
		out = append(out, cp)
	}
	datastore.SortItems(out)
	return out, nil
}

// listed is one key of a list.
type listed struct {
	key string
	datastore.Item
}

// list reads the prefix: the decodable objects, the problems, and the
// revision the list was read at.
func (s *Store) list(ctx context.Context) ([]listed, []datastore.Event, int64, error) {
	ctx, cancel, err := s.ctx(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	defer cancel()
	resp, err := s.c.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, 0, fmt.Errorf("etcd store: list %s: %w", s.prefix, err)
	}
	var items []listed
	var problems []datastore.Event
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		it, ok, err := s.decodeKeep(key, kv.Value, kv.ModRevision)
		if err != nil {
			problems = append(problems, datastore.Event{Type: datastore.EventError, Source: key, Err: err})
		}
		if ok {
			items = append(items, listed{key: key, Item: it})
		}
	}
	return items, problems, resp.Header.Revision, nil
}

// Get implements datastore.Store.
func (s *Store) Get(ctx context.Context, key policy.ObjectKey) (datastore.Item, error) {
	ctx, cancel, err := s.ctx(ctx)
	if err != nil {
		return datastore.Item{}, err
	}
	defer cancel()
	k := s.Key(key)
	resp, err := s.c.Get(ctx, k)
	if err != nil {
		return datastore.Item{}, fmt.Errorf("etcd store: get %s: %w", k, err)
	}
	if len(resp.Kvs) == 0 {
		return datastore.Item{}, fmt.Errorf("%s: %w", key, datastore.ErrNotFound)
	}
	it, ok, err := s.decodeKeep(k, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	if !ok {
		return datastore.Item{}, err
	}
	return copyItem(it)
}

func copyItem(it datastore.Item) (datastore.Item, error) {
	obj, err := datastore.Copy(it.Object)
	if err != nil {
		return datastore.Item{}, err
	}
	it.Object = obj
	return it, nil
}

// encode prepares an object for storing.
func encode(obj policy.Object) (policy.Object, []byte, error) {
	obj, err := datastore.Prepare(obj)
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd store: encode %s: %w", policy.KeyOf(obj), err)
	}
	return obj, b, nil
}

// Create implements datastore.Store.
func (s *Store) Create(ctx context.Context, obj policy.Object) (datastore.Item, error) {
	return s.put(ctx, obj, func(k string) (clientv3.Cmp, error) {
		return clientv3.Compare(clientv3.CreateRevision(k), "=", 0), datastore.ErrExists
	})
}

// Replace implements datastore.Store.
func (s *Store) Replace(ctx context.Context, obj policy.Object, revision string) (datastore.Item, error) {
	return s.put(ctx, obj, func(k string) (clientv3.Cmp, error) {
		return s.revisionCmp(k, revision)
	})
}

// revisionCmp is the condition of a write at revision ("" is any) and the
// error when it fails with the key present.
func (s *Store) revisionCmp(k, revision string) (clientv3.Cmp, error) {
	if revision == "" {
		return clientv3.Compare(clientv3.CreateRevision(k), ">", 0), nil
	}
	rev, err := strconv.ParseInt(revision, 10, 64)
	if err != nil || rev <= 0 {
		// Not a revision of this store: it cannot match.
		rev = -1
	}
	return clientv3.Compare(clientv3.ModRevision(k), "=", rev), datastore.ErrConflict
}

// Apply implements datastore.Store.
func (s *Store) Apply(ctx context.Context, obj policy.Object) (datastore.Item, error) {
	return s.put(ctx, obj, nil)
}

// put writes obj, under cond when given; cond also returns the error for
// a failed condition with the key present (absent keys give ErrNotFound,
// except for Create).
func (s *Store) put(ctx context.Context, obj policy.Object, cond func(k string) (clientv3.Cmp, error)) (datastore.Item, error) {
	obj, value, err := encode(obj)
	if err != nil {
		return datastore.Item{}, err
	}
	ctx, cancel, err := s.ctx(ctx)
	if err != nil {
		return datastore.Item{}, err
	}
	defer cancel()
	key := policy.KeyOf(obj)
	k := s.Key(key)
	var rev int64
	if cond == nil {
		resp, err := s.c.Put(ctx, k, string(value))
		if err != nil {
			return datastore.Item{}, fmt.Errorf("etcd store: put %s: %w", k, err)
		}
		rev = resp.Header.Revision
	} else {
		cmp, failErr := cond(k)
		resp, err := s.c.Txn(ctx).If(cmp).Then(clientv3.OpPut(k, string(value))).Else(clientv3.OpGet(k, clientv3.WithCountOnly())).Commit()
		if err != nil {
			return datastore.Item{}, fmt.Errorf("etcd store: put %s: %w", k, err)
		}
		if !resp.Succeeded {
			if failErr != datastore.ErrExists && resp.Responses[0].GetResponseRange().Count == 0 {
				failErr = datastore.ErrNotFound
			}
			return datastore.Item{}, fmt.Errorf("%s: %w", key, failErr)
		}
		rev = resp.Header.Revision
	}
	r := strconv.FormatInt(rev, 10)
	obj.SetResourceVersion(r)
	it := datastore.Item{Object: obj, Revision: r}
	s.mu.Lock()
	s.lastGood[k] = it
	s.mu.Unlock()
	return copyItem(it)
}

// Delete implements datastore.Store.
func (s *Store) Delete(ctx context.Context, key policy.ObjectKey, revision string) error {
	ctx, cancel, err := s.ctx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	k := s.Key(key)
	cmp, failErr := s.revisionCmp(k, revision)
	resp, err := s.c.Txn(ctx).If(cmp).Then(clientv3.OpDelete(k)).Else(clientv3.OpGet(k, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return fmt.Errorf("etcd store: delete %s: %w", k, err)
	}
	if !resp.Succeeded {
		if failErr == nil || resp.Responses[0].GetResponseRange().Count == 0 {
			failErr = datastore.ErrNotFound
		}
		return fmt.Errorf("%s: %w", key, failErr)
	}
	s.forget(k)
	return nil
}

// Close implements datastore.Store: watches end; the client is closed if
// Dial made it.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	if s.own {
		return s.c.Close()
	}
	return nil
}

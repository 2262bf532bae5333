package etcd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/internal/etcdtest"
	"github.com/calyxnet/calyx/policy"
)

func client(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// prefixFor gives every test its own keys on the shared server.
func prefixFor(t *testing.T) string {
	return "/test/" + strings.ReplaceAll(t.Name(), "/", "_") + "/"
}

func TestContract(t *testing.T) {
	url := etcdtest.Start(t)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) datastore.Store {
			return New(client(t, url), Options{Prefix: prefixFor(t)})
		},
		Reopen: func(t *testing.T, s datastore.Store) datastore.Store {
			return New(client(t, url), Options{Prefix: s.(*Store).prefix})
		},
		Break: func(t *testing.T, s datastore.Store, key policy.ObjectKey) {
			es := s.(*Store)
			_, err := es.c.Put(t.Context(), es.Key(key), `{"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {"name": "`+key.Name+`"}, "spec": {"selector": "app =="}}`)
			require.NoError(t, err)
		},
		Fix: func(t *testing.T, s datastore.Store, key policy.ObjectKey) {
			// The last good version, written back as the store writes.
			it, err := s.Get(t.Context(), key)
			require.NoError(t, err)
			_, err = s.Apply(t.Context(), it.Object)
			require.NoError(t, err)
		},
	})
}

func TestKeys(t *testing.T) {
	s := New(nil, Options{Prefix: "/p"})
	tests := []struct {
		key  policy.ObjectKey
		want string
	}{
		{policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "security.deny"}, "/p/globalnetworkpolicy/security.deny"},
		{policy.ObjectKey{Kind: policy.KindNetworkPolicy, Namespace: "shop", Name: "web"}, "/p/networkpolicy/shop/web"},
		{policy.ObjectKey{Kind: policy.KindK8sNetworkPolicy, Namespace: "shop", Name: "web"}, "/p/kubernetesnetworkpolicy/shop/web"},
		{policy.ObjectKey{Kind: policy.KindPod, Namespace: "shop", Name: "web-0"}, "/p/pod/shop/web-0"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, s.Key(tt.key))
			got, ok := s.parseKey(tt.want)
			require.True(t, ok)
			assert.Equal(t, tt.key, got)
		})
	}
	for _, bad := range []string{"/q/pod/a/b", "/p/pod/a", "/p/globalnetworkpolicy/a/b", "/p/service/a", "/p/pod//b"} {
		_, ok := s.parseKey(bad)
		assert.False(t, ok, bad)
	}
	assert.Equal(t, DefaultPrefix+"tier/t", New(nil, Options{}).Key(policy.ObjectKey{Kind: policy.KindTier, Name: "t"}))
}

// TestWatchResumesAfterCompaction lists at a revision, lets the history
// it would watch from be compacted away, and checks the watch lists again
// and sends exactly the differences.
func TestWatchResumesAfterCompaction(t *testing.T) {
	url := etcdtest.Start(t)
	c := client(t, url)
	s := New(c, Options{Prefix: prefixFor(t)})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	objs := storetest.Objects(t)
	tier, gnp, np := objs[0], objs[1], objs[2]
	for _, o := range []policy.Object{tier, gnp} {
		_, err := s.Create(ctx, o)
		require.NoError(t, err)
	}

	w := &watcher{s: s, ch: make(chan datastore.Event, 16), sent: map[string]string{}}
	rev, ok := w.relist(ctx)
	require.True(t, ok)
	require.Len(t, w.ch, 2)
	drain(w.ch)

	// While "disconnected": a change, a delete, a create, then compaction.
	changed, err := s.Apply(ctx, relabel(t, gnp))
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, policy.KeyOf(tier), ""))
	created, err := s.Create(ctx, np)
	require.NoError(t, err)
	now, err := c.Get(ctx, "x")
	require.NoError(t, err)
	_, err = c.Compact(ctx, now.Header.Revision)
	require.NoError(t, err)

	_, ok = w.follow(ctx, rev)
	require.True(t, ok, "a compacted watch hands back to relist")
	assert.Empty(t, w.ch, "nothing is sent from a compacted watch")
	_, ok = w.relist(ctx)
	require.True(t, ok)
	got := map[policy.ObjectKey]datastore.Event{}
	for _, ev := range drain(w.ch) {
		got[ev.Key] = ev
	}
	require.Len(t, got, 3, "%v", got)
	assert.Equal(t, datastore.EventUpsert, got[policy.KeyOf(gnp)].Type)
	assert.Equal(t, changed.Revision, got[policy.KeyOf(gnp)].Item.Revision)
	assert.Equal(t, datastore.EventDelete, got[policy.KeyOf(tier)].Type)
	assert.Equal(t, created.Revision, got[policy.KeyOf(np)].Item.Revision)
}

func TestCloseEndsWatch(t *testing.T) {
	// Close ends every watch of the store.
	url := etcdtest.Start(t)
	s := New(client(t, url), Options{Prefix: prefixFor(t)})
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	storetest.UntilSynced(t, ch, 10*time.Second)
	require.NoError(t, s.Close())
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the watch")
	}
}

func TestBadRevision(t *testing.T) {
	url := etcdtest.Start(t)
	s := New(client(t, url), Options{Prefix: prefixFor(t)})
	o := storetest.Objects(t)[1]
	_, err := s.Create(t.Context(), o)
	require.NoError(t, err)
	_, err = s.Replace(t.Context(), o, "not-a-number")
	require.ErrorIs(t, err, datastore.ErrConflict)
	require.ErrorIs(t, s.Delete(t.Context(), policy.KeyOf(o), "0"), datastore.ErrConflict)
}

func TestDialUnreachable(t *testing.T) {
	s, err := Dial(t.Context(), Config{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: 200 * time.Millisecond}, Options{RequestTimeout: 500 * time.Millisecond})
	require.NoError(t, err, "dialing is lazy")
	defer s.Close()
	_, err = s.List(t.Context())
	require.Error(t, err, "an unreachable cluster fails within the request timeout")
	_, err = Dial(t.Context(), Config{}, Options{})
	require.Error(t, err)
}

func relabel(t *testing.T, o policy.Object) policy.Object {
	t.Helper()
	cp, err := datastore.Copy(o)
	require.NoError(t, err)
	cp.SetLabels(map[string]string{"changed": "yes"})
	return cp
}

func drain(ch chan datastore.Event) []datastore.Event {
	var out []datastore.Event
	for {
		select {
		case ev := <-ch:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// A key that never decoded (nothing of it in force) is deleted: its
// EventRecovered is the only news of it.
func TestBrokenKeyRecovers(t *testing.T) {
	url := etcdtest.Start(t)
	s := New(client(t, url), Options{Prefix: prefixFor(t)})
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	ch, err := s.Watch(ctx)
	require.NoError(t, err)
	storetest.UntilSynced(t, ch, 10*time.Second)

	key := s.Key(policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "bad"})
	_, err = s.c.Put(ctx, key, `{"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {"name": "bad"}, "spec": {"selector": "app =="}}`)
	require.NoError(t, err)
	ev := storetest.Next(t, ch, 10*time.Second)
	require.Equal(t, datastore.EventError, ev.Type, "%+v", ev)
	require.Equal(t, key, ev.Source)

	_, err = s.c.Delete(ctx, key)
	require.NoError(t, err)
	ev = storetest.Next(t, ch, 10*time.Second)
	require.Equal(t, datastore.EventRecovered, ev.Type, "%+v", ev)
	assert.Equal(t, key, ev.Source)
}

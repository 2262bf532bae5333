// Package storetest is the contract every datastore.Store is tested
// against: the same CRUD, conflict, watch and recovery behaviour whatever
// the store keeps its objects in. A store's tests call Run with a Harness.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/memory"
	"github.com/calyxnet/calyx/policy"
)

// T is what the helpers need of a test: *testing.T, *testing.B and
// *rapid.T all are.
type T interface {
	require.TestingT
	Helper()
}

// Harness tells Run how to make and break a store.
type Harness struct {
	// New returns an empty store. Run closes it at the end of the test.
	New func(t *testing.T) datastore.Store
	// Reopen, when set, returns a second store over the same data as s
	// (another process's view: another calyxctl, the agent).
	Reopen func(t *testing.T, s datastore.Store) datastore.Store
	// Break, when set, corrupts the stored source of key as a user could
	// (a typo in its file, garbage in its etcd value), so that the store
	// cannot read it. Run then checks the object stays in force.
	Break func(t *testing.T, s datastore.Store, key policy.ObjectKey)
	// Fix, when set (with Break), undoes Break as a user would: the
	// source gets back exactly its last good content (a `git revert`).
	// Run then checks the watch says the source recovered, though no
	// object changed.
	Fix func(t *testing.T, s datastore.Store, key policy.ObjectKey)
	// Coalesces says the store may merge quick successive changes into one
	// event (the directory store debounces editors' bursts): Run then only
	// requires every key's events to arrive in order and end at its last
	// state.
	Coalesces bool
	// Timeout bounds each wait for an event; 0 means 10 s.
	Timeout time.Duration
}

// Objects returns the test fixtures: a tier, a global policy in it, a
// namespaced policy, a namespace and a pod, as users write them.
func Objects(t testing.TB) []policy.Object {
	t.Helper()
	return MustDecode(t, fixtures)
}

const fixtures = `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.deny-all}
spec:
  tier: security
  selector: all()
  types: [Ingress, Egress]
  ingress: [{action: Deny}]
  egress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-web, namespace: shop, labels: {team: web}}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [80]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 80}]}]
status: {podIP: 10.0.0.5, podIPs: [{ip: 10.0.0.5}]}
`

// MustDecode decodes YAML or fails the test.
func MustDecode(t T, yaml string) []policy.Object {
	t.Helper()
	objs, err := policy.Decode(strings.NewReader(yaml), "fixture")
	require.NoError(t, err)
	return objs
}

// Run runs the contract against the stores h makes.
func Run(t *testing.T, h Harness) {
	if h.Timeout == 0 {
		h.Timeout = 10 * time.Second
	}
	c := &contract{h: h}
	t.Run("CRUD", c.crud)
	t.Run("Conflicts", c.conflicts)
	t.Run("Invalid", c.invalid)
	t.Run("RevisionInObject", c.revisionInObject)
	t.Run("CopiesOut", c.copiesOut)
	t.Run("ConcurrentReplace", c.concurrentReplace)
	t.Run("WatchInitialAndSynced", c.watchInitial)
	t.Run("WatchOrder", c.watchOrder)
	t.Run("WatchRestart", c.watchRestart)
	t.Run("WatchEndsWithContext", c.watchEnds)
	if h.Reopen != nil {
		t.Run("SecondView", c.secondView)
	}
	if h.Break != nil {
		t.Run("BrokenSourceKeepsLastGood", c.brokenSource)
		if h.Fix != nil {
			t.Run("BrokenSourceRecovers", c.brokenRecovers)
		}
	}
	t.Run("MatchesMemory", c.matchesMemory)
	t.Run("Closed", c.closed)
}

type contract struct{ h Harness }

func (c *contract) store(t *testing.T) datastore.Store {
	t.Helper()
	s := c.h.New(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (c *contract) crud(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	objs := Objects(t)
	var revs []string
	for _, o := range objs {
		it, err := s.Create(ctx, o)
		require.NoError(t, err, "create %s", policy.KeyOf(o))
		require.NotEmpty(t, it.Revision)
		assert.Equal(t, policy.KeyOf(o), policy.KeyOf(it.Object))
		revs = append(revs, it.Revision)
	}
	_, err := s.Create(ctx, objs[1])
	require.ErrorIs(t, err, datastore.ErrExists)

	items, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, items, len(objs))
	for i := 1; i < len(items); i++ {
		assert.Negative(t, datastore.CompareKeys(policy.KeyOf(items[i-1].Object), policy.KeyOf(items[i].Object)), "List sorted by key")
	}
	for i, o := range objs {
		it, err := s.Get(ctx, policy.KeyOf(o))
		require.NoError(t, err)
		assert.Equal(t, revs[i], it.Revision, "Get gives the revision Create returned")
		SameContent(t, o, it.Object)
	}

	// Replace with the current revision, then unconditionally.
	np := objs[2]
	changed := relabel(t, np, "team", "payments")
	it, err := s.Replace(ctx, changed, revs[2])
	require.NoError(t, err)
	assert.NotEqual(t, revs[2], it.Revision)
	got, err := s.Get(ctx, policy.KeyOf(np))
	require.NoError(t, err)
	assert.Equal(t, "payments", got.Object.GetLabels()["team"])
	_, err = s.Replace(ctx, relabel(t, np, "team", "ops"), "")
	require.NoError(t, err)

	// Apply creates and replaces.
	gns := MustDecode(t, `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: pools}, spec: {nets: [192.0.2.0/24]}}`)[0]
	a1, err := s.Apply(ctx, gns)
	require.NoError(t, err)
	a2, err := s.Apply(ctx, relabel(t, gns, "k", "v"))
	require.NoError(t, err)
	assert.NotEqual(t, a1.Revision, a2.Revision)

	// Delete, then everything about the deleted key is not found.
	require.NoError(t, s.Delete(ctx, policy.KeyOf(gns), a2.Revision))
	_, err = s.Get(ctx, policy.KeyOf(gns))
	require.ErrorIs(t, err, datastore.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, policy.KeyOf(gns), ""), datastore.ErrNotFound)
	_, err = s.Replace(ctx, gns, "")
	require.ErrorIs(t, err, datastore.ErrNotFound)
	for _, o := range objs {
		require.NoError(t, s.Delete(ctx, policy.KeyOf(o), ""))
	}
	items, err = s.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, items)
}

func (c *contract) conflicts(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	o := Objects(t)[1]
	first, err := s.Create(ctx, o)
	require.NoError(t, err)
	second, err := s.Replace(ctx, relabel(t, o, "v", "2"), first.Revision)
	require.NoError(t, err)
	_, err = s.Replace(ctx, relabel(t, o, "v", "3"), first.Revision)
	require.ErrorIs(t, err, datastore.ErrConflict, "replace at a stale revision")
	require.ErrorIs(t, s.Delete(ctx, policy.KeyOf(o), first.Revision), datastore.ErrConflict, "delete at a stale revision")
	got, err := s.Get(ctx, policy.KeyOf(o))
	require.NoError(t, err)
	assert.Equal(t, second.Revision, got.Revision, "failed writes change nothing")
	assert.Equal(t, "2", got.Object.GetLabels()["v"])
}

func (c *contract) invalid(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	bad := Objects(t)[1]
	bad.SetName("Not_A_Name")
	_, err := s.Create(ctx, bad)
	var verrs policy.ValidationErrors
	require.ErrorAs(t, err, &verrs, "invalid objects are refused with their validation errors")
	_, err = s.Apply(ctx, bad)
	require.ErrorAs(t, err, &verrs)
	items, err := s.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, items)

	// A namespaced object without namespace goes to "default".
	np := Objects(t)[2]
	np.SetNamespace("")
	it, err := s.Create(ctx, np)
	require.NoError(t, err)
	assert.Equal(t, "default", it.Object.GetNamespace())
	_, err = s.Get(ctx, policy.ObjectKey{Kind: policy.KindNetworkPolicy, Namespace: "default", Name: np.GetName()})
	require.NoError(t, err)
	assert.Empty(t, np.GetNamespace(), "the caller's object is not modified")
}

func (c *contract) revisionInObject(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	o := Objects(t)[0]
	o.SetResourceVersion("12345")
	it, err := s.Create(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, it.Revision, it.Object.GetResourceVersion(), "objects carry their revision as resourceVersion")
	got, err := s.Get(ctx, policy.KeyOf(o))
	require.NoError(t, err)
	assert.Equal(t, got.Revision, got.Object.GetResourceVersion())
	items, err := s.List(ctx)
	require.NoError(t, err)
	assert.Equal(t, items[0].Revision, items[0].Object.GetResourceVersion())
}

func (c *contract) copiesOut(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	o := Objects(t)[2]
	_, err := s.Create(ctx, o)
	require.NoError(t, err)
	got, err := s.Get(ctx, policy.KeyOf(o))
	require.NoError(t, err)
	got.Object.SetLabels(map[string]string{"mutated": "yes"})
	again, err := s.Get(ctx, policy.KeyOf(o))
	require.NoError(t, err)
	assert.NotContains(t, again.Object.GetLabels(), "mutated", "changing a returned object does not change the store")
}

func (c *contract) concurrentReplace(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	o := Objects(t)[1]
	base, err := s.Create(ctx, o)
	require.NoError(t, err)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Replace(ctx, relabel(t, o, "writer", fmt.Sprint(i)), base.Revision)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		require.ErrorIs(t, err, datastore.ErrConflict)
	}
	assert.Equal(t, 1, won, "exactly one writer at one revision wins")
}

func (c *contract) watchInitial(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	objs := Objects(t)
	for _, o := range objs {
		_, err := s.Create(ctx, o)
		require.NoError(t, err)
	}
	ch, err := s.Watch(ctx)
	require.NoError(t, err)
	state := map[policy.ObjectKey]string{}
	for {
		ev := c.next(t, ch)
		if ev.Type == datastore.EventSynced {
			break
		}
		require.Equal(t, datastore.EventUpsert, ev.Type, "only upserts before synced: %+v", ev)
		state[ev.Key] = ev.Item.Revision
		assert.Equal(t, ev.Key, policy.KeyOf(ev.Item.Object))
	}
	require.Len(t, state, len(objs), "every object before synced")
	// Synced is sent once: the next event is the next change.
	_, err = s.Apply(ctx, relabel(t, objs[0], "after", "sync"))
	require.NoError(t, err)
	ev := c.next(t, ch)
	require.Equal(t, datastore.EventUpsert, ev.Type)
	assert.Equal(t, policy.KeyOf(objs[0]), ev.Key)
}

func (c *contract) watchOrder(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	ch, err := s.Watch(ctx)
	require.NoError(t, err)
	require.Equal(t, datastore.EventSynced, c.next(t, ch).Type, "an empty store syncs at once")

	objs := Objects(t)
	type step struct {
		key    policy.ObjectKey
		label  string
		rev    string
		delete bool
	}
	var steps []step
	for round := range 3 {
		for _, o := range objs[:3] {
			it, err := s.Apply(ctx, relabel(t, o, "round", fmt.Sprint(round)))
			require.NoError(t, err)
			steps = append(steps, step{key: policy.KeyOf(o), label: fmt.Sprint(round), rev: it.Revision})
		}
	}
	require.NoError(t, s.Delete(ctx, policy.KeyOf(objs[2]), ""))
	steps = append(steps, step{key: policy.KeyOf(objs[2]), delete: true})

	// A marker written last: once its event is in, every earlier change
	// has been reported (stores report in order).
	marker := MustDecode(t, `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: zz-marker}, spec: {nets: [192.0.2.1/32]}}`)[0]
	mit, err := s.Create(ctx, marker)
	require.NoError(t, err)

	// Per key: the expected sequence, in order.
	want := map[policy.ObjectKey][]step{}
	for _, st := range steps {
		want[st.key] = append(want[st.key], st)
	}
	pos := map[policy.ObjectKey]int{}
	// A store that merges changes may leave out a key whose changes ended
	// where they began (created, then deleted), and may report the marker
	// before other keys of its batch.
	complete := func(k policy.ObjectKey) bool {
		seq := want[k]
		return pos[k] == len(seq) || c.h.Coalesces && pos[k] == 0 && seq[len(seq)-1].delete
	}
	markerSeen := false
	for {
		if markerSeen {
			all := true
			for k := range want {
				all = all && complete(k)
			}
			if all {
				break
			}
		}
		ev := c.next(t, ch)
		require.Contains(t, []datastore.EventType{datastore.EventUpsert, datastore.EventDelete}, ev.Type, "%+v", ev)
		if ev.Key == policy.KeyOf(marker) {
			require.Equal(t, mit.Revision, ev.Item.Revision)
			markerSeen = true
			continue
		}
		seq := want[ev.Key]
		i := pos[ev.Key]
		if c.h.Coalesces {
			// Skip the states that were merged away.
			for i < len(seq) && !matches(seq[i].delete, seq[i].rev, ev) {
				i++
			}
		}
		require.Less(t, i, len(seq), "unexpected event for %s: %+v", ev.Key, ev)
		require.True(t, matches(seq[i].delete, seq[i].rev, ev), "event %d for %s: want %+v, got type %d rev %q", i, ev.Key, seq[i], ev.Type, ev.Item.Revision)
		if !seq[i].delete {
			assert.Equal(t, seq[i].label, ev.Item.Object.GetLabels()["round"])
		}
		pos[ev.Key] = i + 1
	}
}

func matches(del bool, rev string, ev datastore.Event) bool {
	if del {
		return ev.Type == datastore.EventDelete
	}
	return ev.Type == datastore.EventUpsert && ev.Item.Revision == rev
}

func (c *contract) watchRestart(t *testing.T) {
	s, ctx0 := c.store(t), ctx(t)
	objs := Objects(t)
	_, err := s.Create(ctx0, objs[0])
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx0)
	ch, err := s.Watch(wctx)
	require.NoError(t, err)
	c.untilSynced(t, ch)
	cancel()
	c.drained(t, ch)

	// Changes while nobody watches are in the next watch's initial state.
	_, err = s.Create(ctx0, objs[1])
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx0, policy.KeyOf(objs[0]), ""))
	ch, err = s.Watch(ctx0)
	require.NoError(t, err)
	state := c.untilSynced(t, ch)
	assert.Equal(t, []policy.ObjectKey{policy.KeyOf(objs[1])}, keys(state))
}

func (c *contract) watchEnds(t *testing.T) {
	s, ctx0 := c.store(t), ctx(t)
	wctx, cancel := context.WithCancel(ctx0)
	ch, err := s.Watch(wctx)
	require.NoError(t, err)
	c.untilSynced(t, ch)
	cancel()
	c.drained(t, ch)
}

func (c *contract) secondView(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	other := c.h.Reopen(t, s)
	t.Cleanup(func() { _ = other.Close() })
	ch, err := other.Watch(ctx)
	require.NoError(t, err)
	c.untilSynced(t, ch)

	o := Objects(t)[1]
	it, err := s.Create(ctx, o)
	require.NoError(t, err)
	ev := c.next(t, ch)
	require.Equal(t, datastore.EventUpsert, ev.Type)
	assert.Equal(t, it.Revision, ev.Item.Revision, "both views agree on revisions")
	got, err := other.Get(ctx, policy.KeyOf(o))
	require.NoError(t, err)
	_, err = s.Replace(ctx, relabel(t, o, "x", "1"), it.Revision)
	require.NoError(t, err)
	_, err = other.Replace(ctx, relabel(t, o, "x", "2"), got.Revision)
	require.ErrorIs(t, err, datastore.ErrConflict, "a write through one view is seen by the other's revision check")
}

func (c *contract) brokenSource(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	objs := Objects(t)
	for _, o := range objs[:3] {
		_, err := s.Create(ctx, o)
		require.NoError(t, err)
	}
	ch, err := s.Watch(ctx)
	require.NoError(t, err)
	c.untilSynced(t, ch)

	victim := policy.KeyOf(objs[1])
	c.h.Break(t, s, victim)
	for {
		ev := c.next(t, ch)
		require.NotEqual(t, datastore.EventDelete, ev.Type, "a broken source never deletes what it held: %+v", ev)
		if ev.Type == datastore.EventError {
			require.Error(t, ev.Err)
			assert.NotEmpty(t, ev.Source)
			break
		}
	}
	// Still there for readers, and further changes elsewhere still flow.
	it, err := s.Get(ctx, victim)
	require.NoError(t, err, "the last good version stays in force")
	SameContent(t, objs[1], it.Object)
	_, err = s.Apply(ctx, relabel(t, objs[0], "still", "working"))
	require.NoError(t, err)
	for {
		ev := c.next(t, ch)
		require.NotEqual(t, datastore.EventDelete, ev.Type, "%+v", ev)
		if ev.Type == datastore.EventUpsert && ev.Key == policy.KeyOf(objs[0]) {
			break
		}
	}
}

func (c *contract) brokenRecovers(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	objs := Objects(t)
	for _, o := range objs[:3] {
		_, err := s.Create(ctx, o)
		require.NoError(t, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx)
	require.NoError(t, err)
	c.untilSynced(t, ch)

	victim := policy.KeyOf(objs[1])
	c.h.Break(t, s, victim)
	var source string
	for source == "" {
		ev := c.next(t, ch)
		require.NotEqual(t, datastore.EventDelete, ev.Type, "%+v", ev)
		require.NotEqual(t, datastore.EventRecovered, ev.Type, "nothing was fixed yet: %+v", ev)
		if ev.Type == datastore.EventError {
			require.NotEmpty(t, ev.Source)
			source = ev.Source
		}
	}
	// A new watch reports the source that is still broken.
	wctx2, cancel2 := context.WithCancel(ctx)
	ch2, err := s.Watch(wctx2)
	require.NoError(t, err)
	assert.Contains(t, c.errorsUntilSynced(t, ch2), source, "a new watch reports the broken source")
	cancel2()
	c.drained(t, ch2)

	// Fixed with its last good content: no object changes, yet the
	// watch says the source recovered.
	c.h.Fix(t, s, victim)
	for {
		ev := c.next(t, ch)
		require.NotEqual(t, datastore.EventDelete, ev.Type, "%+v", ev)
		if ev.Type == datastore.EventRecovered && ev.Source == source {
			break
		}
	}
	it, err := s.Get(ctx, victim)
	require.NoError(t, err)
	SameContent(t, objs[1], it.Object)

	// And a new watch no longer reports it.
	ch3, err := s.Watch(wctx)
	require.NoError(t, err)
	assert.NotContains(t, c.errorsUntilSynced(t, ch3), source, "a recovered source is not reported by a new watch")
}

// errorsUntilSynced reads the initial state of a watch and returns the
// sources its errors named.
func (c *contract) errorsUntilSynced(t *testing.T, ch <-chan datastore.Event) []string {
	t.Helper()
	var sources []string
	for {
		ev := c.next(t, ch)
		switch ev.Type {
		case datastore.EventSynced:
			return sources
		case datastore.EventError:
			sources = append(sources, ev.Source)
		}
	}
}

func (c *contract) closed(t *testing.T) {
	s, ctx := c.h.New(t), ctx(t)
	require.NoError(t, s.Close())
	_, err := s.List(ctx)
	require.ErrorIs(t, err, datastore.ErrClosed)
	_, err = s.Create(ctx, Objects(t)[0])
	require.ErrorIs(t, err, datastore.ErrClosed)
	_, err = s.Watch(ctx)
	require.ErrorIs(t, err, datastore.ErrClosed)
}

// next returns the next event, failing the test after the timeout.
func (c *contract) next(t *testing.T, ch <-chan datastore.Event) datastore.Event {
	t.Helper()
	return Next(t, ch, c.h.Timeout)
}

// Next returns the next event of a watch, failing the test when none comes
// within timeout or the channel closes.
func Next(t T, ch <-chan datastore.Event, timeout time.Duration) datastore.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		require.True(t, ok, "watch channel closed")
		return ev
	case <-time.After(timeout):
		require.FailNow(t, fmt.Sprintf("no event within %v", timeout))
		return datastore.Event{}
	}
}

// untilSynced reads the initial state of a watch.
func (c *contract) untilSynced(t *testing.T, ch <-chan datastore.Event) map[policy.ObjectKey]datastore.Item {
	t.Helper()
	return UntilSynced(t, ch, c.h.Timeout)
}

// UntilSynced reads events up to EventSynced and returns the upserted
// objects; deletes before synced remove them.
func UntilSynced(t T, ch <-chan datastore.Event, timeout time.Duration) map[policy.ObjectKey]datastore.Item {
	t.Helper()
	state := map[policy.ObjectKey]datastore.Item{}
	for {
		ev := Next(t, ch, timeout)
		switch ev.Type {
		case datastore.EventSynced:
			return state
		case datastore.EventUpsert:
			state[ev.Key] = ev.Item
		case datastore.EventDelete:
			delete(state, ev.Key)
		}
	}
}

// drain discards events until the channel closes (its watch's context
// is done), so the watch's resources are released before going on.
func drain(ch <-chan datastore.Event) {
	for range ch {
	}
}

// drained waits for the channel to close, discarding events.
func (c *contract) drained(t *testing.T, ch <-chan datastore.Event) {
	t.Helper()
	deadline := time.After(c.h.Timeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after its context ended")
		}
	}
}

func keys(m map[policy.ObjectKey]datastore.Item) []policy.ObjectKey {
	var out []policy.ObjectKey
	for k := range m {
		out = append(out, k)
	}
	return out
}

// relabel returns a copy of o with one more label.
func relabel(t T, o policy.Object, k, v string) policy.Object {
	t.Helper()
	cp, err := datastore.Copy(o)
	require.NoError(t, err)
	labels := map[string]string{}
	for lk, lv := range cp.GetLabels() {
		labels[lk] = lv
	}
	labels[k] = v
	cp.SetLabels(labels)
	return cp
}

// SameContent fails unless a and b encode the same (resourceVersion
// aside).
func SameContent(t T, a, b policy.Object) {
	t.Helper()
	ea, err := datastore.Encoding(a)
	require.NoError(t, err)
	eb, err := datastore.Encoding(b)
	require.NoError(t, err)
	assert.Equal(t, string(ea), string(eb))
}

// matchesMemory runs random sequences of writes on the store and on the
// memory store side by side: every write must succeed or fail alike, List
// must agree after each, and a watch running through it all, and one
// started afterwards, must end at the listed state.
func (c *contract) matchesMemory(t *testing.T) {
	s, ctx := c.store(t), ctx(t)
	base := Objects(t)[:3]
	rapid.Check(t, func(rt *rapid.T) {
		// A clean slate: the same store serves every run.
		items, err := s.List(ctx)
		require.NoError(rt, err)
		for _, it := range items {
			require.NoError(rt, s.Delete(ctx, policy.KeyOf(it.Object), ""))
		}
		ref, err := memory.New()
		require.NoError(rt, err)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := s.Watch(wctx)
		require.NoError(rt, err)
		watched := UntilSynced(rt, ch, c.h.Timeout)
		require.Empty(rt, watched)

		n := rapid.IntRange(1, 12).Draw(rt, "ops")
		for range n {
			obj := relabel(rt, base[rapid.IntRange(0, len(base)-1).Draw(rt, "object")], "v", rapid.SampledFrom([]string{"a", "b"}).Draw(rt, "label"))
			key := policy.KeyOf(obj)
			op := rapid.SampledFrom([]string{"create", "replace", "apply", "delete"}).Draw(rt, "op")
			rev := rapid.SampledFrom([]string{"none", "current", "stale"}).Draw(rt, "revision")
			revOf := func(st datastore.Store) string {
				switch rev {
				case "current":
					if it, err := st.Get(ctx, key); err == nil {
						return it.Revision
					}
				case "stale":
					return "stale"
				}
				return ""
			}
			do := func(st datastore.Store) error {
				r := revOf(st)
				switch op {
				case "create":
					_, err := st.Create(ctx, obj)
					return err
				case "replace":
					_, err := st.Replace(ctx, obj, r)
					return err
				case "apply":
					_, err := st.Apply(ctx, obj)
					return err
				}
				return st.Delete(ctx, key, r)
			}
			got, want := do(s), do(ref)
			for _, sentinel := range []error{nil, datastore.ErrExists, datastore.ErrNotFound, datastore.ErrConflict} {
				require.Equal(rt, errors.Is(want, sentinel), errors.Is(got, sentinel), "%s %s (revision %s): store %v, memory %v", op, key, rev, got, want)
			}
			require.Equal(rt, contents(rt, ref), contents(rt, s), "after %s %s", op, key)
		}

		// The running watch reaches the final state: wait for a marker
		// written last, then for any key still behind.
		want := contents(rt, s)
		marker := MustDecode(rt, `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: zz-marker}, spec: {nets: [192.0.2.1/32]}}`)[0]
		_, err = s.Apply(ctx, marker)
		require.NoError(rt, err)
		markerKey := policy.KeyOf(marker)
		seen := false
		for !seen || !sameState(rt, watched, want) {
			ev := Next(rt, ch, c.h.Timeout)
			switch ev.Type {
			case datastore.EventUpsert:
				if ev.Key == markerKey {
					seen = true
					continue
				}
				watched[ev.Key] = ev.Item
			case datastore.EventDelete:
				delete(watched, ev.Key)
			}
		}
		require.NoError(rt, s.Delete(ctx, markerKey, ""))
		cancel()

		drain(ch)

		// A new watch starts from the same state.
		wctx2, cancel2 := context.WithCancel(ctx)
		defer cancel2()
		ch2, err := s.Watch(wctx2)
		require.NoError(rt, err)
		fresh := UntilSynced(rt, ch2, c.h.Timeout)
		require.True(rt, sameState(rt, fresh, want), "a new watch's initial state is the listed one")
		cancel2()
		drain(ch2)
	})
}

// contents is a store's objects, by key, as their canonical encodings.
func contents(t require.TestingT, s datastore.Store) map[policy.ObjectKey]string {
	items, err := s.List(context.Background())
	require.NoError(t, err)
	out := map[policy.ObjectKey]string{}
	for _, it := range items {
		b, err := datastore.Encoding(it.Object)
		require.NoError(t, err)
		out[policy.KeyOf(it.Object)] = string(b)
	}
	return out
}

func sameState(t require.TestingT, state map[policy.ObjectKey]datastore.Item, want map[policy.ObjectKey]string) bool {
	if len(state) != len(want) {
		return false
	}
	for k, it := range state {
		b, err := datastore.Encoding(it.Object)
		require.NoError(t, err)
		if want[k] != string(b) {
			return false
		}
	}
	return true
}

// NamespaceTree writes objs into a new temporary directory laid out as a
// GitOps tree often is, one file per namespace: <ns>.yaml holds a
// namespace's objects, <name>.yaml a Namespace, cluster.yaml the other
// cluster-scoped objects. It returns the directory.
func NamespaceTree(t testing.TB, objs []policy.Object) string {
	t.Helper()
	root := t.TempDir()
	files := map[string][]policy.Object{}
	for _, o := range objs {
		name := "cluster.yaml"
		if ns := o.GetNamespace(); ns != "" {
			name = ns + ".yaml"
		} else if policy.KindOf(o) == policy.KindNamespace {
			name = o.GetName() + ".yaml"
		}
		files[name] = append(files[name], o)
	}
	for name, objs := range files {
		var buf bytes.Buffer
		require.NoError(t, policy.Encode(&buf, objs))
		require.NoError(t, os.WriteFile(filepath.Join(root, name), buf.Bytes(), 0o644))
	}
	return root
}

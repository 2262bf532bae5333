package resource_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/memory"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/internal/resource"
	"github.com/calyxnet/calyx/policy"
)

const cluster = storetest.ShopCluster

const denyDB = `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-isolated, namespace: shop}
spec:
  selector: app == 'db'
  types: [Ingress]
`

func storeWith(t *testing.T, yaml string) *memory.Store {
	t.Helper()
	s, err := memory.New(storetest.MustDecode(t, yaml)...)
	require.NoError(t, err)
	return s
}

func TestPlanAndDo(t *testing.T) {
	ctx := context.Background()
	s := storeWith(t, cluster+"---"+denyDB)
	np := storetest.MustDecode(t, denyDB)[0]
	changed := storetest.MustDecode(t, strings.Replace(denyDB, "types: [Ingress]", "types: [Ingress, Egress]", 1))[0]
	gns := storetest.MustDecode(t, `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: n}, spec: {nets: [192.0.2.0/24]}}`)[0]

	tests := []struct {
		name string
		op   resource.Op
		obj  policy.Object
		opts resource.Options
		want resource.Action
		err  error
	}{
		{"apply same", resource.OpApply, np, resource.Options{}, resource.Unchanged, nil},
		{"apply changed", resource.OpApply, changed, resource.Options{}, resource.Configured, nil},
		{"apply new", resource.OpApply, gns, resource.Options{}, resource.Created, nil},
		{"create existing", resource.OpCreate, np, resource.Options{}, "", datastore.ErrExists},
		{"create new", resource.OpCreate, gns, resource.Options{}, resource.Created, nil},
		{"replace missing", resource.OpReplace, gns, resource.Options{}, "", datastore.ErrNotFound},
		{"replace", resource.OpReplace, changed, resource.Options{}, resource.Replaced, nil},
		{"delete missing", resource.OpDelete, gns, resource.Options{}, "", datastore.ErrNotFound},
		{"delete missing ignored", resource.OpDelete, gns, resource.Options{IgnoreNotFound: true}, resource.Skipped, nil},
		{"delete", resource.OpDelete, np, resource.Options{}, resource.Deleted, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := s.List(ctx)
			require.NoError(t, err)
			plan, err := resource.Plan(ctx, s, tt.op, []policy.Object{tt.obj}, tt.opts)
			require.NoError(t, err)
			require.Len(t, plan, 1)
			assert.Equal(t, tt.want, plan[0].Action)
			if tt.err != nil {
				require.ErrorIs(t, plan[0].Err, tt.err)
			} else {
				require.NoError(t, plan[0].Err)
			}
			after, err := s.List(ctx)
			require.NoError(t, err)
			assert.Equal(t, before, after, "a plan writes nothing")
			assert.Equal(t, tt.want != resource.Unchanged && tt.want != resource.Skipped && tt.err == nil, resource.Changed(plan))

			// Do the same on a copy of the store: the same outcome.
			cp, err := memory.New(objects(before)...)
			require.NoError(t, err)
			done, err := resource.Do(ctx, cp, tt.op, []policy.Object{tt.obj}, tt.opts)
			require.NoError(t, err)
			assert.Equal(t, plan[0].Action, done[0].Action)
			assert.Equal(t, plan[0].Err != nil, done[0].Err != nil)
			_, getErr := cp.Get(ctx, plan[0].Key)
			switch {
			case tt.err != nil:
			case tt.op == resource.OpDelete:
				require.ErrorIs(t, getErr, datastore.ErrNotFound)
			default:
				require.NoError(t, getErr)
			}
		})
	}
}

func objects(items []datastore.Item) []policy.Object {
	var out []policy.Object
	for _, it := range items {
		out = append(out, it.Object)
	}
	return out
}

func TestReplaceChecksResourceVersion(t *testing.T) {
	ctx := context.Background()
	s := storeWith(t, denyDB)
	it, err := s.Get(ctx, policy.ObjectKey{Kind: policy.KindNetworkPolicy, Namespace: "shop", Name: "db-isolated"})
	require.NoError(t, err)
	stale := it.Object
	_, err = s.Apply(ctx, storetest.MustDecode(t, strings.Replace(denyDB, "types: [Ingress]", "types: [Egress]", 1))[0])
	require.NoError(t, err)
	changes, err := resource.Do(ctx, s, resource.OpReplace, []policy.Object{stale}, resource.Options{})
	require.NoError(t, err)
	require.ErrorIs(t, changes[0].Err, datastore.ErrConflict, "get -o yaml, edit, replace: refused when someone changed it since")
	require.Error(t, resource.Failed(changes))
}

func TestSimulate(t *testing.T) {
	ctx := context.Background()
	s := storeWith(t, cluster)
	items, err := s.List(ctx)
	require.NoError(t, err)
	changes, err := resource.Plan(ctx, s, resource.OpApply, storetest.MustDecode(t, denyDB), resource.Options{})
	require.NoError(t, err)

	eff, err := resource.Simulate(ctx, objects(items), changes, resource.SimulateOptions{})
	require.NoError(t, err)
	assert.Contains(t, eff.Delta.PoliciesAdded[0], "db-isolated")
	// Every port any pod declares is probed: web loses db on both.
	require.Len(t, eff.Reach, 2, "%v", eff.Reach)
	assert.Equal(t, "- shop/web -> shop/db 80/TCP", eff.Reach[0].String())
	assert.Equal(t, "- shop/web -> shop/db 5432/TCP", eff.Reach[1].String())
	out := eff.String()
	assert.Contains(t, out, "+policy")
	assert.Contains(t, out, "reachability (+ now allowed, - now denied):\n  - shop/web -> shop/db 80/TCP\n  - shop/web -> shop/db 5432/TCP\n")

	// For one node: node-a holds web only, whose tiers do not change
	// (db's ingress is enforced on node-b).
	eff, err = resource.Simulate(ctx, objects(items), changes, resource.SimulateOptions{Node: "node-a"})
	require.NoError(t, err)
	assert.Equal(t, "node-a", eff.Node)
	assert.Empty(t, eff.Delta.EndpointsChanged, eff.Delta.String())
	assert.Contains(t, eff.String(), "dataplane (node-a):")
	assert.Len(t, eff.Reach, 2, "reachability is still the cluster's")

	// Deleting it again restores reachability.
	s2 := storeWith(t, cluster+"---"+denyDB)
	items2, err := s2.List(ctx)
	require.NoError(t, err)
	del, err := resource.Plan(ctx, s2, resource.OpDelete, storetest.MustDecode(t, denyDB), resource.Options{})
	require.NoError(t, err)
	eff, err = resource.Simulate(ctx, objects(items2), del, resource.SimulateOptions{})
	require.NoError(t, err)
	require.Len(t, eff.Reach, 2)
	assert.True(t, eff.Reach[0].Allowed)

	eff, err = resource.Simulate(ctx, objects(items), changes, resource.SimulateOptions{MaxReachPods: 1})
	require.NoError(t, err)
	assert.Contains(t, eff.ReachSkipped, "more than 1")
}

func TestLabels(t *testing.T) {
	ch, err := resource.ParseLabelChanges([]string{"team=web", "old-", "example.com/tier=gold"})
	require.NoError(t, err)
	assert.Equal(t, []resource.LabelChange{{Key: "team", Value: "web"}, {Key: "old", Remove: true}, {Key: "example.com/tier", Value: "gold"}}, ch)
	for _, bad := range [][]string{nil, {"noop"}, {"bad key=v"}, {"k=bad value"}} {
		_, err := resource.ParseLabelChanges(bad)
		require.Error(t, err, bad)
	}

	got, changed, err := resource.Relabel(map[string]string{"old": "x", "team": "web"}, ch, false)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, map[string]string{"team": "web", "example.com/tier": "gold"}, got)
	_, _, err = resource.Relabel(map[string]string{"team": "db"}, ch, false)
	require.ErrorIs(t, err, resource.ErrLabelExists)
	_, changed, err = resource.Relabel(map[string]string{"team": "web", "example.com/tier": "gold"}, ch, false)
	require.NoError(t, err)
	assert.False(t, changed)

	ctx := context.Background()
	s := storeWith(t, denyDB)
	key := policy.ObjectKey{Kind: policy.KindNetworkPolicy, Namespace: "shop", Name: "db-isolated"}
	done, err := resource.Label(ctx, s, key, ch, false)
	require.NoError(t, err)
	assert.True(t, done)
	it, err := s.Get(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, "gold", it.Object.GetLabels()["example.com/tier"])
	done, err = resource.Label(ctx, s, key, ch, false)
	require.NoError(t, err)
	assert.False(t, done, "labelling again changes nothing")
}

func TestUnifiedDiff(t *testing.T) {
	a := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\n"
	b := "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\n"
	assert.Equal(t, `--- old
+++ new
@@ -1,5 +1,5 @@
 a
-b
+B
 c
 d
 e
@@ -9,3 +9,4 @@
 i
 j
 k
+l
`, resource.UnifiedDiff("old", "new", a, b))
	assert.Empty(t, resource.UnifiedDiff("x", "y", a, a))
	assert.Equal(t, "--- x\n+++ y\n@@ -0,0 +1,1 @@\n+new\n", resource.UnifiedDiff("x", "y", "", "new\n"))
}

package policy_test

import (
	"sort"
	"testing"

	"github.com/calyxnet/calyx/policy"
	"github.com/calyxnet/calyx/selector"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// indexFor loads a Set's endpoints, network sets and parents into a
// selector.Index the way the compiler is meant to: own labels per item,
// parents by ID.
func indexFor(set *policy.Set) *selector.Index {
	ix := selector.NewIndex(nil, nil)
	parents := map[string]bool{}
	for _, ep := range set.Endpoints() {
		ps := policy.EndpointParents(ep)
		ix.UpdateLabels("ep:"+ep.Key(), policy.EndpointOwnLabels(ep), ps...)
		for _, p := range ps {
			parents[p] = true
		}
	}
	for _, ns := range set.NetworkSets() {
		ps := policy.NetworkSetParents(ns)
		ix.UpdateLabels("set:"+ns.Key(), policy.NetworkSetOwnLabels(ns), ps...)
		for _, p := range ps {
			parents[p] = true
		}
	}
	for p := range parents {
		ix.UpdateParentLabels(p, set.ParentLabels(p))
	}
	return ix
}

// bruteForce evaluates s on every item's flattened labels.
func bruteForce(set *policy.Set, s *selector.Selector) []string {
	var out []string
	for _, ep := range set.Endpoints() {
		if s.Matches(set.EndpointLabels(ep)) {
			out = append(out, "ep:"+ep.Key())
		}
	}
	for _, ns := range set.NetworkSets() {
		if s.Matches(set.NetworkSetLabels(ns)) {
			out = append(out, "set:"+ns.Key())
		}
	}
	sort.Strings(out)
	return out
}

// TestIndexAgreesWithFlattenedLabels: own labels plus parents in a
// selector.Index select exactly what the flattened labels select, for every
// policy and rule selector, also after a namespace's labels change.
func TestIndexAgreesWithFlattenedLabels(t *testing.T) {
	set := loadSet(t, world,
		knpHead+"  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {team: y}}\n    - podSelector: {matchLabels: {app: api}}\n",
		`apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  namespaceSelector: team == 'x'
  ingress:
  - {action: Allow, source: {namespaceSelector: global()}}
  - {action: Allow, source: {serviceAccounts: {selector: role == 'web'}}}
  - {action: Allow, source: {namespaceSelector: all(), selector: app == 'db'}}`)
	selectors := map[string]*selector.Selector{}
	for _, p := range set.Policies() {
		selectors[p.Key()] = p.Selector
		for i, r := range p.Ingress {
			if r.Source.Selector != nil {
				selectors[p.Key()+"/"+r.Field+"/"+string(rune('a'+i))] = r.Source.Selector
			}
		}
	}
	require.GreaterOrEqual(t, len(selectors), 7)
	check := func(ix *selector.Index) {
		t.Helper()
		for id, s := range selectors {
			ix.UpdateSelector(id, s)
			got := ix.ItemsMatching(id)
			sort.Strings(got)
			want := bruteForce(set, s)
			if len(want) == 0 {
				want = nil
			}
			if len(got) == 0 {
				got = nil
			}
			require.Equal(t, want, got, "selector %s (%s)", id, s)
		}
	}
	ix := indexFor(set)
	check(ix)

	// bank moves to team x: its namespace parent changes, nothing else.
	bank := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bank", Labels: map[string]string{"team": "x"}}}
	c, err := set.Upsert(bank)
	require.NoError(t, err)
	require.Equal(t, policy.OpUpdated, c.Op)
	ix.UpdateParentLabels(policy.NamespaceParentID("bank"), set.ParentLabels(policy.NamespaceParentID("bank")))
	check(ix)
}

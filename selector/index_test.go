package selector

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// indexModel is the brute-force oracle: it remembers what the index was
// told and evaluates every selector on every item.
type indexModel struct {
	selectors map[string]*Selector
	items     map[string]modelItem
	parents   map[string]map[string]string
}

type modelItem struct {
	labels  map[string]string
	parents []string
}

func newIndexModel() *indexModel {
	return &indexModel{
		selectors: map[string]*Selector{},
		items:     map[string]modelItem{},
		parents:   map[string]map[string]string{},
	}
}

func (m *indexModel) effective(id string) Set {
	it := m.items[id]
	out := Set{}
	for i := len(it.parents) - 1; i >= 0; i-- {
		maps.Copy(out, m.parents[it.parents[i]])
	}
	maps.Copy(out, it.labels)
	return out
}

// pairs returns the match relation as "selector/item" strings.
func (m *indexModel) pairs() map[string]bool {
	out := map[string]bool{}
	for sid, s := range m.selectors {
		for iid := range m.items {
			if s.Matches(m.effective(iid)) {
				out[sid+"/"+iid] = true
			}
		}
	}
	return out
}

func indexPairs(ix *Index, selectorIDs []string) map[string]bool {
	out := map[string]bool{}
	for _, sid := range selectorIDs {
		for _, iid := range ix.ItemsMatching(sid) {
			out[sid+"/"+iid] = true
		}
	}
	return out
}

func TestIndexMatchesBruteForce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		selIDs := []string{"s1", "s2", "s3", "s4"}
		itemIDs := []string{"i1", "i2", "i3", "i4", "i5"}
		parentIDs := []string{"ns1", "ns2", "ns3"}

		replayed := map[string]bool{}
		ix := NewIndex(
			func(sid, iid string) {
				k := sid + "/" + iid
				if replayed[k] {
					t.Fatalf("duplicate start of %s", k)
				}
				replayed[k] = true
			},
			func(sid, iid string) {
				k := sid + "/" + iid
				if !replayed[k] {
					t.Fatalf("stop of %s which had not started", k)
				}
				delete(replayed, k)
			},
		)
		m := newIndexModel()

		steps := rapid.IntRange(1, 40).Draw(t, "steps")
		for range steps {
			switch rapid.IntRange(0, 5).Draw(t, "op") {
			case 0:
				id := rapid.SampledFrom(selIDs).Draw(t, "sel")
				s := genSelector(t)
				ix.UpdateSelector(id, s)
				m.selectors[id] = s
			case 1:
				id := rapid.SampledFrom(selIDs).Draw(t, "sel")
				ix.DeleteSelector(id)
				delete(m.selectors, id)
			case 2:
				id := rapid.SampledFrom(itemIDs).Draw(t, "item")
				labels := genLabels(t, "labels")
				parents := rapid.SliceOfN(rapid.SampledFrom(parentIDs), 0, 3).Draw(t, "parents")
				ix.UpdateLabels(id, labels, parents...)
				var dedup []string
				for _, p := range parents {
					if !slices.Contains(dedup, p) {
						dedup = append(dedup, p)
					}
				}
				m.items[id] = modelItem{labels: maps.Clone(labels), parents: dedup}
				// The index must have copied the map.
				clear(labels)
			case 3:
				id := rapid.SampledFrom(itemIDs).Draw(t, "item")
				ix.DeleteLabels(id)
				delete(m.items, id)
			case 4:
				id := rapid.SampledFrom(parentIDs).Draw(t, "parent")
				labels := genLabels(t, "parent labels")
				ix.UpdateParentLabels(id, labels)
				m.parents[id] = maps.Clone(labels)
				clear(labels)
			case 5:
				id := rapid.SampledFrom(parentIDs).Draw(t, "parent")
				ix.DeleteParentLabels(id)
				delete(m.parents, id)
			}

			want := m.pairs()
			got := indexPairs(ix, selIDs)
			if !maps.Equal(want, got) {
				t.Fatalf("index matches %v, brute force %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
			if !maps.Equal(want, replayed) {
				t.Fatalf("replayed callbacks give %v, brute force %v", slices.Sorted(maps.Keys(replayed)), slices.Sorted(maps.Keys(want)))
			}
			for _, iid := range itemIDs {
				var wantSels []string
				for _, sid := range selIDs {
					if want[sid+"/"+iid] {
						wantSels = append(wantSels, sid)
					}
				}
				if got := ix.SelectorsMatching(iid); !slices.Equal(got, wantSels) {
					t.Fatalf("SelectorsMatching(%s) = %v, want %v", iid, got, wantSels)
				}
			}
		}
	})
}

// TestRestrictionsSound checks the property the index relies on: whenever a
// selector matches a label set, the label set meets every restriction
// derived from the selector.
func TestRestrictionsSound(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSelector(t)
		labels := Set(genLabels(t, "labels"))
		if !s.Matches(labels) {
			return
		}
		for k, r := range restrictions(s.root) {
			v, ok := labels[k]
			if r.present && !ok {
				t.Fatalf("%s matches %v but restriction says %q must be present", s, labels, k)
			}
			if r.values != nil && !slices.Contains(r.values, v) {
				t.Fatalf("%s matches %v but restriction says %q in %q", s, labels, k, r.values)
			}
		}
		if planIndex(s.root).kind == indexNever {
			t.Fatalf("%s matches %v but is planned as never matching", s, labels)
		}
	})
}

func TestPlanIndex(t *testing.T) {
	tests := []struct {
		sel  string
		want indexPlan
	}{
		{`app == "x"`, indexPlan{kind: indexByValue, key: "app", values: []string{"x"}}},
		{`app in {"b", "a"}`, indexPlan{kind: indexByValue, key: "app", values: []string{"a", "b"}}},
		{`tier in {"a", "b"} && app == "x"`, indexPlan{kind: indexByValue, key: "app", values: []string{"x"}}},
		{`app in {"a", "b"} && app in {"b", "c"}`, indexPlan{kind: indexByValue, key: "app", values: []string{"b"}}},
		{`app == "a" && app == "b"`, indexPlan{kind: indexNever}},
		{`app in {}`, indexPlan{kind: indexNever}},
		{`app == "a" || app == "b"`, indexPlan{kind: indexByValue, key: "app", values: []string{"a", "b"}}},
		{`app == "a" || has(app)`, indexPlan{kind: indexByKey, key: "app"}},
		{`app == "a" || tier == "b"`, indexPlan{kind: indexAny}},
		{`has(a) && has(b)`, indexPlan{kind: indexByKey, key: "a"}},
		{`pcns.team == "x" && tier == "y"`, indexPlan{kind: indexByValue, key: "tier", values: []string{"y"}}},
		{`projectcalico.org/namespace == "x" && zone == "y"`, indexPlan{kind: indexByValue, key: "zone", values: []string{"y"}}},
		{`pcns.team == "x" && tier in {"a", "b"}`, indexPlan{kind: indexByValue, key: "pcns.team", values: []string{"x"}}},
		{`has(a) && b in {"x"}`, indexPlan{kind: indexByValue, key: "b", values: []string{"x"}}},
		{`has(pcns.a) && has(z)`, indexPlan{kind: indexByKey, key: "z"}},
		{`a starts with "x"`, indexPlan{kind: indexByKey, key: "a"}},
		{`!(a != "x")`, indexPlan{kind: indexByValue, key: "a", values: []string{"x"}}},
		{`!(a not in {"x"})`, indexPlan{kind: indexByValue, key: "a", values: []string{"x"}}},
		{`!(a == "x")`, indexPlan{kind: indexAny}},
		{`!has(a)`, indexPlan{kind: indexAny}},
		{`a != "x" && b not in {"y"}`, indexPlan{kind: indexAny}},
		{`all()`, indexPlan{kind: indexAny}},
		{`global()`, indexPlan{kind: indexAny}},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			assert.Equal(t, tt.want, planIndex(mustParse(t, tt.sel).root))
		})
	}
}

type event struct {
	kind, sel, item string
}

func recordingIndex(t *testing.T) (*Index, *[]event) {
	t.Helper()
	var events []event
	ix := NewIndex(
		func(s, i string) { events = append(events, event{"start", s, i}) },
		func(s, i string) { events = append(events, event{"stop", s, i}) },
	)
	return ix, &events
}

func TestIndexParents(t *testing.T) {
	ix, events := recordingIndex(t)
	ix.UpdateSelector("team-x", MustParse(`pcns.team == "x"`))
	ix.UpdateSelector("web", MustParse(`app == "web"`))
	ix.UpdateLabels("pod1", map[string]string{"app": "web"}, "ns1")
	ix.UpdateLabels("pod2", map[string]string{"app": "db", "pcns.team": "y"}, "ns1")
	assert.Equal(t, []event{{"start", "web", "pod1"}}, *events)
	*events = nil

	// The parent arrives after its items.
	ix.UpdateParentLabels("ns1", map[string]string{"pcns.team": "x"})
	assert.Equal(t, []event{{"start", "team-x", "pod1"}}, *events, "pod2's own label wins")
	assert.Equal(t, []string{"pod1"}, ix.ItemsMatching("team-x"))
	*events = nil

	// A label change that every item overrides changes nothing.
	ix.UpdateLabels("pod1", map[string]string{"app": "web", "pcns.team": "z"}, "ns1")
	assert.Equal(t, []event{{"stop", "team-x", "pod1"}}, *events)
	*events = nil
	ix.UpdateParentLabels("ns1", map[string]string{"pcns.team": "w"})
	assert.Empty(t, *events)

	ix.UpdateLabels("pod1", map[string]string{"app": "web"}, "ns1")
	ix.UpdateParentLabels("ns1", map[string]string{"pcns.team": "x"})
	assert.Equal(t, []event{{"start", "team-x", "pod1"}}, *events)
	*events = nil

	ix.DeleteParentLabels("ns1")
	assert.Equal(t, []event{{"stop", "team-x", "pod1"}}, *events)
	*events = nil

	// Earlier parents win over later ones.
	ix.UpdateParentLabels("a", map[string]string{"pcns.team": "y"})
	ix.UpdateParentLabels("b", map[string]string{"pcns.team": "x"})
	ix.UpdateLabels("pod3", nil, "a", "b")
	assert.Empty(t, ix.SelectorsMatching("pod3"))
	ix.UpdateLabels("pod3", nil, "b", "a")
	assert.Equal(t, []string{"team-x"}, ix.SelectorsMatching("pod3"))
	*events = nil

	ix.DeleteLabels("pod3")
	assert.Equal(t, []event{{"stop", "team-x", "pod3"}}, *events)
	assert.Nil(t, ix.SelectorsMatching("pod3"))
}

func TestIndexFilesUnderSmallestBucket(t *testing.T) {
	ix := NewIndex(nil, nil)
	for i := range 5 {
		ix.UpdateSelector(fmt.Sprint("v", i), MustParse(fmt.Sprintf(`version == "v2" && ns == "n%d"`, i)))
	}
	// The first is filed under ns (ties go to the smallest key); the
	// others too since their ns buckets are empty.
	for i := range 5 {
		assert.Equal(t, "ns", ix.selectors[fmt.Sprint("v", i)].plan.key)
	}
	for i := range 3 {
		ix.UpdateSelector(fmt.Sprint("w", i), MustParse(`version == "v2" && ns == "n0"`+fmt.Sprintf(` && x == "%d"`, i)))
	}
	// ns=n0 holds v0; version=v2 and x=0 are empty, the tie goes to the
	// smaller key. For w1, version=v2 holds w0 and x=1 is empty.
	assert.Equal(t, "version", ix.selectors["w0"].plan.key)
	assert.Equal(t, "x", ix.selectors["w1"].plan.key)
}

func TestIndexCallbackOrderAndNoops(t *testing.T) {
	ix, events := recordingIndex(t)
	for i := 5; i >= 1; i-- {
		ix.UpdateLabels(fmt.Sprintf("pod%d", i), map[string]string{"app": "web"})
	}
	ix.UpdateSelector("web", MustParse(`app == "web"`))
	want := []event{}
	for i := 1; i <= 5; i++ {
		want = append(want, event{"start", "web", fmt.Sprintf("pod%d", i)})
	}
	assert.Equal(t, want, *events, "callbacks come sorted")
	*events = nil

	// Same canonical form: nothing happens.
	ix.UpdateSelector("web", MustParse(`app=='web'`))
	ix.UpdateLabels("pod1", map[string]string{"app": "web"})
	assert.Empty(t, *events)

	// Changing the selector reports stops before starts.
	ix.UpdateLabels("pod6", map[string]string{"app": "db"})
	ix.UpdateSelector("web", MustParse(`app == "db" || app == "x"`))
	require.Len(t, *events, 6)
	assert.Equal(t, event{"stop", "web", "pod1"}, (*events)[0])
	assert.Equal(t, event{"start", "web", "pod6"}, (*events)[5])
	*events = nil

	ix.DeleteSelector("web")
	assert.Equal(t, []event{{"stop", "web", "pod6"}}, *events)
	assert.Nil(t, ix.ItemsMatching("web"))
	_, ok := ix.Selector("web")
	assert.False(t, ok)

	// Deleting unknown things is a no-op.
	ix.DeleteSelector("nope")
	ix.DeleteLabels("nope")
	ix.DeleteParentLabels("nope")
}

func TestIndexModifiedFromCallbackPanics(t *testing.T) {
	var ix *Index
	ix = NewIndex(func(string, string) { ix.DeleteSelector("s") }, nil)
	ix.UpdateLabels("i", nil)
	assert.Panics(t, func() { ix.UpdateSelector("s", All()) })
	// The index stays usable and consistent.
	assert.Equal(t, []string{"i"}, ix.ItemsMatching("s"))
}

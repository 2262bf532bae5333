package dir_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/policy"
)

// untilRecovered reads events until the EventRecovered of source and
// returns those before it; an error or a second recovery fails the test.
func untilRecovered(t *testing.T, ch <-chan datastore.Event, source string) []datastore.Event {
	t.Helper()
	var evs []datastore.Event
	for {
		ev := storetest.Next(t, ch, 5*time.Second)
		require.NotEqual(t, datastore.EventError, ev.Type, "%+v", ev)
		if ev.Type == datastore.EventRecovered {
			require.Equal(t, source, ev.Source)
			return evs
		}
		evs = append(evs, ev)
	}
}

// A broken file is fixed in each way a user fixes one: the watch says
// the file recovered, and what it deletes names the file.
func TestBrokenFileRecovers(t *testing.T) {
	const typo = "  typo: [\n"
	for _, tt := range []struct {
		name string
		fix  func(t *testing.T, p string)
		// want: the events before the recovery, by key.
		want map[policy.ObjectKey]datastore.EventType
	}{
		{
			// git revert: the last good content again, no object changes.
			name: "revert",
			fix:  func(t *testing.T, p string) { write(t, p, twoDocs) },
			want: map[policy.ObjectKey]datastore.EventType{},
		},
		{
			// The broken object removed, the others as they were.
			name: "remove object",
			fix: func(t *testing.T, p string) {
				docs := twoDocs[:len(twoDocs)-len("---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: pools}\nspec: {nets: [192.0.2.0/24]}\n")]
				write(t, p, docs)
			},
			want: map[policy.ObjectKey]datastore.EventType{keyGNS: datastore.EventDelete},
		},
		{
			name: "delete file",
			fix:  func(t *testing.T, p string) { require.NoError(t, os.Remove(p)) },
			want: map[policy.ObjectKey]datastore.EventType{keyGNP: datastore.EventDelete, keyNP: datastore.EventDelete, keyGNS: datastore.EventDelete},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, "shop.yaml")
			other := filepath.Join(root, "other.yaml")
			write(t, p, twoDocs)
			write(t, other, `{apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: security}, spec: {order: 100}}`)
			s := open(t, root)
			ch, err := s.Watch(t.Context())
			require.NoError(t, err)
			require.Len(t, storetest.UntilSynced(t, ch, 5*time.Second), 4)

			write(t, p, twoDocs+typo)
			ev := storetest.Next(t, ch, 5*time.Second)
			require.Equal(t, datastore.EventError, ev.Type, "%+v", ev)
			require.Equal(t, p, ev.Source)

			tt.fix(t, p)
			got := map[policy.ObjectKey]datastore.EventType{}
			for _, ev := range untilRecovered(t, ch, p) {
				got[ev.Key] = ev.Type
				assert.Equal(t, p, ev.Source, "%+v names the file it came from", ev)
			}
			assert.Equal(t, tt.want, got)
			problems, err := s.Problems(t.Context())
			require.NoError(t, err)
			assert.Empty(t, problems)

			// A new watch reports nothing broken.
			ch2, err := s.Watch(t.Context())
			require.NoError(t, err)
			for {
				ev := storetest.Next(t, ch2, 5*time.Second)
				require.NotEqual(t, datastore.EventError, ev.Type, "%+v", ev)
				if ev.Type == datastore.EventSynced {
					break
				}
			}
		})
	}
}

// A broken file that was never read good (nothing of it in force) is
// removed: the recovery is the only event.
func TestNeverGoodFileRemoved(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "bad.yaml")
	write(t, p, "kind: [\n")
	s := open(t, root)
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	var broken bool
	for {
		ev := storetest.Next(t, ch, 5*time.Second)
		if ev.Type == datastore.EventSynced {
			break
		}
		broken = broken || ev.Type == datastore.EventError && ev.Source == p
	}
	require.True(t, broken, "the broken file is reported before synced")
	require.NoError(t, os.Remove(p))
	assert.Empty(t, untilRecovered(t, ch, p))
}

// An object deleted from a good file (no error involved) names the file
// too, and one moved to another file then deleted names the new one.
func TestDeleteNamesFile(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a.yaml"), filepath.Join(root, "b.yaml")
	gns := `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: pools}, spec: {nets: [192.0.2.0/24]}}`
	write(t, a, gns)
	s := open(t, root)
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	storetest.UntilSynced(t, ch, 5*time.Second)

	// Moved: the same object, now in b.yaml (no event: nothing changed).
	write(t, b, gns)
	require.NoError(t, os.Remove(a))
	// Then b.yaml goes too, after a moment.
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, os.Remove(b))
	for {
		ev := storetest.Next(t, ch, 5*time.Second)
		if ev.Type == datastore.EventDelete {
			assert.Equal(t, keyGNS, ev.Key)
			assert.Equal(t, b, ev.Source, "the file it was last read from")
			return
		}
	}
}

// A file still broken whose other objects change is told broken again
// after their upserts: a consumer taking an upsert as news that its file
// is fine learns otherwise in the same batch.
func TestStillBrokenToldAgain(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a.yaml"), filepath.Join(root, "b.yaml")
	gns := `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: pools}, spec: {nets: [192.0.2.0/24]}}`
	tier := func(order int) string {
		return "---\n{apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: security}, spec: {order: " + strconv.Itoa(order) + "}}\n"
	}
	write(t, a, gns)
	write(t, b, gns+"\n"+tier(100))
	s := open(t, root)
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	var dups int
	for {
		ev := storetest.Next(t, ch, 5*time.Second)
		if ev.Type == datastore.EventSynced {
			break
		}
		if ev.Type == datastore.EventError {
			assert.Equal(t, b, ev.Source)
			dups++
		}
	}
	require.Equal(t, 1, dups, "b.yaml's definition of pools is ignored")

	// The tier in b.yaml changes; pools is still defined twice.
	write(t, b, gns+"\n"+tier(200))
	ev := storetest.Next(t, ch, 5*time.Second)
	require.Equal(t, datastore.EventUpsert, ev.Type, "%+v", ev)
	require.Equal(t, b, ev.Source)
	ev = storetest.Next(t, ch, 5*time.Second)
	require.Equal(t, datastore.EventError, ev.Type, "%+v", ev)
	require.Equal(t, b, ev.Source)
	var dup *dir.DuplicateError
	require.ErrorAs(t, ev.Err, &dup)

	// a.yaml goes: b.yaml's definition (the same object) is in force,
	// and b.yaml is fine.
	require.NoError(t, os.Remove(a))
	assert.Empty(t, untilRecovered(t, ch, b), "the object in force did not change")
}

package memory_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/memory"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/policy"
)

func TestContract(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) datastore.Store {
			s, err := memory.New()
			require.NoError(t, err)
			return s
		},
		// The memory store has no source to corrupt; ReportError stands
		// for one, as a consumer's tests use it.
		Break: func(t *testing.T, s datastore.Store, key policy.ObjectKey) {
			s.(*memory.Store).ReportError("memory/"+key.String(), errors.New("broken"))
		},
		Fix: func(t *testing.T, s datastore.Store, key policy.ObjectKey) {
			s.(*memory.Store).ReportRecovered("memory/" + key.String())
		},
	})
}

func TestNewWithObjects(t *testing.T) {
	objs := storetest.Objects(t)
	s, err := memory.New(objs...)
	require.NoError(t, err)
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	state := storetest.UntilSynced(t, ch, 5*time.Second)
	require.Len(t, state, len(objs))

	bad := objs[0]
	bad.SetName("Bad Name")
	_, err = memory.New(bad)
	var verrs policy.ValidationErrors
	require.ErrorAs(t, err, &verrs)
}

package agenttest

import (
	"github.com/calyxnet/calyx/internal/datastore/memory"
	"github.com/calyxnet/calyx/policy"
)

// MemStore is the in-memory datastore the agent's tests run on: the
// shared memory store, with its hooks for consumers' tests (ReportError,
// Disconnect, Watchers, Source).
type MemStore = memory.Store

// NewMemStore returns a store holding objs (which must be valid).
func NewMemStore(objs ...policy.Object) (*MemStore, error) { return memory.New(objs...) }

// Package datastore is where the node agent and calyxctl read and write
// policy resources: a directory of YAML (the embedded default, and the
// GitOps way), etcd v3 for clusters, or the Kubernetes API.
//
// Every store speaks the same [Store] interface in terms of policy.Object
// values, so nothing downstream (the compiler, the dataplanes) knows where a
// resource came from.
//
// # Stores
//
//   - datastore/dir: a directory tree of YAML, watched with fsnotify;
//   - datastore/etcd: etcd v3, one key per object, watched with revisions;
//   - datastore/kube: the Kubernetes API through informers (read only);
//   - datastore/memory: in memory, for tests of consumers.
//
// datastore/dsconfig picks one calicoctl-style (flags, environment, config
// file) and opens it; datastore/storetest is the contract every store is
// tested against.
//
// # Objects and revisions
//
// Stores keep objects as Prepare returns them (validated, namespace
// defaulted, apiVersion and kind set) and hand them out with
// metadata.resourceVersion set to the Item's Revision, as the Kubernetes
// API does: `calyxctl get -o yaml` shows it, and a Replace of an edited
// copy can pass it back. What Get and List return is the caller's to
// change; the objects of watch events are shared and must not be changed.
//
// # Watch
//
// Events of one key arrive in the order of its changes. A store may merge
// quick successive changes into one event (the directory store debounces
// editors' bursts), so a consumer sees every key's latest state, not
// necessarily every intermediate one. EventError events may come before
// EventSynced (a file that is already broken when the watch starts).
//
// A source an EventError named is in error until the watch sends an
// EventRecovered for it: the source reads well again (perhaps with the
// very objects last in force, as after a `git revert`, so that no upsert
// or delete follows) or it is gone. Upserts and deletes name the source
// the object was read from (a delete: the one it was last read from), so
// a consumer may also take them as news that the source is fine; a store
// that sends one from a source still broken sends its EventError again
// after it. A new watch reports again the sources that are still broken.
package datastore

import (
	"context"
	"errors"

	"github.com/calyxnet/calyx/policy"
)

// Errors callers branch on.
var (
	// ErrNotFound: no object with that key.
	ErrNotFound = errors.New("datastore: not found")
	// ErrExists: Create of a key that is already there.
	ErrExists = errors.New("datastore: already exists")
	// ErrConflict: the object changed since the revision the caller read
	// (optimistic concurrency).
	ErrConflict = errors.New("datastore: revision conflict")
	// ErrReadOnly: the store does not take writes (the Kubernetes API
	// adapter: write with kubectl).
	ErrReadOnly = errors.New("datastore: read only")
	// ErrClosed: the store was used after Close.
	ErrClosed = errors.New("datastore: closed")
)

// Item is one stored object with its revision.
type Item struct {
	// Object is the resource, decoded and validated.
	Object policy.Object
	// Revision identifies this version of the object for optimistic
	// concurrency: etcd's mod revision, a content hash of a file's
	// document, or Kubernetes' resourceVersion. Opaque to callers.
	Revision string
	// Origin is where the object was read from (file and line), if known.
	Origin *policy.Origin
}

// Key returns the key of the item's object.
func (it Item) Key() policy.ObjectKey { return policy.KeyOf(it.Object) }

// EventType says what an Event reports.
type EventType uint8

// Event types.
const (
	// EventUpsert: an object was added or changed (Item is set).
	EventUpsert EventType = iota + 1
	// EventDelete: an object was removed (Key is set).
	EventDelete
	// EventSynced: every object that existed when the watch started has
	// been sent; the consumer's view is complete. Sent once per watch.
	EventSynced
	// EventError: a source could not be read (a file with a validation
	// error, a lost connection). Err says what; the objects last read
	// from that source stay in force (no deletes are sent for them).
	EventError
	// EventRecovered: the source an earlier EventError named (Source) has
	// no error any more: it reads well again, or it was removed. Sent
	// once the source has no problem left, whether or not its objects
	// changed.
	EventRecovered
)

// Event is one change seen by Watch.
type Event struct {
	// Type says what happened.
	Type EventType
	// Key identifies the object (upsert and delete).
	Key policy.ObjectKey
	// Item is the new version (upsert only).
	Item Item
	// Source names the file, key prefix or informer the event came from
	// (for EventError and EventRecovered: the source concerned).
	Source string
	// Err is set for EventError (and wraps the policy.ValidationErrors of
	// a bad file).
	Err error
}

// Store is one datastore. Implementations are safe for concurrent use.
type Store interface {
	// List returns every object, sorted by key.
	List(ctx context.Context) ([]Item, error)
	// Get returns one object, or ErrNotFound.
	Get(ctx context.Context, key policy.ObjectKey) (Item, error)
	// Create stores a new object, or fails with ErrExists.
	Create(ctx context.Context, obj policy.Object) (Item, error)
	// Replace stores a new version of an existing object. With a
	// non-empty revision it fails with ErrConflict unless the stored
	// object is still at that revision; ErrNotFound if absent.
	Replace(ctx context.Context, obj policy.Object, revision string) (Item, error)
	// Apply creates or replaces, unconditionally.
	Apply(ctx context.Context, obj policy.Object) (Item, error)
	// Delete removes an object. With a non-empty revision it fails with
	// ErrConflict unless the stored object is still at that revision;
	// ErrNotFound if absent.
	Delete(ctx context.Context, key policy.ObjectKey, revision string) error
	// Watch sends every current object as EventUpsert, then one
	// EventSynced, then changes as they happen, until ctx is done; the
	// channel is then closed. A slow consumer delays the store's reads,
	// it never loses events.
	Watch(ctx context.Context) (<-chan Event, error)
	// Close releases the store's resources.
	Close() error
}

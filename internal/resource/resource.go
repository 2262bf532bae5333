// Package resource is what calyxctl's apply, create, replace, delete,
// label and diff do with a datastore, as a library: plan the changes a set
// of objects would make (dry run, diff), make them, and simulate their
// effect on the dataplane and on which pods can reach which.
package resource

import (
	"context"
	"errors"
	"fmt"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// Op is what to do with objects.
type Op uint8

// Operations, as the calyxctl commands of the same names.
const (
	// OpApply creates or replaces, whatever is stored.
	OpApply Op = iota + 1
	// OpCreate creates; an existing object is an error.
	OpCreate
	// OpReplace replaces; a missing object is an error, and an object
	// carrying metadata.resourceVersion must still be at it.
	OpReplace
	// OpDelete deletes; a missing object is an error unless ignored, and
	// an object carrying metadata.resourceVersion must still be at it.
	OpDelete
)

// Action is what happened, or would happen, to one object.
type Action string

// Actions, worded as kubectl prints them.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Replaced   Action = "replaced"
	Unchanged  Action = "unchanged"
	Deleted    Action = "deleted"
	// Skipped: a delete of a missing object with IgnoreNotFound.
	Skipped Action = "not found, ignored"
)

// Change is one object's planned or made change.
type Change struct {
	// Key is the object.
	Key policy.ObjectKey
	// Action is what was (or would be) done; empty when Err is set.
	Action Action
	// Old is the stored object before (nil when absent); New after (nil
	// for a delete). Both without resourceVersion for Diff.
	Old, New policy.Object
	// Item is the stored result of a write (not for a plan or delete).
	Item datastore.Item
	// Err is why the object was (or would be) refused: wrapping
	// datastore.ErrExists, ErrNotFound, ErrConflict, ErrReadOnly, or a
	// policy.ValidationErrors.
	Err error
}

// Options are the optional knobs of Plan and Do.
type Options struct {
	// IgnoreNotFound makes a delete of a missing object a Skipped change
	// instead of an error.
	IgnoreNotFound bool
}

// Plan says what op would do with each object against the store's
// current state, without writing: the server-side dry run and diff. The
// error is for a store that cannot be read; per-object refusals are in
// each Change's Err.
func Plan(ctx context.Context, s datastore.Store, op Op, objs []policy.Object, opts Options) ([]Change, error) {
	out := make([]Change, 0, len(objs))
	for _, obj := range objs {
		c, err := plan(ctx, s, op, policy.KeyOf(obj), obj, opts)
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
	return out, nil
}

// PlanDelete is Plan of deletes by key, unconditionally.
func PlanDelete(ctx context.Context, s datastore.Store, keys []policy.ObjectKey, opts Options) ([]Change, error) {
	out := make([]Change, 0, len(keys))
	for _, k := range keys {
		c, err := plan(ctx, s, OpDelete, k, nil, opts)
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Delete deletes by key, unconditionally, going on after a missing one.
func Delete(ctx context.Context, s datastore.Store, keys []policy.ObjectKey, opts Options) ([]Change, error) {
	out := make([]Change, 0, len(keys))
	for _, k := range keys {
		c, err := plan(ctx, s, OpDelete, k, nil, opts)
		if err != nil {
			return out, err
		}
		if c.Err == nil && c.Action == Deleted {
			if c.Err = s.Delete(ctx, k, ""); c.Err != nil {
				c.Action = ""
				if !refusal(c.Err) {
					return append(out, c), c.Err
				}
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// plan decides one change: of obj, or for a delete by key of key alone
// (obj nil). The error is a read failure.
func plan(ctx context.Context, s datastore.Store, op Op, key policy.ObjectKey, obj policy.Object, opts Options) (Change, error) {
	var prepared policy.Object
	if op != OpDelete {
		p, err := datastore.Prepare(obj)
		if err != nil {
			return Change{Key: key, Err: err}, nil
		}
		prepared, key = p, policy.KeyOf(p)
	} else if key.Kind.Namespaced() && key.Namespace == "" {
		key.Namespace = "default"
	}
	c := Change{Key: key, New: prepared}
	cur, err := s.Get(ctx, key)
	exists := err == nil
	if err != nil && !errors.Is(err, datastore.ErrNotFound) {
		return c, err
	}
	if exists {
		if c.Old, err = withoutRevision(cur.Object); err != nil {
			return c, err
		}
	}
	var rv string
	if obj != nil {
		rv = obj.GetResourceVersion()
	}
	switch op {
	case OpApply:
		switch {
		case !exists:
			c.Action = Created
		case sameContent(c.Old, prepared):
			c.Action = Unchanged
		default:
			c.Action = Configured
		}
	case OpCreate:
		if exists {
			c.Err = fmt.Errorf("%s: %w", key, datastore.ErrExists)
		} else {
			c.Action = Created
		}
	case OpReplace:
		switch {
		case !exists:
			c.Err = fmt.Errorf("%s: %w", key, datastore.ErrNotFound)
		case rv != "" && rv != cur.Revision:
			c.Err = fmt.Errorf("%s: %w (stored revision %s, object's %s)", key, datastore.ErrConflict, cur.Revision, rv)
		default:
			c.Action = Replaced
		}
	case OpDelete:
		c.New = nil
		switch {
		case !exists && opts.IgnoreNotFound:
			c.Action = Skipped
		case !exists:
			c.Err = fmt.Errorf("%s: %w", key, datastore.ErrNotFound)
		case rv != "" && rv != cur.Revision:
			c.Err = fmt.Errorf("%s: %w (stored revision %s, object's %s)", key, datastore.ErrConflict, cur.Revision, rv)
		default:
			c.Action = Deleted
		}
	default:
		return c, fmt.Errorf("resource: unknown op %d", op)
	}
	return c, nil
}

// Do makes op's changes, object by object, going on after a refused one
// as kubectl does. The error is for a store that cannot be read or
// written at all; per-object refusals are in each Change's Err.
func Do(ctx context.Context, s datastore.Store, op Op, objs []policy.Object, opts Options) ([]Change, error) {
	out := make([]Change, 0, len(objs))
	for _, obj := range objs {
		c, err := plan(ctx, s, op, policy.KeyOf(obj), obj, opts)
		if err != nil {
			return out, err
		}
		if c.Err == nil {
			c.Item, c.Err = write(ctx, s, op, obj, c)
			if c.Err != nil {
				c.Action = ""
				if !refusal(c.Err) {
					return append(out, c), c.Err
				}
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// refusal reports whether err refuses one object (the next may succeed),
// as opposed to a store failure.
func refusal(err error) bool {
	var verrs policy.ValidationErrors
	return errors.Is(err, datastore.ErrExists) || errors.Is(err, datastore.ErrNotFound) ||
		errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrReadOnly) || errors.As(err, &verrs)
}

func write(ctx context.Context, s datastore.Store, op Op, obj policy.Object, c Change) (datastore.Item, error) {
	switch {
	case c.Action == Unchanged || c.Action == Skipped:
		return datastore.Item{}, nil
	case op == OpApply:
		return s.Apply(ctx, obj)
	case op == OpCreate:
		return s.Create(ctx, obj)
	case op == OpReplace:
		return s.Replace(ctx, obj, obj.GetResourceVersion())
	case op == OpDelete:
		return datastore.Item{}, s.Delete(ctx, c.Key, obj.GetResourceVersion())
	}
	return datastore.Item{}, fmt.Errorf("resource: unknown op %d", op)
}

func withoutRevision(o policy.Object) (policy.Object, error) {
	cp, err := datastore.Copy(o)
	if err != nil {
		return nil, err
	}
	cp.SetResourceVersion("")
	return cp, nil
}

func sameContent(a, b policy.Object) bool {
	ea, err1 := datastore.Encoding(a)
	eb, err2 := datastore.Encoding(b)
	return err1 == nil && err2 == nil && string(ea) == string(eb)
}

// Changed reports whether any change alters the store.
func Changed(changes []Change) bool {
	for _, c := range changes {
		if c.Err == nil && c.Action != Unchanged && c.Action != Skipped {
			return true
		}
	}
	return false
}

// Failed returns the refused changes' errors joined, or nil.
func Failed(changes []Change) error {
	var errs []error
	for _, c := range changes {
		if c.Err != nil {
			errs = append(errs, c.Err)
		}
	}
	return errors.Join(errs...)
}

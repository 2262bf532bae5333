package resource

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// LabelChange is one argument of `calyxctl label`: key=value sets a
// label, key- removes it.
type LabelChange struct {
	Key, Value string
	Remove     bool
}

// ParseLabelChanges reads key=value and key- arguments.
func ParseLabelChanges(args []string) ([]LabelChange, error) {
	var out []LabelChange
	for _, a := range args {
		var c LabelChange
		if k, v, ok := strings.Cut(a, "="); ok {
			c = LabelChange{Key: k, Value: v}
			for _, msg := range validation.IsValidLabelValue(v) {
				return nil, fmt.Errorf("label %q: invalid value: %s", a, msg)
			}
		} else if k, ok := strings.CutSuffix(a, "-"); ok {
			c = LabelChange{Key: k, Remove: true}
		} else {
			return nil, fmt.Errorf("label %q: want key=value or key-", a)
		}
		for _, msg := range validation.IsQualifiedName(c.Key) {
			return nil, fmt.Errorf("label %q: invalid key: %s", a, msg)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no label changes: give key=value or key- arguments")
	}
	return out, nil
}

// ErrLabelExists is returned when a label would change value without
// overwrite.
var ErrLabelExists = errors.New("label already set")

// Relabel returns labels with the changes made, and whether anything
// changed. Without overwrite, changing an existing label's value is an
// ErrLabelExists.
func Relabel(labels map[string]string, changes []LabelChange, overwrite bool) (map[string]string, bool, error) {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	for _, c := range changes {
		cur, has := out[c.Key]
		switch {
		case c.Remove:
			delete(out, c.Key)
		case has && cur != c.Value && !overwrite:
			return nil, false, fmt.Errorf("%w: %q is %q (pass --overwrite to change it)", ErrLabelExists, c.Key, cur)
		default:
			out[c.Key] = c.Value
		}
	}
	return out, !maps.Equal(out, labels) && !(len(out) == 0 && len(labels) == 0), nil
}

// Label changes one stored object's labels with optimistic concurrency,
// reading and trying again when another writer got in between. It
// returns whether the labels changed.
func Label(ctx context.Context, s datastore.Store, key policy.ObjectKey, changes []LabelChange, overwrite bool) (bool, error) {
	for attempt := 0; ; attempt++ {
		it, err := s.Get(ctx, key)
		if err != nil {
			return false, err
		}
		labels, changed, err := Relabel(it.Object.GetLabels(), changes, overwrite)
		if err != nil || !changed {
			return false, err
		}
		it.Object.SetLabels(labels)
		_, err = s.Replace(ctx, it.Object, it.Revision)
		if errors.Is(err, datastore.ErrConflict) && attempt < 5 {
			continue
		}
		return err == nil, err
	}
}

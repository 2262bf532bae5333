package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// maxBatch bounds the events handled under one lock and one compile, so a
// huge initial listing does not keep the endpoint API waiting long.
const maxBatch = 4096

// watchLoop watches the store until ctx ends, watching again (with
// backoff) when a watch fails or ends.
func (a *Agent) watchLoop(ctx context.Context) {
	backoff := a.cfg.RetryMin
	for ctx.Err() == nil {
		events, err := a.cfg.Store.Watch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.storeError("watch", fmt.Errorf("watch: %w", err))
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, a.cfg.RetryMax)
			continue
		}
		a.beginListing()
		if a.consume(ctx, events) {
			backoff = a.cfg.RetryMin
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("datastore watch ended; watching again", "backoff", backoff)
		a.metrics.datastoreErrors.WithLabelValues("watch").Inc()
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, a.cfg.RetryMax)
	}
}

// consume handles events in batches until the channel closes; it reports
// whether the watch got as far as a sync.
func (a *Agent) consume(ctx context.Context, events <-chan datastore.Event) (synced bool) {
	batch := make([]datastore.Event, 0, 64)
	for {
		var ev datastore.Event
		var ok bool
		select {
		case ev, ok = <-events:
		case <-ctx.Done():
			return synced
		}
		if !ok {
			return synced
		}
		batch = append(batch[:0], ev)
	drain:
		for len(batch) < maxBatch {
			select {
			case ev, ok := <-events:
				if !ok {
					break drain
				}
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		if a.handle(batch) {
			synced = true
		}
		clear(batch)
	}
}

// beginListing starts a new watch's initial listing: the broken sources
// it reports are recorded so that errors it does not report again (a file
// fixed or removed while no watch ran) are cleared at its EventSynced;
// when the agent was already in sync, so are the keys it sends, so that
// those it does not send are deleted then.
func (a *Agent) beginListing() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.relistErrs = map[string]struct{}{}
	if a.synced {
		a.relist = map[policy.ObjectKey]struct{}{}
	}
}

// handle applies a batch of events under one lock and one compile; it
// reports whether the batch held an EventSynced.
func (a *Agent) handle(batch []datastore.Event) (synced bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Events arrive: the watch works again.
	a.clearSourceErrorLocked("watch")
	var changes []policy.Change
	first := false
	for i := range batch {
		ev := &batch[i]
		switch ev.Type {
		case datastore.EventUpsert:
			if a.relist != nil {
				a.relist[ev.Key] = struct{}{}
			}
			ch, err := a.upsertLocked(ev.Key, ev.Item)
			if err != nil {
				a.storeErrorLocked(ev.Source, err)
				continue
			}
			a.clearSourceErrorLocked(ev.Source)
			changes = append(changes, ch)
		case datastore.EventDelete:
			changes = append(changes, a.deleteLocked(ev.Key))
			a.clearSourceErrorLocked(ev.Source)
		case datastore.EventRecovered:
			// The source reads well again (perhaps with the objects
			// already in force, so no upsert says so) or is gone.
			a.clearSourceErrorLocked(ev.Source)
		case datastore.EventSynced:
			synced = true
			changes = append(changes, a.sweepLocked()...)
			a.sweepErrorsLocked()
			if !a.synced {
				first = true
				a.synced = true
				a.metrics.synced.Set(1)
				a.log.Info("datastore in sync", "objects", a.set.Len())
			}
		case datastore.EventError:
			err := ev.Err
			if err == nil {
				err = errors.New("unknown error")
			}
			if a.relistErrs != nil {
				a.relistErrs[sourceName(ev.Source)] = struct{}{}
			}
			a.storeErrorLocked(ev.Source, err)
		}
	}
	if first {
		a.compileFullLocked()
		return synced
	}
	a.publishLocked(changes)
	return synced
}

// sweepLocked deletes what a re-watch's listing did not send.
func (a *Agent) sweepLocked() []policy.Change {
	if a.relist == nil {
		return nil
	}
	var changes []policy.Change
	for key := range a.ds {
		if _, ok := a.relist[key]; !ok {
			changes = append(changes, a.deleteLocked(key))
		}
	}
	if len(changes) > 0 {
		a.log.Info("objects gone while the watch was down, deleted", "count", len(changes))
	}
	a.relist = nil
	return changes
}

// sweepErrorsLocked clears the source errors a watch's listing did not
// report again: a store reports every broken source in a new watch, so
// those were fixed or removed while no watch ran.
func (a *Agent) sweepErrorsLocked() {
	if a.relistErrs == nil {
		return
	}
	for src := range a.sourceErrs {
		if _, ok := a.relistErrs[src]; !ok && src != "watch" {
			a.clearSourceErrorLocked(src)
		}
	}
	a.relistErrs = nil
}

// upsertLocked records a datastore object and puts its effective form in
// the Set.
func (a *Agent) upsertLocked(key policy.ObjectKey, it datastore.Item) (policy.Change, error) {
	if it.Object == nil {
		return policy.Change{}, fmt.Errorf("%s: upsert without object", key)
	}
	if key.Kind == policy.KindPod {
		if _, ok := it.Object.(*corev1.Pod); !ok {
			return policy.Change{}, fmt.Errorf("%s: object is a %T", key, it.Object)
		}
		prev, had := a.ds[key]
		a.ds[key] = it
		ch, err := a.syncPodLocked(key)
		if err != nil {
			// Keep the last good version in force.
			if had {
				a.ds[key] = prev
			} else {
				delete(a.ds, key)
			}
		}
		return ch, err
	}
	ch, err := a.set.UpsertAt(it.Object, it.Origin)
	if err != nil {
		return policy.Change{}, fmt.Errorf("%s: %w", key, err)
	}
	a.ds[key] = it
	return ch, nil
}

func (a *Agent) deleteLocked(key policy.ObjectKey) policy.Change {
	delete(a.ds, key)
	if key.Kind == policy.KindPod {
		ch, err := a.syncPodLocked(key)
		if err != nil {
			// Cannot happen: the registration alone always makes a valid pod.
			a.log.Error("pod merge failed", "pod", key, "err", err)
		}
		return ch
	}
	return a.set.Delete(key)
}

// storeError records a source's error.
func (a *Agent) storeError(source string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.storeErrorLocked(source, err)
}

func (a *Agent) storeErrorLocked(source string, err error) {
	source = sourceName(source)
	a.log.Error("datastore error; last good objects stay in force", "source", source, "err", err)
	a.metrics.datastoreErrors.WithLabelValues(metricSource(source)).Inc()
	a.sourceErrs[source] = err.Error()
	a.metrics.errorSources.Set(float64(len(a.sourceErrs)))
	a.noteErrorLocked(fmt.Errorf("datastore %s: %w", source, err))
}

// sourceName is the name an error of source is kept under.
func sourceName(source string) string {
	if source == "" {
		return "datastore"
	}
	return source
}

func (a *Agent) clearSourceErrorLocked(source string) {
	source = sourceName(source)
	if _, ok := a.sourceErrs[source]; !ok {
		return
	}
	delete(a.sourceErrs, source)
	a.metrics.errorSources.Set(float64(len(a.sourceErrs)))
	a.log.Info("datastore source readable again", "source", source)
}

// metricSource keeps the label's cardinality bounded: the kind of source,
// not each file.
func metricSource(source string) string {
	if source == "watch" {
		return "watch"
	}
	return "source"
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

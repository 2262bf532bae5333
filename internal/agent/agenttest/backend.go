package agenttest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
)

// Backend is a backend.Backend and backend.Repairer over the reference
// model that counts what it is asked to do and fails on demand. It
// wraps Inner when set (a real dataplane, to time it), else a fresh model.
type Backend struct {
	// Inner does the work; a model.Model when nil at first use.
	Inner backend.Backend

	mu       sync.Mutex
	cond     *sync.Cond
	applies  int
	errors   int
	repairs  int
	failNext int
	failErr  error
	drift    int
	repairIn time.Duration
	last     *compile.Ruleset
	history  []Applied
	closed   bool
	blockers []chan struct{}
}

// Applied is one successful Apply.
type Applied struct {
	Ruleset *compile.Ruleset
	// Start is when Apply was called, At when it returned.
	Start, At time.Time
}

// ErrInjected is what an injected failure returns unless FailNext was
// given another error.
var ErrInjected = errors.New("agenttest: injected apply failure")

func (b *Backend) init() {
	if b.cond == nil {
		b.cond = sync.NewCond(&b.mu)
	}
	if b.Inner == nil {
		b.Inner = model.New()
	}
}

// Name implements backend.Backend.
func (b *Backend) Name() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	return b.Inner.Name()
}

// FailNext makes the next n Apply calls fail with err (ErrInjected when
// nil), leaving the previous state in force.
func (b *Backend) FailNext(n int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		err = ErrInjected
	}
	b.failNext, b.failErr = n, err
}

// Drift makes the next Repair report n repairs.
func (b *Backend) Drift(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drift = n
}

// SlowRepair makes every Repair take d: a huge Ruleset read back.
func (b *Backend) SlowRepair(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.repairIn = d
}

// Block makes Apply wait until the returned function is called: a stuck
// kernel.
func (b *Backend) Block() (release func()) {
	ch := make(chan struct{})
	b.mu.Lock()
	b.blockers = append(b.blockers, ch)
	b.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// Apply implements backend.Backend.
func (b *Backend) Apply(ctx context.Context, rs *compile.Ruleset) error {
	start := time.Now()
	b.mu.Lock()
	b.init()
	blockers := b.blockers
	b.blockers = nil
	b.mu.Unlock()
	for _, ch := range blockers {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.mu.Lock()
	if b.failNext > 0 {
		b.failNext--
		b.errors++
		b.cond.Broadcast()
		err := b.failErr
		b.mu.Unlock()
		return err
	}
	inner := b.Inner
	b.mu.Unlock()
	if err := inner.Apply(ctx, rs); err != nil {
		b.mu.Lock()
		b.errors++
		b.cond.Broadcast()
		b.mu.Unlock()
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.applies++
	b.last = rs
	b.history = append(b.history, Applied{Ruleset: rs, Start: start, At: time.Now()})
	b.cond.Broadcast()
	return nil
}

// Check implements backend.Backend.
func (b *Backend) Check(ctx context.Context, rs *compile.Ruleset) error {
	b.mu.Lock()
	b.init()
	inner := b.Inner
	b.mu.Unlock()
	return inner.Check(ctx, rs)
}

// Dump implements backend.Backend.
func (b *Backend) Dump(ctx context.Context) ([]byte, error) {
	b.mu.Lock()
	b.init()
	inner := b.Inner
	b.mu.Unlock()
	return inner.Dump(ctx)
}

// Close implements backend.Backend.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	b.init()
	b.closed = true
	inner := b.Inner
	b.mu.Unlock()
	return inner.Close(ctx)
}

// Closed reports whether Close was called.
func (b *Backend) Closed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// drift is what Repair reports.
type drift int

func (d drift) Empty() bool    { return d == 0 }
func (d drift) String() string { return "agenttest drift" }

// Repair implements backend.Repairer: it repairs through the inner
// backend when that is a Repairer, and reports the drift set by Drift.
func (b *Backend) Repair(ctx context.Context) (backend.Drift, error) {
	b.mu.Lock()
	b.init()
	b.repairs++
	n := b.drift
	b.drift = 0
	inner := b.Inner
	delay := b.repairIn
	b.cond.Broadcast()
	b.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if r, ok := inner.(backend.Repairer); ok {
		d, err := r.Repair(ctx)
		if err != nil || !d.Empty() {
			return d, err
		}
	}
	return drift(n), nil
}

// Counts returns the successful applies, failed applies and repairs so far.
func (b *Backend) Counts() (applies, errors, repairs int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.applies, b.errors, b.repairs
}

// Last returns the last Ruleset applied successfully.
func (b *Backend) Last() *compile.Ruleset {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// History returns every successful Apply in order.
func (b *Backend) History() []Applied {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Applied(nil), b.history...)
}

// WaitFor waits until ok holds for the last applied Ruleset (nil before
// the first), or ctx ends.
func (b *Backend) WaitFor(ctx context.Context, ok func(*compile.Ruleset) bool) error {
	b.mu.Lock()
	b.init()
	b.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for !ok(b.last) {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.cond.Wait()
	}
	return nil
}

// WaitCounts waits until ok holds for Counts, or ctx ends.
func (b *Backend) WaitCounts(ctx context.Context, ok func(applies, errors, repairs int) bool) error {
	b.mu.Lock()
	b.init()
	b.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for !ok(b.applies, b.errors, b.repairs) {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.cond.Wait()
	}
	return nil
}

var (
	_ backend.Backend  = (*Backend)(nil)
	_ backend.Repairer = (*Backend)(nil)
)

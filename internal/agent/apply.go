package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/calyxnet/calyx/compile"
)

// applyLoop applies the newest Ruleset whenever the watch side marks it
// dirty, retries failed applies with backoff and repairs drift
// periodically, until ctx ends.
func (a *Agent) applyLoop(ctx context.Context) {
	var tick <-chan time.Time
	var repairTimer *time.Timer
	if a.cfg.ReconcileInterval > 0 && a.repairer != nil {
		repairTimer = time.NewTimer(a.cfg.ReconcileInterval)
		defer repairTimer.Stop()
		tick = repairTimer.C
	}
	var retry <-chan time.Time
	var retryTimer *time.Timer
	defer func() {
		if retryTimer != nil {
			retryTimer.Stop()
		}
	}()
	backoff := a.cfg.RetryMin
	var lastEnd time.Time // of the last apply
	failed := func() {
		retryTimer = time.NewTimer(backoff)
		retry = retryTimer.C
		a.log.Info("retrying dataplane apply", "in", backoff)
		backoff = min(2*backoff, a.cfg.RetryMax)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.dirty:
			if retry != nil {
				// Failing: the retry applies the newest Ruleset anyway.
				continue
			}
			// An isolated change goes out at once; a burst is held to
			// one apply per Coalesce window (and whatever arrives while
			// the kernel is busy goes in the next apply anyway).
			if wait := a.cfg.Coalesce - time.Since(lastEnd); wait > 0 && !sleep(ctx, wait) {
				return
			}
			err := a.applyLatest(ctx)
			lastEnd = time.Now()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				failed()
			}
		case <-retry:
			retry, retryTimer = nil, nil
			// The kernel may hold anything after a failure: put back what
			// was last applied, then apply the newest.
			if err := a.repair(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("repair before retry failed", "err", err)
			}
			if err := a.applyLatest(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				failed()
				continue
			}
			backoff = a.cfg.RetryMin
		case <-tick:
			if retry != nil {
				repairTimer.Reset(a.cfg.ReconcileInterval)
				continue
			}
			start := time.Now()
			err := a.repair(ctx)
			repairTimer.Reset(a.nextRepair(time.Since(start)))
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// Repair failing means the kernel may not match: apply the
				// newest Ruleset again after a backoff.
				a.mu.Lock()
				a.state.failing = true
				a.mu.Unlock()
				failed()
			}
		}
	}
}

// repairShare bounds the share of time periodic repairs may hold the
// dataplane: a repair that took d is followed by at least
// d/repairShare of rest, however short ReconcileInterval is, so changes
// are not kept waiting behind back-to-back repairs of a huge Ruleset.
const repairShare = 0.05

// nextRepair returns the delay before the next periodic repair.
func (a *Agent) nextRepair(took time.Duration) time.Duration {
	next := a.cfg.ReconcileInterval
	if minRest := time.Duration(float64(took) / repairShare); minRest > next {
		a.log.Warn("drift repair is slow; repairing less often", "took", took, "next in", minRest)
		next = minRest
	}
	return next
}

// applyLatest applies the newest Ruleset if it is not the one in force.
func (a *Agent) applyLatest(ctx context.Context) error {
	a.mu.Lock()
	rs, gen := a.latest, a.gen
	if rs == nil || (gen == a.appliedGen && !a.state.failing) {
		a.mu.Unlock()
		return nil
	}
	start := time.Now()
	a.state.busySince = start
	// What changed since the Ruleset taken before: the metrics follow it
	// once this one is in force; if it is not, the next one takes it.
	touched := a.touched
	a.touched = touched.fresh()
	a.mu.Unlock()

	actx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
	err := a.cfg.Backend.Apply(actx, rs)
	cancel()
	dur := time.Since(start)

	if err != nil {
		a.mu.Lock()
		a.touched.merge(touched)
		a.mu.Unlock()
		if ctx.Err() != nil {
			a.mu.Lock()
			a.state.busySince = time.Time{}
			a.mu.Unlock()
			return ctx.Err()
		}
		err = fmt.Errorf("apply to %s: %w", a.cfg.Backend.Name(), err)
		a.metrics.applyErrors.Inc()
		a.log.Error("dataplane apply failed; the previous Ruleset stays in force", "err", err, "duration", dur)
		a.mu.Lock()
		a.state.busySince = time.Time{}
		a.state.failing = true
		a.state.applyErrors++
		a.noteErrorLocked(err)
		a.mu.Unlock()
		return err
	}
	a.metrics.applies.Inc()
	a.metrics.applyDuration.Observe(dur.Seconds())
	counts := a.metrics.observe(rs, &touched)
	a.mu.Lock()
	a.state.busySince = time.Time{}
	if a.state.failing {
		a.log.Info("dataplane apply succeeded again")
	}
	a.state.failing = false
	a.state.applies++
	a.state.lastApply = time.Now()
	a.state.lastDuration = dur
	a.state.counts = counts
	a.applied, a.appliedGen = rs, gen
	a.mu.Unlock()
	a.log.Debug("dataplane applied", "generation", gen, "duration", dur,
		"endpoints", counts.Endpoints, "policies", counts.Policies, "sets", counts.Sets)
	return nil
}

// repair asks the backend to put back what was changed from outside,
// counting the repairs that found drift.
func (a *Agent) repair(ctx context.Context) error {
	if a.repairer == nil {
		return nil
	}
	a.mu.Lock()
	a.state.busySince = time.Now()
	a.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
	d, err := a.repairer.Repair(rctx)
	cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state.busySince = time.Time{}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = fmt.Errorf("repair %s: %w", a.cfg.Backend.Name(), err)
		a.metrics.repairErrors.Inc()
		a.log.Error("dataplane repair failed", "err", err)
		a.noteErrorLocked(err)
		return err
	}
	if d != nil && !d.Empty() {
		a.metrics.driftRepairs.Inc()
		a.state.driftRepairs++
		a.log.Warn("dataplane drift repaired", "dataplane", a.cfg.Backend.Name(), "drift", d.String())
	}
	return nil
}

// Counts are the sizes of the Ruleset in force.
type Counts struct {
	// Endpoints are this node's endpoints.
	Endpoints int `json:"endpoints"`
	// Policies are the source policies (not profiles) compiled.
	Policies int `json:"policies"`
	// Rules are the compiled rules of those policies.
	Rules int `json:"rules"`
	// Sets and SetMembers are the IP sets and their members.
	Sets       int `json:"sets"`
	SetMembers int `json:"setMembers"`
}

// ruleCount is what one compiled policy contributes.
func ruleCount(p *compile.Policy) int { return len(p.Rules) }

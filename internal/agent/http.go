package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is what /status serves and `calyxctl node status` prints.
type Status struct {
	// Node is the agent's node.
	Node string `json:"node"`
	// Live is false when the agent's loop is stuck (an apply or repair
	// running longer than the apply timeout) or not running.
	Live bool `json:"live"`
	// Ready is true when the datastore is in sync and the last apply
	// succeeded: policy is being enforced as written.
	Ready bool `json:"ready"`
	// Dataplane is the backend's registry name.
	Dataplane string `json:"dataplane"`
	// Datastore is the watch's state.
	Datastore DatastoreStatus `json:"datastore"`
	// Counts are the sizes of the Ruleset in force.
	Counts Counts `json:"counts"`
	// Registered is the number of CNI attachments registered.
	Registered int `json:"registered"`
	// Generation is the newest compiled Ruleset's number; Applied the one
	// in force.
	Generation uint64 `json:"generation"`
	Applied    uint64 `json:"appliedGeneration"`
	// LastApply is when the last successful apply ended (zero if none);
	// LastApplySeconds how long it took.
	LastApply        time.Time `json:"lastApply,omitzero"`
	LastApplySeconds float64   `json:"lastApplySeconds"`
	// Applies, ApplyErrors and DriftRepairs count since start.
	Applies      uint64 `json:"applies"`
	ApplyErrors  uint64 `json:"applyErrors"`
	DriftRepairs uint64 `json:"driftRepairs"`
	// Failing is true while applies fail (retrying with backoff).
	Failing bool `json:"failing"`
	// LastError is the last error of any kind, and when it happened.
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
	// Started is when Run began.
	Started time.Time `json:"started,omitzero"`
}

// DatastoreStatus is the datastore side of Status.
type DatastoreStatus struct {
	// Synced is true once the datastore sent its whole state.
	Synced bool `json:"synced"`
	// Objects is the number of objects the agent holds.
	Objects int `json:"objects"`
	// Errors are the sources currently unreadable; their last good
	// objects stay in force.
	Errors []SourceError `json:"errors,omitempty"`
}

// SourceError is one unreadable datastore source.
type SourceError struct {
	Source string `json:"source"`
	Error  string `json:"error"`
}

// NodeStatus returns the agent's state (what /status serves).
func (a *Agent) NodeStatus() Status {
	a.runMu.Lock()
	running, started := a.running, a.started
	a.runMu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{
		Node:             a.cfg.Node,
		Dataplane:        a.cfg.Backend.Name(),
		Datastore:        DatastoreStatus{Synced: a.synced, Objects: a.set.Len()},
		Counts:           a.state.counts,
		Registered:       len(a.regs),
		Generation:       a.gen,
		Applied:          a.appliedGen,
		LastApply:        a.state.lastApply,
		LastApplySeconds: a.state.lastDuration.Seconds(),
		Applies:          a.state.applies,
		ApplyErrors:      a.state.applyErrors,
		DriftRepairs:     a.state.driftRepairs,
		Failing:          a.state.failing,
		LastError:        a.state.lastErr,
		LastErrorTime:    a.state.lastErrTime,
		Started:          started,
	}
	for src, msg := range a.sourceErrs {
		st.Datastore.Errors = append(st.Datastore.Errors, SourceError{Source: src, Error: msg})
	}
	slices.SortFunc(st.Datastore.Errors, func(x, y SourceError) int { return strings.Compare(x.Source, y.Source) })
	st.Live = running && (a.state.busySince.IsZero() || time.Since(a.state.busySince) < a.cfg.ApplyTimeout)
	st.Ready = a.synced && a.applied != nil && !a.state.failing
	return st
}

// Registry returns the agent's Prometheus registry (for a caller that
// serves metrics itself, or adds its own collectors).
func (a *Agent) Registry() *prometheus.Registry { return a.metrics.reg }

// Handler serves /livez, /readyz, /metrics and /status.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		st := a.NodeStatus()
		probe(w, st.Live, "agent loop not running or stuck in the dataplane")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := a.NodeStatus()
		reason := ""
		switch {
		case !st.Datastore.Synced:
			reason = "datastore not in sync"
		case st.Failing:
			reason = "dataplane apply failing: " + st.LastError
		case st.Applied == 0:
			reason = "nothing applied yet"
		}
		probe(w, st.Ready, reason)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.NodeStatus())
	})
	return mux
}

func probe(w http.ResponseWriter, ok bool, reason string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if ok {
		fmt.Fprintln(w, "ok")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, reason)
}

package agent

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/ebpf"
	"github.com/calyxnet/calyx/compile"
)

// flowReader is a dataplane that reports its verdicts on new flows and
// its Log rules' packets: the eBPF dataplane's ring buffer.
type flowReader interface {
	ReadEvents(ctx context.Context, fn func(ebpf.Event)) error
	LostEvents() (uint64, error)
}

// flowMetrics count what a flowReader reports.
type flowMetrics struct {
	events *prometheus.CounterVec // by action and reason
}

// watchFlows registers the flow metrics for fr.
func (m *metrics) watchFlows(fr flowReader) *flowMetrics {
	fm := &flowMetrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calyx_flow_events_total",
		Help: "Verdicts the dataplane reported: new flows allowed, packets denied, Log rules met, by action and reason."},
		[]string{"action", "reason"})}
	lost := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "calyx_flow_events_lost_total",
		Help: "Flow events the dataplane dropped because its ring buffer was full."}, func() float64 {
		n, err := fr.LostEvents()
		if err != nil {
			return 0
		}
		return float64(n)
	})
	m.reg.MustRegister(fm.events, lost)
	return fm
}

// readFlows reads the dataplane's flow events until ctx ends: each is
// counted, and logged at debug level naming the policy and rule that
// decided. A failing read is retried every second: the verdicts stand
// whether anyone reads them or not.
func (a *Agent) readFlows(ctx context.Context, fr flowReader, fm *flowMetrics) {
	for ctx.Err() == nil {
		err := fr.ReadEvents(ctx, func(e ebpf.Event) {
			reason := strings.ReplaceAll(e.Reason.String(), " ", "-")
			fm.events.WithLabelValues(actionName(e.Action), reason).Inc()
			a.log.Debug("flow", "action", actionName(e.Action), "reason", reason, "policy", e.Rule.Policy,
				"tier", e.Rule.Tier, "rule", e.Rule.Index, "egress", e.Egress, "protocol", e.Protocol,
				"src", e.Src.String(), "dst", e.Dst.String())
		})
		if ctx.Err() != nil || errors.Is(err, backend.ErrClosed) {
			return
		}
		if err != nil {
			a.log.Warn("reading flow events", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func actionName(a compile.Action) string {
	if a == 0 {
		return "unknown"
	}
	return a.String()
}

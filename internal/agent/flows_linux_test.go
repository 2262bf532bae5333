//go:build linux

package agent_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// With the eBPF dataplane the agent reads the ring buffer: the lab's
// allowed connections and the packets pod1's policy denies show up in
// calyx_flow_events_total by action and reason, and the lost-event
// counter is exported.
func TestFlowEventsCounted(t *testing.T) {
	var dp dataplane
	for _, d := range dataplanes() {
		if d.name == "ebpf" {
			dp = d
		}
	}
	require.NotNil(t, dp.open)
	r := newLabRig(t, dp)
	a, _ := r.start(t, r.store)
	mustApply(t, r.store, isolate1(t)...)
	r.awaitMatrix(t, a, "policy applied", hasPolicy("pod1-from-pod0"))
	var allowed, denied float64
	var text string
	eventually10s(t, "flow events counted", func() bool {
		text = scrape(t, a)
		allowed = metric(text, `calyx_flow_events_total{action="Allow",reason="rule"}`)
		denied = metric(text, `calyx_flow_events_total{action="Deny",reason="end-of-tier"}`)
		return allowed > 0 && denied > 0
	})
	require.Regexp(t, `(?m)^calyx_flow_events_lost_total \d+`, text)
	t.Logf("flow events: %v allowed by a rule, %v denied at the end of a tier", allowed, denied)
}

// metric returns the value of one series in Prometheus text, 0 if absent.
func metric(text, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

package agent

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calyxnet/calyx/compile"
)

// metrics are the agent's Prometheus metrics, in a registry of its own (no
// global state: two agents in one process do not collide).
type metrics struct {
	reg *prometheus.Registry

	applyDuration   prometheus.Histogram
	applies         prometheus.Counter
	applyErrors     prometheus.Counter
	driftRepairs    prometheus.Counter
	repairErrors    prometheus.Counter
	endpoints       prometheus.Gauge
	policies        prometheus.Gauge
	sets            prometheus.Gauge
	setMembers      prometheus.Gauge
	synced          prometheus.Gauge
	registered      prometheus.Gauge
	errorSources    prometheus.Gauge
	datastoreErrors *prometheus.CounterVec
	policyRules     *prometheus.GaugeVec

	// What observe saw last, to update per-policy and per-set figures by
	// what changed: Rulesets share unchanged policies and sets by pointer.
	mu         sync.Mutex
	lastPols   map[compile.PolicyID]*compile.Policy
	lastSets   map[compile.SetID]*compile.IPSet
	rulesByPol map[string]int // policy display name → rules
	idsByPol   map[string]int // policy display name → compiled directions
	members    int
	rules      int
	observed   bool // a first, whole observe was made
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "calyx_apply_duration_seconds",
			Help:    "Time to apply a Ruleset to the dataplane.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms … 16 s
		}),
		applies:      prometheus.NewCounter(prometheus.CounterOpts{Name: "calyx_applies_total", Help: "Successful dataplane applies."}),
		applyErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "calyx_apply_errors_total", Help: "Failed dataplane applies."}),
		driftRepairs: prometheus.NewCounter(prometheus.CounterOpts{Name: "calyx_drift_repairs_total", Help: "Repairs that found and fixed dataplane state changed from outside."}),
		repairErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "calyx_repair_errors_total", Help: "Failed drift repairs."}),
		endpoints:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "calyx_endpoints", Help: "Endpoints of this node in the Ruleset in force."}),
		policies:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "calyx_policies", Help: "Policies compiled into the Ruleset in force."}),
		sets:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "calyx_sets", Help: "IP sets in the Ruleset in force."}),
		setMembers:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "calyx_set_members", Help: "Members of all IP sets in the Ruleset in force."}),
		synced:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "calyx_datastore_synced", Help: "1 once the datastore has sent its whole state."}),
		registered:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "calyx_cni_endpoints", Help: "Attachments registered by the CNI plugin."}),
		errorSources: prometheus.NewGauge(prometheus.GaugeOpts{Name: "calyx_datastore_error_sources", Help: "Datastore sources (files, prefixes, informers) currently unreadable."}),
		datastoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calyx_datastore_errors_total",
			Help: "Datastore errors: unreadable sources and failed or ended watches."}, []string{"kind"}),
		policyRules: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "calyx_policy_rules",
			Help: "Compiled rules per policy (both directions)."}, []string{"policy"}),
		lastPols:   map[compile.PolicyID]*compile.Policy{},
		lastSets:   map[compile.SetID]*compile.IPSet{},
		rulesByPol: map[string]int{},
		idsByPol:   map[string]int{},
	}
	m.reg.MustRegister(m.applyDuration, m.applies, m.applyErrors, m.driftRepairs, m.repairErrors,
		m.endpoints, m.policies, m.sets, m.setMembers, m.synced, m.registered, m.errorSources,
		m.datastoreErrors, m.policyRules)
	return m
}

// touched is what changed in the Ruleset since some earlier one: the
// policies and sets named by the compile deltas, or everything (all).
type touched struct {
	all  bool
	pols map[compile.PolicyID]struct{}
	sets map[compile.SetID]struct{}
}

// add records what d changed.
func (t *touched) add(d *compile.Delta) {
	if t.all {
		return
	}
	if t.pols == nil {
		t.pols, t.sets = map[compile.PolicyID]struct{}{}, map[compile.SetID]struct{}{}
	}
	for _, ids := range [][]compile.PolicyID{d.PoliciesAdded, d.PoliciesRemoved, d.PoliciesChanged} {
		for _, id := range ids {
			t.pols[id] = struct{}{}
		}
	}
	for _, ids := range [][]compile.SetID{d.SetsAdded, d.SetsRemoved} {
		for _, id := range ids {
			t.sets[id] = struct{}{}
		}
	}
	for _, m := range d.SetMembers {
		t.sets[m.ID] = struct{}{}
	}
	// Too much to follow one by one: a pass over everything is as cheap.
	if len(t.pols)+len(t.sets) > 4096 {
		*t = touched{all: true}
	}
}

// fresh returns an empty touched for what comes after t.
func (t touched) fresh() touched { return touched{} }

// merge adds what o records.
func (t *touched) merge(o touched) {
	if t.all || o.all {
		*t = touched{all: true}
		return
	}
	if t.pols == nil {
		t.pols, t.sets = map[compile.PolicyID]struct{}{}, map[compile.SetID]struct{}{}
	}
	for id := range o.pols {
		t.pols[id] = struct{}{}
	}
	for id := range o.sets {
		t.sets[id] = struct{}{}
	}
}

// observe updates the gauges for the Ruleset now in force and returns its
// counts. t says what changed since the Ruleset observed before (every
// policy and set when t.all, or on the first call): the cost is
// proportional to that, not to the Ruleset.
func (m *metrics) observe(rs *compile.Ruleset, t *touched) Counts {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.all || !m.observed {
		m.observed = true
		return m.observeAll(rs)
	}
	touchedNames := map[string]struct{}{}
	add := func(p *compile.Policy, sign int) { m.countPolicy(p, sign, touchedNames) }
	for id := range t.pols {
		old, had := m.lastPols[id]
		cur, has := rs.Policies[id]
		if had && has && old == cur {
			continue
		}
		if had {
			add(old, -1)
			delete(m.lastPols, id)
		}
		if has {
			add(cur, +1)
			m.lastPols[id] = cur
		}
	}
	m.setPolicyGauges(touchedNames)
	for id := range t.sets {
		old, had := m.lastSets[id]
		cur, has := rs.Sets[id]
		if had && has && old == cur {
			continue
		}
		if had {
			m.members -= setSize(old)
			delete(m.lastSets, id)
		}
		if has {
			m.members += setSize(cur)
			m.lastSets[id] = cur
		}
	}
	return m.setCounts(rs)
}

// countPolicy adds (sign +1) or takes away (-1) one compiled direction of
// a policy in the per-policy rule counts, and notes its name in touched.
// Profiles are not counted.
func (m *metrics) countPolicy(p *compile.Policy, sign int, touched map[string]struct{}) {
	if p.Tier == "" {
		return
	}
	m.rulesByPol[p.Name] += sign * ruleCount(p)
	m.idsByPol[p.Name] += sign
	m.rules += sign * ruleCount(p)
	touched[p.Name] = struct{}{}
}

// setSize is the number of members of a set.
func setSize(s *compile.IPSet) int { return len(s.Nets) + len(s.Ports) }

func (m *metrics) setPolicyGauges(names map[string]struct{}) {
	for name := range names {
		if m.idsByPol[name] <= 0 {
			delete(m.idsByPol, name)
			delete(m.rulesByPol, name)
			m.policyRules.DeleteLabelValues(name)
			continue
		}
		m.policyRules.WithLabelValues(name).Set(float64(m.rulesByPol[name]))
	}
}

func (m *metrics) setCounts(rs *compile.Ruleset) Counts {
	c := Counts{Endpoints: len(rs.Endpoints), Policies: len(m.idsByPol), Rules: m.rules, Sets: len(rs.Sets), SetMembers: m.members}
	m.endpoints.Set(float64(c.Endpoints))
	m.policies.Set(float64(c.Policies))
	m.sets.Set(float64(c.Sets))
	m.setMembers.Set(float64(c.SetMembers))
	return c
}

// observeAll is observe by a pass over the Ruleset's maps with pointer
// compares, plus work proportional to what changed.
func (m *metrics) observeAll(rs *compile.Ruleset) Counts {
	touched := map[string]struct{}{}
	add := func(p *compile.Policy, sign int) { m.countPolicy(p, sign, touched) }
	for id, old := range m.lastPols {
		if cur, ok := rs.Policies[id]; !ok || cur != old {
			add(old, -1)
			delete(m.lastPols, id)
		}
	}
	for id, p := range rs.Policies {
		if _, ok := m.lastPols[id]; !ok {
			add(p, +1)
			m.lastPols[id] = p
		}
	}
	m.setPolicyGauges(touched)
	for id, old := range m.lastSets {
		if cur, ok := rs.Sets[id]; !ok || cur != old {
			m.members -= setSize(old)
			delete(m.lastSets, id)
		}
	}
	for id, s := range rs.Sets {
		if _, ok := m.lastSets[id]; !ok {
			m.members += setSize(s)
			m.lastSets[id] = s
		}
	}
	return m.setCounts(rs)
}

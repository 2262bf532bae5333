package selector

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	k8slabels "k8s.io/apimachinery/pkg/labels"
)

// Equivalent selectors in both languages, run side by side in one binary so
// that the ratio, not the absolute figure, is what to read.
var benchCases = []struct {
	name, calyx, k8s string
}{
	{"eq", `app == "x"`, `app=x`},
	{"eq-and-in", `app == "x" && tier in {"a","b"}`, `app=x,tier in (a,b)`},
	{"exists-notexists-ne-notin",
		`has(projectcalico.org/name) && !has(skip) && env != "prod" && tier not in {"db","cache"}`,
		`projectcalico.org/name,!skip,env!=prod,tier notin (db,cache)`},
}

// Eight labels that every case matches, and eight that none does.
var (
	benchMatching = map[string]string{
		"app": "x", "tier": "a", "env": "dev", "projectcalico.org/name": "shop",
		"version": "v1", "team": "payments", "region": "eu-west-1", "pod-template-hash": "7d9f8c6b5",
	}
	benchNotMatching = map[string]string{
		"app": "y", "tier": "db", "env": "prod", "skip": "true",
		"version": "v1", "team": "payments", "region": "eu-west-1", "pod-template-hash": "7d9f8c6b5",
	}
)

// reportCPU reports the process CPU time per operation since start.
func reportCPU(b *testing.B, start time.Duration) {
	if cpu := processCPU() - start; cpu > 0 && start > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func BenchmarkParse(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name+"/calyx", func(b *testing.B) {
			b.ReportAllocs()
			start := processCPU()
			for b.Loop() {
				if _, err := Parse(c.calyx); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
		b.Run(c.name+"/apimachinery", func(b *testing.B) {
			b.ReportAllocs()
			start := processCPU()
			for b.Loop() {
				if _, err := k8slabels.Parse(c.k8s); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
	}
}

// Sinks keep the floor benchmark's lookup from being optimised away.
var (
	sinkValue string
	sinkOK    bool
)

func BenchmarkMatches(b *testing.B) {
	for _, c := range benchCases {
		s := MustParse(c.calyx)
		ks, err := k8slabels.Parse(c.k8s)
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range []struct {
			name   string
			labels map[string]string
			want   bool
		}{{"match", benchMatching, true}, {"nomatch", benchNotMatching, false}} {
			calyxSet, k8sSet := Set(l.labels), k8slabels.Set(l.labels)
			if s.Matches(calyxSet) != l.want || ks.Matches(k8sSet) != l.want {
				b.Fatalf("%s: the two selectors disagree on %v", c.name, l.labels)
			}
			b.Run(c.name+"/"+l.name+"/calyx", func(b *testing.B) {
				b.ReportAllocs()
				start := processCPU()
				for b.Loop() {
					s.Matches(calyxSet)
				}
				reportCPU(b, start)
			})
			b.Run(c.name+"/"+l.name+"/apimachinery", func(b *testing.B) {
				b.ReportAllocs()
				start := processCPU()
				for b.Loop() {
					ks.Matches(k8sSet)
				}
				reportCPU(b, start)
			})
			// The floor for any evaluator on a plain map: one lookup of
			// the selector's first key, nothing else. Matches cannot be
			// cheaper than this; compare it with apimachinery's figure.
			firstKey := s.prog.firstKey()
			b.Run(c.name+"/"+l.name+"/floor-one-map-lookup", func(b *testing.B) {
				start := processCPU()
				for b.Loop() {
					v, ok := calyxSet[firstKey]
					sinkValue, sinkOK = v, ok
				}
				reportCPU(b, start)
			})
		}
	}
}

// Index fixture: namespaces with pods, and a mix of selector shapes as the
// policy compiler produces them.
const (
	benchNamespaces      = 100
	benchPodsPerNS       = 1000
	benchSelectors       = 10000
	benchUnrestrictedSel = 20
	benchApps            = 500
)

var benchTiers = []string{"web", "api", "db", "cache"}

func benchNSID(n int) string { return fmt.Sprintf("ns%d", n) }

func benchNSLabels(n, generation int) map[string]string {
	return map[string]string{
		"pcns.projectcalico.org/name": benchNSID(n),
		"pcns.team":                   fmt.Sprintf("team%d", (n+generation)%10),
		"pcns.env":                    []string{"prod", "dev"}[n%2],
	}
}

func benchPodLabels(ns, i int) map[string]string {
	return map[string]string{
		"app":                              fmt.Sprintf("app%d", i%benchApps),
		"tier":                             benchTiers[i%len(benchTiers)],
		"version":                          fmt.Sprintf("v%d", i%3),
		"env":                              []string{"prod", "dev"}[ns%2],
		"pod-template-hash":                fmt.Sprintf("h%d-%d", ns, i/10),
		"projectcalico.org/namespace":      benchNSID(ns),
		"projectcalico.org/orchestrator":   "k8s",
		"projectcalico.org/serviceaccount": fmt.Sprintf("sa%d", i%50),
	}
}

// benchSelector returns the i-th selector of the fixture. The shape
// depends on i; the apps, namespaces and teams it names are drawn from a
// seeded generator so that shapes and values are not correlated.
func benchSelector(i int) *Selector {
	r := rand.New(rand.NewPCG(uint64(i), 42))
	app := fmt.Sprintf("app%d", r.IntN(benchApps))
	ns := benchNSID(r.IntN(benchNamespaces))
	team := fmt.Sprintf("team%d", r.IntN(10))
	tier := benchTiers[r.IntN(len(benchTiers))]
	var expr string
	switch {
	case i < benchUnrestrictedSel:
		expr = fmt.Sprintf(`!has(projectcalico.org/namespace) || (app == "%s" && env != "prod")`, app)
	case i%10 < 4:
		expr = fmt.Sprintf(`projectcalico.org/namespace == "%s" && app == "%s"`, ns, app)
	case i%10 < 6:
		expr = fmt.Sprintf(`app == "%s" && tier in {"web", "api"}`, app)
	case i%10 < 7:
		expr = fmt.Sprintf(`tier in {"%s", "cache"} && version == "v2" && projectcalico.org/namespace == "%s"`, tier, ns)
	case i%10 < 8:
		// A rule's namespaceSelector (prefixed) and its pod selector.
		expr = fmt.Sprintf(`pcns.team == "%s" && app == "%s"`, team, app)
	case i%50 == 8:
		expr = fmt.Sprintf(`pcns.team == "%s" && has(app) && app starts with "app%d"`, team, r.IntN(50))
	case i%10 < 9:
		expr = fmt.Sprintf(`pcns.env == "prod" && version in {"v1", "v2"} && app == "%s"`, app)
	default:
		expr = fmt.Sprintf(`has(pcns.projectcalico.org/name) && app in {"%s", "app%d"} && !has(skip)`,
			app, r.IntN(benchApps))
	}
	return MustParse(expr)
}

func buildBenchIndex(onStart, onStop func(string, string)) *Index {
	ix := NewIndex(onStart, onStop)
	for n := range benchNamespaces {
		ix.UpdateParentLabels(benchNSID(n), benchNSLabels(n, 0))
	}
	for i := range benchSelectors {
		ix.UpdateSelector(fmt.Sprintf("sel%d", i), benchSelector(i))
	}
	for n := range benchNamespaces {
		for i := range benchPodsPerNS {
			ix.UpdateLabels(fmt.Sprintf("%s/pod%d", benchNSID(n), i), benchPodLabels(n, i), benchNSID(n))
		}
	}
	return ix
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkIndexBuild builds the index of 10,000 selectors and 100,000
// items (100 namespaces of 1,000 pods) and reports the time and the heap it
// takes. Run it with -benchtime=1x: one build takes seconds.
func BenchmarkIndexBuild(b *testing.B) {
	for b.Loop() {
		before := heapInUse()
		start, cpu := time.Now(), processCPU()
		ix := buildBenchIndex(nil, nil)
		b.ReportMetric(time.Since(start).Seconds(), "build-s")
		if cpu > 0 {
			b.ReportMetric((processCPU() - cpu).Seconds(), "build-cpu-s")
		}
		b.ReportMetric(float64(heapInUse()-before)/(1<<20), "heap-MiB")
		runtime.KeepAlive(ix)
	}
}

// BenchmarkIndexUpdate measures changes to the built index: one pod's
// labels, and one namespace's labels (1,000 pods inherit them).
func BenchmarkIndexUpdate(b *testing.B) {
	matches := 0
	ix := buildBenchIndex(func(string, string) { matches++ }, func(string, string) { matches-- })
	b.Logf("%d matches in the built index", matches)

	b.Run("item-label-change", func(b *testing.B) {
		var durations []time.Duration
		i := 0
		for b.Loop() {
			ns, pod := i%benchNamespaces, (i*7919)%benchPodsPerNS
			labels := benchPodLabels(ns, pod)
			if i/benchNamespaces%2 == 0 {
				labels["app"] = fmt.Sprintf("app%d", (pod+1)%benchApps) // moves between selectors
			}
			id := fmt.Sprintf("%s/pod%d", benchNSID(ns), pod)
			start := time.Now()
			ix.UpdateLabels(id, labels, benchNSID(ns))
			durations = append(durations, time.Since(start))
			i++
		}
		slices.Sort(durations)
		b.ReportMetric(float64(durations[len(durations)/2].Nanoseconds()), "median-ns")
		b.ReportMetric(float64(durations[len(durations)*99/100].Nanoseconds()), "p99-ns")
	})

	b.Run("namespace-label-change-1000-pods", func(b *testing.B) {
		gen := 0
		start := processCPU()
		for b.Loop() {
			gen++
			ix.UpdateParentLabels(benchNSID(3), benchNSLabels(3, gen))
		}
		reportCPU(b, start)
	})
}

//go:build linux

package nftables

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/benchset"
	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// bigRuleset: 110 pods in 11 groups, policies spread over the groups.
func bigRuleset(policies int) *compile.Ruleset {
	rs := &compile.Ruleset{Sets: map[compile.SetID]*compile.IPSet{}, Policies: map[compile.PolicyID]*compile.Policy{}, Endpoints: map[string]*compile.Endpoint{}}
	var ids []compile.PolicyID
	for i := range policies {
		sid := compile.SetID(fmt.Sprintf("s%d", i%50))
		rs.Sets[sid] = &compile.IPSet{ID: sid, Kind: compile.SetNets, Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}}
		id := compile.PolicyID(fmt.Sprintf("p%d", i))
		rs.Policies[id] = &compile.Policy{ID: id, Rules: []compile.Rule{{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{sid}}}}}}
		ids = append(ids, id)
	}
	for p := range 110 {
		k := fmt.Sprintf("ns/p%d", p)
		rs.Endpoints[k] = &compile.Endpoint{Key: k, Kind: compile.WorkloadEndpoint, Interface: compile.WorkloadInterface("ns", k),
			Ingress: compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "t", Policies: ids[p%11*len(ids)/11 : (p%11+1)*len(ids)/11], EndAction: compile.ActionDeny}}}}
	}
	return rs
}

// BenchmarkRenderCached10k: rendering a Ruleset of 10,000 policies the
// backend has rendered before (what every small change costs on the Go
// side).
func BenchmarkRenderCached10k(b *testing.B) {
	rs := bigRuleset(10000)
	cache := newRenderCache()
	if _, err := renderCached(rs, cache); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := renderCached(rs, cache); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyNewPod: one pod more on a node of 10,000 policies, applied
// to the kernel (go test -bench ApplyNewPod -benchtime 20x).
func BenchmarkApplyNewPod(b *testing.B) { benchNewPod(b, bigRuleset(10000)) }

// BenchmarkApplyNewPodHostEndpoints: the same with host endpoints on the
// node (a named interface and "*", with tiers of the same policies): a
// new pod must cost no more.
func BenchmarkApplyNewPodHostEndpoints(b *testing.B) {
	rs := bigRuleset(10000)
	for _, ifc := range []string{"eth0", "*"} {
		k := "host:node/" + ifc
		ep := *rs.Endpoints["ns/p3"]
		ep.Key, ep.Kind, ep.Interface = k, compile.HostEndpoint, ifc
		ep.Egress = ep.Ingress
		rs.Endpoints[k] = &ep
	}
	rs.Settings.FailsafeInbound = []compile.ProtoPort{{Protocol: 6, Port: 22}, {Protocol: 6, Port: 6443}}
	benchNewPod(b, rs)
}

func benchNewPod(b *testing.B, rs *compile.Ruleset) {
	ctx := context.Background()
	be := benchBackend(b, rs)
	b.ResetTimer()
	var kernel time.Duration
	for i := range b.N {
		more := *rs
		more.Endpoints = maps.Clone(rs.Endpoints)
		k := fmt.Sprintf("ns/new%d", i)
		ep := *rs.Endpoints["ns/p1"]
		ep.Key, ep.Interface = k, compile.WorkloadInterface("ns", k)
		more.Endpoints[k] = &ep
		if err := be.Apply(ctx, &more); err != nil {
			b.Fatal(err)
		}
		st := be.LastApply()
		if n := st.Messages(); n > 4 {
			b.Fatalf("a new pod took %d messages", n)
		}
		kernel += st.Kernel
	}
	// The kernel's part alone: what the table's shape costs.
	b.ReportMetric(float64(kernel.Microseconds())/float64(b.N), "kernel-µs/op")
}

// BenchmarkRenderScratch10k: rendering 10,000 policies with nothing cached.
func BenchmarkRenderScratch10k(b *testing.B) {
	rs := bigRuleset(10000)
	for range b.N {
		if _, err := render(rs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderLabelChange: a pod joins one selector's set on a node of
// 10,000 policies (the bench harness's label change), rendered after the
// Ruleset without it, Go side only.
func BenchmarkRenderLabelChange(b *testing.B) {
	base := benchset.Cluster(110, 10000)
	cache := newRenderCache()
	if _, err := renderCached(base, cache); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		relabel := labelChange(base, i)
		if _, err := renderCached(base, cache); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := renderCached(relabel, cache); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyLabelChange: the bench harness's label change applied to
// the kernel: a pod joins one selector's set on a node of 10,000
// policies, after the Ruleset without it.
func BenchmarkApplyLabelChange(b *testing.B) {
	netnstest.RequireRoot(b)
	base := benchset.Cluster(110, 10000)
	ctx := context.Background()
	be := benchBackend(b, base)
	b.ResetTimer()
	var kernel, render, plan time.Duration
	for i := range b.N {
		b.StopTimer()
		relabel := labelChange(base, i)
		if err := be.Apply(ctx, base); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := be.Apply(ctx, relabel); err != nil {
			b.Fatal(err)
		}
		st := be.LastApply()
		if st.ChainsAdded+st.ChainsRewritten+st.SetsAdded != 0 {
			b.Fatalf("a label change touched more than elements: %+v", st)
		}
		kernel, render, plan = kernel+st.Kernel, render+st.Render, plan+st.Plan
	}
	b.ReportMetric(float64(kernel.Microseconds())/float64(b.N), "kernel-µs/op")
	b.ReportMetric(float64(render.Microseconds())/float64(b.N), "render-µs/op")
	b.ReportMetric(float64(plan.Microseconds())/float64(b.N), "plan-µs/op")
}

// benchBackend opens a backend in a new namespace, closed when b ends,
// and applies rs.
func benchBackend(b *testing.B, rs *compile.Ruleset) *Backend {
	b.Helper()
	be, _ := openBenchBackend(b, "cxbench-")
	if err := be.Apply(context.Background(), rs); err != nil {
		b.Fatal(err)
	}
	return be
}

// labelChange is the bench harness's label change on base, a Ruleset of
// benchset.Cluster: the i-th of 50 pods joins the set of one selector.
func labelChange(base *compile.Ruleset, i int) *compile.Ruleset {
	relabel := *base
	relabel.Sets = maps.Clone(base.Sets)
	s := *relabel.Sets["sel:app == 'a1'"]
	s.Nets = append(slices.Clone(s.Nets), netip.PrefixFrom(benchset.PodAddr(160+i%50), 32))
	relabel.Sets[s.ID] = &s
	return &relabel
}

// openBenchBackend opens a backend in a new namespace named with prefix,
// closed when b ends; it returns the namespace too.
func openBenchBackend(b *testing.B, prefix string) (*Backend, *netns.NS) {
	b.Helper()
	ns := netnstest.New(b, prefix)
	ctx := context.Background()
	be, err := New(ctx, backend.Options{NetNS: ns.Path()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close(ctx) })
	return be, ns
}

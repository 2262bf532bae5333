//go:build linux

package nftables

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/google/nftables"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/testgen"
	"github.com/calyxnet/calyx/policy"
)

// agentScale is the node of the agent's benchmarks: 10,000 cluster pods
// in 100 namespaces, 10,000 namespaced policies, 110 pods on node0 (about
// 10,000 sets and 49,000 set members once compiled).
var agentScale = testgen.ScaleOptions{Namespaces: 100, PodsPerNamespace: 100, AppsPerNamespace: 51, PoliciesPerNamespace: 100, LocalPods: 110}

// scaleNode is a backend in a namespace of its own holding the compiled
// agentScale cluster, with the compiler that made it.
type scaleNode struct {
	be  *Backend
	ns  *netns.NS
	set *policy.Set
	c   *compile.Compiler
	rs  *compile.Ruleset
	pol *networkingv1.NetworkPolicy // the one a change edits
}

func newScaleNode(b *testing.B) *scaleNode {
	b.Helper()
	set := policy.NewSet()
	for _, obj := range testgen.ScaleCluster(agentScale) {
		if _, err := set.Upsert(obj); err != nil {
			b.Fatal(err)
		}
	}
	c := compile.New(set, "node0")
	rs, err := c.Compile()
	if err != nil {
		b.Fatal(err)
	}
	members := 0
	for _, s := range rs.Sets {
		members += len(s.Nets) + len(s.Ports)
	}
	b.Logf("%d endpoints, %d policies, %d sets, %d set members", len(rs.Endpoints), len(rs.Policies), len(rs.Sets), members)
	ctx := context.Background()
	be, ns := openBenchBackend(b, "cxscale-")
	start := time.Now()
	if err := be.Apply(ctx, rs); err != nil {
		b.Fatal(err)
	}
	st := be.LastApply()
	b.Logf("first Apply: %v (render %v, plan %v, kernel %v), %d sets, %d chains, %d messages", time.Since(start).Round(time.Millisecond),
		st.Render.Round(time.Millisecond), st.Plan.Round(time.Millisecond), st.Kernel.Round(time.Millisecond),
		st.SetsAdded, st.ChainsAdded, st.Messages())
	obj, ok := set.Get(policy.ObjectKey{Kind: policy.KindK8sNetworkPolicy, Namespace: "team-000", Name: "app0-0"})
	if !ok {
		b.Fatal("no policy team-000/app0-0")
	}
	return &scaleNode{be: be, ns: ns, set: set, c: c, rs: rs, pol: obj.(*networkingv1.NetworkPolicy)}
}

// change edits the port of one policy's first ingress rule and compiles.
func (n *scaleNode) change(b *testing.B, port int32) *compile.Ruleset {
	b.Helper()
	pol := n.pol.DeepCopy()
	p := intstr.FromInt32(port)
	pol.Spec.Ingress[0].Ports[0].Port = &p
	ch, err := n.set.Upsert(pol)
	if err != nil {
		b.Fatal(err)
	}
	rs, d, err := n.c.Update(ch)
	if err != nil || d.Empty() {
		b.Fatalf("update: %v (delta empty %v)", err, d.Empty())
	}
	return rs
}

// BenchmarkScale builds the agent's node once (its first Apply is logged)
// and measures on it (go test -run XXX -bench 'Scale$' -benchtime 30x
// ./backend/nftables/):
//
//   - policy-change: one policy's port changes; the compile is not timed,
//     the backend's Apply is;
//   - repair: a Reconcile that finds nothing drifted;
//
// and last, once, a Reconcile after another table of the namespace
// changed: the backend must read its table back (logged as full-repair).
func BenchmarkScale(b *testing.B) {
	netnstest.RequireRoot(b)
	n := newScaleNode(b)
	ctx := context.Background()
	port := int32(20000)
	b.Run("policy-change", func(b *testing.B) {
		var kernel, render, plan time.Duration
		var st Stats
		for range b.N {
			b.StopTimer()
			port++
			rs := n.change(b, port)
			b.StartTimer()
			if err := n.be.Apply(ctx, rs); err != nil {
				b.Fatal(err)
			}
			st = n.be.LastApply()
			if st.ChainsRewritten+st.ChainsAdded == 0 {
				b.Fatalf("a policy change rewrote no chain: %+v", st)
			}
			kernel += st.Kernel
			render += st.Render
			plan += st.Plan
		}
		b.Logf("last change: %d messages, %d elements added, %d deleted, %v", st.Messages(), st.ElementsAdded, st.ElementsDeleted, st.Changed)
		b.ReportMetric(float64(kernel.Microseconds())/float64(b.N), "kernel-µs/op")
		b.ReportMetric(float64(render.Microseconds())/float64(b.N), "render-µs/op")
		b.ReportMetric(float64(plan.Microseconds())/float64(b.N), "plan-µs/op")
	})
	b.Run("repair", func(b *testing.B) {
		for range b.N {
			d, err := n.be.Reconcile(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if !d.Empty() {
				b.Fatalf("drift on an untouched table: %s", d)
			}
		}
	})
	// Someone else's commit: a table of theirs added and deleted.
	c, err := nftables.New(nftables.WithNetNSFd(n.ns.Fd()))
	if err != nil {
		b.Fatal(err)
	}
	other := &nftables.Table{Name: "someone-else", Family: nftables.TableFamilyINet}
	c.AddTable(other)
	if err := c.Flush(); err != nil {
		b.Fatal(err)
	}
	c.DelTable(other)
	if err := c.Flush(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	d, err := n.be.Reconcile(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if !d.Empty() {
		b.Fatalf("drift on an untouched table: %s", d)
	}
	b.Logf("full-repair: a Reconcile reading the table back took %v", time.Since(start).Round(time.Millisecond))
}

// BenchmarkKernelSets times the kernel alone on tables of n named sets
// (go test -run XXX -bench KernelSets -benchtime 1x ./backend/nftables/):
// one batch creating n empty sets, one creating n sets of two elements
// each (a set and an element message per set), and reading the second
// table's elements back (one dump per set). Each costs about n² name
// comparisons: the kernel finds a set by walking the table's list of
// sets, for every set created (twice), element message and dump.
func BenchmarkKernelSets(b *testing.B) {
	netnstest.RequireRoot(b)
	for _, n := range []int{2000, 10000, 20000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				ns := netnstest.New(b, "cxsets-")
				c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()), nftables.AsLasting(), nftables.WithSockOptions(sizeBuffers))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = c.CloseLasting() })
				timed := func(what string, fn func() error) {
					start := time.Now()
					if err := fn(); err != nil {
						b.Fatalf("%s: %v", what, err)
					}
					b.ReportMetric(time.Since(start).Seconds(), what+"-s")
				}
				fill := func(table string, elems bool) func() error {
					return func() error {
						t := c.AddTable(&nftables.Table{Name: table, Family: nftables.TableFamilyINet})
						for i := range n {
							s := &nftables.Set{Table: t, Name: fmt.Sprintf("s-%06d-4", i), KeyType: nftables.TypeIPAddr}
							var els []nftables.SetElement
							if elems {
								els = []nftables.SetElement{{Key: []byte{10, byte(i >> 8), byte(i), 1}}, {Key: []byte{10, byte(i >> 8), byte(i), 2}}}
							}
							if err := c.AddSet(s, els); err != nil {
								return err
							}
						}
						return c.Flush()
					}
				}
				timed("empty-sets", fill("empty", false))
				timed("sets-with-elements", fill("full", true))
				timed("read-elements", func() error {
					sets, err := c.GetSets(&nftables.Table{Name: "full", Family: nftables.TableFamilyINet})
					if err != nil {
						return err
					}
					for _, s := range sets {
						if _, err := c.GetSetElements(s); err != nil {
							return err
						}
					}
					return nil
				})
			}
		})
	}
}

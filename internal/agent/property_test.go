package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/agent/agenttest"
	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/policy"
)

// Whatever the order of datastore changes and CNI registrations, the
// Ruleset the agent ends up applying equals a compilation from scratch of
// the merged state, as the package doc defines the merge: the datastore's
// pod with this node and the plugin's addresses.
func TestIncrementalEqualsScratch(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		store, err := agenttest.NewMemStore()
		if err != nil {
			rt.Fatal(err)
		}
		be := &agenttest.Backend{}
		a, err := agent.New(agent.Config{Node: "node-a", Store: store, Backend: be, Coalesce: -1, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
		if err != nil {
			rt.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		defer func() { cancel(); <-done }()

		pods := []string{"p0", "p1", "p2", "p3"}
		apps := []string{"web", "api", "db"}
		ds := map[string]*corev1.Pod{}
		regs := map[string]endpointapi.Endpoint{} // ID → endpoint
		seq := map[string]int{}                   // ID → registration order
		n := 0
		steps := rapid.IntRange(1, 25).Draw(rt, "steps")
		for range steps {
			name := rapid.SampledFrom(pods).Draw(rt, "pod")
			switch rapid.IntRange(0, 6).Draw(rt, "op") {
			case 0: // a pod in the datastore
				node := rapid.SampledFrom([]string{"node-a", "node-b", ""}).Draw(rt, "node")
				ip := fmt.Sprintf("10.1.0.%d", rapid.IntRange(1, 9).Draw(rt, "ip"))
				p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
					ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": rapid.SampledFrom(apps).Draw(rt, "app")}},
					Spec:       corev1.PodSpec{NodeName: node},
					Status:     corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}}
				mustApplyR(rt, store, p)
				ds[name] = p
			case 1:
				if _, ok := ds[name]; ok {
					if err := store.Delete(ctx, policy.ObjectKey{Kind: policy.KindPod, Namespace: "shop", Name: name}, ""); err != nil {
						rt.Fatal(err)
					}
					delete(ds, name)
				}
			case 2: // a policy
				app := rapid.SampledFrom(apps).Draw(rt, "app")
				from := rapid.SampledFrom(apps).Draw(rt, "from")
				mustApplyR(rt, store, &policy.NetworkPolicy{
					TypeMeta:   metav1.TypeMeta{APIVersion: policy.CalicoAPIVersion, Kind: "NetworkPolicy"},
					ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "allow-" + app},
					Spec: policy.NetworkPolicySpec{Selector: fmt.Sprintf("app == '%s'", app),
						Ingress: []policy.Rule{{Action: policy.Allow, Source: policy.EntityRule{Selector: fmt.Sprintf("app == '%s'", from)}}}},
				})
			case 3:
				app := rapid.SampledFrom(apps).Draw(rt, "app")
				_ = store.Delete(ctx, policy.ObjectKey{Kind: policy.KindNetworkPolicy, Namespace: "shop", Name: "allow-" + app}, "")
			case 4: // the CNI plugin attaches the pod (maybe again)
				id := fmt.Sprintf("att-%s-%d", name, rapid.IntRange(0, 1).Draw(rt, "sandbox"))
				ep := endpointapi.Endpoint{ID: id, Namespace: "shop", Pod: name, HostIf: compile.WorkloadInterface("shop", name),
					Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 2, 0, byte(rapid.IntRange(1, 9).Draw(rt, "cniip"))})}}
				if err := a.Register(ctx, ep); err != nil {
					rt.Fatal(err)
				}
				n++
				regs[id], seq[id] = ep, n
			case 6: // the kernel refuses the next apply (retried)
				be.FailNext(1, nil)
			case 5:
				for id, ep := range regs {
					if ep.Pod == name {
						if err := a.Unregister(ctx, id); err != nil {
							rt.Fatal(err)
						}
						delete(regs, id)
						break
					}
				}
			}
		}

		// The merged state, compiled from scratch.
		set := policy.NewSet()
		items, err := store.List(ctx)
		if err != nil {
			rt.Fatal(err)
		}
		for _, it := range items {
			if policy.KindOf(it.Object) != policy.KindPod {
				if _, err := set.Upsert(it.Object); err != nil {
					rt.Fatal(err)
				}
			}
		}
		for _, name := range pods {
			var newest *endpointapi.Endpoint
			for id, ep := range regs {
				if ep.Pod == name && (newest == nil || seq[id] > seq[newest.ID]) {
					ep := ep
					newest = &ep
				}
			}
			p := ds[name]
			switch {
			case newest == nil && p == nil:
				continue
			case newest != nil && p == nil:
				p = &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
			case newest != nil:
				p = p.DeepCopy()
			}
			if newest != nil {
				p.Spec.NodeName = "node-a"
				p.Status.PodIP = newest.Addrs[0].String()
				p.Status.PodIPs = []corev1.PodIP{{IP: newest.Addrs[0].String()}}
			}
			if _, err := set.Upsert(p); err != nil {
				rt.Fatal(err)
			}
		}
		want, err := compile.New(set, "node-a").Compile()
		if err != nil {
			rt.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, applied := a.Ruleset()
			if applied != nil && compile.Diff(want, applied).Empty() {
				break
			}
			if time.Now().After(deadline) {
				rt.Fatalf("the applied Ruleset never equalled the scratch compile:\n%s", compile.Diff(want, applied))
			}
			time.Sleep(time.Millisecond)
		}
		// The metrics, followed change by change, count what is applied.
		_, applied := a.Ruleset()
		var wantCounts agent.Counts
		names := map[string]bool{}
		for _, p := range applied.Policies {
			if p.Tier != "" {
				names[p.Name] = true
				wantCounts.Rules += len(p.Rules)
			}
		}
		for _, s := range applied.Sets {
			wantCounts.SetMembers += len(s.Nets) + len(s.Ports)
		}
		wantCounts.Policies, wantCounts.Sets, wantCounts.Endpoints = len(names), len(applied.Sets), len(applied.Endpoints)
		if got := a.NodeStatus().Counts; got != wantCounts {
			rt.Fatalf("counts %+v, wantCounts %+v", got, wantCounts)
		}
		// Every attachment that is its pod's newest is enforced.
		for id, ep := range regs {
			ok, err := a.Enforced(ctx, id)
			if err != nil {
				rt.Fatal(err)
			}
			newest := true
			for id2, ep2 := range regs {
				if ep2.Pod == ep.Pod && seq[id2] > seq[id] {
					newest = false
				}
			}
			if newest && !ok {
				rt.Fatalf("%s (%s) not enforced", id, ep.Pod)
			}
		}
	})
}

func mustApplyR(rt *rapid.T, s *agenttest.MemStore, obj policy.Object) {
	if _, err := s.Apply(context.Background(), obj); err != nil {
		rt.Fatal(err)
	}
}

package kube_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/kube"
	"github.com/calyxnet/calyx/internal/datastore/storetest"
	"github.com/calyxnet/calyx/policy"
)

var (
	gvrGNP  = schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: "globalnetworkpolicies"}
	gvrTier = schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: "tiers"}
)

func pod(name, node, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: labels, ResourceVersion: "1",
			Annotations: map[string]string{"big": "annotation the store drops"}},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: "web",
			Containers: []corev1.Container{
				{Name: "web", Image: "nginx", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}},
				{Name: "log", Image: "fluent"},
			}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

func calico(kind, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "crd.projectcalico.org/v1", "kind": kind,
		"metadata": map[string]any{"name": name, "resourceVersion": "5", "uid": "u-" + name, "creationTimestamp": "2026-01-01T00:00:00Z"},
		"spec":     spec,
	}}
}

type cluster struct {
	kc *fake.Clientset
	dc *dynamicfake.FakeDynamicClient
	s  *kube.Store
}

func newCluster(t *testing.T, withCalico bool, opts kube.Options) *cluster {
	t.Helper()
	kc := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"env": "prod"}, ResourceVersion: "1"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "1"}},
		pod("web-0", "node-a", "10.0.0.5", map[string]string{"app": "web"}),
		pod("web-1", "node-b", "10.0.1.5", map[string]string{"app": "web"}),
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "allow-web", Namespace: "shop", ResourceVersion: "1"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
	)
	c := &cluster{kc: kc}
	if withCalico {
		kc.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
			GroupVersion: kube.CalicoGroupVersion,
			APIResources: []metav1.APIResource{{Name: "globalnetworkpolicies", Kind: "GlobalNetworkPolicy"}, {Name: "tiers", Kind: "Tier"}},
		}}
		c.dc = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
			map[schema.GroupVersionResource]string{gvrGNP: "GlobalNetworkPolicyList", gvrTier: "TierList"},
			calico("Tier", "security", map[string]any{"order": int64(100)}),
			calico("GlobalNetworkPolicy", "security.deny-all", map[string]any{"tier": "security", "selector": "all()", "types": []any{"Ingress"}}),
		)
	}
	var err error
	if c.dc != nil {
		c.s, err = kube.New(t.Context(), kc, c.dc, opts)
	} else {
		c.s, err = kube.New(t.Context(), kc, nil, opts)
	}
	require.NoError(t, err)
	t.Cleanup(func() { c.s.Close() })
	return c
}

const wait = 10 * time.Second

func TestWatch(t *testing.T) {
	c := newCluster(t, true, kube.Options{NodeName: "node-a"})
	ctx := t.Context()
	ch, err := c.s.Watch(ctx)
	require.NoError(t, err)
	state := storetest.UntilSynced(t, ch, wait)
	var keys []string
	for k := range state {
		keys = append(keys, k.String())
	}
	assert.ElementsMatch(t, []string{
		"Namespace shop", "ServiceAccount shop/web", "Pod shop/web-0", "Pod shop/web-1",
		"KubernetesNetworkPolicy shop/allow-web", "Tier security", "GlobalNetworkPolicy security.deny-all",
	}, keys)

	// Pods carry what policy.Set needs and nothing else.
	p := state[policy.ObjectKey{Kind: policy.KindPod, Namespace: "shop", Name: "web-0"}].Object.(*corev1.Pod)
	assert.Empty(t, p.Annotations)
	require.Len(t, p.Spec.Containers, 1, "containers without ports are dropped")
	assert.Empty(t, p.Spec.Containers[0].Env)
	ep, ok := policy.NormalizePod(p)
	require.True(t, ok)
	assert.Equal(t, "node-a", ep.Node)
	assert.Equal(t, "10.0.0.5", ep.IPs[0].String())
	assert.Equal(t, "http", ep.Ports[0].Name)
	assert.Equal(t, "web", ep.ServiceAccount)

	gnp := state[policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "security.deny-all"}]
	assert.Equal(t, "5", gnp.Revision, "revisions are resourceVersions")
	assert.Equal(t, "security", gnp.Object.(*policy.GlobalNetworkPolicy).Spec.Tier)

	// Changes flow: a new pod, a relabel, a delete.
	_, err = c.kc.CoreV1().Pods("shop").Create(ctx, pod("web-2", "node-a", "10.0.0.6", nil), metav1.CreateOptions{})
	require.NoError(t, err)
	ev := storetest.Next(t, ch, wait)
	require.Equal(t, datastore.EventUpsert, ev.Type)
	assert.Equal(t, "web-2", ev.Key.Name)

	np, err := c.kc.NetworkingV1().NetworkPolicies("shop").Get(ctx, "allow-web", metav1.GetOptions{})
	require.NoError(t, err)
	np.Labels = map[string]string{"v": "2"}
	np.ResourceVersion = "2"
	_, err = c.kc.NetworkingV1().NetworkPolicies("shop").Update(ctx, np, metav1.UpdateOptions{})
	require.NoError(t, err)
	ev = storetest.Next(t, ch, wait)
	require.Equal(t, datastore.EventUpsert, ev.Type)
	assert.Equal(t, policy.KindK8sNetworkPolicy, ev.Key.Kind)
	assert.Equal(t, "2", ev.Item.Object.GetLabels()["v"])

	require.NoError(t, c.kc.CoreV1().Pods("shop").Delete(ctx, "web-1", metav1.DeleteOptions{}))
	ev = storetest.Next(t, ch, wait)
	require.Equal(t, datastore.EventDelete, ev.Type)
	assert.Equal(t, policy.ObjectKey{Kind: policy.KindPod, Namespace: "shop", Name: "web-1"}, ev.Key)

	// A Calico object that stops validating is reported; no delete.
	bad := calico("GlobalNetworkPolicy", "security.deny-all", map[string]any{"tier": "security", "selector": "app =="})
	bad.SetResourceVersion("6")
	_, err = c.dc.Resource(gvrGNP).Update(ctx, bad, metav1.UpdateOptions{})
	require.NoError(t, err)
	ev = storetest.Next(t, ch, wait)
	require.Equal(t, datastore.EventError, ev.Type, "%+v", ev)
	var verrs policy.ValidationErrors
	require.ErrorAs(t, ev.Err, &verrs)
	assert.Equal(t, "spec.selector", verrs[0].Field)
	broken := ev.Source

	// Fixed: the object again, then its source recovered.
	good := calico("GlobalNetworkPolicy", "security.deny-all", map[string]any{"tier": "security", "selector": "all()"})
	good.SetResourceVersion("7")
	_, err = c.dc.Resource(gvrGNP).Update(ctx, good, metav1.UpdateOptions{})
	require.NoError(t, err)
	ev = storetest.Next(t, ch, wait)
	require.Equal(t, datastore.EventUpsert, ev.Type, "%+v", ev)
	assert.Equal(t, "security.deny-all", ev.Key.Name)
	ev = storetest.Next(t, ch, wait)
	require.Equal(t, datastore.EventRecovered, ev.Type, "%+v", ev)
	assert.Equal(t, broken, ev.Source)

	// Broken again, then deleted: recovered too.
	bad.SetResourceVersion("8")
	_, err = c.dc.Resource(gvrGNP).Update(ctx, bad, metav1.UpdateOptions{})
	require.NoError(t, err)
	ev = storetest.Next(t, ch, wait)
	require.Equal(t, datastore.EventError, ev.Type, "%+v", ev)
	require.NoError(t, c.dc.Resource(gvrGNP).Delete(ctx, "security.deny-all", metav1.DeleteOptions{}))
	ev = storetest.Next(t, ch, wait)
	require.Equal(t, datastore.EventDelete, ev.Type, "%+v", ev)
	ev = storetest.Next(t, ch, wait)
	require.Equal(t, datastore.EventRecovered, ev.Type, "%+v", ev)
	assert.Equal(t, broken, ev.Source)

	_, err = c.dc.Resource(gvrGNP).Create(ctx, calico("GlobalNetworkPolicy", "security.allow-dns", map[string]any{"tier": "security", "selector": "all()"}), metav1.CreateOptions{})
	require.NoError(t, err)
	ev = storetest.Next(t, ch, wait)
	require.Equal(t, datastore.EventUpsert, ev.Type, "%+v", ev)
	assert.Equal(t, "security.allow-dns", ev.Key.Name)
}

func TestReadOnlyListGet(t *testing.T) {
	c := newCluster(t, true, kube.Options{})
	ctx := t.Context()
	items, err := c.s.List(ctx)
	require.NoError(t, err)
	assert.Len(t, items, 7)
	it, err := c.s.Get(ctx, policy.ObjectKey{Kind: policy.KindNamespace, Name: "shop"})
	require.NoError(t, err)
	assert.Equal(t, "prod", it.Object.GetLabels()["env"])
	_, err = c.s.Get(ctx, policy.ObjectKey{Kind: policy.KindNamespace, Name: "nope"})
	require.ErrorIs(t, err, datastore.ErrNotFound)
	_, err = c.s.Get(ctx, policy.ObjectKey{Kind: policy.KindHostEndpoint, Name: "h"})
	require.ErrorIs(t, err, datastore.ErrNotFound, "a kind whose CRD is missing holds nothing")

	obj := storetest.Objects(t)[1]
	_, err = c.s.Create(ctx, obj)
	require.ErrorIs(t, err, datastore.ErrReadOnly)
	_, err = c.s.Apply(ctx, obj)
	require.ErrorIs(t, err, datastore.ErrReadOnly)
	_, err = c.s.Replace(ctx, obj, "")
	require.ErrorIs(t, err, datastore.ErrReadOnly)
	require.ErrorIs(t, c.s.Delete(ctx, policy.KeyOf(obj), ""), datastore.ErrReadOnly)

	require.NoError(t, c.s.Close())
	_, err = c.s.List(ctx)
	require.ErrorIs(t, err, datastore.ErrClosed)
	_, err = c.s.Watch(ctx)
	require.ErrorIs(t, err, datastore.ErrClosed)
}

func TestWithoutCalicoCRDs(t *testing.T) {
	c := newCluster(t, false, kube.Options{NodeName: "node-a", LocalPodsOnly: true})
	var kinds []policy.Kind
	for _, r := range c.s.Watched() {
		kinds = append(kinds, r.Kind)
	}
	assert.Equal(t, []policy.Kind{policy.KindNamespace, policy.KindPod, policy.KindServiceAccount, policy.KindK8sNetworkPolicy}, kinds)
	ch, err := c.s.Watch(t.Context())
	require.NoError(t, err)
	state := storetest.UntilSynced(t, ch, wait)
	assert.Contains(t, state, policy.ObjectKey{Kind: policy.KindK8sNetworkPolicy, Namespace: "shop", Name: "allow-web"})
}

// TestClusterRole checks clusterrole.yaml grants read access to every
// resource the store may watch, and nothing more.
func TestClusterRole(t *testing.T) {
	b, err := os.ReadFile("clusterrole.yaml")
	require.NoError(t, err)
	var role rbacv1.ClusterRole
	require.NoError(t, yaml.UnmarshalStrict(b, &role))
	assert.Equal(t, "ClusterRole", role.Kind)
	granted := map[schema.GroupResource]bool{}
	for _, r := range role.Rules {
		assert.ElementsMatch(t, []string{"get", "list", "watch"}, r.Verbs, "read only")
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				granted[schema.GroupResource{Group: g, Resource: res}] = true
			}
		}
	}
	want := map[schema.GroupResource]bool{}
	for _, r := range kube.Resources() {
		want[r.GVR.GroupResource()] = true
	}
	assert.Equal(t, want, granted)
}

// TestForbiddenIsReported: without RBAC for a resource, the watch never
// syncs, and says why.
func TestForbiddenIsReported(t *testing.T) {
	kc := fake.NewClientset()
	kc.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("RBAC: no list"))
	})
	s, err := kube.New(t.Context(), kc, nil, kube.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	ch, err := s.Watch(t.Context())
	require.NoError(t, err)
	for {
		ev := storetest.Next(t, ch, wait)
		require.NotEqual(t, datastore.EventSynced, ev.Type, "no sync without pods")
		if ev.Type == datastore.EventError {
			assert.Equal(t, "pods", ev.Source)
			assert.True(t, apierrors.IsForbidden(ev.Err), "%v", ev.Err)
			return
		}
	}
}

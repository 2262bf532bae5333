// Package kube is the Kubernetes API datastore: client-go informers over
// Namespaces, Pods, ServiceAccounts and networking.k8s.io/v1
// NetworkPolicies, and over the Calico kinds (crd.projectcalico.org/v1:
// Tier, GlobalNetworkPolicy, NetworkPolicy, the staged kinds,
// GlobalNetworkSet, NetworkSet, HostEndpoint, Profile, IPPool,
// FelixConfiguration) where their CRDs are installed, found by discovery
// when the store starts.
//
// The store is read-only: Create, Replace, Apply and Delete return
// datastore.ErrReadOnly; write with kubectl. Revisions are the objects'
// resourceVersions.
//
// # Pods
//
// Every pod of the cluster is watched, since selectors in policy pick
// remote pods into IP sets; the compiler, given the node's name, makes
// endpoints only of the local ones. Options.LocalPodsOnly narrows the
// watch to this node's pods (a field selector on spec.nodeName) for agents
// whose policies never name remote pods. Pods are trimmed as they arrive
// to what policy.Set reads (labels, node, service account, host network,
// phase, IPs, container ports) so 10,000 pods cost little memory.
//
// # RBAC
//
// The agent needs get, list and watch on what it reads; clusterrole.yaml
// in this package's directory is that ClusterRole (its test checks it
// against Resources):
//
//	rules:
//	- apiGroups: [""]
//	  resources: [namespaces, pods, serviceaccounts]
//	  verbs: [get, list, watch]
//	- apiGroups: [networking.k8s.io]
//	  resources: [networkpolicies]
//	  verbs: [get, list, watch]
//	- apiGroups: [crd.projectcalico.org]
//	  resources: [tiers, globalnetworkpolicies, networkpolicies, …]
//	  verbs: [get, list, watch]
//
// Discovery needs no extra rule (system:discovery covers it).
package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

// CalicoGroupVersion is where Calico keeps its CRDs.
const CalicoGroupVersion = "crd.projectcalico.org/v1"

// Options are the optional knobs of New and Connect.
type Options struct {
	// NodeName is the node the agent runs on.
	NodeName string
	// LocalPodsOnly watches only NodeName's pods (see the package doc).
	LocalPodsOnly bool
	// Resync is the informers' resync period; 0 means none.
	Resync time.Duration
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Resource is one kind the store reads and where it reads it.
type Resource struct {
	Kind policy.Kind
	GVR  schema.GroupVersionResource
}

// Resources lists everything the store can read: the Kubernetes kinds,
// then the Calico kinds (read only where their CRDs exist).
func Resources() []Resource {
	core := func(kind policy.Kind, res string) Resource {
		return Resource{kind, schema.GroupVersionResource{Version: "v1", Resource: res}}
	}
	calico := func(kind policy.Kind, res string) Resource {
		return Resource{kind, schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: res}}
	}
	return []Resource{
		core(policy.KindNamespace, "namespaces"),
		core(policy.KindPod, "pods"),
		core(policy.KindServiceAccount, "serviceaccounts"),
		{policy.KindK8sNetworkPolicy, schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}},
		calico(policy.KindTier, "tiers"),
		calico(policy.KindGlobalNetworkPolicy, "globalnetworkpolicies"),
		calico(policy.KindNetworkPolicy, "networkpolicies"),
		calico(policy.KindStagedGlobalNetworkPolicy, "stagedglobalnetworkpolicies"),
		calico(policy.KindStagedNetworkPolicy, "stagednetworkpolicies"),
		calico(policy.KindStagedKubernetesNetworkPolicy, "stagedkubernetesnetworkpolicies"),
		calico(policy.KindGlobalNetworkSet, "globalnetworksets"),
		calico(policy.KindNetworkSet, "networksets"),
		calico(policy.KindHostEndpoint, "hostendpoints"),
		calico(policy.KindProfile, "profiles"),
		calico(policy.KindIPPool, "ippools"),
		calico(policy.KindFelixConfiguration, "felixconfigurations"),
	}
}

// Store is a read-only Kubernetes datastore. Use New or Connect.
type Store struct {
	log     *slog.Logger
	sources []*source
	stop    chan struct{}

	mu     sync.Mutex
	closed bool
	queues map[*queue]struct{} // of the running watches
}

var _ datastore.Store = (*Store)(nil)

// source is one informer and how to read its objects.
type source struct {
	Resource
	inf     cache.SharedIndexInformer
	convert func(any) (policy.Object, error)
}

// Connect builds a client from a kubeconfig file ("" means in-cluster,
// then the default loading rules: $KUBECONFIG, ~/.kube/config) and
// returns a started store.
func Connect(ctx context.Context, kubeconfig string, opts Options) (*Store, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes store: %w", err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes store: %w", err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes store: %w", err)
	}
	return New(ctx, kc, dc, opts)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
}

// New returns a store over the clients, with its informers started. dc
// may be nil: the Calico kinds are then not read. Discovery (through kc)
// decides which Calico CRDs exist; a discovery failure is an error.
func New(ctx context.Context, kc kubernetes.Interface, dc dynamic.Interface, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{log: log, stop: make(chan struct{}), queues: map[*queue]struct{}{}}
	factory := informers.NewSharedInformerFactory(kc, opts.Resync)
	podFactory := factory
	if opts.LocalPodsOnly && opts.NodeName != "" {
		sel := fields.OneTermEqualSelector("spec.nodeName", opts.NodeName).String()
		podFactory = informers.NewSharedInformerFactoryWithOptions(kc, opts.Resync,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = sel }))
	}
	res := Resources()
	typed := func(r Resource, inf cache.SharedIndexInformer) {
		s.sources = append(s.sources, &source{Resource: r, inf: inf, convert: convertTyped})
	}
	typed(res[0], factory.Core().V1().Namespaces().Informer())
	pods := podFactory.Core().V1().Pods().Informer()
	if err := pods.SetTransform(trimPod); err != nil {
		return nil, fmt.Errorf("kubernetes store: %w", err)
	}
	typed(res[1], pods)
	typed(res[2], factory.Core().V1().ServiceAccounts().Informer())
	typed(res[3], factory.Networking().V1().NetworkPolicies().Informer())

	var dfactory dynamicinformer.DynamicSharedInformerFactory
	if dc != nil {
		present, err := calicoResources(kc)
		if err != nil {
			return nil, err
		}
		dfactory = dynamicinformer.NewDynamicSharedInformerFactory(dc, opts.Resync)
		for _, r := range res[4:] {
			if !present[r.GVR.Resource] {
				continue
			}
			inf := dfactory.ForResource(r.GVR).Informer()
			if err := inf.SetTransform(trimUnstructured); err != nil {
				return nil, fmt.Errorf("kubernetes store: %w", err)
			}
			s.sources = append(s.sources, &source{Resource: r, inf: inf, convert: convertUnstructured})
		}
	}
	for _, src := range s.sources {
		if err := src.inf.SetWatchErrorHandler(s.watchError(src)); err != nil {
			return nil, fmt.Errorf("kubernetes store: %w", err)
		}
	}
	factory.Start(s.stop)
	if podFactory != factory {
		podFactory.Start(s.stop)
	}
	if dfactory != nil {
		dfactory.Start(s.stop)
	}
	return s, nil
}

// watchError reports an informer's failed list or watch (RBAC missing,
// API server gone) to every watch, so a consumer waiting for EventSynced
// learns why; the informer retries on its own.
func (s *Store) watchError(src *source) cache.WatchErrorHandler {
	return func(_ *cache.Reflector, err error) {
		s.log.Warn("kubernetes list/watch failed; retrying", "resource", src.GVR.Resource, "err", err)
		ev := datastore.Event{Type: datastore.EventError, Source: src.GVR.Resource,
			Err: fmt.Errorf("kubernetes store: list/watch %s: %w", src.GVR.GroupResource(), err)}
		s.mu.Lock()
		defer s.mu.Unlock()
		for q := range s.queues {
			q.push(ev)
		}
	}
}

// calicoResources asks discovery which Calico CRDs the cluster has.
func calicoResources(kc kubernetes.Interface) (map[string]bool, error) {
	list, err := kc.Discovery().ServerResourcesForGroupVersion(CalicoGroupVersion)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes store: discovery of %s: %w", CalicoGroupVersion, err)
	}
	out := map[string]bool{}
	for _, r := range list.APIResources {
		out[r.Name] = true
	}
	return out, nil
}

// Watched returns the resources the store reads: Resources less the
// Calico kinds whose CRDs are missing.
func (s *Store) Watched() []Resource {
	out := make([]Resource, len(s.sources))
	for i, src := range s.sources {
		out[i] = src.Resource
	}
	return out
}

// trimPod keeps what policy.Set reads of a pod.
func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	t := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, ResourceVersion: p.ResourceVersion, UID: p.UID},
		Spec: corev1.PodSpec{
			NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork, ServiceAccountName: p.Spec.ServiceAccountName,
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	for _, c := range p.Spec.Containers {
		if len(c.Ports) > 0 {
			t.Spec.Containers = append(t.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	for _, c := range p.Spec.InitContainers {
		if len(c.Ports) > 0 && c.RestartPolicy != nil {
			t.Spec.InitContainers = append(t.Spec.InitContainers, corev1.Container{Name: c.Name, Ports: c.Ports, RestartPolicy: c.RestartPolicy})
		}
	}
	return t, nil
}

// trimUnstructured drops the metadata the decoder has no use for.
func trimUnstructured(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		u.SetManagedFields(nil)
		delete(u.Object, "status")
	}
	return obj, nil
}

// convertTyped validates an object of a typed informer.
func convertTyped(obj any) (policy.Object, error) {
	o, ok := obj.(policy.Object)
	if !ok || policy.KindOf(o) == "" {
		return nil, fmt.Errorf("unexpected object %T", obj)
	}
	if err := policy.Validate(o, nil); err != nil {
		return nil, err
	}
	return o, nil
}

// convertUnstructured decodes a Calico CRD object as policy.Decode reads
// it (crd.projectcalico.org/v1 is an alias of projectcalico.org/v3).
func convertUnstructured(obj any) (policy.Object, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("unexpected object %T", obj)
	}
	b, err := json.Marshal(u.Object)
	if err != nil {
		return nil, err
	}
	src := u.GetKind() + " " + objectID(u.GetNamespace(), u.GetName())
	objs, err := policy.Decode(bytes.NewReader(b), src)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("%s: %d objects", src, len(objs))
	}
	return objs[0], nil
}

func objectID(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// waitSynced waits for every informer's first list.
func (s *Store) waitSynced(ctx context.Context) error {
	if s.isClosed() {
		return datastore.ErrClosed
	}
	synced := make([]cache.InformerSynced, len(s.sources))
	for i, src := range s.sources {
		synced[i] = src.inf.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kubernetes store: waiting for informers: %w", err)
		}
		return datastore.ErrClosed
	}
	return nil
}

func (s *Store) sourceOf(k policy.Kind) *source {
	for _, src := range s.sources {
		if src.Kind == k {
			return src
		}
	}
	return nil
}

func itemOf(o policy.Object) datastore.Item {
	return datastore.Item{Object: o, Revision: o.GetResourceVersion()}
}

// List implements datastore.Store. Objects that do not validate are left
// out (Watch reports them).
func (s *Store) List(ctx context.Context) ([]datastore.Item, error) {
	if err := s.waitSynced(ctx); err != nil {
		return nil, err
	}
	var out []datastore.Item
	for _, src := range s.sources {
		for _, raw := range src.inf.GetStore().List() {
			o, err := src.convert(raw)
			if err != nil {
				s.log.Warn("kubernetes object does not validate", "kind", src.Kind, "err", err)
				continue
			}
			cp, err := datastore.Copy(o)
			if err != nil {
				return nil, err
			}
			out = append(out, itemOf(cp))
		}
	}
	datastore.SortItems(out)
	return out, nil
}

// Get implements datastore.Store.
func (s *Store) Get(ctx context.Context, key policy.ObjectKey) (datastore.Item, error) {
	if err := s.waitSynced(ctx); err != nil {
		return datastore.Item{}, err
	}
	src := s.sourceOf(key.Kind)
	if src == nil {
		return datastore.Item{}, fmt.Errorf("%s: %w (kind not served by this cluster)", key, datastore.ErrNotFound)
	}
	raw, ok, err := src.inf.GetStore().GetByKey(objectID(key.Namespace, key.Name))
	if err != nil {
		return datastore.Item{}, fmt.Errorf("kubernetes store: %w", err)
	}
	if !ok {
		return datastore.Item{}, fmt.Errorf("%s: %w", key, datastore.ErrNotFound)
	}
	o, err := src.convert(raw)
	if err != nil {
		return datastore.Item{}, err
	}
	cp, err := datastore.Copy(o)
	if err != nil {
		return datastore.Item{}, err
	}
	return itemOf(cp), nil
}

var errWrite = fmt.Errorf("%w: write Kubernetes resources with kubectl", datastore.ErrReadOnly)

// Create implements datastore.Store: datastore.ErrReadOnly.
func (s *Store) Create(context.Context, policy.Object) (datastore.Item, error) {
	return datastore.Item{}, errWrite
}

// Replace implements datastore.Store: datastore.ErrReadOnly.
func (s *Store) Replace(context.Context, policy.Object, string) (datastore.Item, error) {
	return datastore.Item{}, errWrite
}

// Apply implements datastore.Store: datastore.ErrReadOnly.
func (s *Store) Apply(context.Context, policy.Object) (datastore.Item, error) {
	return datastore.Item{}, errWrite
}

// Delete implements datastore.Store: datastore.ErrReadOnly.
func (s *Store) Delete(context.Context, policy.ObjectKey, string) error {
	return errWrite
}

// Close implements datastore.Store: the informers stop, watches end.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	return nil
}

// Watch implements datastore.Store. Each watch has its own unbounded
// queue, so a slow consumer never holds the shared informers back.
func (s *Store) Watch(ctx context.Context) (<-chan datastore.Event, error) {
	if s.isClosed() {
		return nil, datastore.ErrClosed
	}
	q := &queue{wake: make(chan struct{}, 1)}
	s.mu.Lock()
	s.queues[q] = struct{}{}
	s.mu.Unlock()
	var regs []cache.ResourceEventHandlerRegistration
	remove := func() {
		for i, r := range regs {
			_ = s.sources[i].inf.RemoveEventHandler(r)
		}
		s.mu.Lock()
		delete(s.queues, q)
		s.mu.Unlock()
	}
	for _, src := range s.sources {
		reg, err := src.inf.AddEventHandler(s.handler(src, q))
		if err != nil {
			remove()
			return nil, fmt.Errorf("kubernetes store: watch %s: %w", src.GVR.Resource, err)
		}
		regs = append(regs, reg)
	}
	ch := make(chan datastore.Event)
	go func() {
		defer close(ch)
		defer remove()
		synced := make([]cache.InformerSynced, len(regs))
		for i, r := range regs {
			synced[i] = r.HasSynced
		}
		go func() {
			// Registrations are synced once their initial objects are
			// queued: Synced then follows them.
			if cache.WaitForCacheSync(mergeDone(ctx.Done(), s.stop), synced...) {
				q.push(datastore.Event{Type: datastore.EventSynced, Source: "kubernetes"})
			}
		}()
		q.pump(ctx, s.stop, ch)
	}()
	return ch, nil
}

func mergeDone(a, b <-chan struct{}) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		select {
		case <-a:
		case <-b:
		}
		close(out)
	}()
	return out
}

// handler turns informer notifications into events. An informer calls
// one registration's handler from one goroutine at a time.
func (s *Store) handler(src *source, q *queue) cache.ResourceEventHandler {
	// The objects told broken (by source), for their EventRecovered.
	bad := map[string]bool{}
	recovered := func(source string) {
		if bad[source] {
			delete(bad, source)
			q.push(datastore.Event{Type: datastore.EventRecovered, Source: source})
		}
	}
	upsert := func(raw any) {
		source := src.GVR.Resource + "/" + metaID(raw)
		o, err := src.convert(raw)
		if err != nil {
			// The last good version (already sent) stays in force.
			bad[source] = true
			q.push(datastore.Event{Type: datastore.EventError, Source: source, Err: err})
			return
		}
		q.push(datastore.Event{Type: datastore.EventUpsert, Key: policy.KeyOf(o), Item: itemOf(o), Source: src.GVR.Resource})
		recovered(source)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { upsert(obj) },
		UpdateFunc: func(old, obj any) {
			if m1, m2 := metaOf(old), metaOf(obj); m1 != nil && m2 != nil && m1.GetResourceVersion() == m2.GetResourceVersion() {
				return // a resync, not a change
			}
			upsert(obj)
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			m := metaOf(obj)
			if m == nil {
				return
			}
			q.push(datastore.Event{Type: datastore.EventDelete, Source: src.GVR.Resource,
				Key: policy.ObjectKey{Kind: src.Kind, Namespace: m.GetNamespace(), Name: m.GetName()}})
			recovered(src.GVR.Resource + "/" + metaID(obj))
		},
	}
}

func metaOf(obj any) metav1.Object {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil
	}
	return m
}

func metaID(obj any) string {
	if m := metaOf(obj); m != nil {
		return objectID(m.GetNamespace(), m.GetName())
	}
	return "?"
}

// queue is an unbounded FIFO of events drained into a channel.
type queue struct {
	mu   sync.Mutex
	evs  []datastore.Event
	wake chan struct{}
}

func (q *queue) push(ev datastore.Event) {
	q.mu.Lock()
	q.evs = append(q.evs, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) pump(ctx context.Context, stop <-chan struct{}, ch chan<- datastore.Event) {
	for {
		q.mu.Lock()
		evs := q.evs
		q.evs = nil
		q.mu.Unlock()
		for _, ev := range evs {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			case <-stop:
				return
			}
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return
		case <-stop:
			return
		}
	}
}

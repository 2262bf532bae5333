package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/policy"
)

// podKey is a pod's namespace and name.
type podKey struct{ namespace, name string }

func (k podKey) objectKey() policy.ObjectKey {
	return policy.ObjectKey{Kind: policy.KindPod, Namespace: k.namespace, Name: k.name}
}

// registration is one attachment the CNI plugin registered.
type registration struct {
	ep    endpointapi.Endpoint
	pod   podKey
	addrs []netip.Addr // sorted, unmapped, unique
	seq   uint64       // registration order: the newest of a pod wins
	gen   uint64       // the first Ruleset generation holding it
}

var _ endpointapi.Handler = (*Agent)(nil)

// Register implements endpointapi.Handler: the attachment becomes (or is
// merged into) its pod's workload endpoint; Enforced reports when the
// dataplane holds it.
func (a *Agent) Register(_ context.Context, ep endpointapi.Endpoint) error {
	if ep.Namespace == "" || ep.Pod == "" {
		return fmt.Errorf("%w: attachment %s has no Kubernetes namespace and pod name", ErrUnpoliceable, ep.ID)
	}
	if want := compile.WorkloadInterface(ep.Namespace, ep.Pod); ep.HostIf != want {
		return fmt.Errorf("%w: attachment %s: host interface %q, the compiler expects %q", ErrUnpoliceable, ep.ID, ep.HostIf, want)
	}
	addrs := make([]netip.Addr, 0, len(ep.Addrs))
	for _, ad := range ep.Addrs {
		if !ad.IsValid() {
			return fmt.Errorf("%w: attachment %s: invalid address", ErrUnpoliceable, ep.ID)
		}
		addrs = append(addrs, ad.Unmap())
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)

	a.mu.Lock()
	defer a.mu.Unlock()
	key := podKey{ep.Namespace, ep.Pod}
	prev := a.regs[ep.ID]
	a.regSeq++
	r := &registration{ep: ep, pod: key, addrs: addrs, seq: a.regSeq}
	a.regs[ep.ID] = r
	a.byPod[key] = ep.ID
	ch, err := a.syncPodLocked(key.objectKey())
	if err != nil {
		if prev != nil {
			a.regs[ep.ID] = prev
		} else {
			delete(a.regs, ep.ID)
		}
		a.byPod[key] = a.newestLocked(key)
		if a.byPod[key] == "" {
			delete(a.byPod, key)
		}
		return fmt.Errorf("agent: register %s: %w", ep.ID, err)
	}
	a.publishLocked([]policy.Change{ch})
	r.gen = a.gen
	a.metrics.registered.Set(float64(len(a.regs)))
	a.log.Debug("endpoint registered", "id", ep.ID, "pod", ep.Namespace+"/"+ep.Pod, "hostIf", ep.HostIf, "addrs", addrs)
	return nil
}

// Unregister implements endpointapi.Handler. The pod's datastore object,
// if any, stays as it is.
func (a *Agent) Unregister(_ context.Context, id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.regs[id]
	if !ok {
		return nil
	}
	delete(a.regs, id)
	if a.byPod[r.pod] == id {
		if next := a.newestLocked(r.pod); next != "" {
			a.byPod[r.pod] = next
		} else {
			delete(a.byPod, r.pod)
		}
		ch, err := a.syncPodLocked(r.pod.objectKey())
		if err != nil {
			return fmt.Errorf("agent: unregister %s: %w", id, err)
		}
		a.publishLocked([]policy.Change{ch})
	}
	a.metrics.registered.Set(float64(len(a.regs)))
	a.log.Debug("endpoint unregistered", "id", id)
	return nil
}

// newestLocked returns the newest registration of a pod, "" if none.
func (a *Agent) newestLocked(key podKey) string {
	var best *registration
	for _, r := range a.regs {
		if r.pod == key && (best == nil || r.seq > best.seq) {
			best = r
		}
	}
	if best == nil {
		return ""
	}
	return best.ep.ID
}

// Enforced implements endpointapi.Handler: true once a Ruleset generated
// after the registration, holding the endpoint with its interface and
// addresses, has been applied.
func (a *Agent) Enforced(_ context.Context, id string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.regs[id]
	if !ok {
		return false, fmt.Errorf("%w: %q", endpointapi.ErrUnknownEndpoint, id)
	}
	if a.applied == nil || a.appliedGen < r.gen {
		return false, nil
	}
	ep := a.applied.Endpoints[r.pod.namespace+"/"+r.pod.name]
	return ep != nil && ep.Interface == r.ep.HostIf && slices.Equal(ep.Addrs, r.addrs), nil
}

// Status implements endpointapi.Handler: nil when the agent can program
// policy (in sync, last apply succeeded).
func (a *Agent) Status(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case !a.synced:
		return fmt.Errorf("%w: %w", endpointapi.ErrCannotProgram, ErrNotSynced)
	case a.state.failing:
		return fmt.Errorf("%w: dataplane %s: %s", endpointapi.ErrCannotProgram, a.cfg.Backend.Name(), a.state.lastErr)
	}
	return nil
}

// syncPodLocked puts a pod's effective object in the Set: the datastore's
// object merged with the newest registration of the pod (see the package
// doc), or either alone, or nothing.
func (a *Agent) syncPodLocked(key policy.ObjectKey) (policy.Change, error) {
	it, inDS := a.ds[key]
	id := a.byPod[podKey{key.Namespace, key.Name}]
	r := a.regs[id]
	switch {
	case r == nil && !inDS:
		return a.set.Delete(key), nil
	case r == nil:
		return a.set.UpsertAt(it.Object, it.Origin)
	}
	var pod *corev1.Pod
	if inDS {
		pod = it.Object.(*corev1.Pod).DeepCopy()
		if pod.Spec.NodeName != "" && pod.Spec.NodeName != a.cfg.Node {
			a.log.Warn("pod registered here but scheduled elsewhere by the datastore; enforcing it here",
				"pod", key.Namespace+"/"+key.Name, "datastoreNode", pod.Spec.NodeName)
		}
	} else {
		pod = &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		}
	}
	pod.Spec.NodeName = a.cfg.Node
	pod.Spec.HostNetwork = false
	pod.Status.PodIPs = pod.Status.PodIPs[:0]
	pod.Status.PodIP = ""
	for _, ad := range r.addrs {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ad.String()})
	}
	if len(r.addrs) > 0 {
		pod.Status.PodIP = r.addrs[0].String()
	}
	var origin *policy.Origin
	if inDS {
		origin = it.Origin
	}
	ch, err := a.set.UpsertAt(pod, origin)
	if err != nil {
		return policy.Change{}, fmt.Errorf("%s: %w", key, err)
	}
	return ch, nil
}

package policy

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/calyxnet/calyx/selector"
	corev1 "k8s.io/api/core/v1"
)

// ObjectKey identifies an object in a Set.
type ObjectKey struct {
	// Kind is the object's kind.
	Kind Kind
	// Namespace is empty for cluster-scoped kinds.
	Namespace string
	// Name is the object's name.
	Name string
}

// String formats the key as Kind namespace/name.
func (k ObjectKey) String() string { return string(k.Kind) + " " + objectID(k.Namespace, k.Name) }

// KeyOf returns the key of an object.
func KeyOf(obj Object) ObjectKey {
	return ObjectKey{Kind: KindOf(obj), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// Op says what an Upsert or Delete did.
type Op uint8

// Operations.
const (
	// OpNone: nothing changed (the same object was upserted again, or a
	// missing one deleted).
	OpNone Op = iota
	// OpAdded: the object is new.
	OpAdded
	// OpUpdated: the object replaced a different one with the same key.
	OpUpdated
	// OpDeleted: the object was removed.
	OpDeleted
)

// String returns "none", "added", "updated" or "deleted".
func (o Op) String() string {
	return [...]string{"none", "added", "updated", "deleted"}[o]
}

// Change is what one Upsert or Delete did, for incremental consumers.
type Change struct {
	// Key identifies the object.
	Key ObjectKey
	// Op is what happened.
	Op Op
	// Old is the object before (nil when added); New after (nil when
	// deleted).
	Old, New Object
}

// Set is an in-memory, indexed collection of objects and their normalised
// forms, kept up to date by Upsert and Delete. The zero value is not ready:
// use NewSet. A Set is not safe for concurrent use.
type Set struct {
	objects   map[ObjectKey]Object
	origins   map[ObjectKey]*Origin
	policies  map[ObjectKey]*Policy
	endpoints map[ObjectKey]*Endpoint
	netsets   map[ObjectKey]*NetworkSetInfo
}

// NewSet returns an empty Set.
func NewSet() *Set {
	return &Set{
		objects:   map[ObjectKey]Object{},
		origins:   map[ObjectKey]*Origin{},
		policies:  map[ObjectKey]*Policy{},
		endpoints: map[ObjectKey]*Endpoint{},
		netsets:   map[ObjectKey]*NetworkSetInfo{},
	}
}

// Upsert validates obj and adds it, or replaces the object with its key.
// An invalid object leaves the Set unchanged and returns ValidationErrors.
// A namespaced object without namespace is put in "default" (a copy is
// stored; obj itself is not changed). The Set keeps obj: do not modify it
// afterwards.
func (s *Set) Upsert(obj Object) (Change, error) { return s.UpsertAt(obj, nil) }

// UpsertAt is Upsert for an object decoded at origin (from
// Result.Origins), so policies and rules carry their source positions.
func (s *Set) UpsertAt(obj Object, origin *Origin) (Change, error) {
	k := KindOf(obj)
	if k == "" {
		return Change{}, fmt.Errorf("policy: unsupported object type %T", obj)
	}
	if k.Namespaced() && obj.GetNamespace() == "" {
		// Default the namespace on a shallow copy: the caller's object is
		// not ours to change.
		cp := reflect.New(reflect.TypeOf(obj).Elem())
		cp.Elem().Set(reflect.ValueOf(obj).Elem())
		obj = cp.Interface().(Object)
		obj.SetNamespace("default")
	}
	if err := Validate(obj, origin); err != nil {
		return Change{}, err
	}
	key := KeyOf(obj)
	var pol *Policy
	if isPolicyKind(k) {
		p, err := normalizeValidPolicy(obj, origin)
		if err != nil {
			return Change{}, err
		}
		pol = p
	}
	old, existed := s.objects[key]
	if existed && reflect.DeepEqual(old, obj) {
		s.origins[key] = origin
		return Change{Key: key, Op: OpNone, Old: old, New: obj}, nil
	}
	s.objects[key] = obj
	s.origins[key] = origin
	delete(s.policies, key)
	delete(s.endpoints, key)
	delete(s.netsets, key)
	switch o := obj.(type) {
	case *corev1.Pod:
		if ep, ok := NormalizePod(o); ok {
			if origin != nil {
				ep.Position = origin.Position
			}
			s.endpoints[key] = ep
		}
	case *HostEndpoint:
		ep := NormalizeHostEndpoint(o)
		if origin != nil {
			ep.Position = origin.Position
		}
		s.endpoints[key] = ep
	case *NetworkSet, *GlobalNetworkSet:
		s.netsets[key] = NormalizeNetworkSet(obj)
	}
	if pol != nil {
		s.policies[key] = pol
	}
	if existed {
		return Change{Key: key, Op: OpUpdated, Old: old, New: obj}, nil
	}
	return Change{Key: key, Op: OpAdded, New: obj}, nil
}

// UpsertResult upserts every object of a decode Result with its origin,
// returning the changes; it stops at the first invalid object.
func (s *Set) UpsertResult(res Result) ([]Change, error) {
	changes := make([]Change, 0, len(res.Objects))
	for i, obj := range res.Objects {
		var origin *Origin
		if i < len(res.Origins) {
			origin = res.Origins[i]
		}
		c, err := s.UpsertAt(obj, origin)
		if err != nil {
			return changes, err
		}
		changes = append(changes, c)
	}
	return changes, nil
}

// Delete removes the object with key, reporting OpNone when there was none.
func (s *Set) Delete(key ObjectKey) Change {
	old, ok := s.objects[key]
	if !ok {
		return Change{Key: key, Op: OpNone}
	}
	delete(s.objects, key)
	delete(s.origins, key)
	delete(s.policies, key)
	delete(s.endpoints, key)
	delete(s.netsets, key)
	return Change{Key: key, Op: OpDeleted, Old: old}
}

// Get returns the object with key.
func (s *Set) Get(key ObjectKey) (Object, bool) {
	o, ok := s.objects[key]
	return o, ok
}

// Policy returns the normalised form of the policy object with key (any
// policy kind, staged ones included), as Policies lists it.
func (s *Set) Policy(key ObjectKey) (*Policy, bool) {
	p, ok := s.policies[key]
	return p, ok
}

// Endpoint returns the normalised endpoint of the Pod or HostEndpoint with
// key; false also for pods that make no endpoint (host-networked, finished).
func (s *Set) Endpoint(key ObjectKey) (*Endpoint, bool) {
	ep, ok := s.endpoints[key]
	return ep, ok
}

// NetworkSet returns the normalised NetworkSet or GlobalNetworkSet with key.
func (s *Set) NetworkSet(key ObjectKey) (*NetworkSetInfo, bool) {
	ns, ok := s.netsets[key]
	return ns, ok
}

// Origin returns where the object with key was decoded from (nil if it was
// upserted without origin).
func (s *Set) Origin(key ObjectKey) *Origin { return s.origins[key] }

// Len returns the number of objects.
func (s *Set) Len() int { return len(s.objects) }

// Objects returns every object, sorted by kind, namespace and name.
func (s *Set) Objects() []Object {
	keys := s.keys(func(ObjectKey) bool { return true })
	out := make([]Object, len(keys))
	for i, k := range keys {
		out[i] = s.objects[k]
	}
	return out
}

func (s *Set) keys(keep func(ObjectKey) bool) []ObjectKey {
	var keys []ObjectKey
	for k := range s.objects {
		if keep(k) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return keys
}

func isPolicyKind(k Kind) bool {
	switch k {
	case KindNetworkPolicy, KindGlobalNetworkPolicy, KindStagedNetworkPolicy,
		KindStagedGlobalNetworkPolicy, KindStagedKubernetesNetworkPolicy, KindK8sNetworkPolicy:
		return true
	}
	return false
}

// Tiers returns the tiers in evaluation order: by order (lower first,
// unset last), ties by name. The default tier is always there (order
// 1,000,000, end action Deny), implicit unless a Tier object names it.
func (s *Set) Tiers() []*TierInfo {
	var out []*TierInfo
	haveDefault := false
	for _, k := range s.keys(func(k ObjectKey) bool { return k.Kind == KindTier }) {
		t := s.objects[k].(*Tier)
		ti := &TierInfo{Name: t.Name, Order: t.Spec.Order, DefaultAction: t.Spec.DefaultAction}
		if ti.DefaultAction == "" {
			ti.DefaultAction = Deny
		}
		if t.Name == DefaultTierName {
			haveDefault = true
			o := DefaultTierOrder
			ti.Order = &o
		}
		out = append(out, ti)
	}
	if !haveDefault {
		o := DefaultTierOrder
		out = append(out, &TierInfo{Name: DefaultTierName, Order: &o, DefaultAction: Deny, Implicit: true})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if c := compareOrder(out[i].Order, out[j].Order); c != 0 {
			return c < 0
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Policies returns the enforced policies in evaluation order: by tier
// (Tiers order; policies of a tier that does not exist last), then by
// order within the tier (lower first, unset last), ties by namespace/name.
// Staged policies are not included.
func (s *Set) Policies() []*Policy { return s.policiesWhere(false) }

// StagedPolicies returns the staged policies, in the same order as
// Policies. They never change what is enforced.
func (s *Set) StagedPolicies() []*Policy { return s.policiesWhere(true) }

func (s *Set) policiesWhere(staged bool) []*Policy {
	rank := map[string]int{}
	for i, t := range s.Tiers() {
		rank[t.Name] = i
	}
	var out []*Policy
	for _, p := range s.policies {
		if p.Staged == staged {
			out = append(out, p)
		}
	}
	tierRank := func(name string) int {
		if r, ok := rank[name]; ok {
			return r
		}
		return len(rank)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ra, rb := tierRank(a.Tier), tierRank(b.Tier); ra != rb {
			return ra < rb
		}
		if a.Tier != b.Tier {
			return a.Tier < b.Tier
		}
		if c := compareOrder(a.Order, b.Order); c != 0 {
			return c < 0
		}
		if a.Key() != b.Key() {
			return a.Key() < b.Key()
		}
		return a.Kind < b.Kind
	})
	return out
}

// Endpoints returns the workload endpoints (sorted by namespace/name) and
// then the host endpoints (sorted by name).
func (s *Set) Endpoints() []*Endpoint {
	var out []*Endpoint
	for _, k := range s.keys(func(k ObjectKey) bool { return k.Kind == KindPod }) {
		if ep, ok := s.endpoints[k]; ok {
			out = append(out, ep)
		}
	}
	for _, k := range s.keys(func(k ObjectKey) bool { return k.Kind == KindHostEndpoint }) {
		out = append(out, s.endpoints[k])
	}
	return out
}

// NetworkSets returns the network sets: global ones, then namespaced
// ones, each sorted by key.
func (s *Set) NetworkSets() []*NetworkSetInfo {
	var out []*NetworkSetInfo
	for _, k := range s.keys(func(k ObjectKey) bool { return k.Kind == KindGlobalNetworkSet || k.Kind == KindNetworkSet }) {
		out = append(out, s.netsets[k])
	}
	return out
}

// Namespaces returns the Namespace objects, sorted by name.
func (s *Set) Namespaces() []*corev1.Namespace {
	return typedObjects[*corev1.Namespace](s, KindNamespace)
}

// ServiceAccounts returns the ServiceAccount objects, sorted.
func (s *Set) ServiceAccounts() []*corev1.ServiceAccount {
	return typedObjects[*corev1.ServiceAccount](s, KindServiceAccount)
}

// Profiles returns the Profile objects, sorted by name.
func (s *Set) Profiles() []*Profile { return typedObjects[*Profile](s, KindProfile) }

// IPPools returns the IPPool objects, sorted by name.
func (s *Set) IPPools() []*IPPool { return typedObjects[*IPPool](s, KindIPPool) }

// FelixConfigurations returns the FelixConfiguration objects, sorted.
func (s *Set) FelixConfigurations() []*FelixConfiguration {
	return typedObjects[*FelixConfiguration](s, KindFelixConfiguration)
}

// FelixConfig returns the configuration in force on node: the cluster-wide
// "default" object with the fields set in "node.<node>" laid over it. The
// zero spec when neither exists.
func (s *Set) FelixConfig(node string) FelixConfigurationSpec {
	var out FelixConfigurationSpec
	if o, ok := s.objects[ObjectKey{Kind: KindFelixConfiguration, Name: "default"}]; ok {
		out = o.(*FelixConfiguration).Spec
	}
	if node == "" {
		return out
	}
	if o, ok := s.objects[ObjectKey{Kind: KindFelixConfiguration, Name: "node." + node}]; ok {
		overlay(reflect.ValueOf(&out).Elem(), reflect.ValueOf(o.(*FelixConfiguration).Spec))
	}
	return out
}

// overlay copies the non-zero fields of src over dst.
func overlay(dst, src reflect.Value) {
	for i := 0; i < src.NumField(); i++ {
		if !src.Field(i).IsZero() {
			dst.Field(i).Set(src.Field(i))
		}
	}
}

func typedObjects[T Object](s *Set, k Kind) []T {
	var out []T
	for _, key := range s.keys(func(key ObjectKey) bool { return key.Kind == k }) {
		out = append(out, s.objects[key].(T))
	}
	return out
}

// EndpointLabels returns the flattened labels of an endpoint, as policy
// selectors see them: its own labels with the implicit ones
// (EndpointOwnLabels), then those inherited from its parents
// (EndpointParents; own labels win). A workload always gets
// pcns.projectcalico.org/name, even when its Namespace object is not in
// the set.
func (s *Set) EndpointLabels(ep *Endpoint) selector.Set {
	return s.flatten(EndpointOwnLabels(ep), EndpointParents(ep))
}

// NetworkSetLabels returns the flattened labels of a network set.
func (s *Set) NetworkSetLabels(ns *NetworkSetInfo) selector.Set {
	return s.flatten(NetworkSetOwnLabels(ns), NetworkSetParents(ns))
}

func (s *Set) flatten(own map[string]string, parents []string) selector.Set {
	out := selector.Set(own)
	for _, p := range parents {
		for k, v := range s.ParentLabels(p) {
			if _, set := out[k]; !set {
				out[k] = v
			}
		}
	}
	return out
}

// ParentLabels returns the labels a parent lends: a namespace's
// (kns.<ns>: pcns.-prefixed, with pcns.projectcalico.org/name even when
// the Namespace object is missing), a service account's (ksa.<ns>.<sa>:
// pcsa.-prefixed), or a Profile's labelsToApply (any other ID).
func (s *Set) ParentLabels(id string) map[string]string {
	if ns, ok := cutPrefix(id, NamespaceParentPrefix); ok {
		if o, ok := s.objects[ObjectKey{Kind: KindNamespace, Name: ns}]; ok {
			return NamespaceParentLabels(o.(*corev1.Namespace))
		}
		return map[string]string{NamespaceLabelPrefix + LabelName: ns}
	}
	if rest, ok := cutPrefix(id, ServiceAccountParentPrefix); ok {
		for _, sa := range s.ServiceAccounts() {
			if ServiceAccountParentID(sa.Namespace, sa.Name) == id {
				return ServiceAccountParentLabels(sa)
			}
		}
		// Without the object, the name is still known: ksa.<ns>.<name>,
		// and namespaces cannot contain dots.
		if _, name, ok := cutDot(rest); ok {
			return map[string]string{ServiceAccountLabelPrefix + LabelName: name}
		}
		return nil
	}
	if o, ok := s.objects[ObjectKey{Kind: KindProfile, Name: id}]; ok {
		return copyLabels(o.(*Profile).Spec.LabelsToApply)
	}
	return nil
}

// Profile returns the normalised profile with the given ID, as listed by
// EndpointParents: a namespace's (kns.<ns>: allow everything both ways, as
// Calico's namespace profiles do), a service account's (ksa.<ns>.<sa>: no
// rules, labels only) or a Profile object's. nil when a Profile object of
// that name does not exist.
func (s *Set) Profile(id string) *ProfileInfo {
	if _, ok := cutPrefix(id, NamespaceParentPrefix); ok {
		return &ProfileInfo{
			Name:     id,
			Ingress:  []RuleInfo{{Action: Allow}},
			Egress:   []RuleInfo{{Action: Allow}},
			Labels:   s.ParentLabels(id),
			Implicit: true,
		}
	}
	if _, ok := cutPrefix(id, ServiceAccountParentPrefix); ok {
		return &ProfileInfo{Name: id, Labels: s.ParentLabels(id), Implicit: true}
	}
	key := ObjectKey{Kind: KindProfile, Name: id}
	o, ok := s.objects[key]
	if !ok {
		return nil
	}
	prof := o.(*Profile)
	origin := s.origins[key]
	base := joinPath(originPrefix(origin), "spec")
	out := &ProfileInfo{Name: id, Labels: copyLabels(prof.Spec.LabelsToApply)}
	for i := range prof.Spec.Ingress {
		out.Ingress = append(out.Ingress, normalizeRule(&prof.Spec.Ingress[i], "", fmt.Sprintf("%s.ingress[%d]", base, i), origin))
	}
	for i := range prof.Spec.Egress {
		out.Egress = append(out.Egress, normalizeRule(&prof.Spec.Egress[i], "", fmt.Sprintf("%s.egress[%d]", base, i), origin))
	}
	return out
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

func cutDot(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// Validate runs the checks that need the whole set: every policy's tier
// exists (the default tier always does). It returns ValidationErrors.
func (s *Set) Validate() error {
	tiers := map[string]bool{DefaultTierName: true}
	for _, t := range s.Tiers() {
		tiers[t.Name] = true
	}
	var errs ValidationErrors
	for _, k := range s.keys(func(k ObjectKey) bool { return isPolicyKind(k.Kind) }) {
		p := s.policies[k]
		if tiers[p.Tier] {
			continue
		}
		origin := s.origins[k]
		errs = append(errs, &ValidationError{
			Position: origin.At("spec.tier"), Kind: k.Kind, Namespace: k.Namespace, Name: k.Name,
			Field:   joinPath(originPrefix(origin), "spec.tier"),
			Message: fmt.Sprintf("tier %q does not exist: add a Tier named %q", p.Tier, p.Tier),
		})
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

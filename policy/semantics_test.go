package policy_test

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/policy"
	"github.com/calyxnet/calyx/selector"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// world is the cluster the label-space tests evaluate selectors against.
const world = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: bank, labels: {team: y}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: api, namespace: shop, labels: {role: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: shop-db, namespace: shop, labels: {app: db}}
spec: {nodeName: n1, serviceAccountName: default, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: shop-api, namespace: shop, labels: {app: api}}
spec: {nodeName: n1, serviceAccountName: api, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: bank-db, namespace: bank, labels: {app: db}}
spec: {nodeName: n2, containers: [{name: c, image: i}]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {app: db}}
spec: {node: n1, interfaceName: eth0}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: gset, labels: {app: db}}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: nset, namespace: shop, labels: {app: db}}
spec: {nets: [198.51.100.0/24]}
`

// selected returns the keys of the endpoints and network sets whose
// flattened labels s matches (nil s matches everything).
func selected(set *policy.Set, s *selector.Selector) []string {
	var out []string
	for _, ep := range set.Endpoints() {
		if s == nil || s.Matches(set.EndpointLabels(ep)) {
			out = append(out, string(ep.Kind)+":"+ep.Key())
		}
	}
	for _, ns := range set.NetworkSets() {
		if s == nil || s.Matches(set.NetworkSetLabels(ns)) {
			out = append(out, string(ns.Kind)+":"+ns.Key())
		}
	}
	return out
}

func loadSet(t *testing.T, docs ...string) *policy.Set {
	t.Helper()
	res, err := policy.DecodeWithOptions(strings.NewReader(strings.Join(docs, "\n---\n")), "test.yaml", policy.DecodeOptions{})
	require.NoError(t, err)
	set := policy.NewSet()
	_, err = set.UpsertResult(res)
	require.NoError(t, err)
	return set
}

func onlyPolicy(t *testing.T, set *policy.Set) *policy.Policy {
	t.Helper()
	ps := set.Policies()
	require.Len(t, ps, 1)
	return ps[0]
}

// TestLabelSpace checks, by evaluating the normalised selectors against the
// flattened labels, that each way of writing a peer selects what Calico
// selects.
func TestLabelSpace(t *testing.T) {
	cases := []struct {
		name          string
		policy        string
		policySelects []string
		ruleSelects   []string
	}{
		{
			name: "namespaced policy, rule selector scoped to the namespace",
			policy: `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: app == 'db'}}]`,
			policySelects: []string{"Pod:shop/shop-db"},
			ruleSelects:   []string{"Pod:shop/shop-db", "NetworkSet:shop/nset"},
		},
		{
			name: "namespaced policy, rule namespaceSelector over namespace labels",
			policy: `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  ingress: [{action: Allow, source: {namespaceSelector: team == 'y', selector: app == 'db'}}]`,
			policySelects: []string{"Pod:shop/shop-db", "Pod:shop/shop-api"},
			ruleSelects:   []string{"Pod:bank/bank-db"},
		},
		{
			name: "namespaceSelector by implicit name label",
			policy: `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: bank}
spec:
  ingress: [{action: Allow, source: {namespaceSelector: projectcalico.org/name == 'shop'}}]`,
			policySelects: []string{"Pod:bank/bank-db"},
			ruleSelects:   []string{"Pod:shop/shop-db", "Pod:shop/shop-api", "NetworkSet:shop/nset"},
		},
		{
			name: "global policy, rule selector not scoped",
			policy: `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: app == 'db'}}]`,
			policySelects: []string{"Pod:bank/bank-db", "Pod:shop/shop-db", "HostEndpoint:n1-eth0"},
			ruleSelects:   []string{"Pod:bank/bank-db", "Pod:shop/shop-db", "HostEndpoint:n1-eth0", "GlobalNetworkSet:gset", "NetworkSet:shop/nset"},
		},
		{
			name: "global() selects non-namespaced things",
			policy: `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  ingress: [{action: Allow, source: {namespaceSelector: global(), selector: app == 'db'}}]`,
			policySelects: []string{"Pod:shop/shop-db", "Pod:shop/shop-api"},
			ruleSelects:   []string{"HostEndpoint:n1-eth0", "GlobalNetworkSet:gset"},
		},
		{
			name: "all() namespaceSelector selects every namespace, nothing global",
			policy: `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  namespaceSelector: team == 'x'
  ingress: [{action: Allow, source: {namespaceSelector: all(), selector: app == 'db'}}]`,
			policySelects: []string{"Pod:shop/shop-db", "Pod:shop/shop-api"},
			ruleSelects:   []string{"Pod:bank/bank-db", "Pod:shop/shop-db", "NetworkSet:shop/nset"},
		},
		{
			name: "serviceAccounts names and selector",
			policy: `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  serviceAccountSelector: projectcalico.org/name == 'api'
  ingress:
  - action: Allow
    source: {serviceAccounts: {names: [api, default], selector: role == 'web'}}`,
			policySelects: []string{"Pod:shop/shop-api"},
			ruleSelects:   []string{"Pod:shop/shop-api"},
		},
		{
			name: "notSelector alone scopes the positive selector to the namespace",
			policy: `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  ingress: [{action: Allow, source: {notSelector: app == 'db'}}]`,
			policySelects: []string{"Pod:shop/shop-db", "Pod:shop/shop-api"},
			ruleSelects:   []string{"Pod:shop/shop-db", "Pod:shop/shop-api", "NetworkSet:shop/nset"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := loadSet(t, world, tc.policy)
			p := onlyPolicy(t, set)
			require.ElementsMatch(t, tc.policySelects, selectedEndpoints(set, p.Selector))
			require.Len(t, p.Ingress, 1)
			require.NotNil(t, p.Ingress[0].Source.Selector)
			require.ElementsMatch(t, tc.ruleSelects, selected(set, p.Ingress[0].Source.Selector))
		})
	}
}

func selectedEndpoints(set *policy.Set, s *selector.Selector) []string {
	var out []string
	for _, ep := range set.Endpoints() {
		if s.Matches(set.EndpointLabels(ep)) {
			out = append(out, string(ep.Kind)+":"+ep.Key())
		}
	}
	return out
}

// TestRuleWithoutSelectorsMeansAny: a rule with no selector fields has nil
// selectors (any address), in namespaced and global policies alike.
func TestRuleWithoutSelectorsMeansAny(t *testing.T) {
	set := loadSet(t, `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  ingress: [{action: Allow, source: {nets: [10.0.0.0/8]}}]`)
	r := onlyPolicy(t, set).Ingress[0]
	require.Nil(t, r.Source.Selector)
	require.Nil(t, r.Source.NotSelector)
	require.Nil(t, r.Destination.Selector)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, r.Source.Nets)
}

func TestTypesInferred(t *testing.T) {
	cases := []struct {
		name string
		spec string
		want []policy.Direction
	}{
		{"no rules", "selector: all()", []policy.Direction{policy.Ingress}},
		{"ingress only", "ingress: [{action: Allow}]", []policy.Direction{policy.Ingress}},
		{"egress only", "egress: [{action: Allow}]", []policy.Direction{policy.Egress}},
		{"both", "ingress: [{action: Allow}]\n  egress: [{action: Allow}]", []policy.Direction{policy.Ingress, policy.Egress}},
		{"explicit", "types: [Egress, Ingress]\n  ingress: [{action: Allow}]", []policy.Direction{policy.Ingress, policy.Egress}},
		{"empty list is absent", "ingress: []\n  egress: [{action: Deny}]", []policy.Direction{policy.Egress}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := loadSet(t, "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  "+tc.spec)
			require.Equal(t, tc.want, onlyPolicy(t, set).Types)
		})
	}
}

func TestProtocolsAndPorts(t *testing.T) {
	set := loadSet(t, `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [80, "8000:8080", http], notPorts: ["81"]}}
  - {action: Allow, protocol: UDP}
  - {action: Allow, protocol: ICMP, icmp: {type: 8}}
  - {action: Allow, protocol: ICMPv6, notICMP: {type: 1, code: 4}}
  - {action: Allow, protocol: SCTP}
  - {action: Allow, protocol: UDPLite}
  - {action: Allow, protocol: 47, notProtocol: 6}`)
	rules := onlyPolicy(t, set).Ingress
	var protos []uint8
	for _, r := range rules {
		protos = append(protos, r.Protocol)
	}
	require.Equal(t, []uint8{6, 17, 1, 58, 132, 136, 47}, protos)
	require.Equal(t, []policy.PortRange{{Min: 80, Max: 80}, {Min: 8000, Max: 8080}}, rules[0].Destination.Ports)
	require.Equal(t, []string{"http"}, rules[0].Destination.NamedPorts)
	require.Equal(t, []policy.PortRange{{Min: 81, Max: 81}}, rules[0].Destination.NotPorts)
	require.Equal(t, uint8(8), rules[2].ICMP.Type)
	require.Nil(t, rules[2].ICMP.Code)
	require.Equal(t, uint8(4), *rules[3].NotICMP.Code)
	require.Equal(t, uint8(6), rules[6].NotProtocol)
}

// TestK8sConversion checks Kubernetes NetworkPolicy semantics on real pods:
// AND within a peer, OR across peers, podSelector alone meaning the
// policy's namespace, empty namespaceSelector meaning all namespaces.
func TestK8sConversion(t *testing.T) {
	cases := []struct {
		name  string
		from  string
		rules [][]string // per generated rule, what its source selects
	}{
		{"podSelector alone: own namespace", "- podSelector: {matchLabels: {app: db}}",
			[][]string{{"Pod:shop/shop-db"}}},
		{"namespaceSelector and podSelector in one peer: AND", "- namespaceSelector: {matchLabels: {team: y}}\n      podSelector: {matchLabels: {app: db}}",
			[][]string{{"Pod:bank/bank-db"}}},
		{"two peers: OR", "- namespaceSelector: {matchLabels: {team: y}}\n    - podSelector: {matchLabels: {app: api}}",
			[][]string{{"Pod:bank/bank-db"}, {"Pod:shop/shop-api"}}},
		{"empty namespaceSelector: every namespace", "- namespaceSelector: {}",
			[][]string{{"Pod:bank/bank-db", "Pod:shop/shop-db", "Pod:shop/shop-api"}}},
		{"matchExpressions", "- podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [db]}]}",
			[][]string{{"Pod:shop/shop-api"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := loadSet(t, world, knpHead+"  ingress:\n  - from:\n    "+tc.from+"\n")
			p := onlyPolicy(t, set)
			require.Equal(t, policy.KindK8sNetworkPolicy, p.Kind)
			require.Equal(t, "knp.default.k", p.Name)
			require.Equal(t, "default", p.Tier)
			require.Equal(t, 1000.0, *p.Order)
			require.ElementsMatch(t, []string{"Pod:shop/shop-db", "Pod:shop/shop-api"}, selectedEndpoints(set, p.Selector))
			require.Len(t, p.Ingress, len(tc.rules))
			for i, want := range tc.rules {
				require.Equal(t, policy.Allow, p.Ingress[i].Action)
				require.ElementsMatch(t, want, selectedEndpoints(set, p.Ingress[i].Source.Selector), "rule %d", i)
			}
		})
	}
}

func TestK8sPortsAndTypes(t *testing.T) {
	tcp, udp, sctp := corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP
	port := func(p int) *intstr.IntOrString { v := intstr.FromInt32(int32(p)); return &v }
	named := func(n string) *intstr.IntOrString { v := intstr.FromString(n); return &v }
	end := int32(90)
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "ports", Namespace: "shop"},
		Spec: networkingv1.NetworkPolicySpec{
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{
					{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16", "10.2.0.0/16"}}},
					{PodSelector: &metav1.LabelSelector{}},
				},
				Ports: []networkingv1.NetworkPolicyPort{
					{Port: port(81)},                 // TCP by default
					{Protocol: &tcp, Port: port(80)}, // merged with 81
					{Protocol: &tcp, Port: port(85), EndPort: &end},
					{Protocol: &udp, Port: named("dns")}, // named port kept
					{Protocol: &sctp},                    // every SCTP port
				},
			}},
		},
	}
	set := policy.NewSet()
	_, err := set.Upsert(np)
	require.NoError(t, err)
	p := onlyPolicy(t, set)
	// Egress rules present, policyTypes omitted: Ingress and Egress.
	require.Equal(t, []policy.Direction{policy.Ingress, policy.Egress}, p.Types)
	require.Empty(t, p.Ingress)
	// SCTP, TCP, UDP (sorted) × two peers.
	require.Len(t, p.Egress, 6)
	for i, want := range []uint8{132, 132, 6, 6, 17, 17} {
		require.Equal(t, want, p.Egress[i].Protocol, "rule %d", i)
	}
	require.Empty(t, p.Egress[0].Destination.Ports)
	require.Equal(t, []policy.PortRange{{Min: 80, Max: 81}, {Min: 85, Max: 90}}, p.Egress[2].Destination.Ports)
	require.Equal(t, []string{"dns"}, p.Egress[4].Destination.NamedPorts)
	ipRule := p.Egress[2].Destination
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ipRule.Nets)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")}, ipRule.NotNets)
	require.Nil(t, ipRule.Selector)
	require.Equal(t, "spec.egress[0].to[0]", p.Egress[2].Field)
	require.Equal(t, "spec.egress[0].to[1]", p.Egress[3].Field)

	// ingress: [{}] allows everything: one rule with no conditions.
	allow := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "all", Namespace: "shop"},
		Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}},
	}
	cnp := policy.ConvertK8sNetworkPolicy(allow)
	require.Equal(t, []policy.Rule{{Action: policy.Allow}}, cnp.Spec.Ingress)
	require.Equal(t, []policy.PolicyType{policy.PolicyTypeIngress}, cnp.Spec.Types)
}

// TestYAML11Strings: y, n, on, off are strings (YAML 1.2), as the schema
// says, and Encode quotes them for YAML 1.1 readers.
func TestYAML11Strings(t *testing.T) {
	in := `apiVersion: v1
kind: Namespace
metadata:
  name: y
  labels:
    on: off
    n: "yes"
    enabled: no
`
	objs, err := policy.Decode(strings.NewReader(in), "ns.yaml")
	require.NoError(t, err)
	ns := objs[0].(*corev1.Namespace)
	require.Equal(t, "y", ns.Name)
	require.Equal(t, map[string]string{"on": "off", "n": "yes", "enabled": "no"}, ns.Labels)
	var out bytes.Buffer
	require.NoError(t, policy.Encode(&out, objs))
	require.Contains(t, out.String(), `name: "y"`)
	require.Contains(t, out.String(), `"on": "off"`)
	again, err := policy.Decode(&out, "encoded")
	require.NoError(t, err)
	require.Equal(t, objs, again)
}

func TestListsAndJSON(t *testing.T) {
	typed := `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicyList
items:
- metadata: {name: a}
  spec: {selector: all()}
- metadata: {name: b}
`
	objs, err := policy.Decode(strings.NewReader(typed), "list.yaml")
	require.NoError(t, err)
	require.Len(t, objs, 2)
	require.Equal(t, policy.KindGlobalNetworkPolicy, policy.KindOf(objs[1]))

	js := `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"j","namespace":"n"},"spec":{"podSelector":{}}}]}`
	objs, err = policy.Decode(strings.NewReader(js), "list.json")
	require.NoError(t, err)
	require.Equal(t, policy.KindK8sNetworkPolicy, policy.KindOf(objs[0]))

	crd := "apiVersion: crd.projectcalico.org/v1\nkind: Tier\nmetadata: {name: t}\nspec: {order: 1}\n"
	objs, err = policy.Decode(strings.NewReader(crd), "crd.yaml")
	require.NoError(t, err)
	require.Equal(t, policy.CalicoAPIVersion, objs[0].GetObjectKind().GroupVersionKind().GroupVersion().String())
}

func TestAliasesAndMergeKeys(t *testing.T) {
	in := `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  ingress:
  - &allowWeb {action: Allow, protocol: TCP, destination: {ports: [80]}}
  - <<: *allowWeb
    action: Deny
`
	objs, err := policy.Decode(strings.NewReader(in), "alias.yaml")
	require.NoError(t, err)
	rules := objs[0].(*policy.GlobalNetworkPolicy).Spec.Ingress
	require.Equal(t, policy.Deny, rules[1].Action)
	require.Equal(t, []policy.Port{policy.SinglePort(80)}, rules[1].Destination.Ports)

	// Exponential alias expansion is cut off, not followed.
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		b.WriteString("a" + strconv.Itoa(i) + ": &a" + strconv.Itoa(i) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + strconv.Itoa(i-1))
		}
		b.WriteString("]\n")
	}
	_, err = policy.Decode(strings.NewReader(b.String()), "bomb.yaml")
	require.ErrorContains(t, err, "too large")
}

func TestPodEndpoints(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{
			NodeName:           "n1",
			ServiceAccountName: "sa",
			InitContainers: []corev1.Container{
				{Name: "init", Ports: []corev1.ContainerPort{{Name: "ignored", ContainerPort: 1}}},
				{Name: "sidecar", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001}}},
			},
			Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 8080},
				{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
				{ContainerPort: 9999},
			}}},
		},
		Status: corev1.PodStatus{PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}}},
	}
	ep, ok := policy.NormalizePod(pod)
	require.True(t, ok)
	require.Equal(t, "n1", ep.Node)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}, ep.IPs)
	require.Equal(t, []policy.EndpointNamedPort{{Name: "http", Protocol: 6, Port: 8080}, {Name: "dns", Protocol: 17, Port: 53}, {Name: "proxy", Protocol: 6, Port: 15001}}, ep.Ports)
	require.Equal(t, map[string]string{
		"app": "x", policy.LabelNamespace: "shop", policy.LabelOrchestrator: "k8s", policy.LabelServiceAccount: "sa",
	}, policy.EndpointOwnLabels(ep))
	require.Equal(t, []string{"kns.shop", "ksa.shop.sa"}, policy.EndpointParents(ep))

	spoof := pod.DeepCopy()
	spoof.Labels = map[string]string{"pcns.team": "x", "pcsa.role": "admin", policy.LabelNamespace: "other", "app": "x"}
	spoofed, _ := policy.NormalizePod(spoof)
	require.Equal(t, map[string]string{
		"app": "x", policy.LabelNamespace: "shop", policy.LabelOrchestrator: "k8s", policy.LabelServiceAccount: "sa",
	}, policy.EndpointOwnLabels(spoofed), "a pod cannot claim another namespace's labels")

	pod.Status.PodIPs = nil
	ep, _ = policy.NormalizePod(pod)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("10.0.0.1")}, ep.IPs, "podIP fallback")

	hostNet := pod.DeepCopy()
	hostNet.Spec.HostNetwork = true
	_, ok = policy.NormalizePod(hostNet)
	require.False(t, ok, "host-networked pods are not endpoints")
	done := pod.DeepCopy()
	done.Status.Phase = corev1.PodSucceeded
	_, ok = policy.NormalizePod(done)
	require.False(t, ok, "finished pods are not endpoints")
}

func TestSetChanges(t *testing.T) {
	set := policy.NewSet()
	gnp := &policy.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "g"}}
	c, err := set.Upsert(gnp)
	require.NoError(t, err)
	require.Equal(t, policy.OpAdded, c.Op)
	require.Equal(t, policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "g"}, c.Key)

	same := *gnp
	c, err = set.Upsert(&same)
	require.NoError(t, err)
	require.Equal(t, policy.OpNone, c.Op)

	changed := &policy.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "g"}, Spec: policy.GlobalNetworkPolicySpec{Selector: "a == 'b'"}}
	c, err = set.Upsert(changed)
	require.NoError(t, err)
	require.Equal(t, policy.OpUpdated, c.Op)
	require.Same(t, gnp, c.Old)
	require.Equal(t, `a == "b"`, onlyPolicy(t, set).Selector.String())

	bad := &policy.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "g"}, Spec: policy.GlobalNetworkPolicySpec{Selector: "a =="}}
	_, err = set.Upsert(bad)
	var verrs policy.ValidationErrors
	require.ErrorAs(t, err, &verrs)
	require.Equal(t, `a == "b"`, onlyPolicy(t, set).Selector.String(), "an invalid upsert leaves the set unchanged")

	c = set.Delete(c.Key)
	require.Equal(t, policy.OpDeleted, c.Op)
	require.Empty(t, set.Policies())
	require.Equal(t, policy.OpNone, set.Delete(c.Key).Op)
	require.Zero(t, set.Len())
}

// TestEvaluationOrder: tiers by order (unset last), the default tier at
// 1,000,000; policies by order (unset last), ties by name; staged apart.
func TestEvaluationOrder(t *testing.T) {
	set := loadSet(t,
		"apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: late}\nspec: {order: 2000000}",
		"apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: unordered}",
		"apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: first}\nspec: {order: 1}",
		"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: z-unset}\nspec: {}",
		"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: b-10}\nspec: {order: 10}",
		"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a-10}\nspec: {order: 10}",
		"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: neg}\nspec: {order: -1.5}",
		"apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: late-p, namespace: x}\nspec: {tier: late, order: 1}",
		"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: u}\nspec: {tier: unordered}",
		"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: f}\nspec: {tier: first, order: 999}",
		"apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: staged}\nspec: {order: 1}",
	)
	var tiers []string
	for _, tr := range set.Tiers() {
		tiers = append(tiers, tr.Name)
	}
	require.Equal(t, []string{"first", "default", "late", "unordered"}, tiers)
	var names []string
	for _, p := range set.Policies() {
		names = append(names, p.Key())
	}
	require.Equal(t, []string{"f", "neg", "a-10", "b-10", "z-unset", "x/late-p", "u"}, names)
	require.Len(t, set.StagedPolicies(), 1)
	require.True(t, set.StagedPolicies()[0].Staged)
}

func TestFelixConfigOverlay(t *testing.T) {
	set := loadSet(t,
		"apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {wireguardEnabled: true, logPrefix: calyx}",
		"apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.n1}\nspec: {logPrefix: n1, bpfEnabled: true}",
	)
	cfg := set.FelixConfig("n1")
	require.True(t, *cfg.WireguardEnabled)
	require.True(t, *cfg.BPFEnabled)
	require.Equal(t, "n1", cfg.LogPrefix)
	require.Equal(t, "calyx", set.FelixConfig("n2").LogPrefix)
}

// TestEmptyListsAreAbsent: an empty list decodes like an absent one, except
// where an empty list has its own meaning (behind a pointer).
func TestEmptyListsAreAbsent(t *testing.T) {
	withEmpty, err := policy.Decode(strings.NewReader(npHead+"  egress: []\n  ingress:\n  - action: Allow\n    source: {nets: []}\n"), "a.yaml")
	require.NoError(t, err)
	without, err := policy.Decode(strings.NewReader(npHead+"  ingress:\n  - action: Allow\n"), "b.yaml")
	require.NoError(t, err)
	require.Equal(t, without, withEmpty)

	objs, err := policy.Decode(strings.NewReader("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {failsafeInboundHostPorts: []}\n"), "f.yaml")
	require.NoError(t, err)
	ports := objs[0].(*policy.FelixConfiguration).Spec.FailsafeInboundHostPorts
	require.NotNil(t, ports)
	require.Empty(t, *ports)
}

// TestProfiles: a pod's profiles are its namespace's (allow all) and its
// service account's (labels only); a host endpoint's are Profile objects.
func TestProfiles(t *testing.T) {
	set := loadSet(t, world, `apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: host-defaults}
spec:
  labelsToApply: {managed: calyx}
  ingress: [{action: Deny, protocol: TCP, destination: {ports: [22]}}]`)
	var pod, host *policy.Endpoint
	for _, ep := range set.Endpoints() {
		switch ep.Key() {
		case "shop/shop-api":
			pod = ep
		case "n1-eth0":
			host = ep
		}
	}
	require.Equal(t, []string{"kns.shop", "ksa.shop.api"}, policy.EndpointParents(pod))
	ns := set.Profile("kns.shop")
	require.Equal(t, []policy.RuleInfo{{Action: policy.Allow}}, ns.Ingress)
	require.Equal(t, []policy.RuleInfo{{Action: policy.Allow}}, ns.Egress)
	require.Equal(t, map[string]string{"pcns.team": "x", "pcns.projectcalico.org/name": "shop"}, ns.Labels)
	sa := set.Profile("ksa.shop.api")
	require.Empty(t, sa.Ingress)
	require.Equal(t, map[string]string{"pcsa.role": "web", "pcsa.projectcalico.org/name": "api"}, sa.Labels)

	require.Empty(t, policy.EndpointParents(host))
	prof := set.Profile("host-defaults")
	require.False(t, prof.Implicit)
	require.Len(t, prof.Ingress, 1)
	require.Equal(t, "spec.ingress[0]", prof.Ingress[0].Field)
	require.Equal(t, []policy.PortRange{{Min: 22, Max: 22}}, prof.Ingress[0].Destination.Ports)
	require.Nil(t, set.Profile("missing"))
}

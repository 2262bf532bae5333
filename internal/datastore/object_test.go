package datastore_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/policy"
)

func TestParseKind(t *testing.T) {
	tests := []struct {
		in   string
		want policy.Kind
	}{
		{"GlobalNetworkPolicy", policy.KindGlobalNetworkPolicy},
		{"globalnetworkpolicies", policy.KindGlobalNetworkPolicy},
		{"gnp", policy.KindGlobalNetworkPolicy},
		{"networkpolicy", policy.KindNetworkPolicy},
		{"NetworkPolicies", policy.KindNetworkPolicy},
		{"networkpolicy.projectcalico.org", policy.KindNetworkPolicy},
		{"networkpolicies.crd.projectcalico.org", policy.KindNetworkPolicy},
		{"networkpolicy.networking.k8s.io", policy.KindK8sNetworkPolicy},
		{"knp", policy.KindK8sNetworkPolicy},
		{"netpol", policy.KindK8sNetworkPolicy},
		{"KubernetesNetworkPolicy", policy.KindK8sNetworkPolicy},
		{"hep", policy.KindHostEndpoint},
		{"pods", policy.KindPod},
		{"po", policy.KindPod},
		{"ns", policy.KindNamespace},
		{"tiers", policy.KindTier},
		{"felixconfigurations", policy.KindFelixConfiguration},
		{"ippools", policy.KindIPPool},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := datastore.ParseKind(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	for _, bad := range []string{"", "service", "pod.projectcalico.org", "gnp.networking.k8s.io"} {
		t.Run("bad/"+bad, func(t *testing.T) {
			_, err := datastore.ParseKind(bad)
			require.Error(t, err)
		})
	}
	// Every kind parses from its own name.
	for _, k := range datastore.Kinds() {
		got, err := datastore.ParseKind(string(k))
		require.NoError(t, err, k)
		assert.Equal(t, k, got)
	}
}

func TestResourceName(t *testing.T) {
	tests := []struct {
		key  policy.ObjectKey
		want string
	}{
		{policy.ObjectKey{Kind: policy.KindGlobalNetworkPolicy, Name: "deny"}, "globalnetworkpolicy.projectcalico.org/deny"},
		{policy.ObjectKey{Kind: policy.KindK8sNetworkPolicy, Namespace: "a", Name: "web"}, "networkpolicy.networking.k8s.io/web"},
		{policy.ObjectKey{Kind: policy.KindPod, Namespace: "a", Name: "p"}, "pod/p"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, datastore.ResourceName(tt.key))
		})
	}
}

func decode(t *testing.T, s string) policy.Object {
	t.Helper()
	objs, err := policy.Decode(strings.NewReader(s), "test")
	require.NoError(t, err)
	return objs[0]
}

func TestPrepare(t *testing.T) {
	np := decode(t, `{apiVersion: projectcalico.org/v3, kind: NetworkPolicy, metadata: {name: a, namespace: x, resourceVersion: "7"}, spec: {selector: all()}}`)
	np.SetNamespace("")
	got, err := datastore.Prepare(np)
	require.NoError(t, err)
	assert.Equal(t, "default", got.GetNamespace())
	assert.Empty(t, got.GetResourceVersion())
	assert.Equal(t, "7", np.GetResourceVersion(), "the input is not modified")
	assert.Equal(t, "projectcalico.org/v3", got.GetObjectKind().GroupVersionKind().GroupVersion().String())

	gnp := decode(t, `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g}, spec: {selector: all()}}`)
	gnp.SetNamespace("x")
	_, err = datastore.Prepare(gnp)
	var verrs policy.ValidationErrors
	require.ErrorAs(t, err, &verrs)
	assert.Equal(t, "metadata.namespace", verrs[0].Field)
}

func TestContentRevision(t *testing.T) {
	a := decode(t, `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g}, spec: {selector: all()}}`)
	b := decode(t, `{apiVersion: crd.projectcalico.org/v1, kind: GlobalNetworkPolicy, metadata: {name: g, resourceVersion: "9"}, spec: {selector: all()}}`)
	c := decode(t, `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g}, spec: {selector: all(), order: 1}}`)
	ra, err := datastore.ContentRevision(a)
	require.NoError(t, err)
	rb, err := datastore.ContentRevision(b)
	require.NoError(t, err)
	rc, err := datastore.ContentRevision(c)
	require.NoError(t, err)
	assert.Equal(t, ra, rb, "apiVersion alias and resourceVersion do not change the content")
	assert.NotEqual(t, ra, rc)
}

func TestNewObject(t *testing.T) {
	for _, k := range datastore.Kinds() {
		assert.Equal(t, k, policy.KindOf(datastore.NewObject(k)), k)
	}
	assert.Nil(t, datastore.NewObject("Service"))
}

package cni

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/ipam"
)

const base = `"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "calyx-cni"`

func TestParseNetConf(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		c, err := ParseNetConf([]byte(`{` + base + `}`))
		require.NoError(t, err)
		require.Equal(t, ipam.StoreSpec{Kind: "bolt", Path: ipam.DefaultBoltPath}, c.IPAMStore)
		require.Equal(t, endpointapi.DefaultSocket, c.AgentSocket)
		require.Equal(t, DefaultPolicyTimeout, c.PolicyTimeout)
		require.Equal(t, DefaultMTU, c.MTU)
		require.False(t, c.FailOpenWithoutAgent, "fail closed by default")
	})
	t.Run("every key", func(t *testing.T) {
		c, err := ParseNetConf([]byte(`{` + base + `,
			"ipamStore": "etcd:http://10.0.0.1:2379,http://10.0.0.2:2379",
			"pools": [{"name": "v4", "cidr": "10.1.2.3/16", "blockSize": 27}],
			"agentSocket": "/run/a.sock", "policyTimeout": "1500ms", "failOpenWithoutAgent": true,
			"mtu": 1450, "nodeName": "n1", "nodeNetns": "/run/netns/n",
			"dns": {"nameservers": ["10.96.0.10"]},
			"capabilities": {"portMappings": true}, "runtimeConfig": {}, "args": {},
			"prevResult": {"cniVersion": "1.1.0"},
			"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
			"cni.dev/attachments": [{"containerID": "c1", "ifname": "eth0"}]}`))
		require.NoError(t, err)
		require.Equal(t, []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}, c.IPAMStore.Endpoints)
		require.Equal(t, "10.1.0.0/16", c.Pools[0].CIDR.String(), "masked")
		require.Equal(t, 27, c.Pools[0].BlockSize)
		require.Equal(t, 1500*time.Millisecond, c.PolicyTimeout)
		require.True(t, c.FailOpenWithoutAgent)
		require.Equal(t, 1450, c.MTU)
		require.Equal(t, "/run/netns/n", c.NodeNetns)
		require.Equal(t, []string{"10.96.0.10"}, c.DNS.Nameservers)
		require.True(t, c.HasValidAttachments)
		require.Contains(t, c.ValidAttachments, types.GCAttachment{ContainerID: "c1", IfName: "eth0"})
		require.NotEmpty(t, c.PrevResult)
	})
	tests := []struct {
		name, members, key string
	}{
		{"unknown key", `"failOpen": true`, "failOpen"},
		{"bad store", `"ipamStore": "sqlite:/x"`, "ipamStore"},
		{"store not a string", `"ipamStore": 3`, "ipamStore"},
		{"bad cidr", `"pools": [{"name": "a", "cidr": "10.0.0.0/33"}]`, "pools[0].cidr"},
		{"pool without name", `"pools": [{"cidr": "10.0.0.0/16"}]`, "pools[0].name"},
		{"unknown pool key", `"pools": [{"name": "a", "cidr": "10.0.0.0/16", "natOutgoing": true}]`, "pools"},
		{"zero timeout", `"policyTimeout": "0s"`, "policyTimeout"},
		{"bool as string", `"failOpenWithoutAgent": "yes"`, "failOpenWithoutAgent"},
		{"mtu too small", `"mtu": 100`, "mtu"},
		{"relative netns", `"nodeNetns": "node"`, "nodeNetns"},
		{"empty socket", `"agentSocket": ""`, "agentSocket"},
		{"delegated ipam", `"ipam": {"type": "host-local"}`, "ipam"},
		{"bad attachments", `"cni.dev/valid-attachments": {}`, "cni.dev/valid-attachments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNetConf([]byte(`{` + base + `, ` + tt.members + `}`))
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tt.key, ce.Key)
			require.Equal(t, types.ErrInvalidNetworkConfig, toCNIError(err).Code)
			require.Contains(t, toCNIError(err).Msg, `"`+tt.key+`"`)
		})
	}
	t.Run("all problems at once", func(t *testing.T) {
		_, err := ParseNetConf([]byte(`{"type": "calyx-cni", "zzz": 1, "mtu": "big"}`))
		msg := err.Error()
		for _, k := range []string{`"zzz"`, `"mtu"`, `"name"`, `"cniVersion"`} {
			require.Contains(t, msg, k)
		}
	})
	t.Run("not an object", func(t *testing.T) {
		_, err := ParseNetConf([]byte(`[]`))
		require.Equal(t, types.ErrInvalidNetworkConfig, toCNIError(err).Code)
	})
}

func TestToCNIError(t *testing.T) {
	tests := []struct {
		err  error
		code uint
	}{
		{&ConfigError{Key: "k", Msg: "m"}, types.ErrInvalidNetworkConfig},
		{ErrInvalidNetNS, types.ErrInvalidNetNS},
		{ErrNoAgent, types.ErrTryAgainLater},
		{endpointapi.ErrNotEnforced, types.ErrTryAgainLater},
		{ipam.ErrExhausted, types.ErrTryAgainLater},
		{ErrPluginNotAvailable, 50},
		{ErrLimitedConnectivity, 51},
		{ErrCheckFailed, types.ErrInternal},
		{types.NewError(types.ErrInvalidEnvironmentVariables, "x", ""), types.ErrInvalidEnvironmentVariables},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			wrapped := errors.Join(errors.New("context"), tt.err)
			got := toCNIError(wrapped)
			require.Equal(t, tt.code, got.Code)
			require.True(t, strings.Contains(got.Msg, tt.err.Error()) || got.Code == tt.err.(*types.Error).Code)
		})
	}
	require.Nil(t, toCNIError(nil))
}

func FuzzParseNetConf(f *testing.F) {
	f.Add([]byte(`{` + base + `}`))
	f.Add([]byte(`{` + base + `, "pools": [{"name": "a", "cidr": "fd00::/48", "blockSize": 122}], "mtu": 9000}`))
	f.Add([]byte(`{"name": 1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseNetConf(data)
		if (c == nil) == (err == nil) {
			t.Fatalf("exactly one of result and error: %v %v", c, err)
		}
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			return
		}
		if c.Name == "" || c.CNIVersion == "" || c.PolicyTimeout <= 0 || c.MTU < 576 {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
	})
}

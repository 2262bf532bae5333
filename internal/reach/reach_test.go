package reach

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// db only accepts TCP 5432 from web and, having no profile, sends nothing;
// the other pods are not endpoints of the node, so nothing judges them.
func ruleset() *compile.Ruleset {
	return &compile.Ruleset{
		Sets: map[compile.SetID]*compile.IPSet{
			"s:web": {ID: "s:web", Kind: compile.SetNets, Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}},
		},
		Policies: map[compile.PolicyID]*compile.Policy{
			"in:db": {ID: "in:db", Direction: compile.Ingress, Rules: []compile.Rule{{Action: compile.ActionAllow,
				Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{"s:web"}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: 5432, Max: 5432}}}}}}},
		},
		Endpoints: map[string]*compile.Endpoint{
			"shop/db": {Key: "shop/db", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")},
				Ingress: compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{"in:db"}, EndAction: compile.ActionDeny}}}},
		},
	}
}

func pods() []Pod {
	return []Pod{
		{Namespace: "shop", Name: "web", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Ports: []Port{{Name: "http", Protocol: 6, Port: 80}}},
		{Namespace: "shop", Name: "db", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Ports: []Port{{Name: "pg", Protocol: 6, Port: 5432}, {Protocol: 17, Port: 53}}},
		{Namespace: "other", Name: "v6only", Addrs: []netip.Addr{netip.MustParseAddr("fd00::9")}},
	}
}

func TestParseProbe(t *testing.T) {
	for in, want := range map[string]Probe{"80/TCP": {80, 6}, "53/udp": {53, 17}, "8080": {8080, 6}, "9/SCTP": {9, 132}} {
		got, err := ParseProbe(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"0/TCP", "70000", "80/ICMP", "x/TCP", ""} {
		_, err := ParseProbe(bad)
		assert.Error(t, err, bad)
	}
}

func TestDeclaredProbes(t *testing.T) {
	assert.Equal(t, []Probe{{80, 6}, {5432, 6}, {53, 17}}, DeclaredProbes(pods()))
}

func TestModelMatrix(t *testing.T) {
	ctx := context.Background()
	m, err := Run(ctx, ModelProber{Index: model.NewIndex(ruleset())}, pods(), []Probe{{5432, 6}, {53, 17}}, 2)
	require.NoError(t, err)

	var table bytes.Buffer
	require.NoError(t, m.WriteTable(&table))
	assert.Equal(t, "5432/TCP\n"+
		"-\tother/v6only\tshop/db\tshop/web\n"+
		"other/v6only\t.\tX\tX\n"+
		"shop/db\tX\t.\tX\n"+
		"shop/web\tX\t.\t.\n"+
		"\n53/UDP\n"+
		"-\tother/v6only\tshop/db\tshop/web\n"+
		"other/v6only\t.\tX\tX\n"+
		"shop/db\tX\t.\tX\n"+
		"shop/web\tX\tX\t.\n", table.String())

	var js bytes.Buffer
	require.NoError(t, m.WriteJSON(&js))
	var out struct {
		Results []Result `json:"results"`
	}
	require.NoError(t, json.Unmarshal(js.Bytes(), &out))
	require.Len(t, out.Results, 18)
	assert.Equal(t, Result{From: "other/v6only", To: "other/v6only", Port: 5432, Protocol: "TCP", Allowed: true}, out.Results[0])
	assert.Equal(t, Result{From: "shop/web", To: "shop/db", Port: 53, Protocol: "UDP", Allowed: false}, out.Results[16])
	assert.Contains(t, js.String(), `{"results":[{"from":"other/v6only","to":"other/v6only","port":5432,"protocol":"TCP","allowed":true},`)
}

type failingProber struct{}

func (failingProber) Probe(context.Context, *Pod, *Pod, Probe) (bool, error) {
	return false, errors.New("boom")
}

func TestRunError(t *testing.T) {
	_, err := Run(context.Background(), failingProber{}, pods(), []Probe{{80, 6}}, 0)
	assert.EqualError(t, err, "boom")
}

func hostSet(t *testing.T) *policy.Set {
	t.Helper()
	objs, err := policy.Decode(strings.NewReader(`apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node1-eth0}
spec: {node: node1, interfaceName: eth0, expectedIPs: [2001:db8::10, 192.0.2.10, 192.0.2.10], ports: [{name: ssh, port: 22, protocol: TCP}]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node1-all}
spec: {node: node1, interfaceName: '*', expectedIPs: [192.0.2.11]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node1-eth0-again}
spec: {node: node1, interfaceName: eth0}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a}
spec: {containers: [{name: c, image: x}]}
status: {podIP: 10.0.0.1}
`), "hosts.yaml")
	require.NoError(t, err)
	set := policy.NewSet()
	for _, o := range objs {
		_, err := set.Upsert(o)
		require.NoError(t, err)
	}
	return set
}

func TestHostsFromSet(t *testing.T) {
	hosts := HostsFromSet(hostSet(t))
	require.Len(t, hosts, 3)
	assert.Equal(t, Pod{Kind: KindHost, Name: "node1-eth0", Node: "node1", Interface: "eth0",
		Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
		Ports: []Port{{Name: "ssh", Protocol: 6, Port: 22}}}, hosts[1])
	assert.Equal(t, "host:node1-eth0", hosts[1].ID(), "the compiler's endpoint key")
	assert.Equal(t, []Probe{{22, 6}}, DeclaredProbes(hosts[1:2]))
}

func TestFindHost(t *testing.T) {
	hosts := HostsFromSet(hostSet(t))
	hosts = append(hosts, Pod{Kind: KindHost, Name: "edge", Node: "node2", Interface: "eth0"})
	for ref, want := range map[string]string{"node1-eth0": "node1-eth0", "node1/*": "node1-all", "node1-all": "node1-all", "node2": "edge"} {
		h, err := FindHost(hosts, ref)
		require.NoError(t, err, ref)
		assert.Equal(t, want, h.Name, ref)
	}
	for ref, msg := range map[string]string{
		"node1/eth0": "2 match (node1-eth0, node1-eth0-again)",
		"node3/eth0": `no HostEndpoint in the input has node "node3"`,
		"nope":       "no HostEndpoint of that name or node",
		"node1":      "3 match (node1-all, node1-eth0, node1-eth0-again)",
	} {
		_, err := FindHost(hosts, ref)
		assert.ErrorContains(t, err, msg, ref)
	}
}

func TestExternalParty(t *testing.T) {
	p := ExternalParty(netip.MustParseAddr("::ffff:203.0.113.9"))
	assert.Equal(t, "203.0.113.9", p.ID())
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("203.0.113.9")}, p.Addrs)
	pkt, ok := FirstPacket(&p, &Pod{Kind: KindHost, Name: "n", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}}, Probe{22, 6})
	require.True(t, ok)
	assert.Equal(t, model.Packet{Src: netip.MustParseAddr("203.0.113.9"), Dst: netip.MustParseAddr("192.0.2.10"), Protocol: 6, SrcPort: 40000, DstPort: 22}, pkt)

	// An external IPv6 client asks about the destination's IPv6 address;
	// a pod keeps asking about the first address only, as it always has.
	dual := Pod{Kind: KindHost, Name: "n", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")}}
	v6 := ExternalParty(netip.MustParseAddr("2001:db8:77::7"))
	pkt, ok = FirstPacket(&v6, &dual, Probe{22, 6})
	require.True(t, ok)
	assert.Equal(t, netip.MustParseAddr("2001:db8::10"), pkt.Dst)
	v6pod := Pod{Namespace: "a", Name: "v6", Addrs: []netip.Addr{netip.MustParseAddr("fd00::1")}}
	_, ok = FirstPacket(&v6pod, &dual, Probe{22, 6})
	assert.False(t, ok)
}

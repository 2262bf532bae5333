package cni

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/ipam"
)

// callbackEnv runs the callbacks in-process: a bbolt store and an agent in
// a temporary directory, nothing from the process environment.
type callbackEnv struct {
	store, socket string
	agent         *endpointapi.Memory
	plugin        *Plugin
	out           *bytes.Buffer
}

func newCallbackEnv(t *testing.T, agent *endpointapi.Memory) *callbackEnv {
	t.Helper()
	dir := t.TempDir()
	e := &callbackEnv{store: filepath.Join(dir, "ipam.db"), socket: filepath.Join(dir, "agent.sock"), agent: agent, out: &bytes.Buffer{}}
	e.plugin = &Plugin{Stdout: e.out, Hostname: func() (string, error) { return "node-a", nil }}
	if agent != nil {
		ln, err := net.Listen("unix", e.socket)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- endpointapi.NewServer(agent, nil).Serve(ctx, ln) }()
		t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	}
	return e
}

func (e *callbackEnv) conf(pools string, extra string) []byte {
	return fmt.Appendf(nil, `{%s, "ipamStore": "bolt:%s", "agentSocket": %q, "pools": %s %s}`, base, e.store, e.socket, pools, extra)
}

func code(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestStatusCallback(t *testing.T) {
	const pools = `[{"name": "v4", "cidr": "10.9.0.0/30", "blockSize": 30}]`
	tests := []struct {
		name  string
		agent *endpointapi.Memory
		extra string
		fill  bool
		want  uint
	}{
		{"ready", &endpointapi.Memory{}, "", false, 0},
		{"no agent", nil, "", false, 50},
		{"no agent, fail open", nil, `, "failOpenWithoutAgent": true`, false, 0},
		{"agent cannot program", &endpointapi.Memory{Broken: func() error { return errors.New("kernel says no") }}, "", false, 51},
		{"pools exhausted", &endpointapi.Memory{}, "", true, 50},
		{"IPAM store unreachable", &endpointapi.Memory{}, `, "ipamStore": "bolt:/nonexistent-dir/ipam.db"`, false, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCallbackEnv(t, tt.agent)
			conf := e.conf(pools, tt.extra)
			if tt.fill {
				st, err := ipam.OpenBolt(t.Context(), e.store, nil)
				require.NoError(t, err)
				al := ipam.New(st, ipam.Config{})
				require.NoError(t, al.UpsertPool(t.Context(), ipam.Pool{Name: "v4", CIDR: netip.MustParsePrefix("10.9.0.0/30"), BlockSize: 30}))
				for i := 0; ; i++ {
					_, err := al.AutoAssign(t.Context(), ipam.AssignRequest{Handle: fmt.Sprint("h", i), Node: "node-a", IPv4: 1})
					if errors.Is(err, ipam.ErrExhausted) {
						break
					}
					require.NoError(t, err)
				}
				require.NoError(t, st.Close())
			}
			err := e.plugin.Funcs().Status(&skel.CmdArgs{StdinData: conf})
			require.Equal(t, tt.want, code(err), "%v", err)
		})
	}
}

func TestDelCallbackWithoutAllocation(t *testing.T) {
	e := newCallbackEnv(t, &endpointapi.Memory{})
	args := &skel.CmdArgs{ContainerID: "c0ffee", Netns: "/proc/self/ns/none", IfName: "eth0",
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=a;K8S_POD_NAME=b", StdinData: e.conf(`[]`, "")}
	for range 2 {
		require.NoError(t, e.plugin.Funcs().Del(args))
	}
	require.Empty(t, e.out.String(), "DEL prints nothing")
}

func TestCallbackArgs(t *testing.T) {
	e := newCallbackEnv(t, &endpointapi.Memory{})
	tests := []struct {
		name string
		args skel.CmdArgs
		want uint
	}{
		{"unknown CNI_ARGS without IgnoreUnknown", skel.CmdArgs{ContainerID: "c", Args: "FOO=bar", StdinData: e.conf(`[]`, "")}, types.ErrInvalidEnvironmentVariables},
		{"no container id", skel.CmdArgs{StdinData: e.conf(`[]`, "")}, types.ErrInvalidEnvironmentVariables},
		{"bad config", skel.CmdArgs{ContainerID: "c", StdinData: []byte(`{` + base + `, "x": 1}`)}, types.ErrInvalidNetworkConfig},
		{"GC without attachments", skel.CmdArgs{StdinData: e.conf(`[]`, "")}, types.ErrInvalidNetworkConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := e.plugin.Funcs().Del
			if tt.name == "GC without attachments" {
				f = e.plugin.Funcs().GC
			}
			require.Equal(t, tt.want, code(f(&tt.args)))
		})
	}
}

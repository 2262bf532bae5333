//go:build linux

package cni_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"

	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/podnet"
	"github.com/calyxnet/calyx/ipam"
)

// The plugin binary is built once per test process.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// pluginDir builds cmd/calyx-cni and returns the directory holding it.
func pluginDir(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "calyx-cni-bin-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "calyx-cni"), "github.com/calyxnet/calyx/cmd/calyx-cni").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(tb, buildErr)
	return buildDir
}

// env is one node: its namespace, IPAM file, agent and libcni runtime.
type env struct {
	tb      testing.TB
	node    *netns.NS
	store   string // the bbolt file
	ipam    string // the ipamStore value: "bolt:"+store unless withIPAMStore
	socket  string
	agent   *endpointapi.Memory
	cni     *libcni.CNIConfig
	cache   string
	extra   string // extra JSON members of the plugin config
	version string
	pools   string // the "pools" member's JSON value
	timeout string // policyTimeout
}

type envOpt func(*env)

func withVersion(v string) envOpt            { return func(e *env) { e.version = v } }
func withExtra(json string) envOpt           { return func(e *env) { e.extra = json } }
func withAgent(m *endpointapi.Memory) envOpt { return func(e *env) { e.agent = m } }
func withTimeout(d string) envOpt            { return func(e *env) { e.timeout = d } }
func withIPAMStore(s string) envOpt          { return func(e *env) { e.ipam = s } }
func withoutAgentServer() envOpt             { return func(e *env) { e.agent = nil } }
func withoutAgent() envOpt                   { return func(e *env) { e.agent = nil; e.socket = "" } }

func newEnv(tb testing.TB, opts ...envOpt) *env {
	tb.Helper()
	netnstest.RequireRoot(tb)
	dir := tb.TempDir()
	e := &env{
		tb:      tb,
		node:    netnstest.New(tb, "cxcn-"),
		store:   filepath.Join(dir, "ipam.db"),
		socket:  filepath.Join(dir, "agent.sock"),
		agent:   &endpointapi.Memory{},
		cache:   filepath.Join(dir, "cache"),
		version: "1.1.0",
		pools:   `[{"name": "v4", "cidr": "10.77.0.0/16", "blockSize": 26}, {"name": "v6", "cidr": "fd77::/64", "blockSize": 122}]`,
		timeout: "2s",
	}
	e.ipam = "bolt:" + e.store
	for _, o := range opts {
		o(e)
	}
	if e.socket == "" {
		e.socket = filepath.Join(dir, "no-agent.sock")
	} else if e.agent != nil {
		ln, err := net.Listen("unix", e.socket)
		require.NoError(tb, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- endpointapi.NewServer(e.agent, nil).Serve(ctx, ln) }()
		tb.Cleanup(func() { cancel(); require.NoError(tb, <-done) })
	}
	require.NoError(tb, podnet.PrepareNode(tb.Context(), e.node,
		netip.MustParseAddr("10.77.255.1"), netip.MustParseAddr("fd77:ffff::1")))
	e.cni = libcni.NewCNIConfigWithCacheDir([]string{pluginDir(tb)}, e.cache, nil)
	return e
}

// confList is the network configuration list a runtime would read.
func (e *env) confList() *libcni.NetworkConfigList {
	e.tb.Helper()
	extra := ""
	if e.extra != "" {
		extra = ", " + e.extra
	}
	text := fmt.Sprintf(`{
  "cniVersion": %q,
  "name": "k8s-pod-network",
  "plugins": [{
    "type": "calyx-cni",
    "ipamStore": %q,
    "pools": %s,
    "agentSocket": %q,
    "policyTimeout": %q,
    "nodeName": "node-a",
    "nodeNetns": %q%s
  }]
}`, e.version, e.ipam, e.pools, e.socket, e.timeout, e.node.Path(), extra)
	l, err := libcni.ConfListFromBytes([]byte(text))
	require.NoError(e.tb, err)
	return l
}

// pod is one sandbox: its namespace and the runtime's view of it.
type pod struct {
	ns        *netns.NS
	rt        *libcni.RuntimeConf
	namespace string
	name      string
}

func (e *env) newPod(name string) *pod {
	e.tb.Helper()
	ns := netnstest.New(e.tb, "cxcp-")
	id := strings.ReplaceAll(netnstest.UniqueName("c"), "-", "") + "0123456789abcdef"
	return &pod{ns: ns, namespace: "shop", name: name, rt: &libcni.RuntimeConf{
		ContainerID: id, NetNS: ns.Path(), IfName: "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", "shop"},
			{"K8S_POD_NAME", name},
			{"K8S_POD_INFRA_CONTAINER_ID", id},
			{"K8S_POD_UID", "uid-" + name},
		},
	}}
}

func (e *env) add(ctx context.Context, p *pod) (*current.Result, error) {
	r, err := e.cni.AddNetworkList(ctx, e.confList(), p.rt)
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(r)
}

func (e *env) del(ctx context.Context, p *pod) error {
	return e.cni.DelNetworkList(ctx, e.confList(), p.rt)
}

// allocator opens the node's IPAM store from the test process.
func (e *env) allocator(ctx context.Context) *ipam.Allocator {
	e.tb.Helper()
	spec, err := ipam.ParseStoreSpec(e.ipam)
	require.NoError(e.tb, err)
	st, err := spec.Open(ctx)
	require.NoError(e.tb, err)
	e.tb.Cleanup(func() { _ = st.Close() })
	return ipam.New(st, ipam.Config{})
}

// nodeLinks lists the interface names in the node namespace.
func (e *env) nodeLinks() []string {
	e.tb.Helper()
	h, err := netlink.NewHandleAt(nlns.NsHandle(e.node.Fd()))
	require.NoError(e.tb, err)
	defer h.Close()
	ls, err := h.LinkList()
	require.NoError(e.tb, err)
	var names []string
	for _, l := range ls {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// workloadLinks lists the host-side pod interfaces in the node namespace.
func (e *env) workloadLinks() []string {
	var out []string
	for _, n := range e.nodeLinks() {
		if strings.HasPrefix(n, "calyx") {
			out = append(out, n)
		}
	}
	return out
}

// nodeRoutes lists the node's host routes (/32, /128) to pods, not those
// of its own uplink.
func (e *env) nodeRoutes() []string {
	e.tb.Helper()
	h, err := netlink.NewHandleAt(nlns.NsHandle(e.node.Fd()))
	require.NoError(e.tb, err)
	defer h.Close()
	rs, err := h.RouteList(nil, netlink.FAMILY_ALL)
	require.NoError(e.tb, err)
	up, err := h.LinkByName(podnet.UplinkName)
	require.NoError(e.tb, err)
	var out []string
	for _, r := range rs {
		if r.Dst == nil || r.LinkIndex == up.Attrs().Index {
			continue
		}
		if ones, bits := r.Dst.Mask.Size(); ones == bits && ones > 0 && !r.Dst.IP.IsLinkLocalUnicast() {
			out = append(out, r.Dst.String())
		}
	}
	return out
}

// cniCode returns the CNI error code of err, failing when it has none.
func cniCode(tb testing.TB, err error) (uint, string) {
	tb.Helper()
	require.Error(tb, err)
	var te *types.Error
	require.ErrorAs(tb, err, &te, "error %v carries no CNI code", err)
	return te.Code, te.Msg
}

// addrsOf returns the addresses of a result.
func addrsOf(r *current.Result) []netip.Addr {
	var out []netip.Addr
	for _, ipc := range r.IPs {
		a, _ := netip.AddrFromSlice(ipc.Address.IP)
		out = append(out, a.Unmap())
	}
	return out
}

// tcpReach reports whether a TCP request from one pod to another's
// address gets its answer, probed the way the lab probes its pods.
func tcpReach(tb testing.TB, from, to *netns.NS, addr netip.Addr) error {
	return tcpReachWithin(tb, from, to, addr, 3*time.Second)
}

// reachPort is the port tcpReach serves on in the destination pod.
const reachPort = 7070

// tcpReachWithin is tcpReach with a timeout.
func tcpReachWithin(tb testing.TB, from, to *netns.NS, addr netip.Addr, timeout time.Duration) error {
	tb.Helper()
	stop, err := lab.Serve(to, lab.Port{Protocol: 6, Port: reachPort})
	require.NoError(tb, err)
	defer func() { require.NoError(tb, stop()) }()
	p := lab.Probe{From: from.Name(), To: to.Name(), Dst: addr, Protocol: 6, DstPort: reachPort}
	ok, err := lab.ProbeFrom(context.Background(), from, p, timeout)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: no answer within %s", p.String(), timeout)
	}
	return nil
}

func poolOf(name, cidr string, blockSize int) ipam.Pool {
	return ipam.Pool{Name: name, CIDR: netip.MustParsePrefix(cidr), BlockSize: blockSize}
}

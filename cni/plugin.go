package cni

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/podnet"
	"github.com/calyxnet/calyx/ipam"
)

// Handle attributes the plugin keeps with each allocation, so DEL and GC
// find the host-side interface without the runtime's help.
const (
	attrNetwork     = "cni.network"
	attrContainerID = "cni.containerID"
	attrIfName      = "cni.ifName"
	attrHostIf      = "cni.hostIf"
	attrNamespace   = "k8s.namespace"
	attrPod         = "k8s.pod"
)

// Plugin holds the CNI callbacks. Each takes its whole input from the
// skel.CmdArgs it is given and writes its result to Stdout; nothing reads
// process globals, so tests call the callbacks directly.
type Plugin struct {
	// Stdout receives ADD's result.
	Stdout io.Writer
	// Hostname names the IPAM node when the config has no nodeName.
	Hostname func() (string, error)
	// Logger receives debug logs (default: discarded).
	Logger *slog.Logger
	// Deadline bounds one call (default 2 minutes).
	Deadline time.Duration
}

// Funcs returns the callbacks for skel.PluginMainFuncs, each returning a
// *types.Error carrying its CNI code.
func (p *Plugin) Funcs() skel.CNIFuncs {
	wrap := func(f func(context.Context, *skel.CmdArgs) error) func(*skel.CmdArgs) error {
		return func(args *skel.CmdArgs) error {
			d := p.Deadline
			if d <= 0 {
				d = 2 * time.Minute
			}
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			if err := f(ctx, args); err != nil {
				return toCNIError(err)
			}
			return nil
		}
	}
	return skel.CNIFuncs{Add: wrap(p.Add), Del: wrap(p.Del), Check: wrap(p.Check), GC: wrap(p.GC), Status: wrap(p.Status)}
}

func (p *Plugin) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// k8sArgs is the Kubernetes part of CNI_ARGS.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // wire names
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
}

// attachment is what one call is about.
type attachment struct {
	conf        *NetConf
	containerID string
	ifName      string
	namespace   string
	pod         string
	handle      string
	hostIf      string
	node        string
}

func (p *Plugin) attachment(args *skel.CmdArgs, needID bool) (*attachment, error) {
	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return nil, err
	}
	a := &attachment{conf: conf, containerID: args.ContainerID, ifName: args.IfName}
	if args.Args != "" {
		var ka k8sArgs
		if err := types.LoadArgs(args.Args, &ka); err != nil {
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: %v", err), "")
		}
		a.namespace, a.pod = string(ka.K8S_POD_NAMESPACE), string(ka.K8S_POD_NAME)
	}
	if needID && a.containerID == "" {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID is required", "")
	}
	if a.ifName == "" {
		a.ifName = "eth0"
	}
	a.handle = conf.Name + "." + a.containerID
	if a.namespace != "" && a.pod != "" {
		a.hostIf = compile.WorkloadInterface(a.namespace, a.pod)
	} else {
		a.hostIf = compile.WorkloadInterface("", a.containerID)
	}
	a.node = conf.NodeName
	if a.node == "" {
		hn := p.Hostname
		if hn == nil {
			return nil, errors.New("cni: no nodeName in the config and no host name source")
		}
		if a.node, err = hn(); err != nil {
			return nil, fmt.Errorf("cni: host name: %w", err)
		}
	}
	return a, nil
}

// openIPAM opens the store and returns an allocator over it and a closer.
func openIPAM(ctx context.Context, conf *NetConf) (*ipam.Allocator, func(), error) {
	st, err := conf.IPAMStore.Open(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("cni: IPAM store %s: %w", conf.IPAMStore, err)
	}
	return ipam.New(st, ipam.Config{}), func() { _ = st.Close() }, nil
}

// ensurePools creates the configured pools that the store lacks and returns
// the pools a pod's families are decided by.
func ensurePools(ctx context.Context, al *ipam.Allocator, want []ipam.Pool) ([]ipam.Pool, error) {
	have, err := al.Pools(ctx)
	if err != nil {
		return nil, fmt.Errorf("cni: IPAM pools: %w", err)
	}
	if len(want) == 0 {
		return have, nil
	}
	for _, w := range want {
		if slices.ContainsFunc(have, func(h ipam.Pool) bool { return h.Name == w.Name }) {
			continue
		}
		if err := al.UpsertPool(ctx, w); err != nil && !errors.Is(err, ipam.ErrConflict) {
			return nil, fmt.Errorf("cni: create pool %s: %w", w.Name, err)
		}
	}
	return want, nil
}

func (p *Plugin) nodeNS(conf *NetConf) (*netns.NS, error) {
	if conf.NodeNetns == "" {
		return netns.Current()
	}
	ns, err := netns.Open(conf.NodeNetns)
	if err != nil {
		return nil, fmt.Errorf("cni: nodeNetns %s: %w", conf.NodeNetns, err)
	}
	return ns, nil
}

// Add plumbs the pod, assigns its addresses and returns only once the agent
// reports its policy enforced.
func (p *Plugin) Add(ctx context.Context, args *skel.CmdArgs) (err error) {
	a, err := p.attachment(args, true)
	if err != nil {
		return err
	}
	pod, err := netns.Open(args.Netns)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidNetNS, args.Netns, err)
	}
	defer pod.Close()
	node, err := p.nodeNS(a.conf)
	if err != nil {
		return err
	}
	defer node.Close()

	start := time.Now()
	al, closeStore, err := openIPAM(ctx, a.conf)
	if err != nil {
		return err
	}
	defer closeStore()
	pools, err := ensurePools(ctx, al, a.conf.Pools)
	if err != nil {
		return err
	}
	v4, v6 := families(pools)
	if v4+v6 == 0 {
		return &ConfigError{Key: "pools", Msg: "no enabled pool in the config or the IPAM store"}
	}
	res, err := al.AutoAssign(ctx, ipam.AssignRequest{
		Handle: a.handle, Node: a.node, IPv4: v4, IPv6: v6, Idempotent: true,
		Attrs: map[string]string{
			attrNetwork: a.conf.Name, attrContainerID: a.containerID, attrIfName: a.ifName,
			attrHostIf: a.hostIf, attrNamespace: a.namespace, attrPod: a.pod,
		},
	})
	if err != nil {
		return fmt.Errorf("cni: assign addresses for %s: %w", a.handle, err)
	}
	defer func() {
		if err == nil {
			return
		}
		// Leave nothing behind: the host side, then the addresses.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if terr := podnet.Teardown(cctx, node, a.hostIf); terr != nil {
			p.log().Warn("cni: cleanup after failed ADD", "hostIf", a.hostIf, "err", terr)
		}
		if _, rerr := al.ReleaseByHandle(cctx, a.handle); rerr != nil && !errors.Is(rerr, ipam.ErrNotFound) {
			p.log().Warn("cni: release after failed ADD", "handle", a.handle, "err", rerr)
		}
	}()
	addrs := append(slices.Clone(res.IPv4), res.IPv6...)
	tIPAM := time.Now()

	// A stale host side of the same pod (a sandbox the runtime replaced
	// without DEL, or an ADD being retried) would block the new one.
	if err := podnet.Teardown(ctx, node, a.hostIf); err != nil {
		return fmt.Errorf("cni: remove stale %s: %w", a.hostIf, err)
	}
	pcfg := podnet.Config{HostIfName: a.hostIf, PodIfName: a.ifName, Addrs: addrs, MTU: a.conf.MTU}
	if err := podnet.Setup(ctx, node, pod, pcfg); err != nil {
		return fmt.Errorf("cni: plumb %s: %w", a.hostIf, err)
	}
	if err := setOwner(node, a.hostIf, a.handle); err != nil {
		return err
	}
	tPlumb := time.Now()
	if err := p.enforce(ctx, a, addrs); err != nil {
		return err
	}
	tPolicy := time.Now()
	// Where an ADD spends its time, for anyone chasing latency.
	p.log().Debug("cni: add", "handle", a.handle, "ipam", tIPAM.Sub(start), "plumb", tPlumb.Sub(tIPAM), "policy", tPolicy.Sub(tPlumb))
	result, err := p.result(a, pod, addrs)
	if err != nil {
		return err
	}
	return p.print(result, a.conf.CNIVersion)
}

// enforce registers the endpoint with the agent and waits until its policy
// is in the dataplane.
func (p *Plugin) enforce(ctx context.Context, a *attachment, addrs []netip.Addr) error {
	c := endpointapi.NewClient(a.conf.AgentSocket)
	ctx, cancel := context.WithTimeout(ctx, a.conf.PolicyTimeout)
	defer cancel()
	ep := endpointapi.Endpoint{ID: a.handle, Namespace: a.namespace, Pod: a.pod, ContainerID: a.containerID, IfName: a.ifName, HostIf: a.hostIf, Addrs: addrs}
	err := c.Register(ctx, ep)
	if errors.Is(err, endpointapi.ErrUnavailable) {
		if a.conf.FailOpenWithoutAgent {
			p.log().Warn("cni: no agent, failing open", "socket", a.conf.AgentSocket)
			return nil
		}
		return fmt.Errorf("%w: nothing answers on %s (start calyx-agent, or set failOpenWithoutAgent in the network config): %w", ErrNoAgent, a.conf.AgentSocket, err)
	}
	if err != nil {
		return fmt.Errorf("cni: register %s with the agent: %w", a.handle, err)
	}
	if err := c.WaitEnforced(ctx, a.handle); err != nil {
		_ = c.Unregister(context.WithoutCancel(ctx), a.handle)
		return fmt.Errorf("cni: policy of %s not enforced within policyTimeout %s: %w", a.handle, a.conf.PolicyTimeout, err)
	}
	return nil
}

func (p *Plugin) result(a *attachment, pod *netns.NS, addrs []netip.Addr) (*current.Result, error) {
	podMAC, err := linkMAC(pod, a.ifName)
	if err != nil {
		return nil, err
	}
	r := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: a.hostIf, Mac: podnet.HostMAC().String()},
			{Name: a.ifName, Mac: podMAC.String(), Sandbox: pod.Path()},
		},
		DNS: a.conf.DNS,
	}
	one := 1
	var has4, has6 bool
	for _, ad := range addrs {
		bits, gw := 32, podnet.GatewayV4
		if ad.Is6() {
			bits, gw = 128, podnet.GatewayV6
			has6 = true
		} else {
			has4 = true
		}
		r.IPs = append(r.IPs, &current.IPConfig{
			Interface: &one,
			Address:   net.IPNet{IP: ad.AsSlice(), Mask: net.CIDRMask(bits, bits)},
			Gateway:   gw.AsSlice(),
		})
	}
	if has4 {
		r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: podnet.GatewayV4.AsSlice()})
	}
	if has6 {
		r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: podnet.GatewayV6.AsSlice()})
	}
	return r, nil
}

func (p *Plugin) print(r *current.Result, version string) error {
	out, err := r.GetAsVersion(version)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("result in version %s: %v", version, err), "")
	}
	w := p.Stdout
	if w == nil {
		w = io.Discard
	}
	return out.PrintTo(w)
}

// Del removes the pod's host side and releases its addresses. It succeeds
// when either is already gone, and never needs the pod's namespace.
func (p *Plugin) Del(ctx context.Context, args *skel.CmdArgs) error {
	a, err := p.attachment(args, true)
	if err != nil {
		return err
	}
	al, closeStore, err := openIPAM(ctx, a.conf)
	if err != nil {
		return err
	}
	defer closeStore()
	hostIf := a.hostIf
	if h, err := al.LookupHandle(ctx, a.handle); err == nil && h.Attrs[attrHostIf] != "" {
		hostIf = h.Attrs[attrHostIf]
	}
	p.release(ctx, a.conf, a.handle, hostIf)
	if _, err := al.ReleaseByHandle(ctx, a.handle); err != nil && !errors.Is(err, ipam.ErrNotFound) {
		return fmt.Errorf("cni: release %s: %w", a.handle, err)
	}
	return nil
}

// release unregisters the endpoint and removes its host side, best effort:
// a DEL must not fail because the agent is down or the interface is gone.
func (p *Plugin) release(ctx context.Context, conf *NetConf, handle, hostIf string) {
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := endpointapi.NewClient(conf.AgentSocket).Unregister(actx, handle); err != nil {
		p.log().Debug("cni: unregister", "handle", handle, "err", err)
	}
	cancel()
	node, err := p.nodeNS(conf)
	if err != nil {
		p.log().Warn("cni: node namespace", "err", err)
		return
	}
	defer node.Close()
	// A newer sandbox of the same pod reuses the interface name: leave
	// an interface that another attachment has claimed.
	if h, ok, err := owner(node, hostIf); err != nil || !ok || h != "" && h != handle {
		if err != nil {
			p.log().Warn("cni: host side", "hostIf", hostIf, "err", err)
		}
		return
	}
	if err := podnet.Teardown(ctx, node, hostIf); err != nil {
		p.log().Warn("cni: teardown", "hostIf", hostIf, "err", err)
	}
}

//go:build linux

package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	nlns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/podnet"
)

// Lab is a running lab. Close it.
type Lab struct {
	id   string
	spec Spec
	opts Options
	node *netns.NS
	// nss maps a pod key (or External) to its namespace.
	nss     map[string]*netns.NS
	closers []func() error

	mu    sync.Mutex
	round uint16
}

// New builds the lab: namespaces, veths, routes, servers. On error
// everything built so far is removed.
func New(ctx context.Context, spec Spec, opts Options) (l *Lab, err error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	l = &Lab{id: "cx" + hex.EncodeToString(b[:]), spec: spec, opts: opts, nss: map[string]*netns.NS{}}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	if l.node, err = netns.Create(l.id + "-node"); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := podnet.PrepareNode(ctx, l.node, spec.Nodes()...); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := addNodeLinks(l.node, spec.NodeLinks); err != nil {
		return nil, err
	}
	if len(spec.NodePorts) > 0 {
		if err := l.serve(l.node, Node, spec.NodePorts); err != nil {
			return nil, err
		}
	}
	attach := func(key, nsName, hostIf string, ips []netip.Addr, ports []Port) error {
		ns, err := netns.Create(nsName)
		if err != nil {
			return fmt.Errorf("lab: %s: %w", key, err)
		}
		l.nss[key] = ns
		if err := podnet.Setup(ctx, l.node, ns, podnet.Config{HostIfName: hostIf, Addrs: ips}); err != nil {
			return fmt.Errorf("lab: %s: %w", key, err)
		}
		return l.serve(ns, key, ports)
	}
	for i := range spec.Pods {
		p := &spec.Pods[i]
		if err := attach(p.Key(), fmt.Sprintf("%s-p%d", l.id, i), p.Interface(), p.IPs, p.Ports); err != nil {
			return nil, err
		}
	}
	if len(spec.External) > 0 {
		if err := attach(External, l.id+"-ext", spec.ExternalIf(), spec.External, spec.ExternalPorts); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// addNodeLinks adds the node's further interfaces: each a veth whose peer
// (nodeLinkPeer and a number) stays down in the node namespace, so the interface is up but
// without carrier, like the uplink.
func addNodeLinks(node *netns.NS, names []string) error {
	if len(names) == 0 {
		return nil
	}
	h, err := netlink.NewHandleAt(nlns.NsHandle(node.Fd()))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer h.Close()
	for i, name := range names {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: fmt.Sprintf("%s%d", nodeLinkPeer, i)}); err != nil {
			return fmt.Errorf("lab: node interface %s: %w", name, err)
		}
		link, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("lab: node interface %s: %w", name, err)
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("lab: node interface %s up: %w", name, err)
		}
	}
	return nil
}

// ID returns the lab's unique ID: the prefix of its namespace names, and a
// good backend.Options.Name.
func (l *Lab) ID() string { return l.id }

// Spec returns what the lab was built from.
func (l *Lab) Spec() Spec { return l.spec }

// NodeNS returns the node's namespace; its Path goes into
// backend.Options.NetNS.
func (l *Lab) NodeNS() *netns.NS { return l.node }

// NS returns the namespace of a pod (by key), of External or of Node.
func (l *Lab) NS(name string) (*netns.NS, bool) {
	if name == Node {
		return l.node, l.node != nil
	}
	ns, ok := l.nss[name]
	return ns, ok
}

// Close stops the servers and removes every namespace of the lab.
func (l *Lab) Close() error {
	var errs []error
	for _, c := range l.closers {
		errs = append(errs, c())
	}
	l.closers = nil
	for key, ns := range l.nss {
		errs = append(errs, ns.Delete())
		delete(l.nss, key)
	}
	if l.node != nil {
		errs = append(errs, l.node.Delete())
		l.node = nil
	}
	return errors.Join(errs...)
}

var pong = []byte("pong\n")

// serve starts the echo servers of one namespace.
func (l *Lab) serve(ns *netns.NS, key string, ports []Port) error {
	closers, err := serve(ns, key, ports)
	l.closers = append(l.closers, closers...)
	return err
}

// Serve starts the lab's echo servers (TCP and UDP, answering "pong") on
// ports in any namespace, for tests that build their pods another way (the
// CNI plugin's tests). The returned function stops them.
func Serve(ns *netns.NS, ports ...Port) (stop func() error, err error) {
	closers, err := serve(ns, ns.Name(), ports)
	stop = func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c())
		}
		return errors.Join(errs...)
	}
	if err != nil {
		_ = stop()
		return nil, err
	}
	return stop, nil
}

func serve(ns *netns.NS, key string, ports []Port) (closers []func() error, err error) {
	for _, p := range ports {
		addr := fmt.Sprintf(":%d", p.Port)
		switch p.Protocol {
		case 6:
			var ln net.Listener
			if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
				return closers, fmt.Errorf("lab: %s: listen %s: %w", key, p, err)
			}
			closers = append(closers, ln.Close)
			go serveTCP(ln)
		case 17:
			var pc net.PacketConn
			if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", addr); return }); err != nil {
				return closers, fmt.Errorf("lab: %s: listen %s: %w", key, p, err)
			}
			closers = append(closers, pc.Close)
			go serveUDP(pc)
		}
	}
	return closers, nil
}

// ProbeFrom runs one probe from the namespace ns, the way the lab probes
// its own pods: TCP connect and request/response, or UDP
// request/response. It reports whether the answer came back within
// timeout; an error means the probe could not be run at all.
func ProbeFrom(ctx context.Context, ns *netns.NS, p Probe, timeout time.Duration) (bool, error) {
	return probe(ctx, ns, &p, timeout)
}

func serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 5)
			if n, err := c.Read(buf); err == nil && n > 0 {
				_, _ = c.Write(pong)
			}
		}()
	}
}

func serveUDP(pc net.PacketConn) {
	buf := make([]byte, 64)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(pong, from)
	}
}

// FlushConntrack forgets every connection the node tracks, so the next
// probes are judged as new flows by the policy now in force.
func (l *Lab) FlushConntrack(ctx context.Context) error {
	h, err := netlink.NewHandleAt(nlns.NsHandle(l.node.Fd()))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer h.Close()
	if err := h.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("lab: flush conntrack: %w", err)
	}
	return nil
}

// Probes returns every probe of the lab's spec with source ports that
// change from one call to the next, so no probe reuses a tuple the node may
// still track from an earlier round.
func (l *Lab) Probes() []Probe {
	l.mu.Lock()
	r := l.round
	l.round++
	l.mu.Unlock()
	n := uint16(len(l.spec.Probes(0)))
	span := uint16(30000)
	base := 20000 + (r*n)%span
	return l.spec.Probes(base)
}

// Observe flushes conntrack and runs every probe of the lab.
func (l *Lab) Observe(ctx context.Context) (*Matrix, error) {
	if err := l.FlushConntrack(ctx); err != nil {
		return nil, err
	}
	return l.Run(ctx, l.Probes())
}

// Recheck runs again, with three times the timeout, the probes that m saw
// denied but want expects allowed, and returns m with their new outcome.
// On a loaded machine a probe can miss its timeout; a real denial stays
// denied however long one waits, so this never hides one.
func (l *Lab) Recheck(ctx context.Context, m, want *Matrix) (*Matrix, error) {
	var idx []int
	var probes []Probe
	for i := range m.Probes {
		if !m.Allowed[i] && want.Allowed[i] {
			idx = append(idx, i)
			probes = append(probes, m.Probes[i])
		}
	}
	if len(probes) == 0 {
		return m, nil
	}
	again, err := l.run(ctx, probes, 3*l.opts.timeout())
	if err != nil {
		return nil, err
	}
	out := &Matrix{Probes: m.Probes, Allowed: slices.Clone(m.Allowed)}
	for j, i := range idx {
		out.Allowed[i] = again.Allowed[j]
	}
	return out, nil
}

// Run runs probes in parallel and returns what happened. A probe whose
// source the lab does not hold is an error.
func (l *Lab) Run(ctx context.Context, probes []Probe) (*Matrix, error) {
	return l.run(ctx, probes, l.opts.timeout())
}

func (l *Lab) run(ctx context.Context, probes []Probe, timeout time.Duration) (*Matrix, error) {
	m := &Matrix{Probes: probes, Allowed: make([]bool, len(probes))}
	sem := make(chan struct{}, l.opts.parallel())
	var wg sync.WaitGroup
	errs := make([]error, len(probes))
	for i := range probes {
		if _, ok := l.NS(probes[i].From); !ok {
			return nil, fmt.Errorf("lab: probe %s: unknown source", probes[i].String())
		}
	}
	for i := range probes {
		ns, _ := l.NS(probes[i].From)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m.Allowed[i], errs[i] = probe(ctx, ns, &probes[i], timeout)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// probe reports whether the request got its answer. Errors are reserved for
// failures of the lab itself (cannot bind, cannot enter the namespace).
func probe(ctx context.Context, ns *netns.NS, p *Probe, timeout time.Duration) (ok bool, err error) {
	err = ns.Do(func() error {
		var lerr error
		ok, lerr = dialProbe(ctx, p, timeout)
		return lerr
	})
	return ok, err
}

func reuseAddr(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	return errors.Join(err, serr)
}

func dialProbe(ctx context.Context, p *Probe, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	d := net.Dialer{Control: reuseAddr}
	switch p.Protocol {
	case 6:
		d.LocalAddr = &net.TCPAddr{IP: p.Src.AsSlice(), Port: int(p.SrcPort)}
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(p.Dst, p.DstPort).String())
		if err != nil {
			return false, localErr(err)
		}
		// Reset instead of lingering in TIME_WAIT, so the tuple is free.
		defer func() { _ = c.(*net.TCPConn).SetLinger(0); _ = c.Close() }()
		_ = c.SetDeadline(deadline)
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return false, nil
		}
		buf := make([]byte, len(pong))
		n, err := c.Read(buf)
		return err == nil && bytes.Equal(buf[:n], pong), nil
	case 17:
		d.LocalAddr = &net.UDPAddr{IP: p.Src.AsSlice(), Port: int(p.SrcPort)}
		c, err := d.DialContext(ctx, "udp", netip.AddrPortFrom(p.Dst, p.DstPort).String())
		if err != nil {
			return false, localErr(err)
		}
		defer c.Close()
		buf := make([]byte, 16)
		// Three tries inside the timeout: the first datagram can wait on
		// neighbour resolution.
		for try := range 3 {
			if _, err := c.Write([]byte("ping\n")); err != nil {
				return false, nil
			}
			step := time.Now().Add(timeout / 3)
			if try == 2 || step.After(deadline) {
				step = deadline
			}
			_ = c.SetReadDeadline(step)
			n, err := c.Read(buf)
			if err == nil && bytes.Equal(buf[:n], pong) {
				return true, nil
			}
			if time.Now().After(deadline) {
				break
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("lab: probe %s: protocol must be TCP or UDP", p.String())
}

// localErr separates "the lab is broken" (cannot bind the source) from
// "the network said no" (timeout, refused, unreachable).
func localErr(err error) error {
	if errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EACCES) {
		return err
	}
	return nil
}

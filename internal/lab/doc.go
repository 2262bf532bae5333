// Package lab builds a Calico-style node in real network namespaces, runs
// servers in its pods and probes between them: the proving ground every
// Calyx dataplane is tested in, and what `calyxctl reach --dataplane`
// prints.
//
// # Topology
//
// One namespace for the node, one per pod, one "external" namespace that
// stands for everything outside the cluster. Each pod is wired by package
// podnet exactly as the CNI plugin wires it: eth0 inside, host-side veth
// compile.WorkloadInterface(namespace, name) in the node namespace, /32 and
// /128 routes on the node, default routes through 169.254.1.1 (proxy ARP)
// and fe80::ecee:eeff:feee:eeee. The external namespace hangs off the node
// the same way through an interface called ExternalInterface (or
// Spec.ExternalLink: a host endpoint's interface, "eth0"), which does not
// carry the workload prefix, so dataplanes see it as the outside world.
// The node's only other link is a carrier-less uplink: nothing the lab sends
// can leave its namespaces.
//
// Namespace names start with "cx" and a random lab ID, so labs run in
// parallel; Close removes every namespace (and with them every interface,
// route, socket and nftables table inside).
//
// # Probes
//
// Every pod (and the external namespace) runs a TCP and a UDP echo server
// on each port it declares, bound inside its namespace. A probe opens a
// socket inside the source namespace from a fixed source port, connects to
// a destination address and port, sends "ping" and waits for "pong" — for
// TCP that proves the handshake and data both ways, for UDP the request and
// the reply. Probes run in parallel with a short timeout, so a 9-pod
// matrix takes about one timeout.
//
// # Using a dataplane
//
//	l, _ := lab.New(ctx, spec, lab.Options{})
//	defer l.Close()
//	b, _ := nftables.Open(ctx, backend.Options{NetNS: l.NodeNS().Path(), Name: l.ID()})
//	_ = b.Apply(ctx, rs)
//	observed, _ := l.Observe(ctx)
//	expected := lab.Expected(rs, observed.Probes)
//	diff := observed.Diff(expected)
//
// Reach does all of this in one call, for `calyxctl reach --dataplane`:
//
//	pods, _ := lab.PodsFromRuleset(rs, []lab.Port{{Protocol: 6, Port: 80}})
//	observed, err := lab.Reach(ctx, lab.Spec{Pods: pods}, rs, nftables.Open, lab.Options{})
//	fmt.Print(observed)                              // the observed matrix
//	diff := observed.Diff(lab.Expected(rs, observed.Probes))
//
// For `calyxctl reach` NewProber turns reach's parties into a Spec: pods
// into pods, external addresses into the external namespace, and a host
// endpoint into the node itself, with the endpoint's expected IPs as the
// node's addresses and its interface as the external link, so the node's
// own traffic with the outside crosses that interface as on a real node;
// the other interfaces the node's host endpoints name become carrier-less
// links of the node (Spec.NodeLinks).
//
// Observed matrices print like Expected ones (Matrix.String), so the
// command can show both. Probes that time out although the model allows
// them are tried once more with a longer timeout (Recheck): on a loaded
// machine a slow answer is not a denial, and a real denial stays one.
//
// The lab needs root; its tests skip without it and fail when CI is set
// (package labtest).
package lab

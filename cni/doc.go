// Package cni is the Calyx CNI plugin's logic; cmd/calyx-cni only hands
// [Plugin.Funcs] to skel.
//
// # Commands
//
// ADD takes addresses from Calyx IPAM under the handle "<network>.<container
// ID>" (IPv4, IPv6 or both, after the families of the configured pools),
// wires the pod with package podnet (eth0 in CNI_NETNS, host side
// compile.WorkloadInterface(namespace, pod) from the Kubernetes CNI_ARGS),
// registers the endpoint with the node agent over its socket (package
// endpointapi) and returns only when the agent reports the endpoint's
// policy enforced. Until then the dataplane drops the unknown calyx
// interface, so a pod never passes traffic its policy forbids. Without an
// agent, ADD fails closed (code 11) unless failOpenWithoutAgent is set.
// Whatever fails, ADD leaves nothing behind: no interface, no allocation.
//
// DEL unregisters the endpoint, removes the host side (which takes the pod
// side and the routes with it) and releases the handle. Each step succeeds
// when its object is already gone, and none needs the pod's namespace. The
// host side carries its handle as interface alias, so the late DEL of a
// replaced sandbox never removes the new sandbox's interface.
//
// CHECK compares prevResult with the allocation, the host side and its
// routes, the pod's interface, and the agent's view. STATUS returns 50 when
// the IPAM store or the agent cannot be reached or the pools are full, 51
// when the agent cannot program policy. GC releases the allocations of
// this network and node whose attachment is not in
// cni.dev/valid-attachments (or cni.dev/attachments), with their host
// sides, and then removes any host side of this network (known by the
// handle on its alias) whose attachment is not valid, allocation or not.
//
// # Errors
//
// The callbacks return errors wrapping this package's sentinels, the ipam
// and endpointapi ones, or a *[ConfigError]; [Plugin.Funcs] is the one
// place they become CNI error codes (7 for configuration, 8 for the netns,
// 11 for conditions worth retrying, 50/51 for STATUS, 999 otherwise).
package cni

// Package calyx is the root of the Calyx SDK: zero-trust container
// networking for Kubernetes clusters, as a Go library.
//
// Calyx reads network policy written the way Calico and Kubernetes users
// already write it (projectcalico.org/v3 NetworkPolicy, GlobalNetworkPolicy,
// Tier, NetworkSet, HostEndpoint …, and networking.k8s.io/v1 NetworkPolicy),
// compiles it into one backend-neutral rule IR, and enforces that IR in the
// Linux kernel through pluggable dataplanes (nftables, iptables, eBPF) that
// all give the same verdicts.
//
// # Flow of data
//
//	YAML / Kubernetes API / etcd / directory
//	        │  policy.Decode
//	        ▼
//	   policy.Set ──── selector.Parse / selector.Index
//	        │
//	        ▼
//	   compile.Compiler → compile.Ruleset (the IR)
//	        │
//	        ├─► backend/model     reference interpreter (the oracle)
//	        ├─► backend/nftables
//	        ├─► backend/iptables
//	        └─► backend/ebpf
//
// Every arrow is a plain Go call on plain Go values: nothing downstream
// knows where a resource came from, nothing upstream knows which dataplane
// runs.
//
// # Where to start
//
//   - [github.com/calyxnet/calyx/policy]: decode and validate the YAML users
//     already have (Calico v3 kinds, Kubernetes NetworkPolicy, Namespaces,
//     Pods), normalise it with Calico's semantics, and keep it in a Set.
//   - [github.com/calyxnet/calyx/compile]: the Compiler turns a Set into the
//     Ruleset of one node, fully or incrementally; Lint finds the classic
//     surprises (a Deny-only policy that makes its tier deny everything
//     else, shadowed rules, selectors that pick nothing).
//   - [github.com/calyxnet/calyx/backend/model]: what a Ruleset means, with a
//     step-by-step trace of every decision.
//   - [github.com/calyxnet/calyx/backend]: the interface every dataplane
//     implements.
//   - [github.com/calyxnet/calyx/selector]: the Calico selector language
//     (Parse, Matches, canonical String, UniqueID) and an incremental
//     label index.
//   - [github.com/calyxnet/calyx/ipam]: pools, node-affine blocks and a store
//     that never hands out an address twice.
//   - [github.com/calyxnet/calyx/backend/nftables], backend/iptables and
//     backend/ebpf: the kernel dataplanes.
//   - [github.com/calyxnet/calyx/cni]: the CNI plugin that gives pods an
//     interface, an address and, before ADD returns, their policy.
//
// The commands are built on the same packages: calyxctl (cmd/calyxctl;
// `calyxctl reach -f examples/ecommerce` prints who can reach whom,
// `calyxctl apply -f` writes to a datastore), calyx-agent (cmd/calyx-agent,
// the node agent: datastore → compiler → dataplane, kept enforced) and
// calyx-cni (cmd/calyx-cni).
//
// This package itself holds no code; it documents the SDK as a whole.
package calyx

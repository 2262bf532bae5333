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
//   - [github.com/calyxnet/calyx/selector]: the Calico selector language
//     (Parse, Matches, canonical String, UniqueID) and an incremental
//     label index.
//
// This package itself holds no code; it documents the SDK as a whole.
package calyx

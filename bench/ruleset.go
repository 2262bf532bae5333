package main

import (
	"net/netip"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/benchset"
	"github.com/calyxnet/calyx/internal/lab"
)

// clusterRuleset builds a node of pods endpoints and policies policies
// (benchset.Cluster: the dataplanes' own benchmarks build the same).
func clusterRuleset(pods, policies int) *compile.Ruleset { return benchset.Cluster(pods, policies) }

// podAddr is the address of pod p of clusterRuleset's node.
func podAddr(p int) netip.Addr { return benchset.PodAddr(p) }

// benchPod is the endpoint of a lab pod.
func benchPod(p lab.Pod) benchset.Pod {
	return benchset.Pod{Key: p.Key(), Interface: p.Interface(), Addrs: p.IPs}
}

// addLabPod adds the lab pod p to rs with the ingress policies.
func addLabPod(rs *compile.Ruleset, p lab.Pod, ingress []compile.PolicyID) {
	benchset.AddPod(rs, benchPod(p), ingress)
}

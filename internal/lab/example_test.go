package lab_test

import (
	"fmt"
	"net/netip"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
)

// Expected gives the model's matrix for the probes of a spec: what a lab
// running a dataplane must observe.
func ExampleExpected() {
	spec := lab.Spec{Pods: []lab.Pod{
		{Namespace: "shop", Name: "web", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Ports: []lab.Port{{Protocol: 6, Port: 80}}},
		{Namespace: "shop", Name: "db", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Ports: []lab.Port{{Protocol: 6, Port: 5432}}},
	}}
	// The db admits nothing from others (one tier applies, no rule, end of
	// tier); traffic to itself never leaves its namespace.
	rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{}, Policies: map[compile.PolicyID]*compile.Policy{
		"allow": {ID: "allow", Name: "profile:allow", Rules: []compile.Rule{{Action: compile.ActionAllow}}},
	}}
	for _, p := range spec.Pods {
		ep := &compile.Endpoint{Key: p.Key(), Kind: compile.WorkloadEndpoint, Interface: p.Interface(), Addrs: p.IPs}
		ep.Ingress.Profiles = []compile.PolicyID{"allow"}
		ep.Egress.Profiles = []compile.PolicyID{"allow"}
		rs.Endpoints[p.Key()] = ep
	}
	rs.Endpoints["shop/db"].Ingress.Tiers = []compile.TierPolicies{{Tier: "default", EndAction: compile.ActionDeny}}

	m := lab.Expected(rs, spec.Probes(30000))
	fmt.Print(m)
	// Output:
	//           0 = shop/web 10.0.0.1:80/TCP
	//           1 = shop/db 10.0.0.2:5432/TCP
	//           01
	// shop/web  +.
	//  shop/db  ++
}

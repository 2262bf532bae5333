package model_test

import (
	"fmt"
	"net/netip"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
)

// Judge a packet against a hand-built Ruleset and print the trace: the
// database's only policy allows nothing from the web pod on port 22, so the
// default tier's end-of-tier deny decides.
func ExampleEvaluate() {
	web, db := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	rs := &compile.Ruleset{
		Sets: map[compile.SetID]*compile.IPSet{
			"nweb": {ID: "nweb", Kind: compile.SetNets, Selector: `app == "web"`, Nets: []netip.Prefix{netip.PrefixFrom(web, 32)}},
		},
		Policies: map[compile.PolicyID]*compile.Policy{
			"in:default/shop/db": {ID: "in:default/shop/db", Direction: compile.Ingress, Tier: "default", Name: "shop/db", Rules: []compile.Rule{{
				Action: compile.ActionAllow,
				Match:  compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{"nweb"}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: 5432, Max: 5432}}}},
				Origin: compile.Origin{Tier: "default", Policy: "shop/db", Index: 0, Path: "spec.ingress[0]", Source: "db.yaml:9"},
			}}},
		},
		Endpoints: map[string]*compile.Endpoint{
			"shop/db": {Key: "shop/db", Kind: compile.WorkloadEndpoint, Addrs: []netip.Addr{db},
				Ingress: compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{"in:default/shop/db"}, EndAction: compile.ActionDeny}}}},
		},
	}
	v := model.Evaluate(rs, model.Packet{Src: web, Dst: db, Protocol: 6, SrcPort: 40000, DstPort: 22})
	fmt.Print(v.String())
	// Output:
	// 10.0.0.1:40000 -> 10.0.0.2:22/TCP
	//   shop/db ingress: default/shop/db spec.ingress[0] (db.yaml:9): no match
	//   shop/db ingress: end of tier "default": deny
	// DENIED
}

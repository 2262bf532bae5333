package ebpf_test

import (
	"fmt"
	"net/netip"
	"regexp"

	"github.com/calyxnet/calyx/backend/ebpf"
	"github.com/calyxnet/calyx/compile"
)

// Render shows what Apply would load for a database that admits the web
// pods on 5432: one program per direction of the endpoint (its egress
// policy runs on the host veth's TCX ingress, its ingress policy on TCX
// egress), and the web pods' addresses as LPM entries of the set the
// ingress program looks up.
func ExampleRender() {
	rs := &compile.Ruleset{
		Sets: map[compile.SetID]*compile.IPSet{
			"web": {ID: "web", Kind: compile.SetNets, Selector: `app == "web"`,
				Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("fd00::1/128")}},
		},
		Policies: map[compile.PolicyID]*compile.Policy{
			"in:default/shop/db": {ID: "in:default/shop/db", Direction: compile.Ingress, Tier: "default", Name: "shop/db", Rules: []compile.Rule{{
				Action: compile.ActionAllow,
				Match:  compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{"web"}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: 5432, Max: 5432}}}},
			}}},
			"profile:kns": {ID: "profile:kns", Name: "profile:kns", Rules: []compile.Rule{{Action: compile.ActionAllow}}},
		},
		Endpoints: map[string]*compile.Endpoint{
			"shop/db": {Key: "shop/db", Kind: compile.WorkloadEndpoint, Interface: compile.WorkloadInterface("shop", "db"),
				Addrs:   []netip.Addr{netip.MustParseAddr("10.0.0.2")},
				Ingress: compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{"in:default/shop/db"}, EndAction: compile.ActionDeny}}},
				Egress:  compile.DirectionPolicy{Profiles: []compile.PolicyID{"profile:kns"}}},
		},
	}
	out, err := ebpf.Render(rs)
	if err != nil {
		panic(err)
	}
	// Program names are hashes of their code; leave them out here.
	fmt.Print(regexp.MustCompile(`program [0-9a-f]{32} ?`).ReplaceAllString(string(out), "program "))
	// Output:
	// program tcx-ingress chunks=1 instructions=1190 steps=2 runs=0
	// program tcx-egress chunks=1 instructions=1190 steps=3 runs=0
	// link calyxad9c1afeaa/egress program (shop/db)
	// link calyxad9c1afeaa/ingress program (shop/db)
	// set web id=1 entries=2
	//   10.0.0.1/32
	//   fd00::1/128
}

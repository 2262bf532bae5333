package iptables_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/calyxnet/calyx/backend/iptables"
	"github.com/calyxnet/calyx/compile"
)

// Render shows what the backend writes: here the tier chain of a
// database that admits the web pods on 5432 (a policy this small is
// written straight into its tier chain), with the web pods' addresses in
// an ipset; the ingress dispatch finds the database's chain through
// its (address, interface) pair in a hash:net,iface set. Every rule
// carries its content hash as a comment. The database has no IPv6
// address, so ip6tables only drops what claims to be it.
func ExampleRender() {
	rs := &compile.Ruleset{
		Sets: map[compile.SetID]*compile.IPSet{
			"web": {ID: "web", Kind: compile.SetNets, Selector: `app == "web"`, Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}},
		},
		Policies: map[compile.PolicyID]*compile.Policy{
			"in:default/shop/db": {ID: "in:default/shop/db", Direction: compile.Ingress, Tier: "default", Name: "shop/db", Rules: []compile.Rule{{
				Action: compile.ActionAllow,
				Match:  compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{"web"}}, Dst: compile.PeerMatch{Ports: []compile.PortRange{{Min: 5432, Max: 5432}}}},
			}}},
		},
		Endpoints: map[string]*compile.Endpoint{
			"shop/db": {Key: "shop/db", Kind: compile.WorkloadEndpoint, Interface: compile.WorkloadInterface("shop", "db"),
				Addrs:   []netip.Addr{netip.MustParseAddr("10.0.0.2")},
				Ingress: compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "default", Policies: []compile.PolicyID{"in:default/shop/db"}, EndAction: compile.ActionDeny}}}},
		},
	}
	out, err := iptables.Render(rs, "node1")
	if err != nil {
		panic(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "create") || strings.HasPrefix(l, "add") || strings.HasPrefix(l, "# ") ||
			strings.HasPrefix(l, "-A calyx-node1-t-") || strings.HasPrefix(l, "-A calyx-node1-fi ") {
			fmt.Println(l)
		}
	}
	// Output:
	// # ipset restore
	// create calyx-node1-4-e2163fd588f7 hash:net family inet maxelem 1048576
	// add calyx-node1-4-e2163fd588f7 10.0.0.1
	// create calyx-node1-4-e52f480ca593 hash:net,iface family inet maxelem 1048576
	// add calyx-node1-4-e52f480ca593 10.0.0.2,calyxad9c1afeaa
	// create calyx-node1-4-f503cc4b13dc hash:net,iface family inet maxelem 1048576
	// add calyx-node1-4-f503cc4b13dc 10.0.0.2,calyxad9c1afeaa
	// # iptables-restore --noflush
	// -A calyx-node1-fi -m set --match-set calyx-node1-4-f503cc4b13dc dst,dst -m comment --comment "cx:d541d5292930" -g calyx-node1-e-9e43ea80431d
	// -A calyx-node1-fi -m comment --comment "cx:147785d0623d" -j DROP
	// -A calyx-node1-t-f2df63856e4c -p tcp -m set --match-set calyx-node1-4-e2163fd588f7 src -m multiport --dports 5432 -m comment --comment "cx:18afa96bbe7d" -j MARK --set-xmark 0x1000000/0x1000000
	// -A calyx-node1-t-f2df63856e4c -m mark ! --mark 0x0/0x3000000 -m comment --comment "cx:61bb48a5f1c0" -j RETURN
	// -A calyx-node1-t-f2df63856e4c -m comment --comment "cx:9e55b407998c" -j DROP
	// # ip6tables-restore --noflush
	// -A calyx-node1-fi -m comment --comment "cx:4fecbdb38467" -j DROP
}

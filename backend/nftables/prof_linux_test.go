//go:build linux

package nftables

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

func bigRuleset(policies int) *compile.Ruleset {
	rs := &compile.Ruleset{Sets: map[compile.SetID]*compile.IPSet{}, Policies: map[compile.PolicyID]*compile.Policy{}, Endpoints: map[string]*compile.Endpoint{}}
	var ids []compile.PolicyID
	for i := range policies {
		sid := compile.SetID(fmt.Sprintf("s%d", i%50))
		rs.Sets[sid] = &compile.IPSet{ID: sid, Kind: compile.SetNets, Nets: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}}
		id := compile.PolicyID(fmt.Sprintf("p%d", i))
		rs.Policies[id] = &compile.Policy{ID: id, Rules: []compile.Rule{{Action: compile.ActionAllow, Match: compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: []compile.SetID{sid}}}}}}
		ids = append(ids, id)
	}
	for p := range 110 {
		k := fmt.Sprintf("ns/p%d", p)
		rs.Endpoints[k] = &compile.Endpoint{Key: k, Kind: compile.WorkloadEndpoint, Interface: compile.WorkloadInterface("ns", k),
			Ingress: compile.DirectionPolicy{Tiers: []compile.TierPolicies{{Tier: "t", Policies: ids[p%11*len(ids)/11 : (p%11+1)*len(ids)/11], EndAction: compile.ActionDeny}}}}
	}
	return rs
}

// TestApplyTimes is a quick look at where the time of an Apply goes on a
// big ruleset (go test -run TestApplyTimes -v).
func TestApplyTimes(t *testing.T) {
	if testing.Short() {
		t.Skip("timing only")
	}
	ns := netnstest.New(t, "cxprof-")
	ctx := context.Background()
	b, err := New(ctx, backend.Options{NetNS: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	rs := bigRuleset(10000)
	start := time.Now()
	if err := b.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	t.Logf("10000 policies from scratch: %v (%d messages)", time.Since(start), b.LastApply().Messages())
	for i := range 3 {
		more := *rs
		more.Endpoints = maps.Clone(rs.Endpoints)
		k := fmt.Sprintf("ns/new%d", i)
		ep := *rs.Endpoints["ns/p1"]
		ep.Key, ep.Interface = k, compile.WorkloadInterface("ns", k)
		more.Endpoints[k] = &ep
		start = time.Now()
		d, _ := renderCached(&more, b.cache)
		tr := time.Since(start)
		_ = d
		start = time.Now()
		if err := b.Apply(ctx, &more); err != nil {
			t.Fatal(err)
		}
		t.Logf("+1 pod: apply %v (render alone %v), %d messages", time.Since(start), tr, b.LastApply().Messages())
	}
}

//go:build linux

package nftables

import (
	"context"
	"fmt"
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

func TestProfileApply(t *testing.T) {
	ns := netnstest.New(t, "cxprof-")
	for _, n := range []int{2500, 5000, 10000} {
		rs := bigRuleset(n)
		start := time.Now()
		d, _ := render(rs)
		tr := time.Since(start)
		b, err := New(context.Background(), backend.Options{NetNS: ns.Path(), Name: fmt.Sprint(n)})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := b.conn()
		start = time.Now()
		st := b.plan(c, &desired{chains: map[string]*nchain{}, sets: map[string]*nset{}}, d)
		tp := time.Since(start)
		start = time.Now()
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		tf := time.Since(start)
		c.CloseLasting()
		t.Logf("%d policies: render %v plan %v flush %v (%d msgs)", n, tr, tp, tf, st.messages)
		b.cur = d
		_ = b.Close(context.Background())
	}
}

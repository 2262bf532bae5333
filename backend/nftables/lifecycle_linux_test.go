//go:build linux

package nftables

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/testgen"
)

// nft runs the nft binary inside the namespace of r's node.
func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	netnstest.RequireBinary(t, "nft")
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	require.NoError(t, err, "nft %v: %s", args, out)
	return string(out)
}

// baseline is the conformance ruleset of "k8s style" plus a named port.
func baseline(r *rig) *compile.Ruleset {
	b := r.ir()
	prof := b.AllowAllProfile()
	for _, ep := range b.RS.Endpoints {
		ep.Ingress.Profiles = []compile.PolicyID{prof}
		ep.Egress.Profiles = []compile.PolicyID{prof}
	}
	src := b.Selected("app == 'client'", pod1)
	p := b.Policy(compile.Ingress, "default", "web", testgen.Rule(allow, compile.Match{Protocol: 6,
		Src: compile.PeerMatch{Sets: sets(src)}, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}))
	b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("default", deny, p))
	return b.RS
}

func TestKernelRejectionKeepsPreviousRuleset(t *testing.T) {
	r := newRig(t, conformanceSpec())
	ctx := context.Background()
	rs := baseline(r)
	before := r.conform(t, rs)
	dumpBefore := nft(t, r.lab.NodeNS().Name(), "list", "table", "inet", r.b.Table())

	// The next Apply carries a message the kernel refuses (deleting a
	// chain that does not exist) at the very end of the batch.
	r.b.beforeFlush = func(c *nftables.Conn) {
		c.DelChain(&nftables.Chain{Name: "no-such-chain", Table: r.b.table})
	}
	open := r.ir()
	open.AllowAllProfile()
	for _, ep := range open.RS.Endpoints {
		ep.Ingress.Profiles = []compile.PolicyID{"profile:allow-all"}
		ep.Egress.Profiles = []compile.PolicyID{"profile:allow-all"}
	}
	err := r.b.Apply(ctx, open.RS)
	require.ErrorIs(t, err, ErrKernelRejected)
	r.b.beforeFlush = nil

	require.Equal(t, dumpBefore, nft(t, r.lab.NodeNS().Name(), "list", "table", "inet", r.b.Table()), "the kernel must hold the old table, whole")
	after, err := r.lab.Observe(ctx)
	require.NoError(t, err)
	after, err = r.lab.Recheck(ctx, after, lab.Expected(rs, after.Probes))
	require.NoError(t, err)
	require.Empty(t, after.Diff(lab.Expected(rs, after.Probes)))
	require.Equal(t, before.Allowed, after.Allowed)

	// The backend recovers: the next Apply reads the kernel back and works.
	r.conform(t, open.RS)
}

func TestIncrementalApplies(t *testing.T) {
	r := newRig(t, conformanceSpec())
	ctx := context.Background()
	rs := baseline(r)
	r.conform(t, rs)

	t.Run("same ruleset sends nothing", func(t *testing.T) {
		require.NoError(t, r.b.Apply(ctx, rs))
		st := r.b.LastApply()
		require.Zero(t, st.Messages(), "%+v", st)
	})
	t.Run("set membership change touches elements only", func(t *testing.T) {
		rs2 := baseline(r)
		for _, s := range rs2.Sets {
			if s.Selector == "app == 'client'" {
				s.Nets = append(s.Nets, netipPrefix("10.77.0.3/32"), netipPrefix("fd77::3/128"))
			}
		}
		require.NoError(t, r.b.Apply(ctx, rs2))
		st := r.b.LastApply()
		require.Zero(t, st.ChainsAdded+st.ChainsRewritten+st.ChainsDeleted+st.SetsAdded+st.SetsDeleted, "%+v", st)
		require.Equal(t, 4, st.ElementsAdded, "two intervals (start and end) in each family")
		r.conform(t, rs2)
	})
	t.Run("a new pod like the others is one map element per direction", func(t *testing.T) {
		rs3 := baseline(r)
		require.NoError(t, r.b.Apply(ctx, rs3))
		rs3 = baseline(r)
		rs3.Endpoints["ns9/new"] = &compile.Endpoint{Key: "ns9/new", Kind: compile.WorkloadEndpoint,
			Interface: compile.WorkloadInterface("ns9", "new"), Addrs: nil,
			Ingress: rs3.Endpoints[pod1].Ingress, Egress: rs3.Endpoints[pod1].Egress}
		require.NoError(t, r.b.Apply(ctx, rs3))
		st := r.b.LastApply()
		require.Equal(t, 2, st.ElementsAdded, "%+v", st)
		require.Zero(t, st.ChainsAdded+st.ChainsRewritten, "%+v", st)
	})
	t.Run("an unknown calyx interface is dropped: fail closed", func(t *testing.T) {
		out := nft(t, r.lab.NodeNS().Name(), "list", "chain", "inet", r.b.Table(), chainFwdEgress)
		require.Contains(t, out, `iifname "calyx*" drop`)
	})
}

func netipPrefix(s string) (p netipPrefixT) { return mustPrefix(s) }

func TestReconcileRepairsDrift(t *testing.T) {
	r := newRig(t, conformanceSpec())
	ctx := context.Background()
	rs := baseline(r)
	r.conform(t, rs)
	ns, table := r.lab.NodeNS().Name(), r.b.Table()

	handleOf := func(chain, substr string) string { return ruleHandle(t, ns, table, chain, substr) }
	cases := []struct {
		name  string
		drift func()
	}{
		{"rule deleted", func() {
			nft(t, ns, "delete", "rule", "inet", table, chainFwdIngress, "handle", handleOf(chainFwdIngress, "vmap"))
		}},
		{"rule replaced", func() {
			nft(t, ns, "replace", "rule", "inet", table, chainFwdEgress, "handle", handleOf(chainFwdEgress, `"calyx*" drop`),
				`iifname "calyx*" accept comment "unknown workload interface: fail closed"`)
		}},
		{"rule appended", func() { nft(t, ns, "add", "rule", "inet", table, chainFwdIngress, "accept") }},
		{"rule inserted first", func() { nft(t, ns, "insert", "rule", "inet", table, chainFwdIngress, "accept") }},
		{"base chain policy changed", func() {
			nft(t, ns, "add", "chain", "inet", table, chainFwdEgress, "{ type filter hook forward priority filter; policy drop; }")
		}},
		{"chain added", func() { nft(t, ns, "add", "chain", "inet", table, "intruder") }},
		{"map element deleted", func() {
			nft(t, ns, "delete", "element", "inet", table, mapIngress, "{ \""+compile.WorkloadInterface("ns0", "pod0")+"\" }")
		}},
		{"set element added", func() {
			var name string
			for n := range r.b.cur.sets {
				if strings.HasPrefix(n, "s-") && strings.HasSuffix(n, "-4") {
					name = n
				}
			}
			nft(t, ns, "add", "element", "inet", table, name, "{ 10.77.0.3 }")
		}},
		{"table deleted", func() { nft(t, ns, "delete", "table", "inet", table) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.drift()
			dr, err := r.b.Reconcile(ctx)
			require.NoError(t, err)
			require.False(t, dr.Empty(), "drift not detected")
			t.Logf("repaired: %s %v", dr, dr.Changed)
			r.b.forgetVerified()
			again, err := r.b.Reconcile(ctx)
			require.NoError(t, err)
			require.True(t, again.Empty(), "second reconcile found %s", again)
			got, err := r.lab.Observe(ctx)
			require.NoError(t, err)
			got, err = r.lab.Recheck(ctx, got, lab.Expected(rs, got.Probes))
			require.NoError(t, err)
			require.Empty(t, got.Diff(lab.Expected(rs, got.Probes)))
		})
	}
}

// TestReconcileTrustsUnmovedGeneration: after an Apply, Reconcile skips
// the read while the namespace's nftables generation has not moved; any
// commit (even to another table) makes it read again, and a change to the
// table is found.
func TestReconcileTrustsUnmovedGeneration(t *testing.T) {
	r := newRig(t, conformanceSpec())
	ctx := context.Background()
	rs := baseline(r)
	r.conform(t, rs)
	require.NoError(t, r.b.Apply(ctx, rs))
	require.True(t, r.b.verified, "an Apply that was the only commit leaves the kernel verified")
	gen, err := r.b.generation()
	require.NoError(t, err)
	require.Equal(t, gen, r.b.gen)
	dr, err := r.b.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, dr.Empty(), "%s", dr)

	ns, table := r.lab.NodeNS().Name(), r.b.Table()
	// Another table's commit: the read is done again, and finds nothing.
	nft(t, ns, "add", "table", "inet", "someone-else")
	nft(t, ns, "delete", "table", "inet", "someone-else")
	moved, err := r.b.generation()
	require.NoError(t, err)
	require.NotEqual(t, gen, moved)
	dr, err = r.b.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, dr.Empty(), "%s", dr)
	require.True(t, r.b.verified)
	require.Equal(t, moved, r.b.gen)

	// A rule of ours appended by someone else is found at once.
	nft(t, ns, "add", "rule", "inet", table, chainFwdIngress, "accept")
	dr, err = r.b.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, dr.ChainsRewritten, "%s", dr)
	// The repair was the only commit: trusted again, and really repaired.
	require.True(t, r.b.verified)
	r.b.forgetVerified()
	dr, err = r.b.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, dr.Empty(), "%s", dr)
}

func TestCloseRemovesOnlyOurTable(t *testing.T) {
	netnstest.RequireRoot(t)
	node := netnstest.New(t, "cxnft-")
	nft(t, node.Name(), "add", "table", "inet", "foreign")
	nft(t, node.Name(), "add", "chain", "inet", "foreign", "keep", "{ type filter hook forward priority 0; }")
	ctx := context.Background()
	b, err := New(ctx, backend.Options{NetNS: node.Path()})
	require.NoError(t, err)
	require.Equal(t, "calyx", b.Table())
	require.NoError(t, b.Apply(ctx, &compile.Ruleset{}))
	require.Contains(t, nft(t, node.Name(), "list", "tables"), "table inet calyx")
	require.NoError(t, b.Close(ctx))
	require.NoError(t, b.Close(ctx), "closing twice")
	out := nft(t, node.Name(), "list", "tables")
	require.NotContains(t, out, "calyx")
	require.Contains(t, out, "table inet foreign")
	require.ErrorIs(t, b.Apply(ctx, &compile.Ruleset{}), backend.ErrClosed)
}

func TestInvalidRulesetNeverReachesTheKernel(t *testing.T) {
	r := newRig(t, conformanceSpec())
	rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{"a/b": {Key: "a/b", Kind: compile.WorkloadEndpoint, Interface: "calyxab",
		Ingress: compile.DirectionPolicy{Profiles: []compile.PolicyID{"missing"}}}}}
	err := r.b.Apply(context.Background(), rs)
	require.True(t, errors.Is(err, ErrInvalidRuleset), "%v", err)
	require.ErrorIs(t, r.b.Check(context.Background(), rs), ErrInvalidRuleset)
	require.NoError(t, r.b.Check(context.Background(), baseline(r)))
}

// TestUnknownWorkloadInterfaceFailsClosed: a pod whose veth exists but
// which the Ruleset does not know yet (not programmed) can neither send nor
// receive, where the model — which knows nothing of interfaces — would let
// the other side decide.
func TestUnknownWorkloadInterfaceFailsClosed(t *testing.T) {
	r := newRig(t, conformanceSpec())
	rs := baseline(r)
	delete(rs.Endpoints, pod3)
	ctx := context.Background()
	require.NoError(t, r.b.Apply(ctx, rs))
	m, err := r.lab.Observe(ctx)
	require.NoError(t, err)
	want := lab.Expected(rs, m.Probes)
	m, err = r.lab.Recheck(ctx, m, want)
	require.NoError(t, err)
	for i, p := range m.Probes {
		switch {
		case p.From == p.To:
			require.True(t, m.Allowed[i], "%s never leaves the pod", p.String())
		case p.From == pod3 || p.To == pod3:
			require.False(t, m.Allowed[i], "%s must be dropped: pod3 is not programmed", p.String())
		default:
			require.Equal(t, want.Allowed[i], m.Allowed[i], p.String())
		}
	}
}

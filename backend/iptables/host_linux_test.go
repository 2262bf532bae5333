//go:build linux

package iptables

import (
	"context"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/testgen"
)

// recordRunner runs commands with another runner and keeps each call with
// its input.
type recordRunner struct {
	runner
	calls  []string
	inputs map[string]string
}

func (rr *recordRunner) run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	call := strings.Join(append([]string{name}, args...), " ")
	rr.calls = append(rr.calls, call)
	if rr.inputs == nil {
		rr.inputs = map[string]string{}
	}
	rr.inputs[call] += string(stdin)
	return rr.runner.run(ctx, stdin, name, args...)
}

// hostTiersIR is the host endpoint scenario with tiers on both
// directions; with udp53 set, its ingress policy also admits UDP 53 from
// the external net (IPv4 only).
func hostTiersIR(t *testing.T, r *rig, udp53 bool) *compile.Ruleset {
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	conformance.HostScenarios()[1].Build(b)
	if udp53 {
		id := compile.PolicyID("in:security/host-in")
		pol := b.RS.Policies[id]
		require.NotNil(t, pol)
		ext := b.Nets("198.51.100.0/24")
		rules := append(slices.Clone(pol.Rules), testgen.Rule(compile.ActionAllow, compile.Match{Protocol: 17,
			Src: compile.PeerMatch{Sets: []compile.SetID{ext}}, Dst: compile.PeerMatch{Ports: testgen.Ports(53)}}))
		b.RS.Policies[id] = &compile.Policy{ID: pol.ID, Name: pol.Name, Rules: rules}
	}
	return b.RS
}

var declared = regexp.MustCompile(`(?m)^:(\S+) `)

// TestHostEndpointModelEqualsKernel: random Rulesets with a host endpoint
// (named, "*" or by address) taking random pods' directions and random
// fail-safe ports agree with the model in the lab, one Apply after the
// other.
func TestHostEndpointModelEqualsKernel(t *testing.T) {
	r := newRig(t, conformance.Spec())
	conformance.HostModelEqualsKernel(t, conformance.Spec(), r.lab, r.b, r.noDrift, 40)
}

// TestHostEndpointDiffAndRepair: a change of a host endpoint's policy is
// one iptables-restore of the family it touches, rewriting the host
// endpoint's chains and nothing of the workloads'; a rule deleted from a
// host endpoint chain, or added to the host dispatch, is found and
// repaired by Repair; Dump shows the chains and Close removes them.
func TestHostEndpointDiffAndRepair(t *testing.T) {
	r := newRig(t, conformance.Spec())
	ctx := context.Background()
	r.conform(t, hostTiersIR(t, r, false))
	before := r.b.planned

	rec := &recordRunner{runner: r.b.r}
	r.b.r = rec
	rs := hostTiersIR(t, r, true)
	require.NoError(t, r.b.Apply(ctx, rs))
	require.Equal(t, []string{"iptables-restore --noflush --wait"}, rec.calls,
		"an IPv4-only change of a host policy: one IPv4 restore, no set, no IPv6")
	in := rec.inputs[rec.calls[0]]
	names := declared.FindAllStringSubmatch(in, -1)
	require.NotEmpty(t, names)
	t.Logf("the change declared %d chains:\n%s", len(names), strings.Join(declared.FindAllString(in, -1), "\n"))
	p := r.b.n.prefix
	for _, m := range names {
		name := m[1]
		_, old := before.fams[0].chains[name]
		_, now := r.b.planned.fams[0].chains[name]
		switch {
		case name == p+"hi":
			require.True(t, old && now)
		case old && !now:
			require.Contains(t, in, "-X "+name+"\n", "a chain no longer used is deleted")
		case !old && now:
			require.Regexp(t, "^"+p+"[ehtp]-", name, "only host endpoint chains are new")
		default:
			t.Fatalf("chain %s rewritten though unchanged", name)
		}
	}
	for _, top := range []string{"fwd", "in", "out", "fe", "fi", "ho"} {
		require.NotContains(t, in, ":"+p+top+" ", "the change touched %s", top)
	}
	require.NotContains(t, in, "-I ", "no jump rewritten")
	r.b.r = rec.runner
	r.conform(t, rs)

	dump, err := r.b.Dump(ctx)
	require.NoError(t, err)
	require.Contains(t, string(dump), ":"+p+"hi ")
	require.Contains(t, string(dump), "-A "+p+"ho -o cxext0 ")

	hostChain := func(v int, dispatch string) string {
		line := r.b.planned.fams[v].chains[p+dispatch].rules[0]
		return target(line)
	}
	tests := []struct {
		name, chain string
		tamper      func(t *testing.T)
	}{
		{"fail-safe rule deleted", hostChain(0, "hi"), func(t *testing.T) {
			r.sh(t, "iptables", "-D", hostChain(0, "hi"), "3")
		}},
		{"rule deleted from an IPv6 host chain", hostChain(1, "ho"), func(t *testing.T) {
			r.sh(t, "ip6tables", "-D", hostChain(1, "ho"), "1")
		}},
		{"rule appended to the host dispatch", p + "hi", func(t *testing.T) {
			r.sh(t, "iptables", "-A", p+"hi", "-j", "ACCEPT")
		}},
		{"host dispatch emptied", p + "ho", func(t *testing.T) {
			r.sh(t, "ip6tables", "-F", p+"ho")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.tamper(t)
			d, err := r.b.Repair(ctx)
			require.NoError(t, err)
			require.Contains(t, d.String(), "chain "+tt.chain+" differs")
			d, err = r.b.Repair(ctx)
			require.NoError(t, err)
			require.True(t, d.Empty(), "repair left drift: %s", d)
			r.conform(t, rs)
		})
	}

	require.NoError(t, r.b.Close(ctx))
	ns := r.lab.NodeNS()
	for _, v := range []string{"iptables-save", "ip6tables-save"} {
		var out []byte
		require.NoError(t, ns.Do(func() error {
			var err error
			out, err = exec.Command(v, "-t", "filter").Output()
			return err
		}))
		require.NotContains(t, string(out), p, "%s after Close", v)
	}
}

// TestHostFailsafeKernel: every shape of fail-safe rule and host dispatch
// (nets of both families, ranges, SCTP, named, by address, "*") is taken
// by the kernel and read back exactly as written: no drift after Apply.
func TestHostFailsafeKernel(t *testing.T) {
	ns := netnstest.New(t, "cxhep")
	ctx := context.Background()
	b, err := New(ctx, backend.Options{NetNS: ns.Path(), Name: "hep"})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close(context.Background())) })
	rs := failsafeRuleset()
	for key, iface := range map[string]string{"host:n/all": "*", "host:n/ips": ""} {
		rs.Endpoints[key] = &compile.Endpoint{Key: key, Kind: compile.HostEndpoint, Interface: iface,
			Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.5"), netip.MustParseAddr("2001:db8::5")}}
	}
	require.NoError(t, b.Apply(ctx, rs))
	d, err := b.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, d.Empty(), "drift right after Apply: %s", d)
	dump, err := b.Dump(ctx)
	require.NoError(t, err)
	for _, want := range []string{"-p sctp -m multiport --dports 9899", "-s fd00::/8 -p tcp", "--dports 179,2379:2380",
		"-A calyx-hep-hi -d 2001:db8::5/128", "-A calyx-hep-ho -o lo"} {
		require.Contains(t, string(dump), want)
	}
}

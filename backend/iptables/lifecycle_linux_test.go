//go:build linux

package iptables

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// sh runs a command in the rig's node namespace, as an outsider would.
func (r *rig) sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := r.b.r.run(context.Background(), nil, name, args...)
	require.NoError(t, err)
	return string(out)
}

// policyRig is a lab with the k8s-style scenario applied.
func policyRig(t *testing.T) (*rig, *compile.Ruleset) {
	t.Helper()
	r := newRig(t, conformance.Spec())
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	conformance.ByName("k8s style: pod0 admits only pod1 on TCP 80").Build(b) // pod0 admits only pod1 on TCP 80
	r.conform(t, b.RS)
	return r, b.RS
}

// firstPolicyChain returns the name of a chain of the plan holding
// policy rules: a policy's own chain, or a tier chain small policies are
// written into.
func (r *rig) firstPolicyChain(t *testing.T) string {
	t.Helper()
	for _, kind := range []string{"-p-", "-t-"} {
		for _, name := range sortedKeys(r.b.planned.fams[0].chains) {
			if strings.Contains(name, kind) {
				return name
			}
		}
	}
	t.Fatal("no policy chain")
	return ""
}

// TestReconcileRepairs: each kind of outside change is found and repaired,
// and the lab then behaves as the model says again.
func TestReconcileRepairs(t *testing.T) {
	r, rs := policyRig(t)
	fwd := r.b.n.top("fwd")
	tests := []struct {
		name   string
		tamper func(t *testing.T)
	}{
		{"rule deleted", func(t *testing.T) { r.sh(t, "iptables", "-D", r.firstPolicyChain(t), "1") }},
		{"rule changed", func(t *testing.T) {
			r.sh(t, "iptables", "-R", r.firstPolicyChain(t), "1", "-j", "MARK", "--set-xmark", "0x1000000/0x1000000")
		}},
		{"rule changed keeping our comment", func(t *testing.T) {
			line := r.b.planned.fams[0].chains[r.firstPolicyChain(t)].rules[0]
			comment := commentOf(line)
			r.sh(t, "iptables", "-R", r.firstPolicyChain(t), "1", "-m", "comment", "--comment", comment, "-j", "MARK", "--set-xmark", "0x1000000/0x1000000")
		}},
		{"rule appended", func(t *testing.T) { r.sh(t, "ip6tables", "-A", fwd, "-j", "ACCEPT") }},
		{"rule inserted", func(t *testing.T) { r.sh(t, "iptables", "-I", fwd, "1", "-j", "ACCEPT") }},
		{"jump deleted", func(t *testing.T) {
			r.sh(t, "iptables", "-D", "FORWARD", "1")
		}},
		{"rule inserted before our jump", func(t *testing.T) { r.sh(t, "iptables", "-I", "INPUT", "1", "-j", "RETURN") }},
		{"set member deleted", func(t *testing.T) {
			for name, s := range r.b.sets {
				if len(s.members) > 0 {
					r.sh(t, "ipset", "del", name, s.members[0])
					return
				}
			}
			t.Fatal("no set with members")
		}},
		{"chain of ours added", func(t *testing.T) { r.sh(t, "iptables", "-N", r.b.n.prefix+"x-0123456789ab") }},
		{"set of ours added", func(t *testing.T) {
			r.sh(t, "ipset", "create", r.b.n.prefix+"4-0123456789ab", "hash:net")
		}},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.tamper(t)
			d, err := r.b.Reconcile(ctx)
			require.NoError(t, err)
			require.False(t, d.Empty(), "drift not found")
			t.Logf("found: %s", d)
			d, err = r.b.Reconcile(ctx)
			require.NoError(t, err)
			require.True(t, d.Empty(), "repair left drift: %s", d)
			r.conform(t, rs)
		})
	}
	// The rules others added outside our chains are theirs.
	require.Contains(t, r.sh(t, "iptables-save", "-t", "filter"), "-A INPUT -j RETURN")
}

func commentOf(line string) string {
	i := strings.Index(line, `"cx:`)
	return line[i+1 : i+1+len("cx:")+12]
}

// TestCloseLeavesOthers: Close removes our jumps, chains and sets, and
// leaves foreign chains, rules and sets alone.
func TestCloseLeavesOthers(t *testing.T) {
	r, _ := policyRig(t)
	r.sh(t, "iptables", "-N", "FOREIGN")
	r.sh(t, "iptables", "-A", "FORWARD", "-j", "FOREIGN")
	r.sh(t, "ip6tables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
	r.sh(t, "ipset", "create", "foreign", "hash:ip")
	// Another instance's chain has the calyx prefix too.
	r.sh(t, "iptables", "-N", "calyx-other-fwd")
	require.NoError(t, r.b.Close(context.Background()))
	ns := r.lab.NodeNS()
	run := func(name string, args ...string) string {
		var out []byte
		require.NoError(t, ns.Do(func() error {
			var err error
			out, err = exec.Command(name, args...).Output()
			return err
		}))
		return string(out)
	}
	for _, v := range []string{"iptables-save", "ip6tables-save"} {
		save := run(v, "-t", "filter")
		require.NotContains(t, save, r.b.n.prefix, v)
		require.NotContains(t, save, `"cx:`, v)
	}
	save4 := run("iptables-save", "-t", "filter")
	require.Contains(t, save4, "-A FORWARD -j FOREIGN")
	require.Contains(t, save4, ":calyx-other-fwd")
	require.Contains(t, run("ip6tables-save", "-t", "filter"), "--dport 22")
	sets := run("ipset", "list", "-n")
	require.Equal(t, "foreign", strings.TrimSpace(sets))
	require.ErrorIs(t, r.b.Apply(context.Background(), &compile.Ruleset{}), backend.ErrClosed)
}

// TestRestart: a second backend on the same namespace takes over what the
// first left (read, diff, patch) and finds nothing to change.
func TestRestart(t *testing.T) {
	r, rs := policyRig(t)
	ctx := context.Background()
	b2, err := New(ctx, backend.Options{NetNS: r.lab.NodeNS().Path(), Name: r.lab.ID()})
	require.NoError(t, err)
	require.NoError(t, b2.Apply(ctx, rs))
	require.Zero(t, b2.LastApply().Commands, "a restarted backend rewrote what was already right")
	require.NoError(t, b2.Close(ctx))
}

// TestMixedModeRefused: legacy rules on an nf_tables host (or the other
// way round) make New fail with ErrMixedMode.
func TestMixedModeRefused(t *testing.T) {
	ns := netnstest.New(t, "cxipt")
	probe, err := New(context.Background(), backend.Options{NetNS: ns.Path(), Name: "mix"})
	require.NoError(t, err)
	mode := probe.Mode()
	require.NoError(t, probe.Close(context.Background()))
	other := map[string]string{"nf_tables": "iptables-legacy", "legacy": "iptables-nft"}[mode]
	if _, err := exec.LookPath(other); err != nil {
		t.Skipf("%s not installed: a mixed host cannot be made", other)
	}
	require.NoError(t, ns.Do(func() error {
		return exec.Command(other, "-A", "FORWARD", "-s", "192.0.2.1", "-j", "DROP").Run()
	}))
	_, err = New(context.Background(), backend.Options{NetNS: ns.Path(), Name: "mix"})
	require.True(t, errors.Is(err, ErrMixedMode), "got %v", err)
	t.Log(err)
}

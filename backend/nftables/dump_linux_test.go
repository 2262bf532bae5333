//go:build linux

package nftables

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/testgen"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// scenarioRuleset builds a conformance scenario over the standard four
// pods, without a lab.
func scenarioRuleset(sc scenario) *compile.Ruleset {
	b := testgen.NewIR()
	for _, p := range labtest.Pods(4) {
		b.Endpoint(p.Key(), p.Interface(), p.IPs...)
	}
	prof := b.AllowAllProfile()
	for _, ep := range b.RS.Endpoints {
		ep.Ingress.Profiles = []compile.PolicyID{prof}
		ep.Egress.Profiles = []compile.PolicyID{prof}
	}
	sc.build(b)
	return b.RS
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			if !strings.HasSuffix(b.String(), "-") {
				b.WriteByte('-')
			}
		}
	}
	return strings.Trim(b.String(), "-")
}

// TestDumpGoldens pins the nft text of every conformance scenario, host
// endpoint ones included. Each golden is what `nft -f FILE` loads
// (TestDumpLoadsWithNft checks that).
func TestDumpGoldens(t *testing.T) {
	for _, sc := range append(conformanceScenarios(), hostScenarios()...) {
		t.Run(sc.name, func(t *testing.T) {
			d, err := render(scenarioRuleset(sc))
			require.NoError(t, err)
			got := "# " + sc.name + "\n# load with: nft -f " + slug(sc.name) + ".nft\n" + d.text("calyx")
			path := filepath.Join("testdata", slug(sc.name)+".nft")
			if *update {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
				return
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -run TestDumpGoldens -update")
			require.Equal(t, string(want), got)
		})
	}
}

// TestDumpLoadsWithNft: the text Dump prints is real nft syntax — nft
// loads each golden into a throw-away namespace.
func TestDumpLoadsWithNft(t *testing.T) {
	netnstest.RequireBinary(t, "nft")
	ns := netnstest.New(t, "cxdump-")
	for _, sc := range append(conformanceScenarios(), hostScenarios()...) {
		path := filepath.Join("testdata", slug(sc.name)+".nft")
		out, err := exec.Command("ip", "netns", "exec", ns.Name(), "nft", "-f", path).CombinedOutput()
		require.NoError(t, err, "%s: %s", path, out)
		out, err = exec.Command("ip", "netns", "exec", ns.Name(), "nft", "delete", "table", "inet", "calyx").CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
}

func TestRenderShapes(t *testing.T) {
	find := func(name string) scenario {
		for _, sc := range conformanceScenarios() {
			if sc.name == name {
				return sc
			}
		}
		t.Fatalf("no scenario %q", name)
		return scenario{}
	}
	t.Run("a long run of CIDR+port rules is one lookup per family", func(t *testing.T) {
		d, err := render(scenarioRuleset(find("many CIDR+port rules become one set lookup")))
		require.NoError(t, err)
		var lookups int
		for _, c := range d.chains {
			for _, ru := range c.rules {
				if strings.Contains(ru.text, "saddr . meta l4proto . th dport @c-") {
					lookups++
				}
			}
		}
		require.Equal(t, 2, lookups, "v4 and v6 lookups for 41 rules")
	})
	t.Run("Pass splits a policy into segments and returns from the tier", func(t *testing.T) {
		d, err := render(scenarioRuleset(find("Pass skips the rest of the tier")))
		require.NoError(t, err)
		text := d.text("calyx")
		// friends-pass is [Pass, Deny]: the Pass rule returns from the
		// tier chain, the Deny after it is written inline.
		require.Regexp(t, `(?s)ip saddr @s-[0-9a-f]+-4 return.*drop comment "security/friends-pass rule 1"`, text)
	})
	t.Run("endpoints with the same policy share their chains", func(t *testing.T) {
		d, err := render(scenarioRuleset(find("no policy: profiles allow everything")))
		require.NoError(t, err)
		eps := 0
		for name := range d.chains {
			if strings.HasPrefix(name, "ep-") {
				eps++
			}
		}
		require.Equal(t, 1, eps, "four pods, one shared endpoint chain")
		require.Len(t, d.sets[mapEgress].elems, 4)
	})
	t.Run("small literal sets are matched inline", func(t *testing.T) {
		d, err := render(scenarioRuleset(find("nets and notNets on egress, with the outside world")))
		require.NoError(t, err)
		text := d.text("calyx")
		require.Contains(t, text, "ip daddr != 10.77.0.4")
		require.Contains(t, text, "ip daddr 198.51.100.0/24")
		for name := range d.sets {
			require.False(t, strings.HasPrefix(name, "s-"), "no named set for literal nets: %s", name)
		}
	})
	t.Run("render is deterministic", func(t *testing.T) {
		for _, sc := range append(conformanceScenarios(), hostScenarios()...) {
			a, err := render(scenarioRuleset(sc))
			require.NoError(t, err)
			b, err := render(scenarioRuleset(sc))
			require.NoError(t, err)
			require.Equal(t, a.text("x"), b.text("x"), sc.name)
		}
	})
	t.Run("cached render equals a fresh one", func(t *testing.T) {
		cache := newRenderCache()
		for _, sc := range append(hostScenarios(), append(conformanceScenarios(), hostScenarios()...)...) {
			rs := scenarioRuleset(sc)
			a, err := renderCached(rs, cache)
			require.NoError(t, err)
			b, err := render(rs)
			require.NoError(t, err)
			require.Equal(t, b.text("x"), a.text("x"), sc.name)
		}
	})
}

// The interface maps carry their key byte order, so nft itself prints the
// pods' interface names (an operator reading `nft list ruleset` sees
// which pod goes where, not "").
func TestNftListsInterfaceNames(t *testing.T) {
	r := newRig(t, conformanceSpec())
	b := r.ir()
	conformance.WithAllowAllProfiles(b)
	require.NoError(t, r.b.Apply(context.Background(), b.RS))
	out := nft(t, r.lab.NodeNS().Name(), "list", "map", "inet", r.b.Table(), mapEgress)
	for _, p := range r.lab.Spec().Pods {
		require.Contains(t, out, `"`+p.Interface()+`"`, "%s", out)
	}
	require.NotContains(t, out, `"" :`, "%s", out)
}

//go:build linux

package nftables

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/testgen"
)

// mergeScenario gives pod0 a tier of one-rule policies whose order matters
// (an Allow run, a Deny between, a Log, a Pass) and pod1 a tier of many
// one-rule Allow policies that differ in port only.
func mergeScenario(b *testgen.IR) {
	prof := b.AllowAllProfile()
	for _, ep := range b.RS.Endpoints {
		ep.Ingress.Profiles = []compile.PolicyID{prof}
		ep.Egress.Profiles = []compile.PolicyID{prof}
	}
	p0, p1 := b.Selected("m0", pod0), b.Selected("m1", pod1)
	pod3Net := b.Nets("10.77.0.4/32", "fd77::4/128")
	pod2Net := b.Nets("10.77.0.3/32", "fd77::3/128")
	ext := b.Nets("198.51.100.7/32", "2001:db8:77::7/128")
	tcp := func(src compile.SetID, ports ...uint16) compile.Match {
		m := compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: sets(src)}}
		if len(ports) > 0 {
			m.Dst.Ports = testgen.Ports(ports...)
		}
		return m
	}
	udp := func(src compile.SetID, ports ...uint16) compile.Match {
		m := tcp(src, ports...)
		m.Protocol = 17
		return m
	}
	pol := func(name string, a compile.Action, m compile.Match) compile.PolicyID {
		return b.Policy(compile.Ingress, "default", name, r0(a, m))
	}
	b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("default", deny,
		pol("a80", allow, tcp(p1, 80)),
		// Same shape as a80 and a443 but a Deny: it splits the runs, so
		// pod1 -> pod0:443 stays denied although a443 allows it later.
		pol("d443", deny, tcp(p1, 443)),
		pol("a443", allow, tcp(p1, 443)),
		pol("a-pod3", allow, tcp(pod3Net)),
		pol("a-ext", allow, tcp(ext)),
		pol("d-pod2-dns", deny, udp(pod2Net, 53)),
		pol("d-ext-dns", deny, udp(ext, 53)),
		b.Policy(compile.Ingress, "default", "log-udp", r0(compile.ActionLog, compile.Match{Protocol: 17})),
		pol("pass-pod1", compile.ActionPass, compile.Match{Src: compile.PeerMatch{Sets: sets(p1)}}),
		pol("a-dns", allow, udp(pod3Net, 53)),
		pol("a-dns-pod2", allow, udp(pod2Net, 53)),
	))
	var many []compile.PolicyID
	for i := range 30 {
		many = append(many, pol(fmt.Sprintf("m%d", i), allow, tcp(p0, uint16(1000+i))))
	}
	many = append(many, pol("m80", allow, tcp(p0, 80)))
	b.RS.Endpoints[pod1].Ingress.Tiers = tiers(tier("default", deny, many...))
}

// TestMergedTiersConform: merging rules across a tier's policies keeps
// every verdict (the lab against the model), and does merge.
func TestMergedTiersConform(t *testing.T) {
	r := newRig(t, conformanceSpec())
	b := r.ir()
	mergeScenario(b)
	r.conform(t, b.RS)

	d, err := render(b.RS)
	require.NoError(t, err)
	ep := endpointChainOf(t, d, mapIngress, b.RS.Endpoints[pod1].Interface)
	tierChain := strings.TrimPrefix(d.chains[ep].rules[0].text, "jump ")
	rules := d.chains[tierChain].rules
	// v4, v6, end of tier: 31 policies in 3 rules.
	require.Len(t, rules, 3, "%s", d.text("calyx"))
	require.Contains(t, rules[0].comment, "+30 merged")
}

func endpointChainOf(t *testing.T, d *desired, m, iface string) string {
	t.Helper()
	for i, k := range d.sets[m].keys {
		if strings.HasPrefix(k, iface+">") {
			return d.sets[m].groups[i][0].VerdictData.Chain
		}
	}
	t.Fatalf("no %s element for %s", m, iface)
	return ""
}

// TestMergedTierChangesIncrementally: a policy of a merged tier changes,
// and the next Apply rewrites that tier and still conforms.
func TestMergedTierChangesIncrementally(t *testing.T) {
	r := newRig(t, conformanceSpec())
	b := r.ir()
	mergeScenario(b)
	r.conform(t, b.RS)
	// Deny pod0 -> pod1:80 first: a new policy at the head of the tier.
	p0 := b.Selected("m0", pod0)
	first := b.Policy(compile.Ingress, "default", "d80", r0(deny, compile.Match{Protocol: 6,
		Src: compile.PeerMatch{Sets: sets(p0)}, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}))
	tr := &b.RS.Endpoints[pod1].Ingress.Tiers[0]
	tr.Policies = append([]compile.PolicyID{first}, tr.Policies...)
	r.conform(t, b.RS)
}

// TestPrefixOf: prefixOf finds the prefix an interval is, if any.
func TestPrefixOf(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		v6 := rapid.Bool().Draw(rt, "v6")
		n := 4
		if v6 {
			n = 16
		}
		raw := rapid.SliceOfN(rapid.Byte(), n, n).Draw(rt, "addr")
		a, _ := netip.AddrFromSlice(raw)
		bits := rapid.IntRange(0, a.BitLen()).Draw(rt, "bits")
		p := netip.PrefixFrom(a, bits).Masked()
		iv := interval{p.Addr(), lastAddr(p)}
		got, ok := prefixOf(iv)
		if !ok || got != p {
			rt.Fatalf("prefixOf(%v) = %v, %v; want %v", iv, got, ok, p)
		}
		// Stretched by one address it is no prefix (unless it wraps).
		if next := iv.last.Next(); next.IsValid() && bits > 0 {
			if _, ok := prefixOf(interval{iv.first, next}); ok && p.Bits() > 0 {
				want := netip.PrefixFrom(iv.first, bits-1).Masked()
				if want.Addr() != iv.first || lastAddr(want) != next {
					rt.Fatalf("prefixOf(%v-%v) claims a prefix", iv.first, next)
				}
			}
		}
	})
}

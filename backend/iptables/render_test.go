package iptables

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/testgen"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// scenarioIR builds a conformance scenario's Ruleset without a lab.
func scenarioIR(build func(*testgen.IR)) *compile.Ruleset {
	b := testgen.NewIR()
	spec := conformance.Spec()
	for i := range spec.Pods {
		p := &spec.Pods[i]
		b.Endpoint(p.Key(), p.Interface(), p.IPs...)
	}
	conformance.WithAllowAllProfiles(b)
	build(b)
	return b.RS
}

func slug(s string) string {
	return strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(s), "-"), "-")
}

// TestGolden compares the restore inputs of every conformance scenario,
// host endpoint scenarios included, with testdata/*.rules (go test -run
// TestGolden -update rewrites them). The kernel tests prove what these
// bytes do.
func TestGolden(t *testing.T) {
	for _, sc := range append(conformance.Scenarios(), conformance.HostScenarios()...) {
		t.Run(sc.Name, func(t *testing.T) {
			p, err := render(scenarioIR(sc.Build), newNaming(""), nil)
			require.NoError(t, err)
			got := p.dump()
			path := filepath.Join("testdata", slug(sc.Name)+".rules")
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run with -update to create it")
			require.Equal(t, string(want), string(got))
		})
	}
}

// rng builds port ranges from min, max pairs.
func rng(bounds ...uint16) []compile.PortRange {
	var out []compile.PortRange
	for i := 0; i+1 < len(bounds); i += 2 {
		out = append(out, compile.PortRange{Min: bounds[i], Max: bounds[i+1]})
	}
	return out
}

func TestPortChunks(t *testing.T) {
	singles := func(n int) []compile.PortRange {
		var out []compile.PortRange
		for i := range n {
			out = append(out, compile.PortRange{Min: uint16(100 + 2*i), Max: uint16(100 + 2*i)})
		}
		return out
	}
	tests := []struct {
		name string
		in   []compile.PortRange
		want []string
	}{
		{"none", nil, nil},
		{"one", rng(80, 80), []string{"80"}},
		{"overlapping ranges merge", rng(10, 20, 15, 30, 31, 31), []string{"10:31"}},
		{"fifteen singles fit", singles(15), []string{"100,102,104,106,108,110,112,114,116,118,120,122,124,126,128"}},
		{"sixteen singles split", singles(16), []string{"100,102,104,106,108,110,112,114,116,118,120,122,124,126,128", "130"}},
		{"ranges count two", rng(1, 2, 4, 5, 7, 8, 10, 11, 13, 14, 16, 17, 19, 20, 22, 23),
			[]string{"1:2,4:5,7:8,10:11,13:14,16:17,19:20", "22:23"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, portChunks(tt.in))
		})
	}
}

func TestNaming(t *testing.T) {
	tests := []struct{ name, prefix string }{
		{"", "calyx-"},
		{"node1", "calyx-node1-"},
		{"cx0123456789", "calyx-" + shortHash("cx0123456789")[:6] + "-"},
		{"a/b", "calyx-" + shortHash("a/b")[:6] + "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNaming(tt.name)
			require.Equal(t, tt.prefix, n.prefix)
			for _, c := range []string{"fwd", "hi", "ho", "h-0123456789ab"} {
				require.True(t, n.isOwnChain(n.prefix+c), c)
			}
			require.True(t, n.isOwnSet(n.setName("x", 4)))
			// The default instance does not claim a named one's chains.
			if tt.name != "" {
				require.False(t, newNaming("").isOwnChain(n.prefix+"fwd"))
				require.False(t, newNaming("").isOwnSet(n.setName("x", 6)))
			}
		})
	}
}

// TestDispatchSets: 500 endpoints in 7 policy groups make a dispatch
// chain of one set lookup per group, ending fail closed, and every
// endpoint's (address, interface) pair is a member.
func TestDispatchSets(t *testing.T) {
	b := testgen.NewIR()
	prof := b.AllowAllProfile()
	var profiles []compile.PolicyID
	for g := range 7 {
		id := compile.PolicyID(fmt.Sprintf("profile:g%d", g))
		b.RS.Policies[id] = &compile.Policy{ID: id, Name: string(id), Rules: []compile.Rule{
			{Action: compile.ActionDeny, Match: compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: rng(uint16(1000+g), uint16(1000+g))}}}}}
		profiles = append(profiles, id)
	}
	for i := range 500 {
		ns, name := fmt.Sprintf("ns%d", i%7), fmt.Sprintf("pod%d", i)
		ep := b.Endpoint(ns+"/"+name, compile.WorkloadInterface(ns, name), netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i % 256)}))
		ep.Ingress.Profiles, ep.Egress.Profiles = []compile.PolicyID{profiles[i%7], prof}, []compile.PolicyID{prof}
	}
	p, err := render(b.RS, newNaming("t"), nil)
	require.NoError(t, err)
	fp := p.fams[0]
	fi := fp.chains["calyx-t-fi"].rules
	require.Len(t, fi, 7+1)
	require.True(t, strings.HasSuffix(fi[len(fi)-1], "-j DROP"), "dispatch must end fail closed")
	fe := fp.chains["calyx-t-fe"].rules
	require.Len(t, fe, 1+1, "every pod has the same egress")
	members := 0
	for _, is := range fp.sets {
		if is.typ == "hash:net,iface" {
			members += len(is.members)
		}
	}
	require.Equal(t, 2*500, members)
	require.Empty(t, p.fams[1].chains["calyx-t-fi"].rules[:len(p.fams[1].chains["calyx-t-fi"].rules)-1], "no IPv6 address, no IPv6 dispatch")
}

// TestRenderProperties: for random Rulesets, rendering succeeds, names
// stay within iptables' and ipset's limits, no multiport match holds more
// than 15 ports, and the diff of a plan against its own state is empty.
func TestRenderProperties(t *testing.T) {
	w := &testgen.IRWorld{External: []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")},
		Ports: []uint16{53, 80, 443}, SrcPortMin: 20000, SrcPortMax: 50000}
	for i := range 6 {
		ns, name := fmt.Sprintf("ns%d", i%2), fmt.Sprintf("pod%d", i)
		w.Pods = append(w.Pods, testgen.IRPod{Key: ns + "/" + name, Interface: compile.WorkloadInterface(ns, name),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 77, 0, byte(i + 1)}), netip.MustParseAddr(fmt.Sprintf("fd77::%x", i+1))},
			Ports: []compile.PortMember{{Protocol: 6, Port: 80}, {Protocol: 17, Port: 53}}})
	}
	multiport := regexp.MustCompile(`--[sd]ports (\S+)`)
	rapid.Check(t, func(rt *rapid.T) {
		rs := testgen.IRRuleset(w).Draw(rt, "ruleset")
		n := newNaming("cx01234567")
		p, err := render(rs, n, nil)
		if err != nil {
			rt.Fatalf("render: %v", err)
		}
		for _, fp := range p.fams {
			for name, c := range fp.chains {
				if len(name) > 28 || !n.isOwnChain(name) {
					rt.Fatalf("chain name %q", name)
				}
				for _, l := range c.rules {
					for _, m := range multiport.FindAllStringSubmatch(l, -1) {
						w := 0
						for _, item := range strings.Split(m[1], ",") {
							w++
							if strings.Contains(item, ":") {
								w++
							}
						}
						if w > multiportMax {
							rt.Fatalf("multiport of %d: %s", w, l)
						}
					}
				}
			}
			for name := range fp.sets {
				if len(name) > 31 || !n.isOwnSet(name) {
					rt.Fatalf("set name %q", name)
				}
			}
			if in := rulesInput(stateOf(fp), fp, nil); in != nil {
				rt.Fatalf("diff against itself: %s", in)
			}
		}
	})
}

// TestIncremental: adding a pod with the same policy as others adds
// ipset members only.
func TestIncremental(t *testing.T) {
	sc := conformance.ByName("k8s style: pod0 admits only pod1 on TCP 80") // one ingress policy on pod0
	rs := scenarioIR(sc.Build)
	n := newNaming("")
	before, err := render(rs, n, nil)
	require.NoError(t, err)

	// A new pod with the profile only.
	b := &testgen.IR{RS: rs}
	prof := b.AllowAllProfile()
	ep := b.Endpoint("ns9/new", compile.WorkloadInterface("ns9", "new"), netip.MustParseAddr("10.77.0.9"))
	ep.Ingress.Profiles, ep.Egress.Profiles = []compile.PolicyID{prof}, []compile.PolicyID{prof}
	after, err := render(rs, n, nil)
	require.NoError(t, err)
	require.Nil(t, rulesInput(stateOf(before.fams[0]), after.fams[0], nil), "a pod like others changes no rule")
	prep, destroy := setsInputs(before.allSets(), after.allSets(), nil)
	require.Equal(t, 2, strings.Count(string(prep), "add "), "its (address, interface) pair joins both dispatch sets:\n%s", prep)
	require.NotContains(t, string(prep), "create ")
	require.Empty(t, destroy)
}

// TestCacheMatchesFresh: a render that reuses cached policies (all of
// them, or all but a changed one) writes exactly what a fresh render does.
func TestCacheMatchesFresh(t *testing.T) {
	w := &testgen.IRWorld{External: []netip.Addr{netip.MustParseAddr("198.51.100.7")}, Ports: []uint16{53, 80}, SrcPortMin: 20000, SrcPortMax: 50000}
	for i := range 4 {
		ns, name := "ns", fmt.Sprintf("pod%d", i)
		w.Pods = append(w.Pods, testgen.IRPod{Key: ns + "/" + name, Interface: compile.WorkloadInterface(ns, name),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 77, 0, byte(i + 1)}), netip.MustParseAddr(fmt.Sprintf("fd77::%x", i+1))}})
	}
	rapid.Check(t, func(rt *rapid.T) {
		n := newNaming("c")
		cache := newRenderCache()
		rs1 := testgen.IRRuleset(w).Draw(rt, "first")
		rs2 := testgen.IRRuleset(w).Draw(rt, "second")
		// rs2 takes every policy of rs1 whose ID it also has: shared by
		// pointer, as the compiler shares unchanged policies.
		for id, p := range rs1.Policies {
			if _, ok := rs2.Policies[id]; ok && rapid.Bool().Draw(rt, "share") {
				rs2.Policies[id] = p
				for _, ru := range p.Rules {
					for _, pm := range []compile.PeerMatch{ru.Match.Src, ru.Match.Dst} {
						for _, ids := range [][]compile.SetID{pm.Sets, pm.NotSets, pm.NamedPorts, pm.NotNamedPorts} {
							for _, sid := range ids {
								if _, ok := rs2.Sets[sid]; !ok {
									rs2.Sets[sid] = rs1.Sets[sid]
								}
							}
						}
					}
				}
			}
		}
		for _, rs := range []*compile.Ruleset{rs1, rs2, rs2} {
			cached, err := render(rs, n, cache)
			if err != nil {
				rt.Fatalf("render: %v", err)
			}
			cache.commit()
			fresh, err := render(rs, n, nil)
			if err != nil {
				rt.Fatalf("render: %v", err)
			}
			if got, want := string(cached.dump()), string(fresh.dump()); got != want {
				rt.Fatalf("cached render differs:\n%s\nfresh:\n%s", got, want)
			}
		}
	})
}

// Package conformance holds the hand-written Calico semantics scenarios
// every kernel dataplane is checked against in the lab: the same Rulesets,
// the same lab, and the model deciding what the observed matrix must be.
package conformance

import (
	"fmt"
	"net/netip"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/testgen"
)

// Pods of the conformance lab: ns0/pod0 10.77.0.1 fd77::1, ns1/pod1
// 10.77.0.2 fd77::2, ns0/pod2 10.77.0.3 fd77::3, ns1/pod3 10.77.0.4 fd77::4;
// external 198.51.100.7 and 2001:db8:77::7.
const (
	pod0, pod1, pod2, pod3 = "ns0/pod0", "ns1/pod1", "ns0/pod2", "ns1/pod3"
)

// Scenario is one case: a name and what it adds to a builder.
type Scenario struct {
	Name string
	// Build adds policy to a builder whose endpoints all have the
	// allow-all profile and no tiers.
	Build func(b *testgen.IR)
}

func tiers(ts ...compile.TierPolicies) []compile.TierPolicies { return ts }

func tier(name string, end compile.Action, ids ...compile.PolicyID) compile.TierPolicies {
	return compile.TierPolicies{Tier: name, Policies: ids, EndAction: end}
}

func sets(ids ...compile.SetID) []compile.SetID { return ids }

var allow, deny, pass, logA = compile.ActionAllow, compile.ActionDeny, compile.ActionPass, compile.ActionLog

// Scenarios returns the cases, for the lab of Spec.
func Scenarios() []Scenario {
	r := testgen.Rule
	return []Scenario{
		// First, while no neighbour cache is warm: Calico's default
		// endpoint-to-host Drop must not stop a pod's IPv6 neighbour
		// discovery for its gateway, or IPv6 pods reach nothing.
		{"endpoint-to-host deny keeps IPv6 neighbour discovery", func(b *testgen.IR) {
			b.RS.Settings.DefaultEndpointToHostAction = deny
		}},
		{"no policy: profiles allow everything", func(b *testgen.IR) {}},
		{"k8s style: pod0 admits only pod1 on TCP 80", func(b *testgen.IR) {
			src := b.Selected("app == 'client'", pod1)
			p := b.Policy(compile.Ingress, "default", "web", r(allow, compile.Match{Protocol: 6,
				Src: compile.PeerMatch{Sets: sets(src)}, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}))
			b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("default", deny, p))
		}},
		{"tier order: security denies pod2 before default allows all", func(b *testgen.IR) {
			bad := b.Selected("role == 'bad'", pod2)
			sec := b.Policy(compile.Ingress, "security", "block-bad", r(deny, compile.Match{Src: compile.PeerMatch{Sets: sets(bad)}}),
				r(pass, compile.Match{}))
			all := b.Policy(compile.Ingress, "default", "all", r(allow, compile.Match{}))
			b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("security", deny, sec), tier("default", deny, all))
		}},
		{"Pass skips the rest of the tier", func(b *testgen.IR) {
			friends := b.Selected("friend == 'yes'", pod1)
			sec := b.Policy(compile.Ingress, "security", "friends-pass",
				r(pass, compile.Match{Src: compile.PeerMatch{Sets: sets(friends)}}),
				r(deny, compile.Match{}))
			web := b.Policy(compile.Ingress, "default", "web", r(allow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}))
			b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("security", deny, sec), tier("default", deny, web))
		}},
		{"end-of-tier Pass hands over to the next tier", func(b *testgen.IR) {
			none := b.Policy(compile.Ingress, "security", "nothing", r(deny, compile.Match{Protocol: 132}))
			dns := b.Policy(compile.Ingress, "default", "dns", r(allow, compile.Match{Protocol: 17}))
			b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("security", pass, none), tier("default", deny, dns))
		}},
		{"Log-only tier still ends in deny", func(b *testgen.IR) {
			lg := b.Policy(compile.Egress, "audit", "log-all", r(logA, compile.Match{}))
			b.RS.Endpoints[pod1].Egress.Tiers = tiers(tier("audit", deny, lg))
		}},
		{"policy order in a tier: first deny wins", func(b *testgen.IR) {
			first := b.Policy(compile.Ingress, "default", "a-deny-443", r(deny, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(443)}}))
			second := b.Policy(compile.Ingress, "default", "b-allow-all", r(allow, compile.Match{}))
			b.RS.Endpoints[pod2].Ingress.Tiers = tiers(tier("default", deny, first, second))
		}},
		{"nets and notNets on egress, with the outside world", func(b *testgen.IR) {
			podNet := b.Nets("10.77.0.0/29", "fd77::/125")
			pod3Net := b.Nets("10.77.0.4/32", "fd77::4/128")
			ext := b.Nets("198.51.100.0/24")
			p := b.Policy(compile.Egress, "default", "egress",
				r(allow, compile.Match{Dst: compile.PeerMatch{Sets: sets(podNet), NotSets: sets(pod3Net)}}),
				r(allow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Sets: sets(ext)}}))
			b.RS.Endpoints[pod0].Egress.Tiers = tiers(tier("default", deny, p))
		}},
		{"named ports resolve per destination pod", func(b *testgen.IR) {
			web := b.NamedPort("web", 6, 80, pod0)
			web2 := b.NamedPort("web", 6, 443, pod1)
			p := b.Policy(compile.Ingress, "default", "named", r(allow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{NamedPorts: sets(web, web2)}}))
			b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("default", deny, p))
			b.RS.Endpoints[pod1].Ingress.Tiers = tiers(tier("default", deny, p))
		}},
		{"port ranges and notPorts", func(b *testgen.IR) {
			p := b.Policy(compile.Ingress, "default", "ranges",
				r(allow, compile.Match{Dst: compile.PeerMatch{Ports: testgen.Ports(1, 100, 400, 500), NotPorts: testgen.Ports(80)}}))
			b.RS.Endpoints[pod3].Ingress.Tiers = tiers(tier("default", deny, p))
		}},
		{"IPv6 only", func(b *testgen.IR) {
			p := b.Policy(compile.Ingress, "default", "v6", r(allow, compile.Match{IPVersion: 6}))
			b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("default", deny, p))
		}},
		{"not-protocol and ICMP rules do not catch TCP", func(b *testgen.IR) {
			code := uint8(0)
			p := b.Policy(compile.Ingress, "default", "icmp",
				r(allow, compile.Match{Protocol: 1, ICMP: &compile.ICMPMatch{Type: 8, Code: &code}}),
				r(allow, compile.Match{NotICMP: &compile.ICMPMatch{Type: 8}, Protocol: 17}),
				r(allow, compile.Match{NotProtocol: 6}))
			b.RS.Endpoints[pod1].Ingress.Tiers = tiers(tier("default", deny, p))
		}},
		{"source ports", func(b *testgen.IR) {
			p := b.Policy(compile.Egress, "default", "sport", r(allow, compile.Match{Src: compile.PeerMatch{Ports: testgen.Ports(20000, 20100)}}))
			b.RS.Endpoints[pod2].Egress.Tiers = tiers(tier("default", deny, p))
		}},
		{"source egress and destination ingress must both allow", func(b *testgen.IR) {
			out := b.Policy(compile.Egress, "default", "out-all", r(allow, compile.Match{}))
			zero := b.Selected("name == 'pod0'", pod0)
			in := b.Policy(compile.Ingress, "default", "not-from-pod0", r(deny, compile.Match{Src: compile.PeerMatch{Sets: sets(zero)}}), r(allow, compile.Match{}))
			b.RS.Endpoints[pod0].Egress.Tiers = tiers(tier("default", deny, out))
			b.RS.Endpoints[pod1].Ingress.Tiers = tiers(tier("default", deny, in))
		}},
		{"profiles decide when no tier applies", func(b *testgen.IR) {
			id := compile.PolicyID("profile:deny-web")
			b.RS.Policies[id] = &compile.Policy{ID: id, Name: "profile:deny-web", Rules: []compile.Rule{
				r(deny, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(80)}}), r(allow, compile.Match{})}}
			b.RS.Endpoints[pod2].Ingress.Profiles = []compile.PolicyID{id}
			b.RS.Endpoints[pod3].Egress.Profiles = nil
		}},
		{"many CIDR+port rules become one set lookup", func(b *testgen.IR) {
			var rules []compile.Rule
			for i := range 40 {
				n := b.Nets(fmt.Sprintf("10.99.%d.0/24", i), fmt.Sprintf("fd99:%x::/64", i))
				rules = append(rules, r(allow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: sets(n)}, Dst: compile.PeerMatch{Ports: testgen.Ports(uint16(1000 + i))}}))
			}
			last := b.Nets("10.77.0.2/32", "fd77::2/128") // pod1
			rules = append(rules, r(allow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: sets(last)}, Dst: compile.PeerMatch{Ports: testgen.Ports(443)}}))
			p := b.Policy(compile.Ingress, "default", "many", rules...)
			b.RS.Endpoints[pod0].Ingress.Tiers = tiers(tier("default", deny, p))
		}},
		{"endpoint with nothing at all denies", func(b *testgen.IR) {
			b.RS.Endpoints[pod3].Ingress.Profiles = nil
			b.RS.Endpoints[pod3].Egress.Profiles = nil
		}},
	}
}

// Spec is the lab the scenarios are written for. The node serves ports
// too, so every scenario also checks the node's traffic with the external
// namespace (untouched while no host endpoint exists).
func Spec() lab.Spec {
	return lab.Spec{Pods: labtest.Pods(4, tcp80, tcp443, udp53), External: labtest.ExternalAddrs,
		ExternalPorts: []lab.Port{tcp80, udp53}, NodePorts: []lab.Port{tcp22, tcp8080, udp53}}
}

// Ports the lab's pods, node and external namespace serve.
var (
	tcp22   = lab.Port{Protocol: 6, Port: 22}
	tcp80   = lab.Port{Protocol: 6, Port: 80}
	tcp443  = lab.Port{Protocol: 6, Port: 443}
	tcp8080 = lab.Port{Protocol: 6, Port: 8080}
	udp53   = lab.Port{Protocol: 17, Port: 53}
)

// HostEndpointKey is the key of the host endpoint HostScenarios add.
const HostEndpointKey = "host:node/ext"

// hostEndpoint adds the node's host endpoint on iface ("*" for every
// interface, "" to go by its addresses), with the node's addresses and no
// policy at all.
func hostEndpoint(b *testgen.IR, iface string) *compile.Endpoint {
	spec := Spec()
	ep := &compile.Endpoint{Key: HostEndpointKey, Kind: compile.HostEndpoint, Interface: iface, Addrs: spec.Nodes()}
	b.RS.Endpoints[ep.Key] = ep
	return ep
}

// HostScenarios are the host endpoint cases: the node's own traffic with
// the external namespace, judged by a host endpoint's policy after the
// fail-safe ports, while pod traffic (forwarded, or between a pod and its
// node) stays the pods' business. They run on the lab of Spec, after
// WithAllowAllProfiles like Scenarios.
func HostScenarios() []Scenario {
	r := testgen.Rule
	failsafe := func(b *testgen.IR) {
		b.RS.Settings.FailsafeInbound = []compile.ProtoPort{{Protocol: 6, Port: 22}}
		b.RS.Settings.FailsafeOutbound = []compile.ProtoPort{{Protocol: 17, Port: 53}}
	}
	return []Scenario{
		{"host endpoint without policy denies all but the fail-safe ports", func(b *testgen.IR) {
			failsafe(b)
			hostEndpoint(b, lab.ExternalInterface)
		}},
		{"host endpoint tiers: ingress 8080 from the external net only, fail-safe limited to a net", func(b *testgen.IR) {
			b.RS.Settings.FailsafeInbound = []compile.ProtoPort{{Protocol: 6, Port: 22, Net: netip.MustParsePrefix("203.0.113.0/24")}}
			ext := b.Nets("198.51.100.0/24")
			in := b.Policy(compile.Ingress, "security", "host-in",
				r(allow, compile.Match{Protocol: 6, Src: compile.PeerMatch{Sets: sets(ext)}, Dst: compile.PeerMatch{Ports: testgen.Ports(8080)}}))
			out := b.Policy(compile.Egress, "security", "host-out", r(allow, compile.Match{Protocol: 6}))
			ep := hostEndpoint(b, lab.ExternalInterface)
			ep.Ingress.Tiers = tiers(tier("security", deny, in))
			ep.Egress.Tiers = tiers(tier("security", deny, out))
		}},
		{"all-interfaces host endpoint leaves pod traffic alone", func(b *testgen.IR) {
			failsafe(b)
			in := b.Policy(compile.Ingress, "default", "host-udp", r(allow, compile.Match{Protocol: 17}))
			out := b.Policy(compile.Egress, "default", "host-v4", r(deny, compile.Match{IPVersion: 6}), r(allow, compile.Match{}))
			ep := hostEndpoint(b, "*")
			ep.Ingress.Tiers = tiers(tier("default", deny, in))
			ep.Egress.Tiers = tiers(tier("default", deny, out))
		}},
		{"host endpoint by expected IPs, Pass to its profile", func(b *testgen.IR) {
			failsafe(b)
			pass := b.Policy(compile.Ingress, "security", "host-pass", r(pass, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(8080)}}),
				r(deny, compile.Match{}))
			id := compile.PolicyID("profile:host-web")
			b.RS.Policies[id] = &compile.Policy{ID: id, Name: "profile:host-web", Rules: []compile.Rule{
				r(allow, compile.Match{Protocol: 6, Dst: compile.PeerMatch{Ports: testgen.Ports(8080)}})}}
			ep := hostEndpoint(b, "")
			ep.Ingress.Tiers = tiers(tier("security", deny, pass))
			ep.Ingress.Profiles = []compile.PolicyID{id}
			ep.Egress.Profiles = []compile.PolicyID{b.AllowAllProfile()}
		}},
	}
}

// WithAllowAllProfiles gives every endpoint of b the allow-all profile in
// both directions, as every scenario starts.
func WithAllowAllProfiles(b *testgen.IR) {
	prof := b.AllowAllProfile()
	for _, ep := range b.RS.Endpoints {
		ep.Ingress.Profiles = []compile.PolicyID{prof}
		ep.Egress.Profiles = []compile.PolicyID{prof}
	}
}

// ByName returns the scenario with the given name; it panics on an unknown
// name, which is a bug in the calling test.
func ByName(name string) Scenario {
	for _, sc := range Scenarios() {
		if sc.Name == name {
			return sc
		}
	}
	panic("conformance: no scenario " + name)
}

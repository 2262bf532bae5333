package ebpf

import (
	"errors"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/compile"
)

// TestRenderHostEndpoints: Render lists a named host endpoint's links on
// its interface, and those of the endpoints without a name on "*" (one
// slot each: the "*" endpoint first, then those known by address); a
// second "*" endpoint, one on a workload interface and one with no
// address of its own get no link.
func TestRenderHostEndpoints(t *testing.T) {
	a := netip.MustParseAddr
	rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{}, Policies: map[compile.PolicyID]*compile.Policy{},
		Sets: map[compile.SetID]*compile.IPSet{}}
	for _, ep := range []*compile.Endpoint{
		{Key: "host:n/a-eth0", Interface: "eth0"},
		{Key: "host:n/b-eth0-again", Interface: "eth0"},
		{Key: "host:n/c-star", Interface: "*"},
		{Key: "host:n/d-star-again", Interface: "*"},
		{Key: "host:n/e-addr", Addrs: []netip.Addr{a("192.0.2.1"), a("2001:db8::1")}},
		{Key: "host:n/f-addr-claimed", Addrs: []netip.Addr{a("192.0.2.1")}},
		{Key: "host:n/g-pod", Interface: compile.WorkloadInterface("ns", "pod")},
		{Key: "host:n/h-nothing"},
	} {
		ep.Kind = compile.HostEndpoint
		rs.Endpoints[ep.Key] = ep
	}
	out, err := Render(rs)
	if err != nil {
		t.Fatal(err)
	}
	var links []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "link ") {
			links = append(links, regexp.MustCompile(`program [0-9a-f]{32}`).ReplaceAllString(l, "program"))
		}
	}
	want := []string{
		"link */egress program (host:n/c-star)",
		"link */ingress program (host:n/c-star)",
		"link *:1/egress program (host:n/e-addr)",
		"link *:1/ingress program (host:n/e-addr)",
		"link eth0/egress program (host:n/a-eth0)",
		"link eth0/ingress program (host:n/a-eth0)",
	}
	if !slices.Equal(links, want) {
		t.Fatalf("links:\n%s\nwant:\n%s", strings.Join(links, "\n"), strings.Join(want, "\n"))
	}
}

// TestHostLinks: the wildcard endpoints' programs go to every host
// interface but lo, workload interfaces and those a named endpoint
// claims, one slot each.
func TestHostLinks(t *testing.T) {
	p := &plan{attach: map[attachKey]string{{"eth1", hookIngress}: "named-in", {"eth1", hookEgress}: "named-eg"},
		hostAny: []hostAny{{key: "star", hook: hookIngress, fp: "s-in"}, {key: "addr", hook: hookIngress, fp: "a-in", slot: 1}}}
	want := map[attachKey]string{}
	p.hostLinks(map[string]int{"lo": 1, "eth0": 2, "eth1": 3, compile.InterfacePrefix + "x": 4}, want)
	exp := map[attachKey]string{{"eth0", hookIngress}: "s-in", {"eth0:1", hookIngress}: "a-in"}
	if len(want) != len(exp) {
		t.Fatalf("links %v, want %v", want, exp)
	}
	for k, v := range exp {
		if want[k] != v {
			t.Fatalf("links %v, want %v", want, exp)
		}
	}
	if got := (attachKey{"eth0:1", hookIngress}).dev(); got != "eth0" {
		t.Fatalf("dev of eth0:1 is %q", got)
	}
	if got := p.ownerOf(attachKey{"eth0:1", hookIngress}); got != "addr" {
		t.Fatalf("owner of eth0:1/ingress is %q, want addr", got)
	}
	if got := p.ownerOf(attachKey{compile.InterfacePrefix + "x", hookIngress}); got != "" {
		t.Fatalf("owner of a workload interface is %q, want none", got)
	}
}

// TestHostEndpointLimits: more addresses or fail-safe ports than a host
// endpoint program compares inline are refused with ErrTooBig; at the
// limit, the programs are generated.
func TestHostEndpointLimits(t *testing.T) {
	build := limitRuleset
	if _, err := Render(build(maxHostAddrs, maxFailsafe)); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	for _, rs := range []*compile.Ruleset{build(maxHostAddrs+1, 1), build(1, maxFailsafe+1)} {
		if _, err := Render(rs); !errors.Is(err, ErrTooBig) {
			t.Errorf("beyond the limits: %v, want ErrTooBig", err)
		}
	}
}

// limitRuleset has a host endpoint known by addrs IPv6 addresses, and
// failsafe inbound fail-safe ports limited to an IPv6 net.
func limitRuleset(addrs, failsafe int) *compile.Ruleset {
	rs := &compile.Ruleset{Endpoints: map[string]*compile.Endpoint{}, Policies: map[compile.PolicyID]*compile.Policy{},
		Sets: map[compile.SetID]*compile.IPSet{}}
	ep := &compile.Endpoint{Key: "host:n/a", Kind: compile.HostEndpoint}
	for i := range addrs {
		ep.Addrs = append(ep.Addrs, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}))
	}
	rs.Endpoints[ep.Key] = ep
	for i := range failsafe {
		rs.Settings.FailsafeInbound = append(rs.Settings.FailsafeInbound,
			compile.ProtoPort{Protocol: 6, Port: uint16(1000 + i), Net: netip.MustParsePrefix("2001:db8:1::/48")})
	}
	return rs
}

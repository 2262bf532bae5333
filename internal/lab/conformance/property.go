//go:build linux

package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/testgen"
)

// WorldOf describes a lab for the random IR generators.
func WorldOf(spec lab.Spec) *testgen.IRWorld {
	w := &testgen.IRWorld{External: spec.External, SrcPortMin: 20000, SrcPortMax: 50000}
	seen := map[uint16]bool{}
	for i := range spec.Pods {
		p := &spec.Pods[i]
		ip := testgen.IRPod{Key: p.Key(), Interface: p.Interface(), Addrs: p.IPs}
		for _, port := range p.Ports {
			ip.Ports = append(ip.Ports, compile.PortMember{Protocol: port.Protocol, Port: port.Port})
			if !seen[port.Port] {
				seen[port.Port] = true
				w.Ports = append(w.Ports, port.Port)
			}
		}
		w.Pods = append(w.Pods, ip)
	}
	return w
}

// ModelEqualsKernel is every dataplane's spine test: random Rulesets
// applied one after the other with b in the lab l (so every diff path
// runs); after each Apply, noDrift must find the kernel exactly as planned,
// and the matrix observed in the lab must be the model's. At least 50
// scenarios must run.
func ModelEqualsKernel(t *testing.T, spec lab.Spec, l *lab.Lab, b backend.Backend, noDrift func(context.Context) error) {
	t.Helper()
	w := WorldOf(spec)
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		n++
		Conform(rt, l, b, testgen.IRRuleset(w).Draw(rt, "ruleset"), noDrift)
	})
	if n < 50 {
		t.Fatalf("only %d scenarios ran; want at least 50", n)
	}
	t.Logf("%d random scenarios: model == %s", n, b.Name())
}

// Fataler is what Conform reports failures to: a *testing.T or a
// *rapid.T.
type Fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Conform applies rs with b in the lab l, checks with noDrift (when not
// nil) that the kernel is exactly as planned, and that the matrix observed
// in the lab is the model's; it returns the observed matrix.
func Conform(t Fataler, l *lab.Lab, b backend.Backend, rs *compile.Ruleset, noDrift func(context.Context) error) *lab.Matrix {
	t.Helper()
	ctx := context.Background()
	if err := b.Apply(ctx, rs); err != nil {
		t.Fatalf("apply: %v\n%s", err, rs)
	}
	if noDrift != nil {
		if err := noDrift(ctx); err != nil {
			dump, _ := b.Dump(ctx)
			t.Fatalf("the kernel is not as planned after apply: %v\n%s", err, dump)
		}
	}
	got, err := l.Observe(ctx)
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	want := lab.Expected(rs, got.Probes)
	if got, err = l.Recheck(ctx, got, want); err != nil {
		t.Fatalf("recheck: %v", err)
	}
	if diff := got.Diff(want); len(diff) > 0 {
		dump, _ := b.Dump(ctx)
		t.Fatalf("%s disagrees with the model on %d probes:\n%s\nruleset:\n%s\ndataplane:\n%s",
			b.Name(), len(diff), strings.Join(diff, "\n"), rs, dump)
	}
	return got
}

// LabIR returns a builder holding one endpoint per pod of l, with no
// policy: where every dataplane's lab tests start.
func LabIR(l *lab.Lab) *testgen.IR {
	b := testgen.NewIR()
	spec := l.Spec()
	for i := range spec.Pods {
		p := &spec.Pods[i]
		b.Endpoint(p.Key(), p.Interface(), p.IPs...)
	}
	return b
}

// NoDrift returns the drift check Conform takes for a dataplane that
// repairs drift: it fails when a repair right after an Apply found the
// kernel other than the backend planned.
func NoDrift(r backend.Repairer) func(context.Context) error {
	return func(ctx context.Context) error {
		d, err := r.Repair(ctx)
		if err != nil {
			return err
		}
		if !d.Empty() {
			return fmt.Errorf("drift: %s", d)
		}
		return nil
	}
}

// HostRuleset draws a random Ruleset for the lab of spec (as
// testgen.IRRuleset does) plus the node's host endpoint: on
// lab.ExternalInterface, "*" or by its addresses, with the ingress and
// egress policy of random pods, and random fail-safe ports (some limited
// to a net, of either family, holding the external namespace or not).
func HostRuleset(spec lab.Spec) *rapid.Generator[*compile.Ruleset] {
	w := WorldOf(spec)
	var pods []string
	for i := range spec.Pods {
		pods = append(pods, spec.Pods[i].Key())
	}
	nets := []netip.Prefix{{}, {}, netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("198.51.100.7/32"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:77::/48"), netip.MustParsePrefix("2001:db8::/32")}
	ports := []compile.ProtoPort{{Protocol: 6, Port: 22}, {Protocol: 6, Port: 8080}, {Protocol: 17, Port: 53}, {Protocol: 6, Port: 80}}
	return rapid.Custom(func(rt *rapid.T) *compile.Ruleset {
		rs := testgen.IRRuleset(w).Draw(rt, "ruleset")
		ep := &compile.Endpoint{Key: HostEndpointKey, Kind: compile.HostEndpoint, Addrs: spec.Nodes(),
			Interface: rapid.SampledFrom([]string{lab.ExternalInterface, "*", ""}).Draw(rt, "interface")}
		ep.Ingress = rs.Endpoints[rapid.SampledFrom(pods).Draw(rt, "ingressOf")].Ingress
		ep.Egress = rs.Endpoints[rapid.SampledFrom(pods).Draw(rt, "egressOf")].Egress
		rs.Endpoints[ep.Key] = ep
		failsafe := func(name string) []compile.ProtoPort {
			var out []compile.ProtoPort
			for _, p := range ports {
				if rapid.IntRange(0, 2).Draw(rt, name) == 0 {
					p.Net = rapid.SampledFrom(nets).Draw(rt, name+"Net")
					out = append(out, p)
				}
			}
			return out
		}
		rs.Settings.FailsafeInbound, rs.Settings.FailsafeOutbound = failsafe("in"), failsafe("out")
		return rs
	})
}

// HostModelEqualsKernel applies n Rulesets of HostRuleset one after the
// other with b in the lab l (the lab of spec, whose node serves ports):
// after each, noDrift must find the kernel as planned and the observed
// matrix must be the model's. The examples are HostRuleset's first n, the
// same on every run; the node's probes must come out both allowed and
// denied over the run, or the test proves nothing.
func HostModelEqualsKernel(t *testing.T, spec lab.Spec, l *lab.Lab, b backend.Backend, noDrift func(context.Context) error, n int) {
	t.Helper()
	gen := HostRuleset(spec)
	outcomes := map[bool]int{}
	for i := range n {
		rs := gen.Example(i)
		m := Conform(example{t, i, rs}, l, b, rs, noDrift)
		for j, p := range m.Probes {
			if p.From == lab.Node || p.To == lab.Node {
				outcomes[m.Allowed[j]]++
			}
		}
	}
	if outcomes[true] == 0 || outcomes[false] == 0 {
		t.Fatalf("the node's probes over %d examples: %d allowed, %d denied; want both", n, outcomes[true], outcomes[false])
	}
	t.Logf("%d random host endpoint Rulesets: model == %s; the node's probes: %d allowed, %d denied", n, b.Name(), outcomes[true], outcomes[false])
}

// example reports a failure of one generated Ruleset with its index and
// the Ruleset itself, so it can be replayed.
type example struct {
	*testing.T
	i  int
	rs *compile.Ruleset
}

func (e example) Fatalf(format string, args ...any) {
	e.T.Helper()
	e.T.Fatalf("example %d: %s\nRuleset:\n%s", e.i, fmt.Sprintf(format, args...), e.rs)
}

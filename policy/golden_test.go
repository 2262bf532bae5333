package policy_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/policy"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenInputs are the real-world inputs the golden tests decode.
var goldenInputs = []string{
	"seed-policies.yaml",
	"calico-examples.yaml",
	"k8s-docs.yaml",
	"kubectl-list.yaml",
}

// TestGolden decodes each input, loads it into a Set and compares a dump
// of the normalised model (policies in evaluation order with every rule,
// endpoints with their flattened labels, network sets, tiers, warnings)
// with testdata/golden/<input>.golden. Run with -update to rewrite.
func TestGolden(t *testing.T) {
	for _, name := range goldenInputs {
		t.Run(name, func(t *testing.T) {
			got := dumpInput(t, filepath.Join("testdata", name))
			golden := filepath.Join("testdata", "golden", strings.TrimSuffix(name, ".yaml")+".golden")
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./policy -run TestGolden -update to create it")
			require.Equal(t, string(want), got)
		})
	}
}

func decodeFile(t *testing.T, path string) policy.Result {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	res, err := policy.DecodeWithOptions(f, filepath.Base(path), policy.DecodeOptions{})
	require.NoError(t, err)
	return res
}

func dumpInput(t *testing.T, path string) string {
	t.Helper()
	res := decodeFile(t, path)
	set := policy.NewSet()
	_, err := set.UpsertResult(res)
	require.NoError(t, err)
	require.NoError(t, set.Validate())

	var b strings.Builder
	fmt.Fprintf(&b, "# objects\n")
	for i, o := range res.Objects {
		fmt.Fprintf(&b, "%s %s @ %s\n", policy.KindOf(o), id(o.GetNamespace(), o.GetName()), res.Origins[i].Position)
	}
	fmt.Fprintf(&b, "\n# warnings\n")
	for _, w := range res.Warnings {
		fmt.Fprintf(&b, "%s\n", w)
	}
	fmt.Fprintf(&b, "\n# tiers (evaluation order)\n")
	for _, tr := range set.Tiers() {
		fmt.Fprintf(&b, "%s order=%s end=%s", tr.Name, order(tr.Order), tr.DefaultAction)
		if tr.Implicit {
			b.WriteString(" implicit")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n# policies (evaluation order)\n")
	for _, p := range set.Policies() {
		dumpPolicy(&b, p)
	}
	fmt.Fprintf(&b, "\n# staged policies\n")
	for _, p := range set.StagedPolicies() {
		dumpPolicy(&b, p)
	}
	fmt.Fprintf(&b, "\n# endpoints\n")
	for _, ep := range set.Endpoints() {
		fmt.Fprintf(&b, "%s %s node=%s", ep.Kind, ep.Key(), ep.Node)
		if ep.InterfaceName != "" {
			fmt.Fprintf(&b, " iface=%s", ep.InterfaceName)
		}
		fmt.Fprintf(&b, " ips=%v", ep.IPs)
		for _, p := range ep.Ports {
			fmt.Fprintf(&b, " port=%s/%d/%d", p.Name, p.Protocol, p.Port)
		}
		if len(ep.Profiles) > 0 {
			fmt.Fprintf(&b, " profiles=%v", ep.Profiles)
		}
		fmt.Fprintf(&b, " parents=%v\n  labels: %s\n", policy.EndpointParents(ep), labels(set.EndpointLabels(ep)))
	}
	fmt.Fprintf(&b, "\n# network sets\n")
	for _, ns := range set.NetworkSets() {
		fmt.Fprintf(&b, "%s %s nets=%v domains=%v\n  labels: %s\n", ns.Kind, ns.Key(), ns.Nets, ns.AllowedEgressDomains, labels(set.NetworkSetLabels(ns)))
	}
	fmt.Fprintf(&b, "\n# felix configuration\n")
	for _, fc := range set.FelixConfigurations() {
		fmt.Fprintf(&b, "%s: %s\n", fc.Name, felix(fc.Spec))
	}
	return b.String()
}

func dumpPolicy(b *strings.Builder, p *policy.Policy) {
	fmt.Fprintf(b, "%s %s tier=%s order=%s types=%v", p.Kind, p.Key(), p.Tier, order(p.Order), p.Types)
	if p.Staged {
		fmt.Fprintf(b, " staged=%s", p.StagedAction)
	}
	if p.DoNotTrack || p.PreDNAT || !p.ApplyOnForward {
		fmt.Fprintf(b, " doNotTrack=%t preDNAT=%t applyOnForward=%t", p.DoNotTrack, p.PreDNAT, p.ApplyOnForward)
	}
	fmt.Fprintf(b, " @ %s\n  selector: %s\n", p.Position, p.Selector)
	for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
		for _, r := range p.Rules(d) {
			fmt.Fprintf(b, "  %s %s @ %s: %s\n", d, r.Field, r.Position, rule(&r))
		}
	}
}

func rule(r *policy.RuleInfo) string {
	parts := []string{string(r.Action)}
	if r.Protocol != 0 {
		parts = append(parts, fmt.Sprintf("proto=%d", r.Protocol))
	}
	if r.NotProtocol != 0 {
		parts = append(parts, fmt.Sprintf("!proto=%d", r.NotProtocol))
	}
	if r.IPVersion != 0 {
		parts = append(parts, fmt.Sprintf("ipv%d", r.IPVersion))
	}
	if r.ICMP != nil {
		parts = append(parts, "icmp="+icmp(r.ICMP))
	}
	if r.NotICMP != nil {
		parts = append(parts, "!icmp="+icmp(r.NotICMP))
	}
	if m := match(&r.Source); m != "" {
		parts = append(parts, "src{"+m+"}")
	}
	if m := match(&r.Destination); m != "" {
		parts = append(parts, "dst{"+m+"}")
	}
	if r.L7() {
		parts = append(parts, fmt.Sprintf("http(not enforced at L3/L4)=%+v", *r.HTTP))
	}
	if len(r.Annotations) > 0 {
		parts = append(parts, "annotations="+labels(r.Annotations))
	}
	return strings.Join(parts, " ")
}

func icmp(m *policy.ICMPMatch) string {
	if m.Code == nil {
		return fmt.Sprint(m.Type)
	}
	return fmt.Sprintf("%d/%d", m.Type, *m.Code)
}

func match(m *policy.Match) string {
	var parts []string
	if len(m.Nets) > 0 {
		parts = append(parts, fmt.Sprintf("nets=%v", m.Nets))
	}
	if len(m.NotNets) > 0 {
		parts = append(parts, fmt.Sprintf("!nets=%v", m.NotNets))
	}
	if m.Selector != nil {
		parts = append(parts, "sel="+m.Selector.String())
	}
	if m.NotSelector != nil {
		parts = append(parts, "!sel="+m.NotSelector.String())
	}
	if len(m.Ports) > 0 || len(m.NamedPorts) > 0 {
		parts = append(parts, "ports="+ports(m.Ports, m.NamedPorts))
	}
	if len(m.NotPorts) > 0 || len(m.NotNamedPorts) > 0 {
		parts = append(parts, "!ports="+ports(m.NotPorts, m.NotNamedPorts))
	}
	if len(m.Domains) > 0 {
		parts = append(parts, fmt.Sprintf("domains=%v", m.Domains))
	}
	if m.Service != nil {
		parts = append(parts, fmt.Sprintf("service=%s/%s", m.Service.Namespace, m.Service.Name))
	}
	return strings.Join(parts, " ")
}

func ports(rs []policy.PortRange, names []string) string {
	var out []string
	for _, r := range rs {
		if r.Min == r.Max {
			out = append(out, fmt.Sprint(r.Min))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", r.Min, r.Max))
		}
	}
	return strings.Join(append(out, names...), ",")
}

func order(o *float64) string {
	if o == nil {
		return "unset"
	}
	return fmt.Sprint(*o)
}

func id(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

func labels[M ~map[string]string](m M) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// felix prints the fields that are set.
func felix(s policy.FelixConfigurationSpec) string {
	v := reflect.ValueOf(s)
	var parts []string
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.IsZero() {
			continue
		}
		for f.Kind() == reflect.Pointer {
			f = f.Elem()
		}
		parts = append(parts, fmt.Sprintf("%s=%v", v.Type().Field(i).Name, f.Interface()))
	}
	return strings.Join(parts, " ")
}

// TestRoundTrip checks decode → Encode → decode gives the same objects, and
// that encoding again gives the same bytes, for every golden input.
func TestRoundTrip(t *testing.T) {
	for _, name := range goldenInputs {
		t.Run(name, func(t *testing.T) {
			first := decodeFile(t, filepath.Join("testdata", name))
			var enc bytes.Buffer
			require.NoError(t, policy.Encode(&enc, first.Objects))
			second, err := policy.Decode(bytes.NewReader(enc.Bytes()), "encoded")
			require.NoError(t, err, enc.String())
			require.Equal(t, first.Objects, second)
			var again bytes.Buffer
			require.NoError(t, policy.Encode(&again, second))
			require.Equal(t, enc.String(), again.String())
		})
	}
}

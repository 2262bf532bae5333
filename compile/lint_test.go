package compile_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/policy"
)

// lintPodYAML is a pod with one address and declared ports ("80/TCP/http").
func lintPodYAML(ns, name, ip, labels string, ports ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\n  labels: {%s}\nspec:\n  containers:\n  - name: c\n    image: x\n", name, ns, labels)
	if len(ports) > 0 {
		b.WriteString("    ports:\n")
		for _, p := range ports {
			f := strings.Split(p, "/")
			fmt.Fprintf(&b, "    - {containerPort: %s, protocol: %s", f[0], f[1])
			if len(f) > 2 {
				fmt.Fprintf(&b, ", name: %s", f[2])
			}
			b.WriteString("}\n")
		}
	}
	fmt.Fprintf(&b, "status:\n  podIP: %s\n  podIPs: [{ip: %s}]\n", ip, ip)
	return b.String()
}

// lintPods is a small cluster used by most cases: three pods in "app".
var lintPods = []string{
	lintPodYAML("app", "web", "10.0.0.1", "app: web", "80/TCP/http"),
	lintPodYAML("app", "api", "10.0.0.2", "app: api", "8080/TCP/http"),
	lintPodYAML("app", "db", "10.0.0.3", "app: db", "5432/TCP"),
}

func lintJudge(rs *compile.Ruleset) func(compile.Flow) bool {
	idx := model.NewIndex(rs)
	return func(f compile.Flow) bool {
		return idx.Allowed(model.Packet{Src: f.Src, Dst: f.Dst, Protocol: f.Protocol, SrcPort: 40000, DstPort: f.DstPort})
	}
}

// lintDocs decodes the documents (as test.yaml), compiles them for the
// virtual node and lints them with the model as judge.
func lintDocs(t *testing.T, docs ...string) []compile.Finding {
	t.Helper()
	set := lintSet(t, docs...)
	rs, err := compile.New(set, "").Compile()
	require.NoError(t, err)
	return compile.Lint(set, rs, compile.LintOptions{Judge: lintJudge})
}

func lintSet(t *testing.T, docs ...string) *policy.Set {
	t.Helper()
	res, err := policy.DecodeWithOptions(strings.NewReader(strings.Join(docs, "\n---\n")), "test.yaml", policy.DecodeOptions{})
	require.NoError(t, err)
	set := policy.NewSet()
	_, err = set.UpsertResult(res)
	require.NoError(t, err)
	return set
}

// lintSummary lists findings as "severity code object field".
func lintSummary(fs []compile.Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", f.Severity, f.Code, f.Object, f.Field)))
	}
	return out
}

// lintGNP is a GlobalNetworkPolicy named p over all() with the given ingress
// rules (YAML list items, indented by two spaces).
func lintGNP(ingress string) string {
	return "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: all()\n  types: [Ingress]\n  ingress:\n" + ingress
}

// lintEgressGNP is lintGNP for egress rules.
func lintEgressGNP(egress string) string {
	return "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: all()\n  types: [Egress]\n  egress:\n" + egress
}

func TestLintShadowedRules(t *testing.T) {
	const obj = "GlobalNetworkPolicy p"
	tests := []struct {
		name  string
		rules string
		want  []string
	}{
		{"allow all TCP shadows a TCP deny", `
  - {action: Allow, protocol: TCP}
  - {action: Deny, protocol: TCP, destination: {ports: [80]}}`,
			[]string{"warning shadowed-rule " + obj + " spec.ingress[1]"}},
		{"port range covers a port: redundant", `
  - {action: Allow, protocol: TCP, destination: {ports: ["80:90"]}}
  - {action: Allow, protocol: TCP, destination: {ports: [85]}}`,
			[]string{"info redundant-rule " + obj + " spec.ingress[1]"}},
		{"merged ranges cover a range", `
  - {action: Allow, protocol: TCP, destination: {ports: ["80:85", "86:90"]}}
  - {action: Allow, protocol: TCP, destination: {ports: ["82:88"]}}`,
			[]string{"info redundant-rule " + obj + " spec.ingress[1]"}},
		{"narrower earlier rule does not shadow", `
  - {action: Allow, protocol: TCP, destination: {ports: [80]}}
  - {action: Deny, protocol: TCP}`, nil},
		{"different selectors are not compared", `
  - {action: Allow, source: {selector: app == 'web'}}
  - {action: Deny, source: {selector: app == 'web' && tier == 'x'}}`, nil},
		{"equal selectors are", `
  - {action: Allow, source: {selector: app == 'web'}}
  - {action: Deny, protocol: UDP, source: {selector: app == 'web'}}`,
			[]string{"warning shadowed-rule " + obj + " spec.ingress[1]"}},
		{"contained nets", `
  - {action: Deny, source: {nets: [10.0.0.0/8]}}
  - {action: Allow, source: {nets: [10.1.0.0/16, 10.2.0.0/16]}}`,
			[]string{"warning shadowed-rule " + obj + " spec.ingress[1]"}},
		{"nets not all contained", `
  - {action: Deny, source: {nets: [10.0.0.0/8]}}
  - {action: Allow, source: {nets: [10.1.0.0/16, 192.168.0.0/16]}}`, nil},
		{"a Log rule never shadows", `
  - {action: Log}
  - {action: Allow}`, nil},
		{"Pass is final", `
  - {action: Pass}
  - {action: Log, protocol: TCP}`,
			[]string{"warning shadowed-rule " + obj + " spec.ingress[1]"}},
		{"notNets disjoint from the later nets", `
  - {action: Allow, source: {notNets: [10.1.0.0/16]}}
  - {action: Deny, source: {nets: [192.168.0.0/16]}}`,
			[]string{"warning shadowed-rule " + obj + " spec.ingress[1]"}},
		{"notNets overlapping the later nets", `
  - {action: Allow, source: {notNets: [10.1.0.0/16]}}
  - {action: Deny, source: {nets: [10.0.0.0/8]}}`, nil},
		{"ipVersion 4 does not cover IPv6 nets", `
  - {action: Allow, ipVersion: 4}
  - {action: Deny, source: {nets: ["fd00::/64"]}}`, nil},
		{"no ipVersion covers ipVersion 6", `
  - {action: Allow, protocol: TCP}
  - {action: Allow, ipVersion: 6, protocol: TCP}`,
			[]string{"info redundant-rule " + obj + " spec.ingress[1]"}},
		{"IPv4 notNets make a rule IPv4-only", `
  - {action: Allow, source: {notNets: [10.0.0.0/8]}}
  - {action: Deny, ipVersion: 6}`, nil},
		{"different protocols", `
  - {action: Allow, protocol: TCP}
  - {action: Deny, protocol: UDP}`, nil},
		{"notProtocol excludes something else", `
  - {action: Allow, notProtocol: UDP}
  - {action: Deny, protocol: TCP}`,
			[]string{"warning shadowed-rule " + obj + " spec.ingress[1]"}},
		{"notProtocol excludes the later protocol", `
  - {action: Allow, notProtocol: TCP}
  - {action: Deny, protocol: TCP}`, nil},
		{"named port with the same protocol", `
  - {action: Allow, protocol: TCP, destination: {ports: [http, 443]}}
  - {action: Allow, protocol: TCP, destination: {ports: [http]}}`,
			[]string{"info redundant-rule " + obj + " spec.ingress[1]"}},
		{"named port vs number", `
  - {action: Allow, protocol: TCP, destination: {ports: [http]}}
  - {action: Deny, protocol: TCP, destination: {ports: [80]}}`, nil},
		{"notPorts disjoint from the later ports", `
  - {action: Deny, protocol: TCP, destination: {notPorts: [22]}}
  - {action: Allow, protocol: TCP, destination: {ports: [80, 443]}}`,
			[]string{"warning shadowed-rule " + obj + " spec.ingress[1]"}},
		{"notPorts the later rule does not exclude", `
  - {action: Deny, protocol: TCP, destination: {notPorts: [22]}}
  - {action: Allow, protocol: TCP}`, nil},
		{"notPorts the later rule excludes too", `
  - {action: Deny, protocol: TCP, destination: {notPorts: [22]}}
  - {action: Allow, protocol: TCP, destination: {notPorts: ["20:23"]}}`,
			[]string{"warning shadowed-rule " + obj + " spec.ingress[1]"}},
		{"ICMP type covers type and code", `
  - {action: Allow, protocol: ICMP, icmp: {type: 8}}
  - {action: Deny, protocol: ICMP, icmp: {type: 8, code: 0}}`,
			[]string{"warning shadowed-rule " + obj + " spec.ingress[1]"}},
		{"domains subset", "", nil},
		{"only the first shadowing rule is reported", `
  - {action: Allow}
  - {action: Deny}
  - {action: Deny, protocol: TCP}`,
			[]string{"warning shadowed-rule " + obj + " spec.ingress[1]", "warning shadowed-rule " + obj + " spec.ingress[2]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := lintGNP(tt.rules)
			if tt.rules == "" {
				// Domains are egress only.
				doc = lintEgressGNP(`
  - {action: Deny, destination: {domains: ["*.a.com", "b.com"]}}
  - {action: Deny, protocol: TCP, destination: {domains: [b.com]}}`)
				tt.want = []string{"info redundant-rule " + obj + " spec.egress[1]"}
			}
			got := lintDocs(t, append(slices.Clone(lintPods), doc)...)
			var kept []compile.Finding
			for _, f := range got {
				if f.Code == compile.CodeShadowedRule || f.Code == compile.CodeRedundantRule {
					kept = append(kept, f)
				}
			}
			want := tt.want
			if want == nil {
				want = []string{}
			}
			assert.Equal(t, want, lintSummary(kept), "all findings: %v", got)
		})
	}
}

func TestLintFindings(t *testing.T) {
	tests := []struct {
		name string
		docs []string
		want []string
	}{
		{
			name: "a policy in a tier that does not exist",
			docs: []string{lintPods[0], `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  tier: security
  selector: all()
  ingress: [{action: Allow}]`},
			want: []string{"error unknown-tier GlobalNetworkPolicy p spec.tier"},
		},
		{
			name: "host endpoint knobs Calyx reads but does not render",
			docs: []string{lintPods[0], `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  selector: all()
  doNotTrack: true
  applyOnForward: true
  ingress: [{action: Allow}]`, `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: nodeport}
spec:
  selector: all()
  preDNAT: true
  applyOnForward: true
  ingress: [{action: Allow, protocol: UDP}]`, `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: plain, namespace: app}
spec:
  selector: all()
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]`},
			want: []string{
				"warning host-knob-not-rendered GlobalNetworkPolicy untracked spec.doNotTrack",
				"warning host-knob-not-rendered GlobalNetworkPolicy untracked spec.applyOnForward",
				"warning host-knob-not-rendered GlobalNetworkPolicy nodeport spec.preDNAT",
				"warning host-knob-not-rendered GlobalNetworkPolicy nodeport spec.applyOnForward",
			},
		},
		{
			name: "a policy that selects nothing and a rule selector that matches nothing",
			docs: []string{lintPods[0], `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: app}
spec:
  selector: app == 'nothing'
  ingress:
  - action: Allow
    source: {selector: app == 'ghost'}
  - action: Allow
    source: {selector: app == 'web'}`},
			want: []string{
				"warning policy-selects-nothing NetworkPolicy app/p spec.selector",
				"warning selector-matches-nothing NetworkPolicy app/p spec.ingress[0].source",
			},
		},
		{
			name: "named ports no picked endpoint declares",
			docs: append(slices.Clone(lintPods), lintGNP(`
  - action: Allow
    protocol: TCP
    destination: {ports: [http]}
  - action: Allow
    protocol: TCP
    source: {selector: app == 'db'}
    destination: {selector: app == 'db', ports: [http, postgres]}
  - action: Allow
    protocol: UDP
    destination: {ports: [http]}`)),
			want: []string{
				"warning named-port-matches-nothing GlobalNetworkPolicy p spec.ingress[1].destination.ports",
				"warning named-port-matches-nothing GlobalNetworkPolicy p spec.ingress[1].destination.ports",
				"warning named-port-matches-nothing GlobalNetworkPolicy p spec.ingress[2].destination.ports",
			},
		},
		{
			name: "a selector matching a network set only is fine",
			docs: []string{lintPods[0], `apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {role: partner}}
spec: {nets: [198.51.100.0/24]}`, `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  selector: all()
  ingress:
  - action: Allow
    source: {selector: role == 'partner'}`},
			want: []string{},
		},
		{
			name: "overlapping nets and a rule that never matches",
			docs: []string{lintPods[0], lintGNP(`
  - action: Allow
    source: {nets: [10.0.0.0/8, 10.1.0.0/16, 10.0.0.0/8]}
  - action: Allow
    source: {nets: [10.1.0.0/16], notNets: [10.0.0.0/8]}`)},
			want: []string{
				"info overlapping-nets GlobalNetworkPolicy p spec.ingress[0].source.nets[1]",
				"info overlapping-nets GlobalNetworkPolicy p spec.ingress[0].source.nets[2]",
				"warning rule-never-matches GlobalNetworkPolicy p spec.ingress[1]",
			},
		},
		{
			name: "http, services and domains",
			docs: []string{lintPods[0], strings.Replace(lintGNP(`
  - action: Allow
    http: {methods: [GET]}`), "name: p", "name: h", 1), lintEgressGNP(`
  - action: Allow
    destination:
      services: {name: kube-dns, namespace: kube-system}
  - action: Allow
    destination:
      domains: [api.example.com]`)},
			want: []string{
				"warning http-not-enforced GlobalNetworkPolicy h spec.ingress[0].http",
				"warning services-not-enforced GlobalNetworkPolicy p spec.egress[0].destination.services",
				"info domains-need-dns GlobalNetworkPolicy p spec.egress[1].destination.domains",
			},
		},
		{
			name: "Kubernetes ipBlock excepts that overlap",
			docs: []string{lintPods[0], `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: k, namespace: app}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.1.2.0/24]}`},
			want: []string{"info overlapping-nets KubernetesNetworkPolicy app/k spec.ingress[0].from[0].ipBlock.except[1]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lintDocs(t, tt.docs...)
			assert.Equal(t, tt.want, lintSummary(got), "findings: %v", got)
		})
	}
}

func TestLintImplicitDeny(t *testing.T) {
	denyOnly := `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-ssh}
spec:
  selector: all()
  types: [Ingress]
  ingress:
  - {action: Log}
  - {action: Deny, protocol: TCP, destination: {ports: [22]}}`
	allowWeb := `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: app}
spec:
  selector: app == 'web'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]`
	passTier := `apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: watch}
spec: {order: 10, defaultAction: Pass}`

	tests := []struct {
		name    string
		docs    []string
		want    []string
		message string
	}{
		{"alone it denies everything else for every pod", append(slices.Clone(lintPods), denyOnly),
			[]string{"warning implicit-end-of-tier-deny GlobalNetworkPolicy deny-ssh spec.ingress"},
			"3 endpoints (app/api, app/db, app/web)"},
		{"only the lintPods no deliberate policy covers are listed", append(slices.Clone(lintPods), denyOnly, allowWeb),
			[]string{"warning implicit-end-of-tier-deny GlobalNetworkPolicy deny-ssh spec.ingress"},
			"2 endpoints (app/api, app/db)"},
		{"without endpoints it is judged on its rules", []string{denyOnly},
			[]string{"warning implicit-end-of-tier-deny GlobalNetworkPolicy deny-ssh spec.ingress"},
			"every endpoint it selects"},
		{"a tier that ends in Pass", append(slices.Clone(lintPods), passTier, strings.Replace(denyOnly, "spec:\n", "spec:\n  tier: watch\n", 1)),
			[]string{}, ""},
		{"an unconditional Deny is deliberate", append(slices.Clone(lintPods), lintGNP("  - {action: Log}\n  - {action: Deny}\n")),
			[]string{}, ""},
		{"no rules at all is the deny-all idiom", append(slices.Clone(lintPods), strings.Replace(lintGNP(""), "ingress:\n", "ingress: []\n", 1)),
			[]string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lintDocs(t, tt.docs...)
			var kept []compile.Finding
			for _, f := range got {
				if f.Code == compile.CodeImplicitDeny {
					kept = append(kept, f)
				}
			}
			assert.Equal(t, tt.want, lintSummary(kept), "findings: %v", got)
			if tt.message != "" && len(kept) == 1 {
				assert.Contains(t, kept[0].Message, tt.message)
			}
		})
	}
}

// TestLintSeedPolicies: the field guide's deny-mining-pools is the
// canonical surprise, and the lint points at its line.
func TestLintSeedPolicies(t *testing.T) {
	// The policy package keeps the seed as its test data.
	res, err := policy.LoadPathsWithOptions(context.Background(), policy.DecodeOptions{}, "../policy/testdata/seed-policies.yaml")
	require.NoError(t, err)
	set := policy.NewSet()
	_, err = set.UpsertResult(res)
	require.NoError(t, err)
	rs, err := compile.New(set, "").Compile()
	require.NoError(t, err)
	got := compile.Lint(set, rs, compile.LintOptions{})
	require.Equal(t, []string{
		"warning implicit-end-of-tier-deny GlobalNetworkPolicy deny-mining-pools spec.egress",
		"info domains-need-dns GlobalNetworkPolicy deny-mining-pools spec.egress[0].destination.domains",
	}, lintSummary(got))
	assert.Equal(t, 50, got[0].Position.Line, "the finding points at the egress field")
	assert.Contains(t, got[0].Message, `tier "default"`)
}

func TestLintStaged(t *testing.T) {
	allowAPI := `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: api, namespace: app}
spec:
  selector: app == 'api'
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [8080]}}]`
	stagedSame := strings.NewReplacer("kind: NetworkPolicy", "kind: StagedNetworkPolicy").Replace(allowAPI)
	stagedWider := strings.NewReplacer("kind: NetworkPolicy", "kind: StagedNetworkPolicy",
		"source: {selector: app == 'web'}, ", "").Replace(allowAPI)
	stagedDelete := "apiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata: {name: api, namespace: app}\nspec:\n  stagedAction: Delete\n"
	stagedDeleteMissing := strings.Replace(stagedDelete, "name: api,", "name: nope,", 1)
	stagedK8s := `apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: isolate-db, namespace: app}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]`

	tests := []struct {
		name    string
		docs    []string
		want    []string
		message string
	}{
		{"the same policy staged changes nothing", append(slices.Clone(lintPods), allowAPI, stagedSame), []string{}, ""},
		{"a wider staged policy lets the database in", append(slices.Clone(lintPods), allowAPI, stagedWider),
			[]string{"warning staged-changes-verdicts StagedNetworkPolicy app/api"},
			"enforcing it would change the verdict of 1 connection (app/db → app/api 8080/TCP denied→allowed)"},
		{"a staged delete opens the api to everyone", append(slices.Clone(lintPods), allowAPI, stagedDelete),
			[]string{"warning staged-changes-verdicts StagedNetworkPolicy app/api"},
			"deleting NetworkPolicy app/api would change the verdict of 5 connections (app/db → app/api 80/TCP denied→allowed,"},
		{"a staged delete of nothing", append(slices.Clone(lintPods), stagedDeleteMissing),
			[]string{"warning staged-delete-missing StagedNetworkPolicy app/nope spec.stagedAction"}, ""},
		{"a staged Kubernetes policy isolating the database", append(slices.Clone(lintPods), stagedK8s),
			[]string{"warning staged-changes-verdicts StagedKubernetesNetworkPolicy app/isolate-db"},
			"6 connections (app/api → app/db 80/TCP allowed→denied, app/web → app/db 80/TCP allowed→denied, app/api → app/db 5432/TCP allowed→denied, app/web → app/db 5432/TCP allowed→denied, app/api → app/db 8080/TCP allowed→denied, and 1 more)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lintDocs(t, tt.docs...)
			var kept []compile.Finding
			for _, f := range got {
				if strings.HasPrefix(f.Code, "staged-") {
					kept = append(kept, f)
				}
			}
			assert.Equal(t, tt.want, lintSummary(kept), "findings: %v", got)
			if tt.message != "" && len(kept) == 1 {
				assert.Contains(t, kept[0].Message, tt.message)
			}
		})
	}
}

// TestLintStagedNeverChangesEnforcement: the staged check works on a copy;
// the Ruleset and Set it was given still enforce what they did.
func TestLintStagedNeverChangesEnforcement(t *testing.T) {
	staged := "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: deny-all}\nspec:\n  selector: all()\n  types: [Ingress, Egress]\n"
	set := lintSet(t, append(slices.Clone(lintPods), staged)...)
	rs, err := compile.New(set, "").Compile()
	require.NoError(t, err)
	before := rs.String()
	got := compile.Lint(set, rs, compile.LintOptions{Judge: lintJudge})
	require.Equal(t, []string{"warning staged-changes-verdicts StagedGlobalNetworkPolicy deny-all"}, lintSummary(got))
	assert.Equal(t, before, rs.String())
	again, err := compile.New(set, "").Compile()
	require.NoError(t, err)
	assert.Equal(t, before, again.String())
	assert.Len(t, set.Policies(), 0)
}

func TestLintExamplesAreClean(t *testing.T) {
	for _, dir := range []string{"ecommerce", "default-deny", "pci", "tiers"} {
		t.Run(dir, func(t *testing.T) {
			res, err := policy.LoadPathsWithOptions(context.Background(), policy.DecodeOptions{}, "../examples/"+dir)
			require.NoError(t, err)
			set := policy.NewSet()
			_, err = set.UpsertResult(res)
			require.NoError(t, err)
			rs, err := compile.New(set, "").Compile()
			require.NoError(t, err)
			assert.Empty(t, compile.Lint(set, rs, compile.LintOptions{Judge: lintJudge}))
		})
	}
}

func TestLintPositionsAndOrder(t *testing.T) {
	docs := append(slices.Clone(lintPods), lintGNP(`
  - action: Allow
  - action: Deny
    source: {nets: [10.0.0.0/8, 10.1.0.0/16]}`))
	got := lintDocs(t, docs...)
	require.Equal(t, []string{
		"warning shadowed-rule GlobalNetworkPolicy p spec.ingress[1]",
		"info overlapping-nets GlobalNetworkPolicy p spec.ingress[1].source.nets[1]",
	}, lintSummary(got))
	// Each pod is followed by a blank line and "---"; the policy starts
	// after them.
	base := 0
	for _, p := range lintPods {
		base += strings.Count(p, "\n") + 2
	}
	assert.Equal(t, "test.yaml", got[0].Position.Source)
	assert.Equal(t, base+11, got[0].Position.Line, "the shadowed rule's line")
	assert.Equal(t, base+12, got[1].Position.Line, "the net's own line")
	assert.Equal(t, fmt.Sprintf("test.yaml:%d: warning: GlobalNetworkPolicy p: spec.ingress[1]: this Deny rule never takes effect: the earlier Allow rule spec.ingress[0] matches every packet it matches [shadowed-rule]", base+11),
		got[0].String())
	// Same input, same output.
	assert.Equal(t, got, lintDocs(t, docs...))
}

func ExampleLint() {
	res, err := policy.DecodeWithOptions(strings.NewReader(`
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-mining-pools
spec:
  selector: all()
  types: [Egress]
  egress:
  - action: Deny
    protocol: TCP
  - action: Deny
    protocol: TCP
    destination:
      ports: [3333]
`), "mining.yaml", policy.DecodeOptions{})
	if err != nil {
		panic(err)
	}
	set := policy.NewSet()
	if _, err := set.UpsertResult(res); err != nil {
		panic(err)
	}
	rs, err := compile.New(set, "").Compile()
	if err != nil {
		panic(err)
	}
	for _, f := range compile.Lint(set, rs, compile.LintOptions{}) {
		fmt.Println(f.Position, f.Severity, f.Code, f.Field)
	}
	// Output:
	// mining.yaml:9 warning implicit-end-of-tier-deny spec.egress
	// mining.yaml:12 info redundant-rule spec.egress[1]
}

// genLintRule draws a valid Calico rule from a small vocabulary, so that
// earlier rules often cover later ones.
func genLintRule(t *rapid.T, label string) policy.Rule {
	r := policy.Rule{Action: rapid.SampledFrom([]policy.Action{policy.Allow, policy.Deny, policy.Pass, policy.Log}).Draw(t, label+".action")}
	switch rapid.IntRange(0, 3).Draw(t, label+".protocol") {
	case 1, 2:
		p := policy.ProtocolFromName("TCP")
		r.Protocol = &p
	case 3:
		p := policy.ProtocolFromName("UDP")
		r.Protocol = &p
	default:
		if rapid.IntRange(0, 4).Draw(t, label+".notProtocol") == 0 {
			p := policy.ProtocolFromName("UDP")
			r.NotProtocol = &p
		}
	}
	nets := []string{"10.0.0.0/8", "10.0.0.0/30", "10.0.0.2/32", "192.168.0.0/16"}
	// Now and then an IPv6 rule: it must never be taken to cover an IPv4
	// one.
	v := 4
	if rapid.IntRange(0, 5).Draw(t, label+".family") == 0 {
		nets = []string{"fd00::/48", "fd00::/64"}
		v = 6
	}
	if rapid.IntRange(0, 5).Draw(t, label+".ipVersion") == 0 {
		r.IPVersion = &v
	}
	subset := func(name string, from []string) []string {
		var out []string
		for _, n := range from {
			if rapid.IntRange(0, 3).Draw(t, name) == 0 {
				out = append(out, n)
			}
		}
		return out
	}
	r.Source.Nets = subset(label+".nets", nets)
	r.Source.NotNets = subset(label+".notNets", nets)
	r.Source.Selector = rapid.SampledFrom([]string{"", "", "app == 'web'", "app == 'api'", "has(app)"}).Draw(t, label+".selector")
	if r.Protocol != nil {
		ports := []policy.Port{policy.SinglePort(80), policy.SinglePort(8080), policy.PortFromRange(80, 90), policy.SinglePort(5432), policy.NamedPort("http")}
		pick := func(name string) []policy.Port {
			var out []policy.Port
			for _, p := range ports {
				if rapid.IntRange(0, 3).Draw(t, name) == 0 {
					out = append(out, p)
				}
			}
			return out
		}
		r.Destination.Ports = pick(label + ".ports")
		r.Destination.NotPorts = pick(label + ".notPorts")
	}
	return r
}

// TestLintShadowingIsSound: deleting a rule Lint calls shadowed,
// redundant or never matching (within its policy or by an earlier policy
// of the tier) never changes a verdict, for any packet of a small but
// exhaustive space.
func TestLintShadowingIsSound(t *testing.T) {
	base := lintSet(t, lintPodYAML("app", "web", "10.0.0.1", "app: web", "80/TCP/http"),
		lintPodYAML("app", "api", "10.0.0.2", "app: api", "8080/TCP/http"),
		lintPodYAML("app", "db", "10.0.0.3", "app: db", "5432/TCP"))
	var srcs, dsts []netip.Addr
	for _, s := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9", "192.168.1.1"} {
		srcs = append(srcs, netip.MustParseAddr(s))
	}
	dsts = srcs[:3]
	verdicts := func(set *policy.Set) []bool {
		rs, err := compile.New(set, "").Compile()
		require.NoError(t, err)
		idx := model.NewIndex(rs)
		var out []bool
		for _, src := range srcs {
			for _, dst := range dsts {
				for _, proto := range []uint8{6, 17, 1} {
					for _, port := range []uint16{80, 85, 5432, 8080} {
						out = append(out, idx.Allowed(model.Packet{Src: src, Dst: dst, Protocol: proto, SrcPort: 40000, DstPort: port}))
					}
				}
			}
		}
		return out
	}
	// Two policies in the default tier: "a" (order 1) takes the first k
	// rules, "b" (order 2) the rest, so a rule can be covered within its
	// policy or by the earlier one.
	type draw struct {
		rules      []policy.Rule
		k          int
		selA, selB string
	}
	withPolicies := func(d draw) *policy.Set {
		set := policy.NewSet()
		for _, o := range base.Objects() {
			_, err := set.Upsert(o)
			require.NoError(t, err)
		}
		for i, part := range [][]policy.Rule{d.rules[:d.k], d.rules[d.k:]} {
			order := float64(i + 1)
			lintGNP := &policy.GlobalNetworkPolicy{Spec: policy.GlobalNetworkPolicySpec{Order: &order,
				Selector: []string{d.selA, d.selB}[i], Types: []policy.PolicyType{policy.PolicyTypeIngress}, Ingress: part}}
			lintGNP.Name = []string{"a", "b"}[i]
			_, err := set.Upsert(lintGNP)
			require.NoError(t, err, "generated rules: %+v", part)
		}
		return set
	}
	found := 0
	selectors := []string{"all()", "all()", "app == 'web'", "has(app)"}
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(2, 5).Draw(rt, "rules")
		d := draw{rules: make([]policy.Rule, n), k: rapid.IntRange(1, n-1).Draw(rt, "k"),
			selA: rapid.SampledFrom(selectors).Draw(rt, "selA"), selB: rapid.SampledFrom(selectors).Draw(rt, "selB")}
		for i := range d.rules {
			d.rules[i] = genLintRule(rt, fmt.Sprintf("rule%d", i))
			// Often a later rule narrows an earlier one, so that covering
			// is common enough to test.
			if i > 0 && rapid.IntRange(0, 2).Draw(rt, fmt.Sprintf("rule%d.narrows", i)) == 0 {
				action := d.rules[i].Action
				d.rules[i] = d.rules[rapid.IntRange(0, i-1).Draw(rt, fmt.Sprintf("rule%d.of", i))]
				d.rules[i].Action = action
				if d.rules[i].Source.Selector == "" && rapid.Bool().Draw(rt, fmt.Sprintf("rule%d.selector", i)) {
					d.rules[i].Source.Selector = "app == 'web'"
				}
			}
		}
		set := withPolicies(d)
		rs, err := compile.New(set, "").Compile()
		require.NoError(rt, err)
		want := verdicts(set)
		for _, f := range compile.Lint(set, rs, compile.LintOptions{}) {
			if f.Code != compile.CodeShadowedRule && f.Code != compile.CodeRedundantRule && f.Code != compile.CodeRuleNeverMatches {
				continue
			}
			found++
			var j int
			_, err := fmt.Sscanf(f.Field, "spec.ingress[%d]", &j)
			require.NoError(rt, err)
			if f.Object == "GlobalNetworkPolicy b" {
				j += d.k
			}
			without := d
			without.rules = slices.Delete(slices.Clone(d.rules), j, j+1)
			if j < d.k {
				without.k--
			}
			if !assert.Equal(rt, want, verdicts(withPolicies(without)), "deleting %s of %s changed a verdict: %s", f.Field, f.Object, f.Message) {
				rt.FailNow()
			}
		}
	})
	assert.Positive(t, found, "the generator never produced a shadowed rule: the property is vacuous")
}

func TestLintShadowedByEarlierPolicy(t *testing.T) {
	denyAll := func(order, sel string) string {
		return "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-all}\nspec:\n" + order +
			"  selector: " + sel + "\n  types: [Ingress]\n  ingress: [{action: Deny}]\n"
	}
	allowWeb := func(order string) string {
		return "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web, namespace: app}\nspec:\n" + order +
			"  selector: app == 'web'\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]\n"
	}
	tests := []struct {
		name    string
		docs    []string
		want    []string
		message string
	}{
		{"an allow without order after an ordered deny-all", append(slices.Clone(lintPods), denyAll("  order: 10\n", "all()"), allowWeb("")),
			[]string{"warning shadowed-rule NetworkPolicy app/web spec.ingress[0]"},
			`GlobalNetworkPolicy deny-all comes earlier in tier "default", applies to every endpoint this policy does (1 endpoint), and its Deny rule spec.ingress[0] matches every packet this rule matches`},
		{"the allow ordered first", append(slices.Clone(lintPods), denyAll("  order: 10\n", "all()"), allowWeb("  order: 5\n")), []string{}, ""},
		{"a deny-all that misses some of the endpoints", append(slices.Clone(lintPods), denyAll("  order: 10\n", "app == 'api'"), allowWeb("")), []string{}, ""},
		{"policies of other tiers are not compared", append(slices.Clone(lintPods),
			"apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: sec}\nspec: {order: 10}\n",
			strings.Replace(denyAll("  order: 10\n", "all()"), "spec:\n", "spec:\n  tier: sec\n", 1), allowWeb("")), []string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lintDocs(t, tt.docs...)
			var kept []compile.Finding
			for _, f := range got {
				if f.Code == compile.CodeShadowedRule || f.Code == compile.CodeRedundantRule {
					kept = append(kept, f)
				}
			}
			assert.Equal(t, tt.want, lintSummary(kept), "findings: %v", got)
			if tt.message != "" && len(kept) == 1 {
				assert.Contains(t, kept[0].Message, tt.message)
			}
		})
	}
}

// BenchmarkLint lints the figures' cluster (10,000 pods, 2,000 namespaced
// policies and a security tier) compiled for the virtual node.
func BenchmarkLint(b *testing.B) {
	set := scaleSet(b)
	rs, err := compile.New(set, "").Compile()
	require.NoError(b, err)
	b.ResetTimer()
	var n int
	for b.Loop() {
		n = len(compile.Lint(set, rs, compile.LintOptions{}))
	}
	b.ReportMetric(float64(n), "findings")
}

// TestLintNodeRuleset: with a node's Ruleset (here a node with no local
// endpoint) the selector checks still judge the whole input.
func TestLintNodeRuleset(t *testing.T) {
	set := lintSet(t, append(slices.Clone(lintPods), `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: ghost, namespace: app}
spec:
  selector: app == 'ghost'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: app}
spec:
  selector: app == 'web'
  ingress: [{action: Allow, source: {selector: app == 'nobody'}}]`)...)
	for _, node := range []string{"", "node-without-pods"} {
		t.Run("node="+node, func(t *testing.T) {
			rs, err := compile.New(set, node).Compile()
			require.NoError(t, err)
			assert.Equal(t, []string{
				"warning policy-selects-nothing NetworkPolicy app/ghost spec.selector",
				"warning selector-matches-nothing NetworkPolicy app/web spec.ingress[0].source",
			}, lintSummary(compile.Lint(set, rs, compile.LintOptions{})))
		})
	}
}

// FuzzLint: for any input the policy package accepts, Lint does not panic,
// gives the same findings twice, and every finding is well formed.
func FuzzLint(f *testing.F) {
	for _, p := range []string{"../policy/testdata/seed-policies.yaml", "../examples/ecommerce/policies.yaml",
		"../examples/tiers/policies.yaml", "../examples/pci/policies.yaml", "../examples/default-deny/policies.yaml"} {
		b, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(string(b))
	}
	f.Add(strings.Join(append(slices.Clone(lintPods), lintGNP("  - {action: Allow, protocol: TCP}\n  - {action: Deny, protocol: TCP, destination: {ports: [80]}}\n")), "\n---\n"))
	f.Fuzz(func(t *testing.T, doc string) {
		res, err := policy.DecodeWithOptions(strings.NewReader(doc), "fuzz.yaml", policy.DecodeOptions{})
		if err != nil {
			return
		}
		set := policy.NewSet()
		if _, err := set.UpsertResult(res); err != nil {
			return
		}
		rs, err := compile.New(set, "").Compile()
		if err != nil {
			return
		}
		got := compile.Lint(set, rs, compile.LintOptions{Judge: lintJudge})
		require.Equal(t, got, compile.Lint(set, rs, compile.LintOptions{Judge: lintJudge}))
		for _, fd := range got {
			require.NotEmpty(t, fd.Code)
			require.NotEmpty(t, fd.Message)
			require.NotEmpty(t, fd.Object)
			require.Contains(t, []compile.Severity{compile.SeverityInfo, compile.SeverityWarning, compile.SeverityError}, fd.Severity)
		}
	})
}

func TestLintPolicyNeverEvaluated(t *testing.T) {
	tier := func(action string) string {
		return "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: first}\nspec: {order: 10" + action + "}\n"
	}
	first := func(sel, extra string) string {
		return "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: first.allow-http}\nspec:\n  tier: first\n  selector: " + sel +
			"\n  ingress:\n  - {action: Allow, protocol: TCP, destination: {ports: [80]}}\n" + extra
	}
	web := "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web, namespace: app}\nspec:\n  selector: app == 'web'\n  types: [Ingress, Egress]\n  ingress: [{action: Allow, protocol: TCP}]\n  egress: [{action: Allow}]\n"
	tests := []struct {
		name    string
		docs    []string
		want    []string
		message string
	}{
		{"an earlier tier without Pass decides everything", append(slices.Clone(lintPods), tier(""), first("all()", ""), web),
			[]string{"warning policy-never-evaluated NetworkPolicy app/web spec.ingress"},
			`the policy is never evaluated for ingress: on every endpoint it applies to (1 endpoint), tier "first" comes first, has no Pass rule and ends in Deny`},
		{"a Pass rule lets traffic through", append(slices.Clone(lintPods), tier(""), first("all()", "  - {action: Pass}\n"), web), []string{}, ""},
		{"a tier that ends in Pass", append(slices.Clone(lintPods), tier(", defaultAction: Pass"), first("all()", ""), web), []string{}, ""},
		{"the earlier tier misses the endpoint", append(slices.Clone(lintPods), tier(""), first("app == 'api'", ""), web), []string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lintDocs(t, tt.docs...)
			var kept []compile.Finding
			for _, f := range got {
				if f.Code == compile.CodePolicyNeverEvaluated {
					kept = append(kept, f)
				}
			}
			assert.Equal(t, tt.want, lintSummary(kept), "findings: %v", got)
			if tt.message != "" && len(kept) == 1 {
				assert.Contains(t, kept[0].Message, tt.message)
			}
		})
	}
}

package policy_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/policy"
	"github.com/stretchr/testify/require"
)

// markedLine returns the 1-based line of the line holding "#<" in doc.
func markedLine(t *testing.T, doc string) int {
	t.Helper()
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, "#<") {
			return i + 1
		}
	}
	t.Fatalf("no #< marker in %q", doc)
	return 0
}

const npHead = `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-payment
  namespace: shop
spec:
`

const gnpHead = `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: g
spec:
`

const knpHead = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: k
  namespace: shop
spec:
  podSelector: {}
`

// TestValidationErrors checks one error per validation rule: the error
// names the source, the line (of the field, marked #< in the input), the
// kind, namespace/name and the field path, and says what is wrong.
func TestValidationErrors(t *testing.T) {
	cases := []struct {
		name  string
		doc   string
		id    string // Kind "ns/name" as printed
		field string
		msg   string
	}{
		{"unknown field", npHead + "  egres: [] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.egres", `unknown field "egres"`},
		{"unknown nested field", npHead + "  egress:\n  - action: Allow\n    destination:\n      port: [80] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.egress[0].destination.port", `unknown field "port"`},
		{"wrong type", npHead + "  selector: 5 #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.selector", "want a string, got the number 5"},
		{"bool for string", npHead + "  selector: true #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.selector", "quote it"},
		{"port out of range", npHead + "  egress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [80,\n        70000] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.egress[0].destination.ports[1]", "port 70000 out of range 1-65535"},
		{"port range reversed", npHead + "  ingress:\n  - action: Allow\n    protocol: UDP\n    destination:\n      ports: [\"90:80\"] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].destination.ports[0]", "first port after its last"},
		{"ports without protocol", npHead + "  egress:\n  - action: Allow\n    destination:\n      ports: [8080] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.egress[0].destination.ports", "numeric ports need a protocol on the rule: add `protocol: TCP`"},
		{"ports with ICMP", npHead + "  egress:\n  - action: Allow\n    protocol: ICMP\n    source:\n      notPorts: [1] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.egress[0].source.notPorts", "need protocol TCP, UDP or SCTP"},
		{"bad named port", npHead + "  egress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [\"Not_A_Name\"] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.egress[0].destination.ports[0]", "invalid port"},
		{"unknown protocol", npHead + "  egress:\n  - action: Allow\n    protocol: tcp #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.egress[0].protocol", "did you mean TCP?"},
		{"protocol number", npHead + "  egress:\n  - action: Allow\n    notProtocol: 300 #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.egress[0].notProtocol", "protocol 300 out of range 1-255"},
		{"icmp without protocol", npHead + "  ingress:\n  - action: Allow\n    icmp: #<\n      type: 8\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].icmp", "add `protocol: ICMP`"},
		{"icmp code without type", npHead + "  ingress:\n  - action: Allow\n    protocol: ICMP\n    notICMP:\n      code: 1 #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].notICMP.code", "needs an ICMP type"},
		{"icmp type range", npHead + "  ingress:\n  - action: Allow\n    protocol: ICMPv6\n    icmp:\n      type: 255 #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].icmp.type", "ICMP type 255 out of range 0-254"},
		{"ICMP with ipVersion 6", npHead + "  ingress:\n  - action: Allow\n    ipVersion: 6\n    protocol: ICMP #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].protocol", "needs ipVersion 4"},
		{"ipVersion", npHead + "  ingress:\n  - action: Allow\n    ipVersion: 5 #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].ipVersion", "want 4 or 6"},
		{"unknown action", npHead + "  ingress:\n  - action: allow #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].action", `unknown action "allow"`},
		{"missing action", npHead + "  ingress:\n  - protocol: TCP #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].action", "missing action"},
		{"bad CIDR", npHead + "  ingress:\n  - action: Deny\n    source:\n      nets: [10.0.0.0/33] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].source.nets[0]", `invalid CIDR "10.0.0.0/33"`},
		{"ipVersion vs nets", npHead + "  ingress:\n  - action: Deny\n    ipVersion: 4\n    source:\n      notNets: [\"fd00::/8\"] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].source.notNets[0]", "not an IPv4 net"},
		{"bad selector", npHead + "  selector: app == #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.selector", "invalid selector"},
		{"global in selector", npHead + "  egress:\n  - action: Allow\n    destination:\n      selector: global() #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.egress[0].destination.selector", "global() can only be used"},
		{"bad name", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: Bad_Name #<\n", `GlobalNetworkPolicy "Bad_Name"`, "metadata.name", "invalid policy name"},
		{"bad namespace", "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata:\n  name: n\n  namespace: a.b #<\n", `NetworkSet "a.b/n"`, "metadata.namespace", "invalid namespace"},
		{"bad label", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  labels:\n    team: \"has space\" #<\n", `Namespace "n"`, "metadata.labels[team]", "invalid label value"},
		{"unknown type", gnpHead + "  types: [Ingress,\n    Sideways] #<\n", `GlobalNetworkPolicy "g"`, "spec.types[1]", `unknown policy type "Sideways"`},
		{"domains in source", gnpHead + "  egress:\n  - action: Deny\n    source:\n      domains: [a.com] #<\n", `GlobalNetworkPolicy "g"`, "spec.egress[0].source.domains", "only valid in a rule's destination"},
		{"domains on ingress", gnpHead + "  ingress:\n  - action: Deny\n    destination:\n      domains: [a.com] #<\n", `GlobalNetworkPolicy "g"`, "spec.ingress[0].destination.domains", "only valid in egress rules"},
		{"bad domain", gnpHead + "  egress:\n  - action: Deny\n    destination:\n      domains:\n      - ok.com\n      - Bad..com #<\n", `GlobalNetworkPolicy "g"`, "spec.egress[0].destination.domains[1]", "invalid domain"},
		{"domains with nets", gnpHead + "  egress:\n  - action: Deny\n    destination:\n      nets: [10.0.0.0/8]\n      domains: [a.com] #<\n", `GlobalNetworkPolicy "g"`, "spec.egress[0].destination.domains", "cannot be combined"},
		{"http on deny", gnpHead + "  ingress:\n  - action: Deny\n    http: #<\n      methods: [GET]\n", `GlobalNetworkPolicy "g"`, "spec.ingress[0].http", "only valid on Allow rules"},
		{"http path", gnpHead + "  ingress:\n  - action: Allow\n    http:\n      paths:\n      - {exact: /a, prefix: /b} #<\n", `GlobalNetworkPolicy "g"`, "spec.ingress[0].http.paths[0]", "exactly one of exact and prefix"},
		{"services with selector", gnpHead + "  egress:\n  - action: Allow\n    destination:\n      selector: a == 'b'\n      services: #<\n        name: s\n", `GlobalNetworkPolicy "g"`, "spec.egress[0].destination.services", "cannot be combined"},
		{"preDNAT egress", gnpHead + "  preDNAT: true\n  applyOnForward: true\n  egress: #<\n  - action: Allow\n", `GlobalNetworkPolicy "g"`, "spec.egress", "preDNAT policy cannot have egress rules"},
		{"applyOnForward", gnpHead + "  doNotTrack: true\n  applyOnForward: false #<\n", `GlobalNetworkPolicy "g"`, "spec.applyOnForward", "must be true"},
		{"non-finite order", gnpHead + "  order: .nan #<\n", `GlobalNetworkPolicy "g"`, "", "not a finite number"},
		{"order type", gnpHead + "  order: high #<\n", `GlobalNetworkPolicy "g"`, "spec.order", "want a number"},
		{"tier action", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: t\nspec:\n  defaultAction: Allow #<\n", `Tier "t"`, "spec.defaultAction", `unknown default action "Allow"`},
		{"default tier order", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: default\nspec:\n  order: 5 #<\n", `Tier "default"`, "spec.order", "fixed at 1000000"},
		{"staged action", "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata:\n  name: s\nspec:\n  stagedAction: Learn #<\n", `StagedGlobalNetworkPolicy "s"`, "spec.stagedAction", "want Set or Delete"},
		{"k8s endPort", knpHead + "  egress:\n  - ports:\n    - port: 90\n      endPort: 80 #<\n", `NetworkPolicy "shop/k"`, "spec.egress[0].ports[0].endPort", "endPort 80 is before port 90"},
		{"k8s named endPort", knpHead + "  egress:\n  - ports:\n    - port: http\n      endPort: 80 #<\n", `NetworkPolicy "shop/k"`, "spec.egress[0].ports[0].endPort", "cannot be used with a named port"},
		{"k8s except outside", knpHead + "  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.0.0.0/16\n        except: [10.1.0.0/24] #<\n", `NetworkPolicy "shop/k"`, "spec.ingress[0].from[0].ipBlock.except[0]", "not strictly inside the ipBlock cidr"},
		{"k8s ipBlock and selector", knpHead + "  ingress:\n  - from:\n    - ipBlock: #<\n        cidr: 10.0.0.0/16\n      podSelector: {}\n", `NetworkPolicy "shop/k"`, "spec.ingress[0].from[0]", "ipBlock cannot be combined"},
		{"k8s protocol", knpHead + "  ingress:\n  - ports:\n    - protocol: ICMP #<\n", `NetworkPolicy "shop/k"`, "spec.ingress[0].ports[0].protocol", `unknown protocol "ICMP"`},
		{"k8s operator", knpHead + "  ingress:\n  - from:\n    - podSelector:\n        matchExpressions:\n        - key: a\n          operator: Equals #<\n", `NetworkPolicy "shop/k"`, "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator", `unknown operator "Equals"`},
		{"k8s policy type", knpHead + "  policyTypes: [Both] #<\n", `NetworkPolicy "shop/k"`, "spec.policyTypes[0]", `unknown policy type "Both"`},
		{"host endpoint node", "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: h\nspec: #<\n  interfaceName: eth0\n", `HostEndpoint "h"`, "spec.node", "missing node"},
		{"host endpoint IP", "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: h\nspec:\n  node: n\n  expectedIPs: [10.0.0.300] #<\n", `HostEndpoint "h"`, "spec.expectedIPs[0]", "invalid IP address"},
		{"pool CIDR", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.0.0.0 #<\n", `IPPool "p"`, "spec.cidr", "invalid CIDR"},
		{"pool CIDR not masked", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.0.0.1/16 #<\n", `IPPool "p"`, "spec.cidr", "not strictly masked: write 10.0.0.0/16"},
		{"pool link-local", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 169.254.0.0/24 #<\n", `IPPool "p"`, "spec.cidr", "link-local"},
		{"host endpoint interface", "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: h\nspec:\n  node: n\n  interfaceName: a-very-long-interface #<\n", `HostEndpoint "h"`, "spec.interfaceName", "invalid interface name"},
		{"tier name", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: a.b #<\n", `Tier "a.b"`, "metadata.name", "invalid tier name"},
		{"pool block size", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.0.0.0/16\n  blockSize: 8 #<\n", `IPPool "p"`, "spec.blockSize", "out of range 20-32"},
		{"pool modes", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.0.0.0/16\n  vxlanMode: Sometimes #<\n", `IPPool "p"`, "spec.vxlanMode", "want Never, Always or CrossSubnet"},
		{"felix action", "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  defaultEndpointToHostAction: Allow #<\n", `FelixConfiguration "default"`, "spec.defaultEndpointToHostAction", "want Drop, Accept, Return"},
		{"felix failsafe", "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  failsafeInboundHostPorts:\n  - protocol: ICMP #<\n    port: 1\n", `FelixConfiguration "default"`, "spec.failsafeInboundHostPorts[0].protocol", "want TCP, UDP or SCTP"},
		{"pod IP", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nstatus:\n  podIP: nope #<\n", `Pod "default/p"`, "status.podIP", "invalid IP address"},
		{"policy name dots", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: a.b.c #<\n", `GlobalNetworkPolicy "a.b.c"`, "metadata.name", `optionally prefixed by "<tier>."`},
		{"mixed IP versions", npHead + "  ingress:\n  - action: Deny\n    source:\n      nets: [10.0.0.0/8]\n    destination:\n      nets: [\"fd00::/8\"] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].destination.nets", "cannot mix IPv4 and IPv6"},
		{"catch-all notNets", npHead + "  ingress:\n  - action: Deny\n    source:\n      notNets: [0.0.0.0/0] #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].source.notNets[0]", "can never match"},
		{"services in ingress destination", npHead + "  ingress:\n  - action: Allow\n    destination:\n      services: {name: s} #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].destination.services", "not allowed in an ingress rule's destination"},
		{"global services namespace", gnpHead + "  egress:\n  - action: Allow\n    destination:\n      services: #<\n        name: s\n", `GlobalNetworkPolicy "g"`, "spec.egress[0].destination.services.namespace", "must name the service's namespace"},
		{"http on egress", gnpHead + "  egress:\n  - action: Allow\n    http: #<\n      methods: [GET]\n", `GlobalNetworkPolicy "g"`, "spec.egress[0].http", "not allowed in egress rules"},
		{"global() combined", npHead + "  ingress:\n  - action: Allow\n    source:\n      namespaceSelector: global() || a == 'b' #<\n", `NetworkPolicy "shop/allow-payment"`, "spec.ingress[0].source.namespaceSelector", "global() cannot be combined"},
		{"staged delete with fields", "apiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata:\n  name: s\n  namespace: shop\nspec: #<\n  stagedAction: Delete\n  selector: all()\n", `StagedNetworkPolicy "shop/s"`, "spec", "give no spec fields but tier"},
		{"network set namespace label", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: s\n  labels:\n    projectcalico.org/namespace: x #<\n", `GlobalNetworkSet "s"`, "metadata.labels[projectcalico.org/namespace]", "set by Calyx"},
		{"list item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: GlobalNetworkPolicy\n  metadata: {name: g}\n  spec:\n    orderr: 1 #<\n", `GlobalNetworkPolicy "g"`, "items[0].spec.orderr", `unknown field "orderr"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			line := markedLine(t, tc.doc)
			objs, err := policy.Decode(strings.NewReader(tc.doc), "pay.yaml")
			require.Error(t, err)
			require.Empty(t, objs)
			var list policy.ValidationErrors
			require.True(t, errors.As(err, &list), "error is a ValidationErrors")
			var found *policy.ValidationError
			for _, e := range list {
				if e.Field == tc.field && strings.Contains(e.Message, tc.msg) {
					found = e
				}
			}
			require.NotNil(t, found, "no error at %s containing %q in:\n%v", tc.field, tc.msg, err)
			require.Equal(t, "pay.yaml", found.Source)
			require.Equal(t, 0, found.Doc)
			require.Equal(t, line, found.Line, "line of %s", tc.field)
			prefix := fmt.Sprintf("pay.yaml:%d: %s: ", line, tc.id)
			if tc.field != "" {
				prefix += tc.field + ": "
			}
			require.True(t, strings.HasPrefix(found.Error(), prefix), "%q does not start with %q", found.Error(), prefix)
			var first *policy.ValidationError
			require.True(t, errors.As(err, &first), "errors.As finds a *ValidationError")
		})
	}
}

// TestDocumentErrors covers problems with whole documents.
func TestDocumentErrors(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"syntax", "apiVersion: v1\nkind: [\n", "pay.yaml:2: invalid YAML"},
		{"duplicate key", "apiVersion: v1\nkind: Namespace\nkind: Pod\n", "pay.yaml:3: Pod: duplicate key \"kind\""},
		{"not a mapping", "- a\n- b\n", "pay.yaml:1: document is not a mapping"},
		{"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", `pay.yaml:1: kind: missing kind`},
		{"missing apiVersion", "kind: Namespace\nmetadata: {name: x}\n", `pay.yaml:1: apiVersion: missing apiVersion`},
		{"list field", "apiVersion: v1\nkind: List\nitemz: []\n", `pay.yaml:3: itemz: List: unknown field "itemz"`},
		{"second doc", "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: Not-OK}\n", `pay.yaml:7: Namespace "Not-OK": metadata.name: invalid namespace name`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := policy.Decode(strings.NewReader(tc.doc), "pay.yaml")
			require.Error(t, err)
			require.Empty(t, objs)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestAllProblemsReported checks that validation does not stop at the
// first problem, across fields and documents.
func TestAllProblemsReported(t *testing.T) {
	doc := npHead + "  egres: []\n  egress:\n  - action: Nope\n    protocol: TCP\n    destination:\n      ports: [0, 70000]\n---\n" +
		"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: UPPER\n"
	_, err := policy.Decode(strings.NewReader(doc), "multi.yaml")
	var list policy.ValidationErrors
	require.True(t, errors.As(err, &list))
	var fields []string
	for _, e := range list {
		fields = append(fields, e.Field)
	}
	require.Equal(t, []string{
		"spec.egres",
		"spec.egress[0].action",
		"spec.egress[0].destination.ports[0]",
		"spec.egress[0].destination.ports[1]",
		"metadata.name",
	}, fields)
	require.Equal(t, 1, list[len(list)-1].Doc)
}

// TestSetValidateTier checks the set-level rule that a policy's tier
// exists.
func TestSetValidateTier(t *testing.T) {
	doc := gnpHead + "  tier: security #<\n"
	res, err := policy.DecodeWithOptions(strings.NewReader(doc), "tiers.yaml", policy.DecodeOptions{})
	require.NoError(t, err)
	set := policy.NewSet()
	_, err = set.UpsertResult(res)
	require.NoError(t, err)
	err = set.Validate()
	require.Error(t, err)
	require.Equal(t, fmt.Sprintf(`tiers.yaml:%d: GlobalNetworkPolicy "g": spec.tier: tier "security" does not exist: add a Tier named "security"`, markedLine(t, doc)), err.Error())

	tier := &policy.Tier{}
	tier.Name = "security"
	_, err = set.Upsert(tier)
	require.NoError(t, err)
	require.NoError(t, set.Validate())
}

// TestNoObjects checks that input without objects is ErrNoObjects, with
// the skipped kinds still reported as warnings.
func TestNoObjects(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n", "---\n---\n", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"} {
		res, err := policy.DecodeWithOptions(strings.NewReader(in), "empty.yaml", policy.DecodeOptions{})
		require.ErrorIs(t, err, policy.ErrNoObjects, "input %q", in)
		require.Empty(t, res.Objects)
		if strings.Contains(in, "Service") {
			require.Len(t, res.Warnings, 1)
			require.Contains(t, res.Warnings[0].String(), "skipped")
		}
	}
}

// TestNamedPortsWithoutProtocol: named ports alone need no protocol (each
// endpoint's port carries one), as Calico accepts.
func TestNamedPortsWithoutProtocol(t *testing.T) {
	doc := npHead + "  ingress:\n  - action: Allow\n    destination:\n      ports: [http, metrics]\n"
	set := loadSet(t, doc)
	r := onlyPolicy(t, set).Ingress[0]
	require.Zero(t, r.Protocol)
	require.Equal(t, []string{"http", "metrics"}, r.Destination.NamedPorts)
}

// TestSeedWithoutProtocol: the field guide printed allow-payment-access
// without protocol; that must be refused with an error that says what to
// add, at the line of the ports.
func TestSeedWithoutProtocol(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "seed-policies.yaml"))
	require.NoError(t, err)
	asPrinted := strings.Replace(string(b), "    protocol: TCP\n", "", 1)
	_, err = policy.Decode(strings.NewReader(asPrinted), "seed-policies.yaml")
	require.EqualError(t, err, "seed-policies.yaml:20: NetworkPolicy \"default/allow-payment-access\": spec.egress[0].destination.ports: numeric ports need a protocol on the rule: add `protocol: TCP` (or UDP, SCTP)")
}

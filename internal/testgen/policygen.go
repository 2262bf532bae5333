package testgen

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/policy"
	"pgregory.net/rapid"
)

// This file generates clusters the way users write them: YAML documents of
// Namespaces, Pods, Tiers, NetworkSets, Calico NetworkPolicies and
// GlobalNetworkPolicies and Kubernetes NetworkPolicies. The universe of
// labels, ports and nets is small on purpose, so random selectors and rules
// match often and verdicts vary.

var (
	labelKeys   = []string{"app", "tier", "env"}
	labelValues = []string{"a", "b", "c"}
	nsLabelVals = []string{"x", "y"}
	// Pods' named ports: name, protocol, port.
	namedPorts = []struct {
		name, proto string
		port        int
	}{{"http", "TCP", 80}, {"http", "TCP", 8080}, {"db", "TCP", 5432}, {"dns", "UDP", 53}, {"alt", "UDP", 80}}
	ruleNets = []string{"10.0.0.0/16", "10.0.1.0/24", "10.0.2.5/32", "10.1.0.0/16", "fd00::/64", "fd00::1:0/112", "192.0.2.0/24", "0.0.0.0/0"}
	// Addresses outside every pod, for packets to and from the outside.
	externalAddrs = []string{"192.0.2.7", "10.1.2.3", "10.0.2.5", "fd00::99", "2001:db8::1"}
	probePorts    = []uint16{22, 53, 80, 85, 443, 5432, 8080, 9999}
)

// ClusterSpec is a generated cluster: the YAML and what it contains.
type ClusterSpec struct {
	// Docs are the YAML documents, one object each.
	Docs []string
	// Namespaces and Nodes are the names used.
	Namespaces []string
	// PodAddrs are every pod address; External are addresses outside.
	PodAddrs []netip.Addr
	External []netip.Addr
}

// YAML joins the documents into one multi-document stream.
func (c *ClusterSpec) YAML() string { return strings.Join(c.Docs, "---\n") }

// Cluster generates a random cluster of up to maxPods pods and maxPolicies
// policies of every kind.
func Cluster(maxPods, maxPolicies int) *rapid.Generator[*ClusterSpec] {
	return rapid.Custom(func(t *rapid.T) *ClusterSpec {
		g := &clusterGen{t: t}
		return g.cluster(maxPods, maxPolicies)
	})
}

type clusterGen struct {
	t    *rapid.T
	spec ClusterSpec
	tier []string
}

func (g *clusterGen) pick(label string, from []string) string {
	return rapid.SampledFrom(from).Draw(g.t, label)
}

func (g *clusterGen) cluster(maxPods, maxPolicies int) *ClusterSpec {
	nns := rapid.IntRange(1, 3).Draw(g.t, "namespaces")
	for i := range nns {
		ns := fmt.Sprintf("ns%d", i)
		g.spec.Namespaces = append(g.spec.Namespaces, ns)
		g.spec.Docs = append(g.spec.Docs, g.Namespace(ns))
	}
	npods := rapid.IntRange(1, maxPods).Draw(g.t, "pods")
	for i := range npods {
		g.spec.Docs = append(g.spec.Docs, g.Pod(i))
	}
	for _, a := range externalAddrs {
		g.spec.External = append(g.spec.External, netip.MustParseAddr(a))
	}
	g.tier = []string{"default"}
	if rapid.Bool().Draw(g.t, "security tier") {
		action := ""
		if rapid.Bool().Draw(g.t, "security passes") {
			action = "  defaultAction: Pass\n"
		}
		g.tier = append(g.tier, "security")
		g.spec.Docs = append(g.spec.Docs, fmt.Sprintf("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: %d\n%s",
			rapid.SampledFrom([]int{100, 2000000}).Draw(g.t, "security order"), action))
	}
	if rapid.Bool().Draw(g.t, "network set") {
		g.spec.Docs = append(g.spec.Docs, fmt.Sprintf("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: outside\n  labels:\n    %s: %s\nspec:\n  nets: [%s]\n",
			g.pick("gns key", labelKeys), g.pick("gns value", labelValues), g.pick("gns net", []string{"192.0.2.0/24", "10.1.0.0/16", "2001:db8::/32"})))
	}
	if rapid.Bool().Draw(g.t, "namespaced network set") {
		g.spec.Docs = append(g.spec.Docs, fmt.Sprintf("apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata:\n  name: partners\n  namespace: %s\n  labels:\n    %s: %s\nspec:\n  nets: [%s]\n",
			g.pick("ns ns", g.spec.Namespaces), g.pick("ns key", labelKeys), g.pick("ns value", labelValues), g.pick("ns net", []string{"192.0.2.0/25", "10.1.2.0/24"})))
	}
	if rapid.IntRange(0, 2).Draw(g.t, "host endpoint?") == 0 {
		g.spec.Docs = append(g.spec.Docs, g.hostEndpoint()...)
	}
	npol := rapid.IntRange(0, maxPolicies).Draw(g.t, "policies")
	for i := range npol {
		switch rapid.IntRange(0, 2).Draw(g.t, "policy kind") {
		case 0:
			g.spec.Docs = append(g.spec.Docs, g.CalicoPolicy(i, false))
		case 1:
			g.spec.Docs = append(g.spec.Docs, g.CalicoPolicy(i, true))
		default:
			g.spec.Docs = append(g.spec.Docs, g.K8sPolicy(i))
		}
	}
	return &g.spec
}

// hostEndpoint returns a HostEndpoint on node1 with a random profile and,
// sometimes, the Profile object it names.
func (g *clusterGen) hostEndpoint() []string {
	addr := netip.MustParseAddr("10.9.0.1")
	g.spec.PodAddrs = append(g.spec.PodAddrs, addr)
	profile := g.pick("hep profile", []string{"projectcalico-default-allow", "prof1", "missing"})
	doc := fmt.Sprintf("apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: node1-eth0\n  labels:\n    %s: %s\nspec:\n  node: node1\n  interfaceName: eth0\n  expectedIPs: [%s]\n  profiles: [%s]\n",
		g.pick("hep key", labelKeys), g.pick("hep value", labelValues), addr, profile)
	if profile == "prof1" && rapid.Bool().Draw(g.t, "profile object") {
		var b strings.Builder
		fmt.Fprintf(&b, "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: prof1\nspec:\n  labelsToApply:\n    %s: %s\n", g.pick("profile key", labelKeys), g.pick("profile value", labelValues))
		for _, dir := range []string{"ingress", "egress"} {
			if n := rapid.IntRange(0, 2).Draw(g.t, "profile "+dir); n > 0 {
				fmt.Fprintf(&b, "  %s:\n", dir)
				for range n {
					// Profile rules are Allow or Deny.
					r := g.calicoRule(true)
					r = strings.Replace(r, "action: Pass", "action: Allow", 1)
					r = strings.Replace(r, "action: Log", "action: Deny", 1)
					b.WriteString(r)
				}
			}
		}
		return []string{doc, b.String()}
	}
	return []string{doc}
}

// Namespace returns a Namespace document with random labels.
func (g *clusterGen) Namespace(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", name)
	if rapid.Bool().Draw(g.t, "ns labelled") {
		fmt.Fprintf(&b, "  labels:\n    team: %s\n", g.pick("team", nsLabelVals))
	}
	return b.String()
}

// Pod returns the i-th pod: random namespace, labels, named ports and a
// unique IPv4 address, sometimes an IPv6 one too.
func (g *clusterGen) Pod(i int) string {
	var b strings.Builder
	ns := g.pick("pod ns", g.spec.Namespaces)
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod%d\n  namespace: %s\n", i, ns)
	labels := rapid.SliceOfNDistinct(rapid.SampledFrom(labelKeys), 0, 3, rapid.ID[string]).Draw(g.t, "pod label keys")
	if len(labels) > 0 {
		b.WriteString("  labels:\n")
		for _, k := range labels {
			fmt.Fprintf(&b, "    %s: %s\n", k, g.pick("pod label value", labelValues))
		}
	}
	fmt.Fprintf(&b, "spec:\n  nodeName: %s\n", g.pick("node", []string{"node1", "node2"}))
	if rapid.Bool().Draw(g.t, "service account") {
		b.WriteString("  serviceAccountName: sa1\n")
	}
	b.WriteString("  containers:\n  - name: c\n    image: img\n")
	ports := rapid.SliceOfNDistinct(rapid.IntRange(0, len(namedPorts)-1), 0, 3, rapid.ID[int]).Draw(g.t, "pod ports")
	seen := map[string]bool{}
	var lines []string
	for _, pi := range ports {
		np := namedPorts[pi]
		if seen[np.name] {
			continue // a pod's port names are unique
		}
		seen[np.name] = true
		lines = append(lines, fmt.Sprintf("    - {name: %s, containerPort: %d, protocol: %s}\n", np.name, np.port, np.proto))
	}
	if len(lines) > 0 {
		b.WriteString("    ports:\n" + strings.Join(lines, ""))
	}
	v4 := netip.AddrFrom4([4]byte{10, 0, byte(i % 3), byte(10 + i)})
	g.spec.PodAddrs = append(g.spec.PodAddrs, v4)
	fmt.Fprintf(&b, "status:\n  podIP: %s\n  podIPs:\n  - ip: %s\n", v4, v4)
	if rapid.Bool().Draw(g.t, "ipv6") {
		v6 := netip.MustParseAddr(fmt.Sprintf("fd00::1:%x", 10+i))
		g.spec.PodAddrs = append(g.spec.PodAddrs, v6)
		fmt.Fprintf(&b, "  - ip: \"%s\"\n", v6)
	}
	return b.String()
}

// selector returns a random Calico selector over pod labels.
func (g *clusterGen) selector(label string) string {
	leaf := func() string {
		k, v := g.pick(label+" key", labelKeys), g.pick(label+" value", labelValues)
		switch rapid.IntRange(0, 7).Draw(g.t, label+" op") {
		case 0:
			return fmt.Sprintf("%s == '%s'", k, v)
		case 1:
			return fmt.Sprintf("%s != '%s'", k, v)
		case 2:
			return fmt.Sprintf("has(%s)", k)
		case 3:
			return fmt.Sprintf("!has(%s)", k)
		case 4:
			return fmt.Sprintf("%s in {'%s', '%s'}", k, v, g.pick(label+" value2", labelValues))
		case 5:
			return fmt.Sprintf("%s not in {'%s'}", k, v)
		case 6:
			return "all()"
		default:
			return fmt.Sprintf("%s starts with '%s'", k, v)
		}
	}
	s := leaf()
	switch rapid.IntRange(0, 3).Draw(g.t, label+" combine") {
	case 1:
		s = s + " && " + leaf()
	case 2:
		s = "(" + s + " || " + leaf() + ")"
	}
	return s
}

func (g *clusterGen) nsSelector(label string, inRule bool) string {
	choices := []string{"team == 'x'", "team != 'x'", "has(team)", "all()", "projectcalico.org/name == 'ns0'"}
	if inRule {
		choices = append(choices, "global()")
	}
	return rapid.SampledFrom(choices).Draw(g.t, label)
}

func (g *clusterGen) order(label string) string {
	if rapid.IntRange(0, 3).Draw(g.t, label+" unset") == 0 {
		return ""
	}
	return fmt.Sprintf("  order: %d\n", rapid.SampledFrom([]int{1, 10, 100, 1000}).Draw(g.t, label))
}

// CalicoPolicy returns a NetworkPolicy or GlobalNetworkPolicy with random
// tier, order, selector, types and rules.
func (g *clusterGen) CalicoPolicy(i int, global bool) string {
	var b strings.Builder
	tier := g.pick("tier", g.tier)
	name := fmt.Sprintf("pol%d", i)
	if tier != "default" {
		name = tier + "." + name
	}
	if global {
		fmt.Fprintf(&b, "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: %s\nspec:\n", name)
	} else {
		fmt.Fprintf(&b, "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n", name, g.pick("policy ns", g.spec.Namespaces))
	}
	if tier != "default" {
		fmt.Fprintf(&b, "  tier: %s\n", tier)
	}
	b.WriteString(g.order("policy order"))
	fmt.Fprintf(&b, "  selector: %q\n", g.selector("policy selector"))
	if global && rapid.Bool().Draw(g.t, "policy nsSelector") {
		fmt.Fprintf(&b, "  namespaceSelector: %q\n", g.nsSelector("policy namespaceSelector", false))
	}
	types := rapid.SampledFrom([]string{"", "[Ingress]", "[Egress]", "[Ingress, Egress]"}).Draw(g.t, "types")
	if types != "" {
		fmt.Fprintf(&b, "  types: %s\n", types)
	}
	for _, dir := range []string{"ingress", "egress"} {
		n := rapid.IntRange(0, 3).Draw(g.t, dir+" rules")
		if n == 0 {
			continue
		}
		fmt.Fprintf(&b, "  %s:\n", dir)
		for range n {
			b.WriteString(g.calicoRule(global))
		}
	}
	return b.String()
}

func (g *clusterGen) calicoRule(global bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - action: %s\n", rapid.SampledFrom([]string{"Allow", "Allow", "Deny", "Pass", "Log"}).Draw(g.t, "action"))
	// An explicit ipVersion goes only with nets and ICMP of that version.
	ipv := ""
	if rapid.IntRange(0, 5).Draw(g.t, "ipVersion?") == 0 {
		ipv = g.pick("ipVersion", []string{"4", "6"})
		fmt.Fprintf(&b, "    ipVersion: %s\n", ipv)
	}
	icmpName := "ICMP"
	if ipv == "6" {
		icmpName = "ICMPv6"
	}
	proto := rapid.SampledFrom([]string{"", "", "TCP", "UDP", icmpName, "6", "17"}).Draw(g.t, "protocol")
	hasPorts := proto == "TCP" || proto == "UDP" || proto == "6" || proto == "17"
	if proto != "" {
		fmt.Fprintf(&b, "    protocol: %s\n", proto)
	} else if rapid.IntRange(0, 4).Draw(g.t, "notProtocol?") == 0 {
		fmt.Fprintf(&b, "    notProtocol: %s\n", g.pick("notProtocol", []string{"TCP", "UDP", icmpName}))
	}
	if strings.HasPrefix(proto, "ICMP") && rapid.Bool().Draw(g.t, "icmp fields") {
		field := g.pick("icmp field", []string{"icmp", "notICMP"})
		if rapid.Bool().Draw(g.t, "icmp code") {
			fmt.Fprintf(&b, "    %s: {type: %d, code: 0}\n", field, rapid.SampledFrom([]int{0, 3, 8}).Draw(g.t, "icmp type"))
		} else {
			fmt.Fprintf(&b, "    %s: {type: %d}\n", field, rapid.SampledFrom([]int{0, 3, 8}).Draw(g.t, "icmp type"))
		}
	}
	// Calico refuses a rule whose nets mix IP versions: pick the version
	// of this rule's nets once.
	netVer := ipv
	if netVer == "" {
		netVer = g.pick("nets version", []string{"4", "4", "6"})
	}
	for _, side := range []string{"source", "destination"} {
		entity := g.entity(side, hasPorts, netVer, global)
		if entity != "" {
			fmt.Fprintf(&b, "    %s:\n%s", side, entity)
		}
	}
	return b.String()
}

func (g *clusterGen) entity(side string, hasPorts bool, ipv string, global bool) string {
	var b strings.Builder
	nets := func(field string) {
		if rapid.IntRange(0, 3).Draw(g.t, side+" "+field+"?") != 0 {
			return
		}
		var choices []string
		for _, n := range ruleNets {
			is6 := strings.Contains(n, ":")
			if field == "notNets" && n == "0.0.0.0/0" {
				continue // refused: the rule could never match
			}
			if ipv == "" || (ipv == "6") == is6 {
				choices = append(choices, n)
			}
		}
		list := rapid.SliceOfNDistinct(rapid.SampledFrom(choices), 1, 2, rapid.ID[string]).Draw(g.t, side+" "+field)
		fmt.Fprintf(&b, "      %s: [%s]\n", field, strings.Join(list, ", "))
	}
	nets("nets")
	nets("notNets")
	if rapid.IntRange(0, 2).Draw(g.t, side+" selector?") == 0 {
		fmt.Fprintf(&b, "      selector: %q\n", g.selector(side+" selector"))
	}
	if rapid.IntRange(0, 4).Draw(g.t, side+" notSelector?") == 0 {
		fmt.Fprintf(&b, "      notSelector: %q\n", g.selector(side+" notSelector"))
	}
	if rapid.IntRange(0, 4).Draw(g.t, side+" namespaceSelector?") == 0 {
		fmt.Fprintf(&b, "      namespaceSelector: %q\n", g.nsSelector(side+" namespaceSelector", true))
	}
	if rapid.IntRange(0, 6).Draw(g.t, side+" serviceAccounts?") == 0 {
		b.WriteString("      serviceAccounts:\n        names: [sa1]\n")
	}
	if hasPorts {
		ports := func(field string) {
			if rapid.IntRange(0, 2).Draw(g.t, side+" "+field+"?") != 0 {
				return
			}
			list := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"80", "443", "'80:90'", "5432", "53", "http", "db", "dns", "alt"}), 1, 3, rapid.ID[string]).Draw(g.t, side+" "+field)
			fmt.Fprintf(&b, "      %s: [%s]\n", field, strings.Join(list, ", "))
		}
		ports("ports")
		ports("notPorts")
	}
	return b.String()
}

// K8sPolicy returns a Kubernetes NetworkPolicy with random peers and ports.
func (g *clusterGen) K8sPolicy(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: knp%d\n  namespace: %s\nspec:\n", i, g.pick("knp ns", g.spec.Namespaces))
	fmt.Fprintf(&b, "  podSelector:\n%s", g.labelSelector("    ", "podSelector"))
	types := rapid.SampledFrom([]string{"", "[Ingress]", "[Egress]", "[Ingress, Egress]"}).Draw(g.t, "policyTypes")
	if types != "" {
		fmt.Fprintf(&b, "  policyTypes: %s\n", types)
	}
	for _, dir := range []string{"ingress", "egress"} {
		n := rapid.IntRange(0, 2).Draw(g.t, "k8s "+dir+" rules")
		if n == 0 {
			continue
		}
		peerField := "from"
		if dir == "egress" {
			peerField = "to"
		}
		fmt.Fprintf(&b, "  %s:\n", dir)
		for range n {
			b.WriteString("  - ")
			first := true
			line := func(s string) {
				if first {
					b.WriteString(s)
					first = false
					return
				}
				b.WriteString("    " + s)
			}
			if peers := rapid.IntRange(0, 2).Draw(g.t, "peers"); peers > 0 {
				line(peerField + ":\n")
				for range peers {
					b.WriteString(g.k8sPeer())
				}
			}
			if nports := rapid.IntRange(0, 2).Draw(g.t, "k8s ports"); nports > 0 {
				line("ports:\n")
				for range nports {
					b.WriteString(g.k8sPort())
				}
			}
			if first {
				b.WriteString("{}\n")
			}
		}
	}
	return b.String()
}

func (g *clusterGen) labelSelector(indent, label string) string {
	switch rapid.IntRange(0, 3).Draw(g.t, label+" shape") {
	case 0:
		return indent + "{}\n"
	case 1:
		return fmt.Sprintf("%smatchLabels: {%s: %s}\n", indent, g.pick(label+" key", labelKeys), g.pick(label+" value", labelValues))
	case 2:
		op := g.pick(label+" operator", []string{"In", "NotIn", "Exists", "DoesNotExist"})
		values := ""
		if op == "In" || op == "NotIn" {
			values = fmt.Sprintf(", values: [%s]", g.pick(label+" values", labelValues))
		}
		return fmt.Sprintf("%smatchExpressions:\n%s- {key: %s, operator: %s%s}\n", indent, indent, g.pick(label+" key", labelKeys), op, values)
	default:
		return fmt.Sprintf("%smatchLabels: {%s: %s, %s: %s}\n", indent, labelKeys[0], g.pick(label+" v0", labelValues), labelKeys[1], g.pick(label+" v1", labelValues))
	}
}

func (g *clusterGen) k8sPeer() string {
	switch rapid.IntRange(0, 3).Draw(g.t, "peer kind") {
	case 0:
		return "    - podSelector:\n" + g.labelSelector("        ", "peer pods")
	case 1:
		return "    - namespaceSelector:\n" + g.nsLabelSelector("        ")
	case 2:
		return "    - namespaceSelector:\n" + g.nsLabelSelector("        ") + "      podSelector:\n" + g.labelSelector("        ", "peer pods2")
	default:
		cidr := g.pick("ipBlock", []string{"10.0.0.0/16", "192.0.2.0/24", "fd00::/64", "0.0.0.0/0"})
		except := ""
		switch cidr {
		case "10.0.0.0/16":
			except = "\n        except: [10.0.1.0/24]"
		case "0.0.0.0/0":
			except = "\n        except: [10.0.0.0/16]"
		}
		if rapid.Bool().Draw(g.t, "except") {
			except = ""
		}
		return fmt.Sprintf("    - ipBlock:\n        cidr: %s%s\n", cidr, except)
	}
}

func (g *clusterGen) nsLabelSelector(indent string) string {
	switch rapid.IntRange(0, 2).Draw(g.t, "ns selector shape") {
	case 0:
		return indent + "{}\n"
	case 1:
		return fmt.Sprintf("%smatchLabels: {team: %s}\n", indent, g.pick("ns team", nsLabelVals))
	default:
		return fmt.Sprintf("%smatchLabels: {kubernetes.io/metadata.name: %s}\n", indent, g.pick("ns name", g.spec.Namespaces))
	}
}

func (g *clusterGen) k8sPort() string {
	switch rapid.IntRange(0, 3).Draw(g.t, "k8s port kind") {
	case 0:
		return fmt.Sprintf("    - port: %d\n", rapid.SampledFrom([]int{80, 443, 5432, 53}).Draw(g.t, "k8s port"))
	case 1:
		return fmt.Sprintf("    - port: %s\n      protocol: %s\n", g.pick("k8s named", []string{"http", "db", "dns", "alt"}), g.pick("k8s named proto", []string{"TCP", "UDP"}))
	case 2:
		return fmt.Sprintf("    - protocol: %s\n", g.pick("k8s proto only", []string{"TCP", "UDP"}))
	default:
		return "    - port: 80\n      endPort: 90\n      protocol: TCP\n"
	}
}

// Packet generates the first packet of a flow between two of the
// cluster's addresses (pods or outside).
func Packet(c *ClusterSpec) *rapid.Generator[model.Packet] {
	return rapid.Custom(func(t *rapid.T) model.Packet {
		addrs := append(append([]netip.Addr(nil), c.PodAddrs...), c.External...)
		src := rapid.SampledFrom(addrs).Draw(t, "src")
		var same []netip.Addr
		for _, a := range addrs {
			if a.Is4() == src.Is4() {
				same = append(same, a)
			}
		}
		dst := rapid.SampledFrom(same).Draw(t, "dst")
		p := model.Packet{Src: src, Dst: dst, SrcPort: rapid.SampledFrom([]uint16{40000, 53, 80}).Draw(t, "sport")}
		proto := rapid.SampledFrom([]uint8{6, 6, 17, 1, 132}).Draw(t, "proto")
		if proto == 1 && src.Is6() {
			proto = 58
		}
		p.Protocol = proto
		if proto == 1 || proto == 58 {
			p.ICMPType = rapid.SampledFrom([]uint8{0, 3, 8}).Draw(t, "icmp type")
			p.ICMPCode = rapid.SampledFrom([]uint8{0, 1}).Draw(t, "icmp code")
		} else {
			p.DstPort = rapid.SampledFrom(probePorts).Draw(t, "dport")
		}
		return p
	})
}

// LoadSet decodes a generated cluster into a Set, failing the test on any
// error (the generator must produce only valid YAML).
func LoadSet(t interface{ Fatalf(string, ...any) }, c *ClusterSpec) *policy.Set {
	res, err := policy.DecodeWithOptions(strings.NewReader(c.YAML()), "generated.yaml", policy.DecodeOptions{})
	if err != nil {
		t.Fatalf("generated cluster does not decode: %v\n%s", err, c.YAML())
	}
	set := policy.NewSet()
	if _, err := set.UpsertResult(res); err != nil {
		t.Fatalf("generated cluster does not load: %v\n%s", err, c.YAML())
	}
	return set
}

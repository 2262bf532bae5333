// Command selectors shows the Calico selector language at work on the
// endpoints of a small payment-gateway cluster: for each selector of the
// seed policies (and a few more) it prints the canonical form, the
// UniqueID and the endpoints the selector picks, as computed by
// selector.Index.
//
//	go run ./examples/selectors                      # the embedded cluster and selectors
//	go run ./examples/selectors 'tier == "backend"'  # also evaluate your own selectors
//
// Endpoints carry the labels Calico gives them: a pod has its own labels
// plus projectcalico.org/namespace and projectcalico.org/orchestrator, and
// inherits its namespace's labels under the "pcns." prefix (with
// pcns.projectcalico.org/name holding the namespace name). A rule's
// namespaceSelector is therefore evaluated with its keys prefixed, and
// all() / global() there mean "any namespaced endpoint" / "any endpoint
// without a namespace", as in Calico.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/calyxnet/calyx/selector"
)

type namespace struct {
	name   string
	labels map[string]string
}

type endpoint struct {
	id        string // namespace/name, or the host endpoint's name
	namespace string // empty for host endpoints
	labels    map[string]string
}

// The cluster of the field guide: a storefront calling an API gateway,
// which calls the order service, which calls the payment service; a
// database behind them; one host endpoint for the node's public interface.
var (
	namespaces = []namespace{
		{"web", map[string]string{"team": "storefront"}},
		{"shop", map[string]string{"team": "commerce"}},
		{"payments", map[string]string{"team": "payments", "pci": "true"}},
		{"data", map[string]string{"team": "platform", "pci": "true"}},
	}
	endpoints = []endpoint{
		{"web/frontend-6d4cf", "web", map[string]string{"app": "frontend", "tier": "web", "version": "v2"}},
		{"web/frontend-9x2lp", "web", map[string]string{"app": "frontend", "tier": "web", "version": "v2"}},
		{"shop/api-gateway-5b7c9", "shop", map[string]string{"app": "api-gateway", "tier": "edge"}},
		{"shop/order-service-7c9d8", "shop", map[string]string{"app": "order-service", "tier": "backend"}},
		{"shop/order-service-k2m4q", "shop", map[string]string{"app": "order-service", "tier": "backend", "version": "canary"}},
		{"payments/payment-service-84f6d", "payments", map[string]string{"app": "payment-service", "tier": "backend"}},
		{"data/database-0", "data", map[string]string{"app": "database", "tier": "data", "role": "primary"}},
		{"data/database-1", "data", map[string]string{"app": "database", "tier": "data", "role": "replica"}},
		{"node-1.eth0", "", map[string]string{"host-endpoint": "ingress", "kubernetes.io/hostname": "node-1"}},
	}
)

// scope says what a selector is matched against.
type scope int

const (
	endpointScope  scope = iota // a policy's or rule's selector
	namespaceScope              // a rule's or policy's namespaceSelector
)

type namedSelector struct {
	source string // policy and field it comes from
	expr   string
	scope  scope
}

// The selectors of ../shared/seed-policies.yaml, then a few more from the
// rest of the field guide.
var selectors = []namedSelector{
	{"allow-payment-access spec.selector", `app == 'order-service'`, endpointScope},
	{"allow-payment-access egress[0].destination.selector", `app == 'payment-service'`, endpointScope},
	{"default-deny spec.namespaceSelector", `has(projectcalico.org/name)`, namespaceScope},
	{"deny-mining-pools spec.selector", `all()`, endpointScope},
	{"frontend-to-gateway spec.selector", `app == "frontend"`, endpointScope},
	{"frontend-to-gateway egress[0].destination.selector", `app == "api-gateway"`, endpointScope},
	{"database-no-egress spec.selector", `app == 'database'`, endpointScope},
	{"pci-isolation spec.namespaceSelector", `pci == "true"`, namespaceScope},
	{"backend-stable spec.selector", `tier in {"data", "backend",} && version != "canary"`, endpointScope},
	{"payment-path spec.selector", `app startswith "pay" || app endswith '-gateway'`, endpointScope},
	{"host-firewall spec.namespaceSelector", `global()`, namespaceScope},
}

func main() {
	if err := run(os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "selectors:", err)
		os.Exit(2)
	}
}

// forScope turns a namespaceSelector into the endpoint selector Calico
// evaluates: keys prefixed with "pcns.", all() meaning any namespaced
// endpoint and global() any endpoint without a namespace.
func forScope(s *selector.Selector, sc scope) *selector.Selector {
	if sc == endpointScope {
		return s
	}
	switch s.String() {
	case "all()":
		return selector.MustParse("has(projectcalico.org/namespace)")
	case "global()":
		return selector.MustParse("!has(projectcalico.org/namespace)")
	}
	return s.WithKeyPrefix("pcns.")
}

// run prints the report for the embedded selectors and for the extra
// selector expressions in args.
func run(w io.Writer, args []string) error {
	all := append([]namedSelector(nil), selectors...)
	for i, a := range args {
		all = append(all, namedSelector{source: fmt.Sprintf("argument %d", i+1), expr: a})
	}

	// Callbacks only report once the initial state is printed.
	var report func(change, sel, item string)
	ix := selector.NewIndex(
		func(sel, item string) {
			if report != nil {
				report("starts matching", sel, item)
			}
		},
		func(sel, item string) {
			if report != nil {
				report("stops matching", sel, item)
			}
		})
	for _, ns := range namespaces {
		inherited := map[string]string{"pcns.projectcalico.org/name": ns.name}
		for k, v := range ns.labels {
			inherited["pcns."+k] = v
		}
		ix.UpdateParentLabels(ns.name, inherited)
	}
	for _, ep := range endpoints {
		labels := map[string]string{}
		for k, v := range ep.labels {
			labels[k] = v
		}
		if ep.namespace == "" {
			ix.UpdateLabels(ep.id, labels)
			continue
		}
		labels["projectcalico.org/namespace"] = ep.namespace
		labels["projectcalico.org/orchestrator"] = "k8s"
		ix.UpdateLabels(ep.id, labels, ep.namespace)
	}

	fmt.Fprintf(w, "%d endpoints in %d namespaces, %d selectors\n", len(endpoints), len(namespaces), len(all))
	var errs []error
	for i, ns := range all {
		s, err := selector.Parse(ns.expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ns.source, err))
			continue
		}
		evaluated := forScope(s, ns.scope)
		id := fmt.Sprint(i)
		ix.UpdateSelector(id, evaluated)

		fmt.Fprintf(w, "\n%s\n", ns.source)
		fmt.Fprintf(w, "  written    %s\n", ns.expr)
		fmt.Fprintf(w, "  canonical  %s\n", s)
		fmt.Fprintf(w, "  unique id  %s\n", s.UniqueID())
		if evaluated != s {
			fmt.Fprintf(w, "  evaluated  %s\n", evaluated)
		}
		matches := ix.ItemsMatching(id)
		sort.Strings(matches)
		if len(matches) == 0 {
			fmt.Fprintf(w, "  matches    (none)\n")
			continue
		}
		fmt.Fprintf(w, "  matches    %s\n", strings.Join(matches, "\n             "))
	}

	// The index is incremental: one namespace label change moves every
	// endpoint of the namespace, and only the affected matches are reported.
	fmt.Fprintf(w, "\nnamespace payments drops its pci label:\n")
	report = func(change, sel, item string) {
		var i int
		fmt.Sscan(sel, &i)
		fmt.Fprintf(w, "  %s %s %s\n", all[i].source, change, item)
	}
	ix.UpdateParentLabels("payments", map[string]string{
		"pcns.projectcalico.org/name": "payments",
		"pcns.team":                   "payments",
	})
	return errors.Join(errs...)
}

package policy_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/calyxnet/calyx/policy"
)

func ExampleDecode() {
	const in = `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-payment
  namespace: shop
spec:
  selector: app == 'order-service'
  egress:
  - action: Allow
    protocol: TCP
    destination:
      selector: app == 'payment-service'
      ports: [8080]
`
	objs, err := policy.Decode(strings.NewReader(in), "pay.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	np := objs[0].(*policy.NetworkPolicy)
	fmt.Println(policy.KindOf(np), np.Namespace+"/"+np.Name, np.Spec.Egress[0].Destination.Ports)

	// Invalid input gives every problem, each with source, line, object
	// and field path.
	bad := strings.Replace(in, "ports: [8080]", "ports: [8080, 70000]", 1)
	bad = strings.Replace(bad, "    protocol: TCP\n", "", 1)
	_, err = policy.Decode(strings.NewReader(bad), "pay.yaml")
	var problems policy.ValidationErrors
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Println(p)
		}
	}
	// Output:
	// NetworkPolicy shop/allow-payment [8080]
	// pay.yaml:12: NetworkPolicy "shop/allow-payment": spec.egress[0].destination.ports[1]: port 70000 out of range 1-65535
	// pay.yaml:12: NetworkPolicy "shop/allow-payment": spec.egress[0].destination.ports: numeric ports need a protocol on the rule: add `protocol: TCP` (or UDP, SCTP)
}

func ExampleSet() {
	const in = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: payments}}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec: {nodeName: node-a, containers: [{name: db, image: postgres}]}
status: {podIP: 10.244.1.7}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: payments}}}]
    ports: [{port: 5432}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: default-deny}
spec:
  namespaceSelector: has(projectcalico.org/name)
  types: [Ingress, Egress]
`
	res, err := policy.DecodeWithOptions(strings.NewReader(in), "cluster.yaml", policy.DecodeOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	set := policy.NewSet()
	if _, err := set.UpsertResult(res); err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range set.Policies() {
		fmt.Printf("%s %s order=%v applies to: %s\n", p.Tier, p.Key(), order(p.Order), p.Selector)
		for _, r := range p.Ingress {
			fmt.Printf("  %s %s from %s ports %v\n", r.Field, r.Action, r.Source.Selector, r.Destination.Ports)
		}
	}
	for _, ep := range set.Endpoints() {
		fmt.Println(ep.Key(), ep.IPs, set.Policies()[0].Selector.Matches(set.EndpointLabels(ep)))
	}
	// Output:
	// default shop/knp.default.db-ingress order=1000 applies to: (projectcalico.org/orchestrator == "k8s" && app == "db" && projectcalico.org/namespace == "shop")
	//   spec.ingress[0].from[0] Allow from (pcns.team == "payments" && projectcalico.org/orchestrator == "k8s") ports [{5432 5432}]
	// default default-deny order=unset applies to: has(pcns.projectcalico.org/name)
	// shop/db-0 [10.244.1.7] true
}

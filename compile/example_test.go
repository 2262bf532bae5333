package compile_test

import (
	"fmt"
	"strings"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/policy"
	corev1 "k8s.io/api/core/v1"
)

const shop = `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node1, containers: [{name: web, image: nginx}]}
status: {podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {nodeName: node1, containers: [{name: db, image: postgres, ports: [{name: pg, containerPort: 5432}]}]}
status: {podIP: 10.0.0.2, podIPs: [{ip: 10.0.0.2}]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'web'}
    destination: {ports: [pg]}
`

// Compile a set of policies and pods into the IR of one node, judge a
// packet with the reference model, then apply a change incrementally.
func ExampleCompiler() {
	objs, err := policy.Decode(strings.NewReader(shop), "shop.yaml")
	if err != nil {
		panic(err)
	}
	set := policy.NewSet()
	for _, o := range objs {
		if _, err := set.Upsert(o); err != nil {
			panic(err)
		}
	}
	c := compile.New(set, "node1")
	rs, err := c.Compile()
	if err != nil {
		panic(err)
	}
	fmt.Println(len(rs.Endpoints), "endpoints,", len(rs.Policies), "policies,", len(rs.Sets), "sets")

	web, db := rs.Endpoints["shop/web"].Addrs[0], rs.Endpoints["shop/db"].Addrs[0]
	v := model.Evaluate(rs, model.Packet{Src: web, Dst: db, Protocol: 6, SrcPort: 40000, DstPort: 5432})
	fmt.Println("web -> db:5432 allowed:", v.Allowed)

	// The web pod is relabelled: only the set of web pods changes.
	pod, _ := set.Get(policy.ObjectKey{Kind: policy.KindPod, Namespace: "shop", Name: "web"})
	relabelled := pod.(*corev1.Pod).DeepCopy()
	relabelled.Labels["app"] = "frontend"
	ch, _ := set.Upsert(relabelled)
	rs, delta, _ := c.Update(ch)
	fmt.Print(delta)
	v = model.Evaluate(rs, model.Packet{Src: web, Dst: db, Protocol: 6, SrcPort: 40000, DstPort: 5432})
	fmt.Println("web -> db:5432 allowed:", v.Allowed)
	// Output:
	// 2 endpoints, 3 policies, 2 sets
	// web -> db:5432 allowed: true
	// ~set n96e6033d18693cd8dbc2 +0 -1
	// web -> db:5432 allowed: false
}

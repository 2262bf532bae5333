package storetest

// ShopCluster is a small cluster as users write it: namespace "shop" with
// pod "web" (app=web, TCP 80, 10.0.0.1) on node-a and pod "db" (app=db,
// TCP 5432, 10.0.0.2) on node-b. Tests of the resource commands start
// from it.
const ShopCluster = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: c, image: i, ports: [{containerPort: 80}]}]
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec:
  nodeName: node-b
  containers: [{name: c, image: i, ports: [{containerPort: 5432}]}]
status: {podIP: 10.0.0.2}
`

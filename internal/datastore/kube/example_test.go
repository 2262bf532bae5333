package kube_test

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/kube"
)

// The Kubernetes API as a datastore (here a fake clientset; Connect
// builds a real one from a kubeconfig). Without a dynamic client the
// Calico CRDs are not read.
func ExampleNew() {
	kc := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", ResourceVersion: "7"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", ResourceVersion: "9"},
			Spec: corev1.PodSpec{NodeName: "node-a"}, Status: corev1.PodStatus{PodIP: "10.0.0.5"}},
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := kube.New(ctx, kc, nil, kube.Options{NodeName: "node-a"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	items, _ := s.List(ctx)
	for _, it := range items {
		fmt.Println(datastore.ResourceName(it.Key()), it.Revision)
	}
	_, err = s.Apply(ctx, items[0].Object)
	fmt.Println(err)
	// Output:
	// namespace/shop 7
	// pod/web-0 9
	// datastore: read only: write Kubernetes resources with kubectl
}

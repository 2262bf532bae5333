package ipam

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/calyxnet/calyx/internal/etcdtest"
)

// startEtcd runs a real etcd for the test (see internal/etcdtest).
func startEtcd(t testing.TB) string { return etcdtest.Start(t) }

// newEtcdStore connects to url with a key prefix unique to the test.
func newEtcdStore(t testing.TB, url string) *EtcdStore {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := NewEtcdStore(c, "/test/"+strings.ReplaceAll(t.Name(), "/", "_")+"/")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.Delete(ctx, s.prefix, clientv3.WithPrefix())
	})
	return s
}

package ipam

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// requireBinary returns the path of a system binary the test needs; it
// skips when missing, and fails when CI is set so CI never passes by
// skipping the real thing.
func requireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (scripts/packages.txt lists it): %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs a real single-member etcd on free loopback ports with a
// temporary data directory, and returns its client URL. The server is
// killed by t.Cleanup. Tests keep the data in memory (/dev/shm) when they
// can: they test the protocol, not the disk, and a slow shared disk makes
// etcd time requests out. Benchmarks keep it on disk, fsync included.
func startEtcd(t testing.TB) string {
	t.Helper()
	bin := requireBinary(t, "etcd")
	dir := t.TempDir()
	if _, bench := t.(*testing.B); !bench {
		if shm, err := os.MkdirTemp("/dev/shm", "calyx-etcd-"); err == nil {
			dir = shm
			t.Cleanup(func() { os.RemoveAll(shm) })
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		cport, pport := freePort(t), freePort(t)
		client := fmt.Sprintf("http://127.0.0.1:%d", cport)
		peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
		data := filepath.Join(dir, fmt.Sprint("data", attempt))
		cmd := exec.Command(bin,
			"--name", "calyx-test",
			"--data-dir", data,
			"--listen-client-urls", client,
			"--advertise-client-urls", client,
			"--listen-peer-urls", peer,
			"--initial-advertise-peer-urls", peer,
			"--initial-cluster", "calyx-test="+peer,
			"--initial-cluster-state", "new",
			"--log-level", "error",
		)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start etcd: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		if err := waitHealthy(client, exited, 20*time.Second); err != nil {
			stop()
			lastErr = fmt.Errorf("%w\n%s", err, out.String())
			continue
		}
		t.Cleanup(stop)
		return client
	}
	t.Fatalf("etcd did not start: %v", lastErr)
	return ""
}

func waitHealthy(url string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("etcd exited")
		default:
		}
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd not healthy after %v", timeout)
}

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

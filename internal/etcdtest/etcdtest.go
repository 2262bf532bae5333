// Package etcdtest starts a real, throw-away etcd server for tests (the
// IPAM store, the datastore, the CNI plugin with etcd IPAM).
package etcdtest

import (
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

	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// RequireBinary returns the path of a system binary the test needs; it
// skips when missing, and fails when CI is set so CI never passes by
// skipping the real thing.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	return netnstest.RequireBinary(t, name)
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

// Start runs a real single-member etcd on free loopback ports with a
// temporary data directory, and returns its client URL. The server is
// killed by t.Cleanup. Tests keep the data in memory (/dev/shm) when they
// can: they test the protocol, not the disk, and a slow shared disk makes
// etcd time requests out. Benchmarks keep it on disk, fsync included.
func Start(t testing.TB) string {
	t.Helper()
	bin := RequireBinary(t, "etcd")
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

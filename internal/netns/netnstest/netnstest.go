// Package netnstest holds the helpers kernel tests share: the root check
// that skips locally and fails in CI, unique names, and namespaces removed
// by t.Cleanup.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/calyxnet/calyx/internal/netns"
)

// RequireRoot skips the test with a reason when it cannot create network
// namespaces (not Linux, not root), and fails it instead when the CI
// environment variable is set, so CI never passes by skipping.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	reason := ""
	switch {
	case runtime.GOOS != "linux":
		reason = "network namespaces need Linux"
	case os.Geteuid() != 0:
		reason = "network namespaces need root"
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s (CI is set: kernel tests must run)", reason)
	}
	tb.Skip(reason)
}

// UniqueName returns prefix followed by 8 random hex digits: short enough
// for interface names, unique enough for parallel tests.
func UniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// New creates a named namespace with a unique name starting with prefix and
// deletes it when the test ends.
func New(tb testing.TB, prefix string) *netns.NS {
	tb.Helper()
	RequireRoot(tb)
	ns, err := netns.Create(UniqueName(prefix))
	if err != nil {
		tb.Fatalf("create namespace: %v", err)
	}
	tb.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			tb.Errorf("delete namespace %s: %v", ns.Name(), err)
		}
	})
	return ns
}

// RequireBinary returns the path of a system binary the test needs; it
// skips when the binary is missing, and fails when CI is set, so CI never
// passes by skipping the real thing (.ci/run installs every binary the
// tests use).
func RequireBinary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s not installed (CI is set: .ci/run must install it): %v", name, err)
		}
		tb.Skipf("%s not installed: %v", name, err)
	}
	return p
}

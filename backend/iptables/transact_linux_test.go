//go:build linux

package iptables

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/testgen"
)

// fakeRunner records commands and fails those it is told to.
type fakeRunner struct {
	calls []string
	fail  string
}

func (f *fakeRunner) run(_ context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	call := strings.Join(append([]string{name}, args...), " ")
	if len(stdin) > 0 && strings.Contains(string(stdin), "destroy ") {
		call += " <destroy>"
	}
	f.calls = append(f.calls, call)
	if f.fail != "" && strings.HasPrefix(call, f.fail) {
		return nil, errors.New("refused")
	}
	return nil, nil
}

// fakeBackend is a Backend whose commands go to a fakeRunner; netlink is
// off, so membership changes go to the fake as ipset restore too instead
// of the real kernel.
func fakeBackend() (*Backend, *fakeRunner) {
	f := &fakeRunner{}
	return &Backend{n: newNaming("t"), r: f, cache: newRenderCache(), wait: true, nlFailed: true}, f
}

// TestTransactionOrder: sets are created before the rules that use them
// and destroyed after the rules stop using them; one restore per family.
func TestTransactionOrder(t *testing.T) {
	b, f := fakeBackend()
	ctx := context.Background()
	with := scenarioIR(conformance.ByName("k8s style: pod0 admits only pod1 on TCP 80").Build) // uses a selector set
	require.NoError(t, b.Apply(ctx, with))
	require.Equal(t, []string{
		"iptables-save -t filter", "ip6tables-save -t filter", "ipset save",
		"ipset restore -exist",
		"iptables-restore --noflush --wait", "ip6tables-restore --noflush --wait",
	}, f.calls)

	f.calls = nil
	without := scenarioIR(func(*testgen.IR) {})
	require.NoError(t, b.Apply(ctx, without))
	require.Equal(t, []string{
		"ipset restore -exist",
		"iptables-restore --noflush --wait", "ip6tables-restore --noflush --wait",
		"ipset restore -exist <destroy>",
	}, f.calls, "no kernel read: the last applied state is the diff base")

	f.calls = nil
	require.NoError(t, b.Apply(ctx, without))
	require.Empty(t, f.calls, "nothing changed, nothing run")
}

// TestFailedRestore: a refused restore fails Apply with ErrRestoreFailed,
// and the next Apply reads the kernel back instead of trusting its diff.
func TestFailedRestore(t *testing.T) {
	b, f := fakeBackend()
	ctx := context.Background()
	rs := scenarioIR(conformance.ByName("k8s style: pod0 admits only pod1 on TCP 80").Build)
	f.fail = "ip6tables-restore"
	err := b.Apply(ctx, rs)
	require.ErrorIs(t, err, ErrRestoreFailed)
	f.fail, f.calls = "", nil
	require.NoError(t, b.Apply(ctx, &compile.Ruleset{}))
	require.Equal(t, "iptables-save -t filter", f.calls[0])
}

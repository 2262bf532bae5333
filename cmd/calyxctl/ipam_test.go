package main

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/ipam"
)

// seedIPAM writes a bbolt IPAM file with one pool and two pods on two
// nodes, and returns its --store value.
func seedIPAM(t *testing.T) (string, *ipam.Allocator) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ipam.db")
	s, err := ipam.OpenBolt(ctx, path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	a := ipam.New(s, ipam.Config{})
	require.NoError(t, a.UpsertPool(ctx, ipam.Pool{Name: "default-ipv4", CIDR: netip.MustParsePrefix("10.244.0.0/16")}))
	_, err = a.AutoAssign(ctx, ipam.AssignRequest{Handle: "pod-a", Node: "worker-1", IPv4: 2})
	require.NoError(t, err)
	_, err = a.AutoAssign(ctx, ipam.AssignRequest{Handle: "pod-b", Node: "worker-2", IPv4: 1})
	require.NoError(t, err)
	return "bolt:" + path, a
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestIPAMShow(t *testing.T) {
	store, _ := seedIPAM(t)
	code, out, stderr := runCmd(t, "ipam", "show", "--store", store)
	require.Equal(t, exitOK, code, stderr)
	for _, want := range []string{
		"default-ipv4  10.244.0.0/16  /26",
		"worker-1  10.244.0.0/26   default-ipv4  2/64",
		"worker-2  10.244.0.64/26  default-ipv4  1/64",
	} {
		require.Contains(t, out, want)
	}
}

func TestIPAMCheckAndRepair(t *testing.T) {
	ctx := context.Background()
	store, a := seedIPAM(t)
	code, out, _ := runCmd(t, "ipam", "check", "--store", store)
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "3 allocated addresses")
	require.Contains(t, out, "no problems found")

	// Lose a handle record behind the allocator's back.
	kvs, err := a.Store().Get(ctx, "handle/pod-b")
	require.NoError(t, err)
	_, err = a.Store().Commit(ctx, ipam.Op{Kind: ipam.OpDelete, Key: "handle/pod-b", Revision: kvs[0].Revision})
	require.NoError(t, err)

	code, out, _ = runCmd(t, "ipam", "check", "--store", store)
	require.Equal(t, exitFindings, code)
	require.Contains(t, out, "address-without-handle")
	require.Contains(t, out, "addr=10.244.0.64 handle=pod-b")

	code, out, _ = runCmd(t, "ipam", "check", "--repair", "--store", store)
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "fixed: address-without-handle")
	require.Contains(t, out, "no problems found")
}

func TestIPAMRelease(t *testing.T) {
	store, a := seedIPAM(t)
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"by handle", []string{"--handle", "pod-a"}, exitOK, "released 10.244.0.0 (handle pod-a)\nreleased 10.244.0.1 (handle pod-a)\n"},
		{"unknown handle", []string{"--handle", "pod-a"}, exitFindings, ""},
		{"by address", []string{"--address", "10.244.0.64"}, exitOK, "released 10.244.0.64\n"},
		{"not allocated", []string{"--address", "10.244.0.64,10.244.9.9"}, exitFindings, ""},
		{"bad address", []string{"--address", "nope"}, exitUsage, ""},
		{"neither", nil, exitUsage, ""},
		{"both", []string{"--address", "10.244.0.1", "--handle", "x"}, exitUsage, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := runCmd(t, append([]string{"ipam", "release", "--store", store}, tt.args...)...)
			require.Equal(t, tt.code, code, stderr)
			require.Equal(t, tt.out, out)
		})
	}
	rep, err := a.Check(context.Background())
	require.NoError(t, err)
	require.True(t, rep.OK())
	require.Zero(t, rep.Allocated)
}

func TestIPAMStoreErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.db")
	tests := []struct {
		name, store, stderr string
	}{
		{"bad spec", "redis:x", "unknown kind"},
		{"missing file is not created", "bolt:" + missing, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, "ipam", "show", "--store", tt.store)
			require.Equal(t, exitUsage, code)
			require.Contains(t, stderr, tt.stderr)
		})
	}
	require.NoFileExists(t, missing)
}

package main

import (
	"bytes"
	"testing"

	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/testgen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReachDataplanesEqualModel: for every example scenario, the matrix
// the kernel enforces with each dataplane (in a lab of network namespaces)
// is the matrix the model computes, line for line.
func TestReachDataplanesEqualModel(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, dp := range []string{"nftables", "iptables", "ebpf"} {
		for _, dir := range testgen.ExampleScenarios() {
			t.Run(dp+"/"+dir, func(t *testing.T) {
				var want, got, stderr bytes.Buffer
				require.Equal(t, exitOK, run([]string{"reach", "-f", "../../examples/" + dir}, nil, &want, &stderr), stderr.String())
				require.Equal(t, exitOK, run([]string{"reach", "-f", "../../examples/" + dir, "--dataplane", dp}, nil, &got, &stderr), stderr.String())
				assert.Equal(t, want.String(), got.String())
			})
		}
	}
}

// TestReachHostEndpointsDataplanesEqualModel: every host endpoint question
// of the model's test (a named interface, "*", expected IPs only, the
// fail-safe ports, the node's egress, forwarded traffic) gets the model's
// answer from each dataplane, the node built with the host endpoint's
// interface and addresses.
func TestReachHostEndpointsDataplanesEqualModel(t *testing.T) {
	netnstest.RequireRoot(t)
	cluster := hostCluster(t)
	for _, dp := range []string{"nftables", "iptables", "ebpf"} {
		for _, tt := range hostReachCases {
			t.Run(dp+"/"+tt.name, func(t *testing.T) {
				args := append([]string{"reach", "-f", cluster}, tt.args...)
				var want, got, stderr bytes.Buffer
				require.Equal(t, exitOK, run(args, nil, &want, &stderr), stderr.String())
				require.Equal(t, tt.want, want.String(), "the model's answer")
				require.Equal(t, exitOK, run(append(args, "--dataplane", dp), nil, &got, &stderr), stderr.String())
				assert.Equal(t, want.String(), got.String())
			})
		}
	}
}

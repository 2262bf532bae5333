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

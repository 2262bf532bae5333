package cni

import (
	"os"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/stretchr/testify/require"
)

// The example configuration list in examples/cni stays valid.
func TestExampleConfList(t *testing.T) {
	data, err := os.ReadFile("../examples/cni/10-calyx.conflist")
	require.NoError(t, err)
	list, err := libcni.ConfListFromBytes(data)
	require.NoError(t, err)
	require.Len(t, list.Plugins, 1)
	inj, err := libcni.InjectConf(list.Plugins[0], map[string]any{"name": list.Name, "cniVersion": list.CNIVersion})
	require.NoError(t, err)
	c, err := ParseNetConf(inj.Bytes)
	require.NoError(t, err)
	require.Len(t, c.Pools, 2)
	require.False(t, c.FailOpenWithoutAgent)
}

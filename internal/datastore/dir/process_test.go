package dir_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/policy"
)

// TestMain lets the test binary act as a second calyxctl: with
// CALYX_DIR_WRITER set it relabels one object many times and exits.
func TestMain(m *testing.M) {
	if spec := os.Getenv("CALYX_DIR_WRITER"); spec != "" {
		os.Exit(writer(spec))
	}
	os.Exit(m.Run())
}

// writer runs "root:name:count": count Applies of a relabelled
// GlobalNetworkSet name, each a read-modify-write of the shared file.
func writer(spec string) int {
	var root, name string
	var count int
	if _, err := fmt.Sscanf(spec, "%s %s %d", &root, &name, &count); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	s, err := dir.Open(ctx, root, dir.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer s.Close()
	key := policy.ObjectKey{Kind: policy.KindGlobalNetworkSet, Name: name}
	for i := range count {
		it, err := s.Get(ctx, key)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		it.Object.SetLabels(map[string]string{"n": strconv.Itoa(i)})
		if _, err := s.Apply(ctx, it.Object); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// TestTwoProcessesOneFile: two processes rewriting different objects of
// one file lose none of each other's writes.
func TestTwoProcessesOneFile(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "sets.yaml")
	write(t, p, `apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: a}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: b}
spec: {nets: [198.51.100.0/24]}
`)
	const n = 40
	var cmds []*exec.Cmd
	for _, name := range []string{"a", "b"} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("CALYX_DIR_WRITER=%s %s %d", root, name, n))
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		require.NoError(t, cmd.Wait())
	}
	s := open(t, root)
	items, err := s.List(t.Context())
	require.NoError(t, err)
	require.Len(t, items, 2)
	for _, it := range items {
		assert.Equal(t, strconv.Itoa(n-1), it.Object.GetLabels()["n"], "%s: the last write of its process", it.Object.GetName())
		assert.Equal(t, p, it.Origin.Source, "both stay in their file")
	}
}

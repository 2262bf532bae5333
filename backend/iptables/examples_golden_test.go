package iptables

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/testgen"
)

// TestExampleGoldens pins the restore input of every scenario under
// examples/, compiled as calyxctl compiles it (go test -run
// TestExampleGoldens -update rewrites them).
func TestExampleGoldens(t *testing.T) {
	for _, name := range testgen.ExampleScenarios() {
		t.Run(name, func(t *testing.T) {
			p, err := render(testgen.CompileExample(t, "../../examples", name), newNaming(""), nil)
			require.NoError(t, err)
			got := p.dump()
			path := filepath.Join("testdata", "examples", name+".rules")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -run TestExampleGoldens -update")
			require.Equal(t, string(want), string(got))
		})
	}
}

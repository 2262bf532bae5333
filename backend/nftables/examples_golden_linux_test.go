//go:build linux

package nftables

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/netns/netnstest"
	"github.com/calyxnet/calyx/internal/testgen"
)

// TestExampleGoldens pins the nft text of every scenario under examples/,
// compiled as calyxctl compiles it (go test -run TestExampleGoldens
// -update rewrites them), and checks that nft loads each one.
func TestExampleGoldens(t *testing.T) {
	for _, name := range testgen.ExampleScenarios() {
		t.Run(name, func(t *testing.T) {
			d, err := render(testgen.CompileExample(t, "../../examples", name))
			require.NoError(t, err)
			got := "# examples/" + name + "\n# load with: nft -f " + name + ".nft\n" + d.text("calyx")
			path := filepath.Join("testdata", "examples", name+".nft")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -run TestExampleGoldens -update")
			require.Equal(t, string(want), got)
		})
	}
	if _, err := exec.LookPath("nft"); err != nil {
		netnstest.RequireRoot(t)
		t.Fatal("nft binary not installed (scripts/deps.sh installs it)")
	}
	ns := netnstest.New(t, "cxexdump-")
	for _, name := range testgen.ExampleScenarios() {
		path := filepath.Join("testdata", "examples", name+".nft")
		out, err := exec.Command("ip", "netns", "exec", ns.Name(), "nft", "-f", path).CombinedOutput()
		require.NoError(t, err, "%s: %s", path, out)
		out, err = exec.Command("ip", "netns", "exec", ns.Name(), "nft", "delete", "table", "inet", "calyx").CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
}

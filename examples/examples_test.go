package examples_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/reach"
	"github.com/calyxnet/calyx/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// expectedMatrix returns the matrix written by hand in a scenario's README.
func expectedMatrix(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "README.md"))
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), "## Expected matrix")
	require.True(t, ok, "README has no expected matrix")
	_, rest, ok = strings.Cut(rest, "```text\n")
	require.True(t, ok)
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	return block
}

func TestScenarioMatrices(t *testing.T) {
	for _, dir := range []string{"ecommerce", "default-deny", "pci", "tiers"} {
		t.Run(dir, func(t *testing.T) {
			ctx := context.Background()
			res, err := policy.LoadPathsWithOptions(ctx, policy.DecodeOptions{}, dir)
			require.NoError(t, err)
			set := policy.NewSet()
			_, err = set.UpsertResult(res)
			require.NoError(t, err)
			rs, err := compile.New(set, "").Compile()
			require.NoError(t, err)

			pods := reach.PodsFromSet(set)
			m, err := reach.Run(ctx, reach.ModelProber{Index: model.NewIndex(rs)}, pods, reach.DeclaredProbes(pods), 0)
			require.NoError(t, err)
			var got bytes.Buffer
			require.NoError(t, m.WriteTable(&got))
			assert.Equal(t, expectedMatrix(t, dir), got.String(), "ruleset:\n%s", rs)
		})
	}
}

package examples_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/reach"
	"github.com/calyxnet/calyx/internal/testgen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScenarioMatrices(t *testing.T) {
	for _, dir := range testgen.ExampleScenarios() {
		t.Run(dir, func(t *testing.T) {
			ctx := context.Background()
			set := testgen.LoadPaths(t, dir)
			rs, err := compile.New(set, "").Compile()
			require.NoError(t, err)

			pods := reach.PodsFromSet(set)
			m, err := reach.Run(ctx, reach.ModelProber{Index: model.NewIndex(rs)}, pods, reach.DeclaredProbes(pods), 0)
			require.NoError(t, err)
			var got bytes.Buffer
			require.NoError(t, m.WriteTable(&got))
			assert.Equal(t, testgen.ExpectedMatrix(t, dir), got.String(), "ruleset:\n%s", rs)
		})
	}
}

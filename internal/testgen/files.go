package testgen

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/policy"
)

// LoadPaths decodes files and directories (as calyxctl -f does) into a Set
// with their origins, failing the test on any error.
func LoadPaths(tb testing.TB, paths ...string) *policy.Set {
	tb.Helper()
	res, err := policy.LoadPathsWithOptions(context.Background(), policy.DecodeOptions{}, paths...)
	if err != nil {
		tb.Fatalf("load %v: %v", paths, err)
	}
	set := policy.NewSet()
	if _, err := set.UpsertResult(res); err != nil {
		tb.Fatalf("load %v: %v", paths, err)
	}
	return set
}

// ExpectedMatrix returns the reachability matrix written by hand in a
// scenario directory's README.md: the ```text block after the heading
// "## Expected matrix".
func ExpectedMatrix(tb testing.TB, dir string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		tb.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## Expected matrix")
	if ok {
		_, rest, ok = strings.Cut(rest, "```text\n")
	}
	block, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		tb.Fatalf("%s/README.md has no expected matrix block", dir)
	}
	return block
}

// ExampleScenarios lists the directories under examples/ that hold a
// policy scenario with an expected matrix in their README.
func ExampleScenarios() []string {
	return []string{"ecommerce", "default-deny", "pci", "tiers"}
}

// CompileExample loads examples/<name> (dir is the path of examples/ from
// the calling test's package) and compiles it for every node.
func CompileExample(tb testing.TB, dir, name string) *compile.Ruleset {
	tb.Helper()
	set := LoadPaths(tb, filepath.Join(dir, name))
	rs, err := compile.New(set, "").Compile()
	if err != nil {
		tb.Fatalf("compile %s: %v", name, err)
	}
	return rs
}

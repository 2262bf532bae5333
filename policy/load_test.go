package policy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/policy"
	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func TestLoadPaths(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b", "deny.yml"), "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny}\n")
	writeFile(t, filepath.Join(dir, "a.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
	writeFile(t, filepath.Join(dir, "c.json"), `{"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "t"}}`)
	writeFile(t, filepath.Join(dir, "notes.txt"), "not: policy\n")
	writeFile(t, filepath.Join(dir, "svc.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")

	stdin := strings.NewReader("apiVersion: v1\nkind: Namespace\nmetadata: {name: from-stdin}\n")
	res, err := policy.LoadPathsWithOptions(context.Background(), policy.DecodeOptions{Stdin: stdin}, dir, "-")
	require.NoError(t, err)
	var names []string
	for i, o := range res.Objects {
		names = append(names, o.GetName()+"@"+filepath.Base(res.Origins[i].Source))
	}
	// Lexical order within the directory, then stdin.
	require.Equal(t, []string{"a@a.yaml", "deny@deny.yml", "t@c.json", "from-stdin@-"}, names)
	require.Len(t, res.Warnings, 1)
	require.Contains(t, res.Warnings[0].String(), "svc.yaml:1: Service \"s\": skipped")

	// Problems in several files are all reported, and nothing is returned.
	writeFile(t, filepath.Join(dir, "bad1.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: BAD}\n")
	writeFile(t, filepath.Join(dir, "z", "bad2.yaml"), "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t2}\nspec: {ordr: 1}\n")
	objs, err := policy.LoadPaths(context.Background(), dir)
	require.Empty(t, objs)
	var list policy.ValidationErrors
	require.True(t, errors.As(err, &list))
	require.Len(t, list, 2)
	require.Equal(t, filepath.Join(dir, "bad1.yaml"), list[0].Source)
	require.Equal(t, filepath.Join(dir, "z", "bad2.yaml"), list[1].Source)

	_, err = policy.LoadPaths(context.Background(), filepath.Join(dir, "missing.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)

	empty := t.TempDir()
	_, err = policy.LoadPaths(context.Background(), empty)
	require.ErrorIs(t, err, policy.ErrNoObjects)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = policy.LoadPaths(ctx, dir)
	require.ErrorIs(t, err, context.Canceled)
}

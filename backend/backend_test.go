package backend

import (
	"context"
	"errors"
	"testing"

	"github.com/calyxnet/calyx/compile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type fakeBackend struct{ name string }

func (f *fakeBackend) Name() string                                  { return f.name }
func (f *fakeBackend) Apply(context.Context, *compile.Ruleset) error { return nil }
func (f *fakeBackend) Check(context.Context, *compile.Ruleset) error { return nil }
func (f *fakeBackend) Dump(context.Context) ([]byte, error)          { return nil, nil }
func (f *fakeBackend) Close(context.Context) error                   { return nil }

func TestRegistry(t *testing.T) {
	var r Registry
	_, err := r.Open(context.Background(), "nftables", Options{})
	require.ErrorIs(t, err, ErrUnknownBackend)

	r.Register("b", func(context.Context, Options) (Backend, error) { return &fakeBackend{name: "b"}, nil })
	r.Register("a", func(context.Context, Options) (Backend, error) { return nil, ErrNotSupported })
	assert.Equal(t, []string{"a", "b"}, r.Names())

	b, err := r.Open(context.Background(), "b", Options{})
	require.NoError(t, err)
	assert.Equal(t, "b", b.Name())

	_, err = r.Open(context.Background(), "a", Options{})
	assert.True(t, errors.Is(err, ErrNotSupported), "factory error must wrap: %v", err)
	assert.Contains(t, err.Error(), "backend a")
}

package endpointapi

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func startServer(t *testing.T, h Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "ep.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(h, nil).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return sock
}

func TestRoundTrip(t *testing.T) {
	programmed := make(chan Endpoint, 1)
	release := make(chan struct{})
	m := &Memory{Program: func(_ context.Context, ep Endpoint) error {
		programmed <- ep
		<-release
		return nil
	}}
	c := NewClient(startServer(t, m))
	ctx := t.Context()
	ep := Endpoint{ID: "net.c1", Namespace: "ns", Pod: "p", ContainerID: "c1", IfName: "eth0", HostIf: "calyx0123456789", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}

	require.NoError(t, c.Register(ctx, ep))
	require.Equal(t, ep, <-programmed)
	ok, err := c.Enforced(ctx, ep.ID)
	require.NoError(t, err)
	require.False(t, ok, "not enforced while programming")

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.WaitEnforced(short, ep.ID), ErrNotEnforced)

	close(release)
	require.NoError(t, c.WaitEnforced(ctx, ep.ID))
	require.Equal(t, map[string]Endpoint{ep.ID: ep}, m.Endpoints())

	require.NoError(t, c.Unregister(ctx, ep.ID))
	require.NoError(t, c.Unregister(ctx, ep.ID), "unregister is idempotent")
	_, err = c.Enforced(ctx, ep.ID)
	require.ErrorIs(t, err, ErrUnknownEndpoint)
}

func TestErrors(t *testing.T) {
	broken := errors.New("nft: table locked")
	m := &Memory{Broken: func() error { return broken }}
	c := NewClient(startServer(t, m))
	ctx := t.Context()
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"status cannot program", func() error { return c.Status(ctx) }, ErrCannotProgram},
		{"register cannot program", func() error { return c.Register(ctx, Endpoint{ID: "x"}) }, ErrCannotProgram},
		{"register without id", func() error { return c.Register(ctx, Endpoint{}) }, ErrProtocol},
		{"unavailable", func() error { return NewClient(filepath.Join(t.TempDir(), "none")).Status(ctx) }, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, tt.call(), tt.want)
		})
	}
}

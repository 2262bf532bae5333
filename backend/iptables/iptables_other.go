//go:build !linux

package iptables

import (
	"context"

	"github.com/calyxnet/calyx/backend"
)

// Open fails: iptables is Linux only.
func Open(context.Context, backend.Options) (backend.Backend, error) {
	return nil, backend.ErrNotSupported
}

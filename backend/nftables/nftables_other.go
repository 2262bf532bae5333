//go:build !linux

package nftables

import (
	"context"

	"github.com/calyxnet/calyx/backend"
)

// Name is the registry name of this backend.
const Name = "nftables"

// Open fails: nftables is Linux only.
func Open(context.Context, backend.Options) (backend.Backend, error) {
	return nil, backend.ErrNotSupported
}

// TableName returns the table a backend with Options.Name name owns.
func TableName(name string) string {
	if name == "" {
		return "calyx"
	}
	return "calyx-" + name
}

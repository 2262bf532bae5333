//go:build !linux

package ebpf

import (
	"context"

	"github.com/calyxnet/calyx/backend"
)

// Name is the registry name of this backend.
const Name = "ebpf"

// Open fails: the eBPF dataplane is Linux only.
func Open(context.Context, backend.Options) (backend.Backend, error) {
	return nil, backend.ErrNotSupported
}

// Factory returns a backend.Factory; on this system it fails: the eBPF
// dataplane is Linux only.
func Factory(...Option) backend.Factory { return Open }

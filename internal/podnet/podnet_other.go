//go:build !linux

package podnet

import (
	"context"
	"errors"
	"net/netip"

	"github.com/calyxnet/calyx/internal/netns"
)

// ErrNotSupported is returned on systems without network namespaces.
var ErrNotSupported = errors.New("podnet: not supported on this system")

// UplinkName is the dummy interface PrepareNode adds on Linux.
const UplinkName = "cxuplink"

// PrepareNode fails: no network namespaces here.
func PrepareNode(context.Context, *netns.NS, ...netip.Addr) error { return ErrNotSupported }

// Setup fails: no network namespaces here.
func Setup(context.Context, *netns.NS, *netns.NS, Config) error { return ErrNotSupported }

// Teardown fails: no network namespaces here.
func Teardown(context.Context, *netns.NS, string) error { return ErrNotSupported }

// Check fails: no network namespaces here.
func Check(context.Context, *netns.NS, Config) error { return ErrNotSupported }

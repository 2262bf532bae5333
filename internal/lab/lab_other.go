//go:build !linux

package lab

import (
	"context"
	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"time"

	"github.com/calyxnet/calyx/internal/netns"
)

// Lab is a running lab; none can be built on this system.
type Lab struct{}

// New fails: network namespaces are Linux only.
func New(context.Context, Spec, Options) (*Lab, error) { return nil, ErrNotSupported }

// ID returns "".
func (l *Lab) ID() string { return "" }

// Spec returns the zero Spec.
func (l *Lab) Spec() Spec { return Spec{} }

// NodeNS returns nil.
func (l *Lab) NodeNS() *netns.NS { return nil }

// NS returns nothing.
func (l *Lab) NS(string) (*netns.NS, bool) { return nil, false }

// Close does nothing.
func (l *Lab) Close() error { return nil }

// FlushConntrack fails.
func (l *Lab) FlushConntrack(context.Context) error { return ErrNotSupported }

// Probes returns the spec's probes.
func (l *Lab) Probes() []Probe { return nil }

// Observe fails.
func (l *Lab) Observe(context.Context) (*Matrix, error) { return nil, ErrNotSupported }

// Run fails.
func (l *Lab) Run(context.Context, []Probe) (*Matrix, error) { return nil, ErrNotSupported }

// Reach fails: network namespaces are Linux only.
func Reach(context.Context, Spec, *compile.Ruleset, backend.Factory, Options) (*Matrix, error) {
	return nil, ErrNotSupported
}

// Recheck fails.
func (l *Lab) Recheck(context.Context, *Matrix, *Matrix) (*Matrix, error) {
	return nil, ErrNotSupported
}

// Serve fails: network namespaces are Linux only.
func Serve(*netns.NS, ...Port) (func() error, error) { return nil, ErrNotSupported }

// ProbeFrom fails: network namespaces are Linux only.
func ProbeFrom(context.Context, *netns.NS, Probe, time.Duration) (bool, error) {
	return false, ErrNotSupported
}

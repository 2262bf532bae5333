// Package backend defines the interface every Calyx dataplane implements
// and a registry that opens one by name.
//
// A Backend renders a compile.Ruleset into the kernel (nftables, iptables,
// eBPF) or, for backend/model, into a reference interpreter. Each Apply
// replaces the whole desired state atomically: after it returns, the
// dataplane enforces either the new Ruleset in full or, on error, the
// previous one in full, never a mix.
//
// Subpackages must not import each other; they share only this package and
// compile.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/calyxnet/calyx/compile"
)

// Errors callers branch on.
var (
	// ErrNotSupported is returned when the running system lacks a feature
	// the backend needs (a kernel too old, a missing binary, a non-Linux OS).
	ErrNotSupported = errors.New("backend: not supported on this system")
	// ErrUnknownBackend is returned by Registry.Open for a name nobody
	// registered.
	ErrUnknownBackend = errors.New("backend: unknown backend")
	// ErrClosed is returned by a Backend used after Close.
	ErrClosed = errors.New("backend: closed")
)

// Backend is one dataplane.
type Backend interface {
	// Name returns the registry name ("model", "nftables", "iptables", "ebpf").
	Name() string
	// Apply makes the dataplane enforce rs, diffing against what it has.
	// It is atomic: on error the previous state stays in force, whole.
	Apply(ctx context.Context, rs *compile.Ruleset) error
	// Check validates that rs could be applied (a dry run against the
	// kernel where the kernel offers one) without changing anything.
	Check(ctx context.Context, rs *compile.Ruleset) error
	// Dump returns the backend's state in its native syntax: nft text,
	// iptables-restore input, a map/program listing, or the IR for model.
	Dump(ctx context.Context) ([]byte, error)
	// Close removes everything the backend owns (tables, chains, sets,
	// programs, pins) and nothing else.
	Close(ctx context.Context) error
}

// Options are the knobs common to every backend.
type Options struct {
	// Logger receives the backend's logs; nil discards them.
	Logger *slog.Logger
	// NetNS is the path of the network namespace to program (for example
	// /var/run/netns/node1); empty means the caller's namespace.
	NetNS string
	// Name distinguishes several instances of one backend on one host
	// (tests run in parallel): it suffixes the table, chain prefix or pin
	// directory. Empty means the default ("calyx").
	Name string
}

// Factory opens a backend.
type Factory func(ctx context.Context, opts Options) (Backend, error)

// Registry maps backend names to factories. The zero value is empty and
// ready to use; it is safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// Register adds a factory under name, replacing any earlier one.
func (r *Registry) Register(name string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.factories == nil {
		r.factories = make(map[string]Factory)
	}
	r.factories[name] = f
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Open opens the backend registered under name.
func (r *Registry) Open(ctx context.Context, name string, opts Options) (Backend, error) {
	r.mu.RLock()
	f, ok := r.factories[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownBackend, name, r.Names())
	}
	b, err := f(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	return b, nil
}

// Drift is what a repair found: differences between the kernel and the
// last applied Ruleset, put back.
type Drift interface {
	// Empty reports whether nothing had drifted.
	Empty() bool
	// String lists the repairs for a log line.
	String() string
}

// Releaser is implemented by backends that hold the kernel objects they
// installed open (descriptors, a lock, a watcher goroutine), as the eBPF
// dataplane does. Release lets go of them and leaves everything installed
// in place and enforcing, exactly as the death of the process would: a new
// backend of the same Options.Name and namespace adopts it. Afterwards the
// Backend returns ErrClosed. Backends without such objects (nftables,
// iptables) need no Release: dropping them leaves the kernel as it is.
type Releaser interface {
	Release(ctx context.Context) error
}

// Repairer is implemented by kernel dataplanes that can find and repair
// drift: rules, chains, sets, programs or maps changed or removed from
// outside. The node agent calls it periodically and after apply errors.
type Repairer interface {
	// Repair reads the dataplane back, compares it with what the backend
	// last applied and restores the difference atomically. Before the
	// first Apply it does nothing.
	Repair(ctx context.Context) (Drift, error)
}

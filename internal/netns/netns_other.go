//go:build !linux

package netns

import "errors"

// RunDir is where named namespaces are bound on Linux.
const RunDir = "/run/netns"

// Errors callers branch on.
var (
	ErrRestore = errors.New("netns: could not restore the thread's namespace")
	ErrExists  = errors.New("netns: namespace name already exists")
	ErrClosed  = errors.New("netns: closed")
	// ErrNotSupported is returned on systems without network namespaces.
	ErrNotSupported = errors.New("netns: not supported on this system")
)

// NS is a handle on a network namespace; on this system none can be opened.
type NS struct{}

// Create fails: no network namespaces here.
func Create(string) (*NS, error) { return nil, ErrNotSupported }

// Open fails: no network namespaces here.
func Open(string) (*NS, error) { return nil, ErrNotSupported }

// Current fails: no network namespaces here.
func Current() (*NS, error) { return nil, ErrNotSupported }

// Name returns "".
func (n *NS) Name() string { return "" }

// Path returns "".
func (n *NS) Path() string { return "" }

// Fd returns -1.
func (n *NS) Fd() int { return -1 }

// Inode fails.
func (n *NS) Inode() (uint64, error) { return 0, ErrNotSupported }

// Close does nothing.
func (n *NS) Close() error { return nil }

// Delete does nothing.
func (n *NS) Delete() error { return nil }

// Do fails.
func (n *NS) Do(func() error) error { return ErrNotSupported }

// WriteSysctl fails.
func (n *NS) WriteSysctl(string, string) error { return ErrNotSupported }

// List returns nothing.
func List(string) ([]string, error) { return nil, nil }

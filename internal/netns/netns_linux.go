//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// RunDir is where named namespaces are bound, as iproute2 does.
const RunDir = "/run/netns"

// Errors callers branch on.
var (
	// ErrRestore means a thread could not return to its original namespace
	// after Do; the thread was discarded. The function's own result is
	// joined to it.
	ErrRestore = errors.New("netns: could not restore the thread's namespace")
	// ErrExists is returned by Create for a name already bound in RunDir.
	ErrExists = errors.New("netns: namespace name already exists")
	// ErrClosed is returned by an NS used after Close or Delete.
	ErrClosed = errors.New("netns: closed")
)

// NS is an open handle on a network namespace.
type NS struct {
	name string // empty unless named in RunDir
	path string
	f    *os.File
}

// Create makes a new network namespace bound to RunDir/name and returns a
// handle on it. The calling goroutine's thread is not touched.
func Create(name string) (*NS, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("netns: invalid name %q", name)
	}
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	path := filepath.Join(RunDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%w: %s", ErrExists, path)
		}
		return nil, fmt.Errorf("netns: create %s: %w", path, err)
	}
	_ = f.Close()

	err = onLockedThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		// Bind the thread's new namespace to the file so it outlives the
		// thread.
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount: %w", err)
		}
		return nil
	})
	if err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return nil, fmt.Errorf("netns: create %s: %w", name, err)
	}
	ns, err := Open(path)
	if err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return nil, err
	}
	ns.name = name
	return ns, nil
}

// Open returns a handle on the namespace at path (a file in RunDir,
// /proc/PID/ns/net, …).
func Open(path string) (*NS, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("netns: open %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("netns: statfs %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		_ = f.Close()
		return nil, fmt.Errorf("netns: %s is not a namespace file", path)
	}
	return &NS{path: path, f: f}, nil
}

// Current returns a handle on the namespace of the calling thread. Outside
// Do, that is the process's namespace as long as nothing else switched the
// thread.
func Current() (*NS, error) {
	return Open("/proc/thread-self/ns/net")
}

// Name returns the name in RunDir, or "" for a namespace opened by path.
func (n *NS) Name() string { return n.name }

// Path returns the path the namespace was opened from; backend.Options.NetNS
// takes it.
func (n *NS) Path() string { return n.path }

// Fd returns the open descriptor, for netlink.NewHandleAt and
// nftables.WithNetNSFd. It is valid until Close; -1 after.
func (n *NS) Fd() int {
	if n.f == nil {
		return -1
	}
	return int(n.f.Fd())
}

// Inode returns the namespace's inode number, which names it for as long
// as it exists (the number of /proc/PID/ns/net's "net:[N]"). The kernel
// may give it to a new namespace once this one is gone.
func (n *NS) Inode() (uint64, error) {
	if n.f == nil {
		return 0, fmt.Errorf("netns: %s: %w", n.path, os.ErrClosed)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(n.f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("netns: stat %s: %w", n.path, err)
	}
	return st.Ino, nil
}

// Close releases the descriptor. The namespace stays if it is named.
func (n *NS) Close() error {
	if n.f == nil {
		return nil
	}
	err := n.f.Close()
	n.f = nil
	return err
}

// Delete closes the handle and, for a named namespace, removes its name.
// Deleting a namespace that is already gone is not an error.
func (n *NS) Delete() error {
	cerr := n.Close()
	if n.name == "" {
		return cerr
	}
	path := filepath.Join(RunDir, n.name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: remove %s: %w", path, err)
	}
	return cerr
}

// Do runs fn on an OS thread switched into the namespace and waits for it.
// fn runs on its own goroutine: goroutines it starts run in whatever
// namespace their threads have (normally the process's), but a socket it
// opens stays in this namespace for its whole life.
func (n *NS) Do(fn func() error) error {
	if n.f == nil {
		return ErrClosed
	}
	fd := n.Fd()
	return onLockedThread(func() error {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netns: setns %s: %w", n.path, err)
		}
		return fn()
	})
}

// onLockedThread runs fn on a new goroutine locked to its thread, then
// returns the thread to the namespace it started in. When that fails, the
// goroutine exits without unlocking so the runtime destroys the thread.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: open own namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with the goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("%w: %w", ErrRestore, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// List returns the names in RunDir that start with prefix, sorted.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// WriteSysctl writes value to the per-namespace sysctl key (dotted or
// slashed: "net.ipv4.ip_forward", "net/ipv4/conf/eth0/proxy_arp") inside
// the namespace. Interface names may contain dots only in the slashed form.
func (n *NS) WriteSysctl(key, value string) error {
	p := key
	if !strings.Contains(p, "/") {
		p = strings.ReplaceAll(p, ".", "/")
	}
	p = filepath.Join("/proc/sys", p)
	return n.Do(func() error {
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("netns: sysctl %s=%s in %s: %w", key, value, n.path, err)
		}
		return nil
	})
}

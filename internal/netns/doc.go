// Package netns is Calyx's one audited way to work inside a Linux network
// namespace.
//
// Switching a thread into another namespace is dangerous in Go: goroutines
// migrate between OS threads, so a goroutine that switched and did not
// switch back leaves some unrelated goroutine running in the wrong
// namespace later. NS.Do therefore runs its function on a fresh goroutine
// locked to its OS thread, and restores the original namespace before
// unlocking. If the restore fails the goroutine exits still locked, which
// makes the runtime destroy the thread instead of reusing it.
//
// Prefer namespace-bound handles over switching at all: netlink.NewHandleAt
// (vishvananda/netlink) and nftables.WithNetNSFd (google/nftables) take
// NS.Fd. Use Do only for what has no such handle: opening sockets (a socket
// keeps the namespace it was created in for its whole life) and writing
// per-namespace sysctls under /proc/sys/net.
//
// Named namespaces live in /run/netns like those of `ip netns add`, so
// `ip netns exec NAME …` works on them for debugging.
//
// Lifecycle: an NS holds an open file descriptor on the namespace. Close
// releases the descriptor; Delete also removes the name (the namespace
// itself disappears when nothing else refers to it: no process, socket or
// open descriptor).
package netns

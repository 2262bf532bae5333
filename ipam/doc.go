// Package ipam hands out pod addresses: IP pools cut into blocks, blocks
// claimed with affinity to a node, addresses held by handles (one per pod
// attachment), all kept in a [Store] that never hands out an address
// twice.
//
// # Allocation
//
// [Allocator.AutoAssign] takes addresses from the node's affine blocks
// first, claims a new block of a usable pool when they are full, and only
// when no block can be claimed (and Config.StrictAffinity is off) borrows
// from a block affine to another node. A request is all or nothing.
// [Allocator.Assign] takes one given address. [Allocator.Release] and
// [Allocator.ReleaseByHandle] free addresses; a freed address is not
// handed out again for Config.Cooldown, so a late packet for an old pod
// never reaches a new one. [Allocator.GC] frees handles whose holders are
// gone (after a grace period and two consecutive observations) and
// deletes empty blocks once their cool-down is over.
//
// # Data model and atomicity
//
// The store holds small objects, each written whole:
//
//	pool/<name>          a Pool
//	block/<addr>_<bits>  pool, affine node, per address: handle, release time
//	node/<name>          the node's affine blocks, and which are full
//	handle/<id>          node, attributes, creation time, addresses
//
// The block is the truth about who holds an address; handle and node
// objects are indexes. Every change (an assignment with its handle, a
// block claim with the node's affinity) is one atomic compare-and-swap
// over all the keys it touches, against the revisions it read: two writers
// that read the same state cannot both succeed, and a crash at any point
// leaves either the old state or the new one. No address can be held
// twice. A conflicting commit is retried (bounded, with jittered backoff).
// A decision that writes nothing, such as [ErrExhausted], is taken from a
// consistent snapshot (etcd, bbolt) or confirmed by checking that every
// key read is unchanged (other stores).
//
// [Allocator.Check] reports every inconsistency the indexes could have
// (written by hand, by an older version or by a bug) and [Allocator.Repair]
// fixes those that are safe to fix.
//
// # Stores
//
// [OpenBolt] is the node's embedded store: one bbolt file, every commit
// fsynced before it returns. Several processes may share the file (the
// CNI plugin runs as many short-lived processes): a process opens the file
// when it has work and closes it when its last operation ends, so the
// file lock is held only while working; open waits for the lock up to
// BoltOptions.LockTimeout. Concurrent commits of one process share one
// bbolt transaction and one fsync (group commit), and each returns only
// after its fsync, so batching never loses an acknowledged allocation.
// BoltOptions.KeepOpen keeps the lock for a process that owns the file.
//
// [NewEtcdStore] and [DialEtcd] keep the state in etcd v3 for many nodes:
// commits are etcd transactions comparing mod revisions; the reads of one
// update are pinned to one revision. On stores without their own write
// lock (etcd, memory) an Allocator combines concurrent AutoAssign calls
// for one node into one commit (at most 32 requests); if one of them
// cannot be served, each runs alone, so it fails alone.
//
// A commit that fails with a network or timeout error may still have
// happened in etcd. The allocator does not retry it behind the caller's
// back. A caller that retries should set AssignRequest.Idempotent, so the
// retry returns what the handle already holds instead of adding more.
// Nothing is ever held twice.
//
// [NewMemoryStore] is for tests and examples.
package ipam

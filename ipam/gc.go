package ipam

import (
	"context"
	"fmt"
	"net/netip"
)

// LiveFunc tells GC whether a handle's holder (a pod, a container) still
// exists. An error counts as "live": GC never frees on doubt.
type LiveFunc func(ctx context.Context, h Handle) (bool, error)

// GCResult says what one GC pass did.
type GCResult struct {
	// Checked is the number of handles old enough to be judged.
	Checked int
	// Suspects are handles seen dead for the first time (or not yet for
	// the grace period); a later pass frees them if still dead.
	Suspects []string
	// Released are the handles freed by this pass.
	Released []string
	// BlocksReleased are empty blocks, past their cool-down, deleted so
	// that any node may claim them again.
	BlocksReleased []netip.Prefix
}

// GC frees the addresses of handles that are no longer live. A handle is
// freed only when it is older than Config.GCGrace and was seen dead by
// two consecutive passes at least GCGrace apart; a handle seen live, or
// recreated under the same ID, starts over. GC then deletes empty blocks
// whose cool-down has passed.
//
// The observations are kept by the Allocator in memory: a restarted
// process starts observing afresh, which only delays freeing.
func (a *Allocator) GC(ctx context.Context, isLive LiveFunc) (GCResult, error) {
	a.gcMu.Lock()
	defer a.gcMu.Unlock()
	var res GCResult
	handles, err := a.Handles(ctx)
	if err != nil {
		return res, fmt.Errorf("ipam: gc: %w", err)
	}
	now := a.cfg.Now().UnixNano()
	grace := int64(a.cfg.GCGrace)
	next := map[string]suspect{}
	for _, h := range handles {
		created := h.Created.UnixNano()
		if now-created < grace {
			continue
		}
		res.Checked++
		live, err := isLive(ctx, h)
		if err != nil || live {
			continue
		}
		s, seen := a.suspects[h.ID]
		if !seen || s.created != created {
			next[h.ID] = suspect{first: now, created: created}
			res.Suspects = append(res.Suspects, h.ID)
			continue
		}
		if now-s.first < grace {
			next[h.ID] = s
			res.Suspects = append(res.Suspects, h.ID)
			continue
		}
		freed := false
		err = a.run(ctx, func(t *txn) error {
			freed = false
			hr, err := t.handle(h.ID)
			if err != nil || hr == nil || hr.Created != created {
				return err // gone or recreated meanwhile: leave it
			}
			var addrs []netip.Addr
			freed = true
			return a.releaseHandle(t, h.ID, hr, &addrs)
		})
		if err != nil {
			return res, fmt.Errorf("ipam: gc %s: %w", h.ID, err)
		}
		if freed {
			res.Released = append(res.Released, h.ID)
			a.cfg.Logger.Info("ipam: gc freed handle", "handle", h.ID, "addrs", h.Addrs)
		}
	}
	a.suspects = next
	blocks, err := a.ReleaseEmptyBlocks(ctx)
	res.BlocksReleased = blocks
	if err != nil {
		return res, err
	}
	return res, nil
}

// ReleaseEmptyBlocks deletes every block without allocations whose
// released addresses have all passed the cool-down, and drops it from its
// node's affinity.
func (a *Allocator) ReleaseEmptyBlocks(ctx context.Context) ([]netip.Prefix, error) {
	kvs, err := a.s.List(ctx, blockPrefix)
	if err != nil {
		return nil, fmt.Errorf("ipam: list blocks: %w", err)
	}
	cool := int64(a.cfg.Cooldown)
	var out []netip.Prefix
	for _, kv := range kvs {
		b, err := decodeBlock(kv.Value)
		if err != nil || b.allocated() > 0 || !b.cooled(a.cfg.Now().UnixNano(), cool) {
			continue
		}
		deleted := false
		err = a.run(ctx, func(t *txn) error {
			deleted = false
			b, err := t.block(b.CIDR)
			if err != nil || b == nil || b.allocated() > 0 || !b.cooled(t.now, cool) {
				return err
			}
			t.del(blockKey(b.CIDR))
			if b.Affinity != "" {
				nr, err := t.node(b.Affinity)
				if err != nil {
					return err
				}
				if _, ok := nr.getBlock(b.CIDR); ok {
					delete(nr.Blocks, b.CIDR)
					if len(nr.Blocks) == 0 {
						t.del(nodeKey(b.Affinity))
					} else {
						t.put(nodeKey(b.Affinity), nr)
					}
				}
			}
			deleted = true
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("ipam: release block %s: %w", b.CIDR, err)
		}
		if deleted {
			out = append(out, b.CIDR)
		}
	}
	return out, nil
}

func (n *nodeRecord) getBlock(p netip.Prefix) (bool, bool) {
	if n == nil {
		return false, false
	}
	f, ok := n.Blocks[p]
	return f, ok
}

package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// Key layout. Each object is small and written whole by one
// compare-and-swap:
//
//	pool/<name>          a Pool
//	block/<addr>_<bits>  a block: pool, affine node, one handle per address,
//	                     release time per address (for the cool-down)
//	node/<name>          the node's affine blocks and which of them are full
//	handle/<id>          the handle's node, attributes, creation time and
//	                     addresses
//
// The block is the source of truth for who holds an address; the handle
// and node objects are indexes over blocks, always changed in the same
// commit as the blocks they describe.
const (
	poolPrefix   = "pool/"
	blockPrefix  = "block/"
	nodePrefix   = "node/"
	handlePrefix = "handle/"
)

func blockKey(p netip.Prefix) string {
	return blockPrefix + p.Addr().String() + "_" + fmt.Sprint(p.Bits())
}

func parseBlockKey(k string) (netip.Prefix, error) {
	s, ok := strings.CutPrefix(k, blockPrefix)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("%w: block key %q", ErrInvalid, k)
	}
	p, err := netip.ParsePrefix(strings.Replace(s, "_", "/", 1))
	if err != nil || p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%w: block key %q", ErrInvalid, k)
	}
	return p, nil
}

func nodeKey(n string) string   { return nodePrefix + n }
func handleKey(h string) string { return handlePrefix + h }
func poolKey(n string) string   { return poolPrefix + n }

// blockRecord is a block as stored.
type blockRecord struct {
	CIDR     netip.Prefix `json:"cidr"`
	Pool     string       `json:"pool"`
	Affinity string       `json:"affinity,omitempty"`
	// Handles holds, per ordinal, the handle holding the address or "".
	Handles []string `json:"handles"`
	// Freed holds, per ordinal, when the address was last released (Unix
	// nanoseconds, 0: never).
	Freed []int64 `json:"freed"`
}

func newBlock(cidr netip.Prefix, pool, node string) *blockRecord {
	n := blockLen(cidr)
	return &blockRecord{CIDR: cidr, Pool: pool, Affinity: node, Handles: make([]string, n), Freed: make([]int64, n)}
}

func decodeBlock(b []byte) (*blockRecord, error) {
	var r blockRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: block: %w", ErrInvalid, err)
	}
	if !r.CIDR.IsValid() || r.CIDR != r.CIDR.Masked() {
		return nil, fmt.Errorf("%w: block cidr %v", ErrInvalid, r.CIDR)
	}
	host := r.CIDR.Addr().BitLen() - r.CIDR.Bits()
	if host > 12 {
		return nil, fmt.Errorf("%w: block %v too large", ErrInvalid, r.CIDR)
	}
	if n := 1 << host; len(r.Handles) != n || len(r.Freed) != n {
		return nil, fmt.Errorf("%w: block %v has %d/%d slots, want %d", ErrInvalid, r.CIDR, len(r.Handles), len(r.Freed), n)
	}
	return &r, nil
}

func (b *blockRecord) addr(i int) netip.Addr { return addrAdd(b.CIDR.Addr(), uint64(i), 0) }

func (b *blockRecord) ordinal(a netip.Addr) (int, bool) {
	if !b.CIDR.Contains(a) {
		return 0, false
	}
	return int(addrOffset(b.CIDR.Addr(), a)), true
}

func (b *blockRecord) allocated() int {
	n := 0
	for _, h := range b.Handles {
		if h != "" {
			n++
		}
	}
	return n
}

func (b *blockRecord) full() bool { return b.allocated() == len(b.Handles) }

// pick returns a free ordinal: a never-used one first, else the one
// released longest ago, provided its cool-down has passed.
func (b *blockRecord) pick(now, cooldown int64) (int, bool) {
	best, bestFreed := -1, int64(0)
	for i, h := range b.Handles {
		if h != "" {
			continue
		}
		f := b.Freed[i]
		if f == 0 {
			return i, true
		}
		if now-f >= cooldown && (best < 0 || f < bestFreed) {
			best, bestFreed = i, f
		}
	}
	return best, best >= 0
}

// cooled reports whether every released address of an empty block has
// passed its cool-down, so the block may be deleted and reused.
func (b *blockRecord) cooled(now, cooldown int64) bool {
	for _, f := range b.Freed {
		if f != 0 && now-f < cooldown {
			return false
		}
	}
	return true
}

// nodeRecord lists a node's affine blocks; the value says whether the
// block is fully allocated, so that a nearly full pool costs no more reads
// than an empty one.
type nodeRecord struct {
	Blocks map[netip.Prefix]bool `json:"blocks"`
}

func decodeNode(b []byte) (*nodeRecord, error) {
	var r nodeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: node: %w", ErrInvalid, err)
	}
	if r.Blocks == nil {
		r.Blocks = map[netip.Prefix]bool{}
	}
	return &r, nil
}

// handleRecord lists the addresses a handle holds.
type handleRecord struct {
	Node    string            `json:"node,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
	Created int64             `json:"created"`
	Addrs   []netip.Addr      `json:"addrs"`
}

func decodeHandle(b []byte) (*handleRecord, error) {
	var r handleRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: handle: %w", ErrInvalid, err)
	}
	return &r, nil
}

func decodePool(b []byte) (Pool, error) {
	var p Pool
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%w: pool: %w", ErrInvalid, err)
	}
	return p.normalize()
}

func validName(what, s string) error {
	if s == "" || len(s) > 1024 || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%w: %s %q", ErrInvalid, what, s)
	}
	return nil
}

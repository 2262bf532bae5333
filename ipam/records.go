package ipam

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
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
	CIDR     netip.Prefix
	Pool     string
	Affinity string
	// Handles holds, per ordinal, the handle holding the address or "".
	Handles []string
	// Freed holds, per ordinal, when the address was last released (Unix
	// nanoseconds, 0: never).
	Freed []int64
}

func newBlock(cidr netip.Prefix, pool, node string) *blockRecord {
	n := blockLen(cidr)
	return &blockRecord{CIDR: cidr, Pool: pool, Affinity: node, Handles: make([]string, n), Freed: make([]int64, n)}
}

// blockMagic starts every encoded block. Blocks are the records written
// on every assignment, so they use a compact binary form (JSON was most of
// an assignment's CPU time); `calyxctl ipam show` is the human view.
const blockMagic = "CXB1"

// encode writes: magic, then length-prefixed CIDR, pool and affinity,
// the slot count, and per slot a length-prefixed handle and a varint
// release time.
func (b *blockRecord) encode() []byte {
	out := make([]byte, 0, 64+len(b.Handles)*12)
	out = append(out, blockMagic...)
	str := func(s string) {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	str(b.CIDR.String())
	str(b.Pool)
	str(b.Affinity)
	out = binary.AppendUvarint(out, uint64(len(b.Handles)))
	for i, h := range b.Handles {
		str(h)
		out = binary.AppendVarint(out, b.Freed[i])
	}
	return out
}

func decodeBlock(raw []byte) (*blockRecord, error) {
	bad := func(what string) (*blockRecord, error) {
		return nil, fmt.Errorf("%w: block record: %s", ErrInvalid, what)
	}
	rest, ok := bytes.CutPrefix(raw, []byte(blockMagic))
	if !ok {
		return bad("no magic")
	}
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return 0, false
		}
		rest = rest[n:]
		return v, true
	}
	str := func() (string, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(rest)) {
			return "", false
		}
		s := string(rest[:n])
		rest = rest[n:]
		return s, true
	}
	var r blockRecord
	cidr, ok1 := str()
	pool, ok2 := str()
	aff, ok3 := str()
	if !ok1 || !ok2 || !ok3 {
		return bad("truncated header")
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil || p != p.Masked() {
		return bad("cidr " + strconv.Quote(cidr))
	}
	host := p.Addr().BitLen() - p.Bits()
	if host > 12 {
		return bad("block " + cidr + " too large")
	}
	n, ok := uv()
	if !ok || n != 1<<host {
		return bad(fmt.Sprintf("block %s: slot count %d", cidr, n))
	}
	r.CIDR, r.Pool, r.Affinity = p, pool, aff
	r.Handles, r.Freed = make([]string, n), make([]int64, n)
	for i := range r.Handles {
		h, ok := str()
		if !ok {
			return bad("truncated slots")
		}
		f, m := binary.Varint(rest)
		if m <= 0 {
			return bad("truncated slots")
		}
		rest = rest[m:]
		r.Handles[i], r.Freed[i] = h, f
	}
	if len(rest) != 0 {
		return bad("trailing bytes")
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
	Blocks map[netip.Prefix]bool
}

// nodeMagic starts every encoded node record; like blocks, node records
// are read by every assignment, so they are binary: magic, count, then
// per block a length-prefixed CIDR and a full byte.
const nodeMagic = "CXN1"

func (n *nodeRecord) encode() []byte {
	ps := make([]netip.Prefix, 0, len(n.Blocks))
	for p := range n.Blocks {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, netip.Prefix.Compare)
	out := make([]byte, 0, 8+len(ps)*24)
	out = append(out, nodeMagic...)
	out = binary.AppendUvarint(out, uint64(len(ps)))
	for _, p := range ps {
		t := p.String()
		out = binary.AppendUvarint(out, uint64(len(t)))
		out = append(out, t...)
		full := byte(0)
		if n.Blocks[p] {
			full = 1
		}
		out = append(out, full)
	}
	return out
}

func decodeNode(raw []byte) (*nodeRecord, error) {
	bad := func(what string) (*nodeRecord, error) {
		return nil, fmt.Errorf("%w: node record: %s", ErrInvalid, what)
	}
	rest, ok := bytes.CutPrefix(raw, []byte(nodeMagic))
	if !ok {
		return bad("no magic")
	}
	n, m := binary.Uvarint(rest)
	if m <= 0 || n > uint64(len(rest)) {
		return bad("bad count")
	}
	rest = rest[m:]
	r := &nodeRecord{Blocks: make(map[netip.Prefix]bool, n)}
	for range n {
		l, m := binary.Uvarint(rest)
		if m <= 0 || l+1 > uint64(len(rest[m:])) {
			return bad("truncated")
		}
		rest = rest[m:]
		p, err := netip.ParsePrefix(string(rest[:l]))
		if err != nil || p != p.Masked() || rest[l] > 1 {
			return bad("block " + strconv.Quote(string(rest[:l])))
		}
		r.Blocks[p] = rest[l] == 1
		rest = rest[l+1:]
	}
	if len(rest) != 0 || len(r.Blocks) != int(n) {
		return bad("trailing bytes or repeated block")
	}
	return r, nil
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

// decodePool decodes a stored pool. Pools are validated in full when
// written; reading checks only what the allocator's arithmetic relies on,
// since every assignment reads the pools.
func decodePool(b []byte) (Pool, error) {
	var p Pool
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%w: pool: %w", ErrInvalid, err)
	}
	lo, hi := 20, 32
	if p.CIDR.Addr().Is6() {
		lo, hi = 116, 128
	}
	if !p.CIDR.IsValid() || p.CIDR != p.CIDR.Masked() || p.BlockSize < max(lo, p.CIDR.Bits()) || p.BlockSize > hi {
		return p, fmt.Errorf("%w: pool %s: cidr %v, blockSize %d", ErrInvalid, p.Name, p.CIDR, p.BlockSize)
	}
	return p, nil
}

func validName(what, s string) error {
	if s == "" || len(s) > 1024 || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%w: %s %q", ErrInvalid, what, s)
	}
	return nil
}

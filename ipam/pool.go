package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/calyxnet/calyx/policy"
	"github.com/calyxnet/calyx/selector"
)

// Use is what a pool's addresses may be used for (Calico's allowedUses).
type Use string

// Uses a pool may allow, spelled as Calico spells them.
const (
	UseWorkload     Use = "Workload"
	UseTunnel       Use = "Tunnel"
	UseLoadBalancer Use = "LoadBalancer"
)

// Default block sizes, Calico's.
const (
	DefaultBlockSize4 = 26
	DefaultBlockSize6 = 122
)

// Pool is a range of addresses cut into blocks that nodes claim. It holds
// the fields of a Calico IPPool that IPAM needs (see [PoolFromIPPool]).
type Pool struct {
	// Name identifies the pool.
	Name string `json:"name"`
	// CIDR is the pool's range.
	CIDR netip.Prefix `json:"cidr"`
	// BlockSize is the prefix length of the pool's blocks: 20–32 for IPv4,
	// 116–128 for IPv6; 0 means 26 or 122.
	BlockSize int `json:"blockSize,omitempty"`
	// NodeSelector picks the nodes allowed to use the pool; "" is all().
	NodeSelector string `json:"nodeSelector,omitempty"`
	// Disabled stops new allocations; existing ones stay.
	Disabled bool `json:"disabled,omitempty"`
	// AllowedUses lists the permitted uses; empty means Workload and Tunnel.
	AllowedUses []Use `json:"allowedUses,omitempty"`
	// Manual pools are used only by requests that name them.
	Manual bool `json:"manual,omitempty"`
}

// normalize fills defaults and masks the CIDR; it returns every problem.
func (p Pool) normalize() (Pool, error) {
	var errs []string
	if p.Name == "" || strings.ContainsAny(p.Name, "/\x00") {
		errs = append(errs, fmt.Sprintf("name %q: must be non-empty without '/'", p.Name))
	}
	if !p.CIDR.IsValid() {
		errs = append(errs, "cidr: not set")
	} else {
		p.CIDR = p.CIDR.Masked()
		lo, hi, def := 20, 32, DefaultBlockSize4
		if p.CIDR.Addr().Is6() {
			lo, hi, def = 116, 128, DefaultBlockSize6
		}
		if p.CIDR.Addr().Is4In6() {
			errs = append(errs, "cidr: IPv4-mapped IPv6 is not allowed")
		}
		if p.BlockSize == 0 {
			p.BlockSize = def
		}
		if p.BlockSize < lo || p.BlockSize > hi {
			errs = append(errs, fmt.Sprintf("blockSize %d: must be within %d..%d", p.BlockSize, lo, hi))
		} else if p.BlockSize < p.CIDR.Bits() {
			errs = append(errs, fmt.Sprintf("blockSize %d: larger than the pool %s", p.BlockSize, p.CIDR))
		}
	}
	if _, err := selector.Parse(p.NodeSelector); err != nil {
		errs = append(errs, fmt.Sprintf("nodeSelector: %v", err))
	}
	for _, u := range p.AllowedUses {
		if u != UseWorkload && u != UseTunnel && u != UseLoadBalancer {
			errs = append(errs, fmt.Sprintf("allowedUses: unknown %q", u))
		}
	}
	if len(errs) > 0 {
		return p, fmt.Errorf("%w: pool %s: %s", ErrInvalid, p.Name, strings.Join(errs, "; "))
	}
	return p, nil
}

func (p Pool) allows(u Use) bool {
	if len(p.AllowedUses) == 0 {
		return u == UseWorkload || u == UseTunnel
	}
	return slices.Contains(p.AllowedUses, u)
}

// blocks returns the number of blocks in the pool, capped at 1<<62.
func (p Pool) blocks() uint64 {
	n := p.BlockSize - p.CIDR.Bits()
	if n >= 62 {
		return 1 << 62
	}
	return 1 << n
}

// blockAt returns the i-th block of the pool.
func (p Pool) blockAt(i uint64) netip.Prefix {
	shift := uint(p.CIDR.Addr().BitLen() - p.BlockSize)
	return netip.PrefixFrom(addrAdd(p.CIDR.Addr(), i, shift), p.BlockSize)
}

// blockOf returns the block of the pool that holds a.
func (p Pool) blockOf(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, p.BlockSize).Masked()
}

// addrAdd returns a + (n << shift) in 128-bit arithmetic (IPv4 in its
// 32 bits).
func addrAdd(a netip.Addr, n uint64, shift uint) netip.Addr {
	if a.Is4() {
		b := a.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		v += uint32(n << shift)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	b := a.As16()
	hi, lo := be64(b[:8]), be64(b[8:])
	var addHi, addLo uint64
	if shift == 0 {
		addLo = n
	} else {
		addLo = n << shift
		addHi = n >> (64 - shift)
	}
	nlo := lo + addLo
	if nlo < lo {
		hi++
	}
	hi += addHi
	var out [16]byte
	put64(out[:8], hi)
	put64(out[8:], nlo)
	return netip.AddrFrom16(out)
}

// addrOffset returns a - base for an address inside a block of at most
// 2^32 addresses.
func addrOffset(base, a netip.Addr) uint64 {
	if a.Is4() {
		x, y := base.As4(), a.As4()
		return uint64(be32(y[:]) - be32(x[:]))
	}
	x, y := base.As16(), a.As16()
	return be64(y[8:]) - be64(x[8:])
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func be64(b []byte) uint64 { return uint64(be32(b[:4]))<<32 | uint64(be32(b[4:])) }
func put64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// blockSize returns the number of addresses of a block prefix.
func blockLen(p netip.Prefix) int { return 1 << (p.Addr().BitLen() - p.Bits()) }

// PoolFromIPPool converts a Calico IPPool resource into a Pool, with the
// same defaults and validation as [Allocator.UpsertPool].
func PoolFromIPPool(r *policy.IPPool) (Pool, error) {
	cidr, err := netip.ParsePrefix(r.Spec.CIDR)
	if err != nil {
		return Pool{}, fmt.Errorf("%w: IPPool %s: spec.cidr: %w", ErrInvalid, r.Name, err)
	}
	p := Pool{
		Name:         r.Name,
		CIDR:         cidr,
		BlockSize:    r.Spec.BlockSize,
		NodeSelector: r.Spec.NodeSelector,
		Disabled:     r.Spec.Disabled,
		Manual:       r.Spec.AssignmentMode == "Manual",
	}
	for _, u := range r.Spec.AllowedUses {
		p.AllowedUses = append(p.AllowedUses, Use(u))
	}
	return p.normalize()
}

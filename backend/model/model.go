// Package model is the reference interpreter of a compile.Ruleset: it says
// what the IR means. Every kernel backend is tested against it.
//
// Model implements backend.Backend without touching the kernel: Apply
// indexes the Ruleset, Verdict judges the first packet of a flow and
// explains why. Evaluate does the same as a plain function.
//
// The semantics are Calico's (see package compile for the evaluation
// order). A flow between two endpoints passes the source's egress policy,
// then the destination's ingress policy; a flow whose source or destination
// is not an endpoint of the Ruleset is judged only on the side that is.
// Traffic an endpoint sends to itself never leaves its network namespace
// and is always allowed.
package model

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
)

// Name is the registry name of this backend.
const Name = "model"

// Packet is the first packet of a flow.
type Packet struct {
	Src, Dst netip.Addr
	// Protocol is the IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6,
	// 132 SCTP …).
	Protocol uint8
	// SrcPort and DstPort are the transport ports (TCP, UDP, SCTP, UDPLite).
	SrcPort, DstPort uint16
	// ICMPType and ICMPCode are the ICMP or ICMPv6 type and code.
	ICMPType, ICMPCode uint8
}

// String prints "src:port -> dst:port/PROTO" or, for ICMP, the type/code.
func (p Packet) String() string {
	if isICMP(p.Protocol) {
		return fmt.Sprintf("%s -> %s %s type=%d code=%d", p.Src, p.Dst, compile.ProtocolName(p.Protocol), p.ICMPType, p.ICMPCode)
	}
	return fmt.Sprintf("%s -> %s/%s",
		netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort), compile.ProtocolName(p.Protocol))
}

func isICMP(proto uint8) bool { return proto == 1 || proto == 58 }

func hasPorts(proto uint8) bool { return proto == 6 || proto == 17 || proto == 132 || proto == 136 }

// Model is the reference backend. The zero value is not usable; call New.
// It is safe for concurrent use.
type Model struct {
	mu     sync.RWMutex
	closed bool
	idx    *Index
}

var _ backend.Backend = (*Model)(nil)

// New returns an empty Model: until Apply, every endpoint is unknown and
// every packet is judged by no policy at all (allowed).
func New() *Model {
	return &Model{idx: NewIndex(&compile.Ruleset{})}
}

// Open is a backend.Factory for the model.
func Open(context.Context, backend.Options) (backend.Backend, error) {
	return New(), nil
}

// Name returns "model".
func (m *Model) Name() string { return Name }

// Apply replaces the Ruleset the model judges with. It fails, keeping the
// previous one, if rs refers to a set or policy it does not hold.
func (m *Model) Apply(ctx context.Context, rs *compile.Ruleset) error {
	if err := Validate(rs); err != nil {
		return err
	}
	idx := NewIndex(rs)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return backend.ErrClosed
	}
	m.idx = idx
	return nil
}

// Check reports whether rs is self-consistent (every reference resolves).
func (m *Model) Check(ctx context.Context, rs *compile.Ruleset) error {
	return Validate(rs)
}

// Dump returns the canonical text of the Ruleset in force.
func (m *Model) Dump(ctx context.Context) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, backend.ErrClosed
	}
	return []byte(m.idx.rs.String()), nil
}

// Close forgets the Ruleset.
func (m *Model) Close(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.idx = NewIndex(&compile.Ruleset{})
	return nil
}

// Verdict judges p against the Ruleset in force.
func (m *Model) Verdict(p Packet) Verdict {
	m.mu.RLock()
	idx := m.idx
	m.mu.RUnlock()
	return idx.Verdict(p)
}

// Evaluate judges p against rs. For many packets, build an Index once.
func Evaluate(rs *compile.Ruleset, p Packet) Verdict {
	return NewIndex(rs).Verdict(p)
}

// Validate checks that every set and policy rs refers to is present.
func Validate(rs *compile.Ruleset) error {
	var problems []string
	checkSets := func(where string, ids []compile.SetID) {
		for _, id := range ids {
			if _, ok := rs.Sets[id]; !ok {
				problems = append(problems, fmt.Sprintf("%s: unknown set %s", where, id))
			}
		}
	}
	for id, p := range rs.Policies {
		for i := range p.Rules {
			m := &p.Rules[i].Match
			where := fmt.Sprintf("policy %s rule %d", id, i)
			for _, pm := range []*compile.PeerMatch{&m.Src, &m.Dst} {
				checkSets(where, pm.Sets)
				checkSets(where, pm.NotSets)
				checkSets(where, pm.NamedPorts)
				checkSets(where, pm.NotNamedPorts)
			}
		}
	}
	for key, ep := range rs.Endpoints {
		for _, d := range []*compile.DirectionPolicy{&ep.Ingress, &ep.Egress} {
			for _, t := range d.Tiers {
				for _, id := range t.Policies {
					if _, ok := rs.Policies[id]; !ok {
						problems = append(problems, fmt.Sprintf("endpoint %s: unknown policy %s", key, id))
					}
				}
			}
			for _, id := range d.Profiles {
				if _, ok := rs.Policies[id]; !ok {
					problems = append(problems, fmt.Sprintf("endpoint %s: unknown profile %s", key, id))
				}
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("model: inconsistent ruleset: %s", strings.Join(sortStrings(problems), "; "))
	}
	return nil
}

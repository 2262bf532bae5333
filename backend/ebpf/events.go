package ebpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Event is one record of the ring buffer: a packet that met a Log rule.
type Event struct {
	// Rule names the Log rule (zero when the backend does not know it).
	Rule RuleRef
	// RuleID is the rule's stable ID in the program.
	RuleID uint64
	// Ifindex is the host-side interface; Egress is true for traffic from
	// the pod (the pod's egress policy), false for traffic to it.
	Ifindex  int
	Egress   bool
	Protocol uint8
	Src, Dst netip.AddrPort
}

// String prints the event as a log line.
func (e Event) String() string {
	dir := "ingress"
	if e.Egress {
		dir = "egress"
	}
	return fmt.Sprintf("%s %s rule %d (%s): %s -> %s proto %d", e.Rule.Policy, dir, e.Rule.Index, e.Rule.Tier, e.Src, e.Dst, e.Protocol)
}

func decodeEvent(raw []byte, refs map[uint64]RuleRef) (Event, error) {
	if len(raw) < 52 {
		return Event{}, fmt.Errorf("ebpf: short event (%d bytes)", len(raw))
	}
	var e Event
	e.RuleID = binary.NativeEndian.Uint64(raw[0:])
	e.Rule = refs[e.RuleID]
	e.Ifindex = int(binary.NativeEndian.Uint32(raw[8:]))
	e.Egress = hook(raw[12]) == hookIngress
	fam := raw[13]
	e.Protocol = raw[14]
	sp, dp := binary.BigEndian.Uint16(raw[16:]), binary.BigEndian.Uint16(raw[18:])
	e.Src = netip.AddrPortFrom(addrOf(fam, raw[20:]), sp)
	e.Dst = netip.AddrPortFrom(addrOf(fam, raw[36:]), dp)
	return e, nil
}

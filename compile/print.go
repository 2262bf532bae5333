package compile

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// String prints the Ruleset canonically: sets, policies and endpoints in
// sorted order, one item per line. Two Rulesets print the same iff they
// hold the same state.
func (r *Ruleset) String() string {
	var b strings.Builder
	r.write(&b)
	return b.String()
}

// WriteTo writes the canonical text of String to w.
func (r *Ruleset) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	r.write(&b)
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func (r *Ruleset) write(b *strings.Builder) {
	fmt.Fprintf(b, "ruleset node=%q\n", r.Node)
	writeSettings(b, &r.Settings)
	for _, id := range sortedKeys(r.Sets) {
		b.WriteString(r.Sets[id].String())
		b.WriteByte('\n')
	}
	for _, id := range sortedKeys(r.Policies) {
		b.WriteString(r.Policies[id].String())
	}
	for _, k := range sortedKeys(r.Endpoints) {
		b.WriteString(r.Endpoints[k].String())
	}
}

func writeSettings(b *strings.Builder, s *Settings) {
	b.WriteString("settings")
	if len(s.FailsafeInbound) > 0 {
		b.WriteString(" failsafe-in=")
		writeProtoPorts(b, s.FailsafeInbound)
	}
	if len(s.FailsafeOutbound) > 0 {
		b.WriteString(" failsafe-out=")
		writeProtoPorts(b, s.FailsafeOutbound)
	}
	if s.DefaultEndpointToHostAction != 0 {
		fmt.Fprintf(b, " endpoint-to-host=%s", s.DefaultEndpointToHostAction)
	}
	if s.LogPrefix != "" {
		fmt.Fprintf(b, " log-prefix=%q", s.LogPrefix)
	}
	b.WriteByte('\n')
}

func writeProtoPorts(b *strings.Builder, pp []ProtoPort) {
	for i, p := range pp {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(ProtocolName(p.Protocol))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(p.Port)))
		if p.Net.IsValid() {
			b.WriteByte('@')
			b.WriteString(p.Net.String())
		}
	}
}

// String prints the set on one line: its ID, definition and members.
func (s *IPSet) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "set %s %s", s.ID, s.Kind)
	if s.Selector != "" {
		fmt.Fprintf(&b, " selector=%q", s.Selector)
	}
	if s.Kind == SetNamedPorts {
		fmt.Fprintf(&b, " port=%s/%s", s.PortName, ProtocolName(s.Protocol))
	}
	if len(s.Domains) > 0 {
		fmt.Fprintf(&b, " domains=%s", strings.Join(s.Domains, ","))
	}
	if s.Literal {
		b.WriteString(" literal")
	}
	b.WriteString(" members={")
	for i, n := range s.Nets {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n.String())
	}
	for i, p := range s.Ports {
		if i > 0 || len(s.Nets) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	b.WriteByte('}')
	return b.String()
}

// String prints the member as "addr/proto:port".
func (p PortMember) String() string {
	return p.Addr.String() + "/" + ProtocolName(p.Protocol) + ":" + strconv.Itoa(int(p.Port))
}

// String prints the policy header and one indented line per rule.
func (p *Policy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %s %s tier=%q name=%q\n", p.ID, p.Direction, p.Tier, p.Name)
	for i := range p.Rules {
		fmt.Fprintf(&b, "  %d: %s\n", i, p.Rules[i].String())
	}
	return b.String()
}

// String prints the rule as its action, its match and its origin.
func (r *Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Action.String())
	if m := r.Match.String(); m != "" {
		b.WriteByte(' ')
		b.WriteString(m)
	}
	fmt.Fprintf(&b, " # %s", r.Origin.String())
	return b.String()
}

// String prints the origin as "tier/policy path (source)".
func (o Origin) String() string {
	var b strings.Builder
	if o.Tier != "" {
		b.WriteString(o.Tier)
		b.WriteByte('/')
	}
	b.WriteString(o.Policy)
	if o.Path != "" {
		b.WriteByte(' ')
		b.WriteString(o.Path)
	} else if o.Index >= 0 {
		fmt.Fprintf(&b, " rule %d", o.Index)
	}
	if o.Source != "" {
		fmt.Fprintf(&b, " (%s)", o.Source)
	}
	return b.String()
}

// String prints the match as space-separated key=value terms; a zero Match
// prints as the empty string.
func (m *Match) String() string {
	var parts []string
	if m.Protocol != 0 {
		parts = append(parts, "proto="+ProtocolName(m.Protocol))
	}
	if m.NotProtocol != 0 {
		parts = append(parts, "!proto="+ProtocolName(m.NotProtocol))
	}
	if m.IPVersion != 0 {
		parts = append(parts, "ipv="+strconv.Itoa(int(m.IPVersion)))
	}
	if m.ICMP != nil {
		parts = append(parts, "icmp="+m.ICMP.String())
	}
	if m.NotICMP != nil {
		parts = append(parts, "!icmp="+m.NotICMP.String())
	}
	parts = m.Src.appendTerms(parts, "src")
	parts = m.Dst.appendTerms(parts, "dst")
	return strings.Join(parts, " ")
}

// String prints "type" or "type/code".
func (i *ICMPMatch) String() string {
	if i.Code == nil {
		return strconv.Itoa(int(i.Type))
	}
	return strconv.Itoa(int(i.Type)) + "/" + strconv.Itoa(int(*i.Code))
}

func (p *PeerMatch) appendTerms(parts []string, side string) []string {
	sets := func(key string, ids []SetID) {
		if len(ids) == 0 {
			return
		}
		s := make([]string, len(ids))
		for i, id := range ids {
			s[i] = string(id)
		}
		parts = append(parts, side+"."+key+"="+strings.Join(s, ","))
	}
	ports := func(key string, pr []PortRange) {
		if len(pr) == 0 {
			return
		}
		parts = append(parts, side+"."+key+"="+formatPortRanges(pr))
	}
	sets("sets", p.Sets)
	sets("!sets", p.NotSets)
	ports("ports", p.Ports)
	sets("named-ports", p.NamedPorts)
	ports("!ports", p.NotPorts)
	sets("!named-ports", p.NotNamedPorts)
	return parts
}

func formatPortRanges(pr []PortRange) string {
	var b strings.Builder
	for i, r := range pr {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.String())
	}
	return b.String()
}

// String prints "80" or "80:90".
func (r PortRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(int(r.Min))
	}
	return strconv.Itoa(int(r.Min)) + ":" + strconv.Itoa(int(r.Max))
}

// String prints the endpoint header, then its ingress and egress policy.
func (e *Endpoint) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "endpoint %s %s node=%q iface=%q addrs=", e.Key, e.Kind, e.Node, e.Interface)
	for i, a := range e.Addrs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(a.String())
	}
	b.WriteByte('\n')
	e.Ingress.write(&b, Ingress)
	e.Egress.write(&b, Egress)
	return b.String()
}

func (d *DirectionPolicy) write(b *strings.Builder, dir Direction) {
	for _, t := range d.Tiers {
		fmt.Fprintf(b, "  %s tier %q end=%s:", dir, t.Tier, t.EndAction)
		for _, p := range t.Policies {
			b.WriteByte(' ')
			b.WriteString(string(p))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(b, "  %s profiles:", dir)
	for _, p := range d.Profiles {
		b.WriteByte(' ')
		b.WriteString(string(p))
	}
	b.WriteByte('\n')
}

// ProtocolName returns the name Calico uses for an IP protocol number, or
// the number itself.
func ProtocolName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 1:
		return "ICMP"
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 58:
		return "ICMPv6"
	case 132:
		return "SCTP"
	case 136:
		return "UDPLite"
	}
	return strconv.Itoa(int(p))
}

// sortedKeys returns a map's keys in ascending order.
func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// comparePrefix orders prefixes by address, then by length.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

package compile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Delta is what changed between two Rulesets. Backends can apply a Delta
// instead of re-rendering everything; the agent logs it.
type Delta struct {
	SetsAdded   []SetID
	SetsRemoved []SetID
	// SetMembers lists sets present in both Rulesets whose members changed.
	SetMembers []SetMemberChange

	PoliciesAdded   []PolicyID
	PoliciesRemoved []PolicyID
	PoliciesChanged []PolicyID

	EndpointsAdded   []string
	EndpointsRemoved []string
	EndpointsChanged []string

	SettingsChanged bool
}

// SetMemberChange is the member difference of one set.
type SetMemberChange struct {
	ID           SetID
	AddedNets    []netip.Prefix
	RemovedNets  []netip.Prefix
	AddedPorts   []PortMember
	RemovedPorts []PortMember
}

// Empty reports whether nothing changed.
func (d *Delta) Empty() bool {
	return len(d.SetsAdded) == 0 && len(d.SetsRemoved) == 0 && len(d.SetMembers) == 0 &&
		len(d.PoliciesAdded) == 0 && len(d.PoliciesRemoved) == 0 && len(d.PoliciesChanged) == 0 &&
		len(d.EndpointsAdded) == 0 && len(d.EndpointsRemoved) == 0 && len(d.EndpointsChanged) == 0 &&
		!d.SettingsChanged
}

// String prints the delta, one change per line, in a stable order.
func (d *Delta) String() string {
	var b strings.Builder
	for _, id := range d.SetsAdded {
		fmt.Fprintf(&b, "+set %s\n", id)
	}
	for _, id := range d.SetsRemoved {
		fmt.Fprintf(&b, "-set %s\n", id)
	}
	for _, c := range d.SetMembers {
		fmt.Fprintf(&b, "~set %s +%d -%d\n", c.ID, len(c.AddedNets)+len(c.AddedPorts), len(c.RemovedNets)+len(c.RemovedPorts))
	}
	for _, id := range d.PoliciesAdded {
		fmt.Fprintf(&b, "+policy %s\n", id)
	}
	for _, id := range d.PoliciesRemoved {
		fmt.Fprintf(&b, "-policy %s\n", id)
	}
	for _, id := range d.PoliciesChanged {
		fmt.Fprintf(&b, "~policy %s\n", id)
	}
	for _, k := range d.EndpointsAdded {
		fmt.Fprintf(&b, "+endpoint %s\n", k)
	}
	for _, k := range d.EndpointsRemoved {
		fmt.Fprintf(&b, "-endpoint %s\n", k)
	}
	for _, k := range d.EndpointsChanged {
		fmt.Fprintf(&b, "~endpoint %s\n", k)
	}
	if d.SettingsChanged {
		b.WriteString("~settings\n")
	}
	return b.String()
}

// Diff returns what changed from old to new. A nil Ruleset is empty.
func Diff(old, new *Ruleset) *Delta {
	if old == nil {
		old = &Ruleset{}
	}
	if new == nil {
		new = &Ruleset{}
	}
	d := &Delta{}
	for _, id := range sortedKeys(new.Sets) {
		o, ok := old.Sets[id]
		if !ok {
			d.SetsAdded = append(d.SetsAdded, id)
			continue
		}
		if c, changed := diffMembers(o, new.Sets[id]); changed {
			d.SetMembers = append(d.SetMembers, c)
		}
	}
	for _, id := range sortedKeys(old.Sets) {
		if _, ok := new.Sets[id]; !ok {
			d.SetsRemoved = append(d.SetsRemoved, id)
		}
	}
	d.PoliciesAdded, d.PoliciesRemoved, d.PoliciesChanged = diffMaps(old.Policies, new.Policies, (*Policy).Equal)
	d.EndpointsAdded, d.EndpointsRemoved, d.EndpointsChanged = diffMaps(old.Endpoints, new.Endpoints, (*Endpoint).Equal)
	d.SettingsChanged = !old.Settings.Equal(&new.Settings)
	return d
}

func diffMaps[K ~string, V any](old, new map[K]V, equal func(V, V) bool) (added, removed, changed []K) {
	for _, k := range sortedKeys(new) {
		o, ok := old[k]
		switch {
		case !ok:
			added = append(added, k)
		case !equal(o, new[k]):
			changed = append(changed, k)
		}
	}
	for _, k := range sortedKeys(old) {
		if _, ok := new[k]; !ok {
			removed = append(removed, k)
		}
	}
	return added, removed, changed
}

// diffMembers merges two sorted member lists.
func diffMembers(o, n *IPSet) (SetMemberChange, bool) {
	c := SetMemberChange{ID: n.ID}
	c.AddedNets, c.RemovedNets = sortedDiff(o.Nets, n.Nets, comparePrefix)
	c.AddedPorts, c.RemovedPorts = sortedDiff(o.Ports, n.Ports, comparePortMember)
	changed := len(c.AddedNets)+len(c.RemovedNets)+len(c.AddedPorts)+len(c.RemovedPorts) > 0
	return c, changed
}

// sortedDiff returns the elements only in b (added) and only in a
// (removed), for two lists sorted by cmp.
func sortedDiff[T any](a, b []T, cmp func(T, T) int) (added, removed []T) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := cmp(a[i], b[j]); {
		case c == 0:
			i++
			j++
		case c < 0:
			removed = append(removed, a[i])
			i++
		default:
			added = append(added, b[j])
			j++
		}
	}
	removed = append(removed, a[i:]...)
	added = append(added, b[j:]...)
	return added, removed
}

func comparePortMember(a, b PortMember) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if a.Protocol != b.Protocol {
		return int(a.Protocol) - int(b.Protocol)
	}
	return int(a.Port) - int(b.Port)
}

// Equal reports whether two sets have the same definition and members.
func (s *IPSet) Equal(o *IPSet) bool {
	return s.ID == o.ID && s.Kind == o.Kind && s.Selector == o.Selector &&
		s.PortName == o.PortName && s.Protocol == o.Protocol && s.Literal == o.Literal &&
		slices.Equal(s.Domains, o.Domains) && slices.Equal(s.Nets, o.Nets) && slices.Equal(s.Ports, o.Ports)
}

// Equal reports whether two policies are identical, rules and origins
// included.
func (p *Policy) Equal(o *Policy) bool {
	return p.ID == o.ID && p.Direction == o.Direction && p.Tier == o.Tier && p.Name == o.Name &&
		slices.EqualFunc(p.Rules, o.Rules, func(a, b Rule) bool { return a.Equal(&b) })
}

// Equal reports whether two rules have the same match, action and origin.
func (r *Rule) Equal(o *Rule) bool {
	return r.Action == o.Action && r.Origin == o.Origin && r.Match.Equal(&o.Match)
}

// Equal reports whether two matches are identical.
func (m *Match) Equal(o *Match) bool {
	return m.Protocol == o.Protocol && m.NotProtocol == o.NotProtocol && m.IPVersion == o.IPVersion &&
		m.ICMP.equal(o.ICMP) && m.NotICMP.equal(o.NotICMP) &&
		m.Src.Equal(&o.Src) && m.Dst.Equal(&o.Dst)
}

func (i *ICMPMatch) equal(o *ICMPMatch) bool {
	if i == nil || o == nil {
		return i == o
	}
	if i.Type != o.Type || (i.Code == nil) != (o.Code == nil) {
		return false
	}
	return i.Code == nil || *i.Code == *o.Code
}

// Equal reports whether two peer matches are identical.
func (p *PeerMatch) Equal(o *PeerMatch) bool {
	return slices.Equal(p.Sets, o.Sets) && slices.Equal(p.NotSets, o.NotSets) &&
		slices.Equal(p.Ports, o.Ports) && slices.Equal(p.NamedPorts, o.NamedPorts) &&
		slices.Equal(p.NotPorts, o.NotPorts) && slices.Equal(p.NotNamedPorts, o.NotNamedPorts)
}

// Equal reports whether two endpoints are identical.
func (e *Endpoint) Equal(o *Endpoint) bool {
	return e.Key == o.Key && e.Kind == o.Kind && e.Node == o.Node && e.Interface == o.Interface &&
		slices.Equal(e.Addrs, o.Addrs) && e.Ingress.Equal(&o.Ingress) && e.Egress.Equal(&o.Egress)
}

// Equal reports whether two direction policies are identical.
func (d *DirectionPolicy) Equal(o *DirectionPolicy) bool {
	return slices.Equal(d.Profiles, o.Profiles) &&
		slices.EqualFunc(d.Tiers, o.Tiers, func(a, b TierPolicies) bool {
			return a.Tier == b.Tier && a.EndAction == b.EndAction && slices.Equal(a.Policies, b.Policies)
		})
}

// Equal reports whether two settings are identical.
func (s *Settings) Equal(o *Settings) bool {
	return s.DefaultEndpointToHostAction == o.DefaultEndpointToHostAction && s.LogPrefix == o.LogPrefix &&
		slices.Equal(s.FailsafeInbound, o.FailsafeInbound) && slices.Equal(s.FailsafeOutbound, o.FailsafeOutbound)
}

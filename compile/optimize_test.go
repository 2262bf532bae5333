package compile

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCovers(t *testing.T) {
	code := uint8(0)
	for _, tc := range []struct {
		name string
		a, b Match
		want bool
	}{
		{"empty covers everything", Match{}, Match{Protocol: 6, Src: PeerMatch{Sets: []SetID{"n1"}}}, true},
		{"protocol narrows", Match{Protocol: 6}, Match{}, false},
		{"same protocol", Match{Protocol: 6}, Match{Protocol: 6, Dst: PeerMatch{Ports: []PortRange{{Min: 80, Max: 80}}}}, true},
		{"not protocol excluded by protocol", Match{NotProtocol: 17}, Match{Protocol: 6}, true},
		{"not protocol not excluded", Match{NotProtocol: 17}, Match{}, false},
		{"sets subset", Match{Src: PeerMatch{Sets: []SetID{"n1"}}}, Match{Src: PeerMatch{Sets: []SetID{"n1", "n2"}}}, true},
		{"sets not subset", Match{Src: PeerMatch{Sets: []SetID{"n1", "n2"}}}, Match{Src: PeerMatch{Sets: []SetID{"n1"}}}, false},
		{"not sets", Match{Dst: PeerMatch{NotSets: []SetID{"n1"}}}, Match{Dst: PeerMatch{NotSets: []SetID{"n1", "n3"}}}, true},
		{"ports range covers", Match{Protocol: 6, Dst: PeerMatch{Ports: []PortRange{{Min: 80, Max: 90}}}}, Match{Protocol: 6, Dst: PeerMatch{Ports: []PortRange{{Min: 81, Max: 85}}}}, true},
		{"ports range does not cover", Match{Protocol: 6, Dst: PeerMatch{Ports: []PortRange{{Min: 80, Max: 90}}}}, Match{Protocol: 6, Dst: PeerMatch{Ports: []PortRange{{Min: 85, Max: 95}}}}, false},
		{"ports vs any port", Match{Protocol: 6, Dst: PeerMatch{Ports: []PortRange{{Min: 80, Max: 90}}}}, Match{Protocol: 6}, false},
		{"named ports", Match{Protocol: 6, Dst: PeerMatch{NamedPorts: []SetID{"p1"}}}, Match{Protocol: 6, Dst: PeerMatch{NamedPorts: []SetID{"p1"}}}, true},
		{"named port not numeric", Match{Protocol: 6, Dst: PeerMatch{NamedPorts: []SetID{"p1"}}}, Match{Protocol: 6, Dst: PeerMatch{Ports: []PortRange{{Min: 80, Max: 80}}}}, false},
		{"not ports", Match{Dst: PeerMatch{NotPorts: []PortRange{{Min: 22, Max: 22}}}}, Match{Dst: PeerMatch{NotPorts: []PortRange{{Min: 1, Max: 1023}}}}, true},
		{"not ports missing", Match{Dst: PeerMatch{NotPorts: []PortRange{{Min: 22, Max: 22}}}}, Match{}, false},
		{"icmp type covers code", Match{Protocol: 1, ICMP: &ICMPMatch{Type: 8}}, Match{Protocol: 1, ICMP: &ICMPMatch{Type: 8, Code: &code}}, true},
		{"icmp code does not cover type", Match{Protocol: 1, ICMP: &ICMPMatch{Type: 8, Code: &code}}, Match{Protocol: 1, ICMP: &ICMPMatch{Type: 8}}, false},
		{"ip version", Match{IPVersion: 4}, Match{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.a.Covers(&tc.b))
		})
	}
}

func TestDropShadowed(t *testing.T) {
	web := Match{Src: PeerMatch{Sets: []SetID{"nweb"}}}
	webTCP := Match{Protocol: 6, Src: PeerMatch{Sets: []SetID{"nweb"}}}
	rules := []Rule{
		{Action: ActionLog},                              // kept: Log never ends evaluation
		{Action: ActionDeny, Match: webTCP},              // kept
		{Action: ActionAllow, Match: webTCP},             // shadowed by the Deny
		{Action: ActionLog, Match: webTCP},               // shadowed too: never reached
		{Action: ActionAllow, Match: web},                // kept: UDP from web still gets here
		{Action: ActionPass, Match: Match{}},             // kept
		{Action: ActionDeny, Match: Match{Protocol: 17}}, // shadowed by the Pass
	}
	got := dropShadowed(rules)
	var actions []Action
	for _, r := range got {
		actions = append(actions, r.Action)
	}
	assert.Equal(t, []Action{ActionLog, ActionDeny, ActionAllow, ActionPass}, actions)
	assert.Len(t, rules, 7, "the input is left alone")
}

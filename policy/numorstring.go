package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Port is one entry of a rule's ports or notPorts: a number (80), a range
// written "min:max" ("8000:8080"), or the name of a container port
// ("http"). Decoding keeps whatever was written; Validate reports numbers
// out of range and malformed names with their field path.
type Port struct {
	// Min is the first port of the range (the port itself for a single
	// port); zero for a named port.
	Min int
	// Max is the last port of the range; equal to Min for a single port.
	Max int
	// Name is the named port; empty for numbers and ranges.
	Name string
}

// SinglePort returns the Port for one port number.
func SinglePort(p int) Port { return Port{Min: p, Max: p} }

// PortFromRange returns the Port for the range min:max.
func PortFromRange(minPort, maxPort int) Port { return Port{Min: minPort, Max: maxPort} }

// NamedPort returns the Port for a named port.
func NamedPort(name string) Port { return Port{Name: name} }

// String returns the port as Calico writes it: "80", "80:90" or "http".
func (p Port) String() string {
	switch {
	case p.Name != "":
		return p.Name
	case p.Min == p.Max:
		return strconv.Itoa(p.Min)
	default:
		return strconv.Itoa(p.Min) + ":" + strconv.Itoa(p.Max)
	}
}

// MarshalJSON writes a single port as a number and anything else as a
// string, as Calico does.
func (p Port) MarshalJSON() ([]byte, error) {
	if p.Name == "" && p.Min == p.Max {
		return []byte(strconv.Itoa(p.Min)), nil
	}
	return json.Marshal(p.String())
}

// UnmarshalJSON accepts a JSON number or string.
func (p *Port) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = ParsePort(s)
		return nil
	}
	n, err := parseJSONInt(b)
	if err != nil {
		return fmt.Errorf("port %s: want a number, a \"min:max\" range or a port name", b)
	}
	*p = SinglePort(n)
	return nil
}

// ParsePort reads a port written as a string: "80", "80:90" or a name.
// Anything that is not a number or a pair of numbers is taken as a name,
// which validation then checks.
func ParsePort(s string) Port {
	if n, err := strconv.Atoi(s); err == nil {
		return SinglePort(n)
	}
	if lo, hi, ok := strings.Cut(s, ":"); ok {
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil {
			return PortFromRange(a, b)
		}
	}
	return NamedPort(s)
}

// parseJSONInt reads a JSON number that must be an integer.
func parseJSONInt(b []byte) (int, error) {
	var f json.Number
	if err := json.Unmarshal(b, &f); err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(f.String(), 10, 32)
	if err != nil {
		// Accept 80.0 as YAML writers sometimes produce it, but not 80.5.
		fl, ferr := f.Float64()
		if ferr != nil || fl != float64(int64(fl)) || fl > 1<<31 || fl < -(1<<31) {
			return 0, fmt.Errorf("%s is not an integer", f)
		}
		return int(fl), nil
	}
	return int(n), nil
}

// Protocol is a rule's protocol or notProtocol: a name (TCP, UDP, ICMP,
// ICMPv6, SCTP, UDPLite) or a number 1-255, as Calico's numorstring.
type Protocol struct {
	// Name is the protocol name as written; empty when a number was given.
	Name string
	// Num is the protocol number as written; meaningful when Name is empty.
	Num int
}

// ProtocolFromName returns the Protocol for a name such as "TCP".
func ProtocolFromName(name string) Protocol { return Protocol{Name: name} }

// ProtocolFromNumber returns the Protocol for an IP protocol number.
func ProtocolFromNumber(n int) Protocol { return Protocol{Num: n} }

// protocolNames are the protocol names Calico accepts, in its spelling.
func protocolNames() []string {
	return []string{"TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"}
}

// protocolNumber maps a protocol name Calico accepts to its IANA number.
func protocolNumber(name string) (uint8, bool) {
	switch name {
	case "TCP":
		return 6, true
	case "UDP":
		return 17, true
	case "ICMP":
		return 1, true
	case "ICMPv6":
		return 58, true
	case "SCTP":
		return 132, true
	case "UDPLite":
		return 136, true
	}
	return 0, false
}

// Number returns the IANA protocol number, and false when the name is not
// one Calico knows or the number is outside 1-255.
func (p Protocol) Number() (uint8, bool) {
	if p.Name != "" {
		return protocolNumber(p.Name)
	}
	if p.Num < 1 || p.Num > 255 {
		return 0, false
	}
	return uint8(p.Num), true
}

// String returns the protocol as written.
func (p Protocol) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(p.Num)
}

// MarshalJSON writes a name as a string and a number as a number.
func (p Protocol) MarshalJSON() ([]byte, error) {
	if p.Name != "" {
		return json.Marshal(p.Name)
	}
	return []byte(strconv.Itoa(p.Num)), nil
}

// UnmarshalJSON accepts a JSON string or number.
func (p *Protocol) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = Protocol{Name: s}
		return nil
	}
	n, err := parseJSONInt(b)
	if err != nil {
		return fmt.Errorf("protocol %s: want a name or a number 1-255", b)
	}
	*p = Protocol{Num: n}
	return nil
}

package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/ipam"
)

// Defaults of the network configuration.
const (
	DefaultPolicyTimeout = 10 * time.Second
	DefaultMTU           = 1500
)

// NetConf is the plugin's network configuration: the keys every CNI plugin
// takes plus Calyx's own. Unknown keys are an error, so that a typo such as
// "failOpenWithoutAgnet" never silently weakens the node.
//
// Calyx keys:
//
//	ipamStore             "bolt:/var/lib/calyx/ipam.db" (default) or "etcd:http://h:2379[,…]"
//	pools                 [{"name","cidr","blockSize"}]: created in the store when missing;
//	                      the families present decide which addresses a pod gets
//	                      (none given: the families of the store's enabled pools)
//	agentSocket           the node agent's socket (default endpointapi.DefaultSocket)
//	policyTimeout         how long ADD waits for the agent to enforce policy ("10s")
//	failOpenWithoutAgent  ADD succeeds when no agent listens (default false: fail closed)
//	mtu                   both veth ends (default 1500)
//	nodeName              the IPAM node (default the host name)
//	nodeNetns             the namespace holding the host side (default the plugin's own)
type NetConf struct {
	CNIVersion string
	Name       string
	Type       string
	DNS        types.DNS

	IPAMStore            ipam.StoreSpec
	Pools                []ipam.Pool
	AgentSocket          string
	PolicyTimeout        time.Duration
	FailOpenWithoutAgent bool
	MTU                  int
	NodeName             string
	NodeNetns            string

	// PrevResult is the raw prevResult (CHECK, DEL), nil when absent.
	PrevResult json.RawMessage
	// ValidAttachments are GC's cni.dev/valid-attachments (or the older
	// cni.dev/attachments).
	ValidAttachments []types.GCAttachment
	// HasValidAttachments tells an empty list from an absent one.
	HasValidAttachments bool
}

// ConfigError is a network configuration problem; Key names the offending
// key. It maps to CNI error code 7.
type ConfigError struct {
	Key string
	Msg string
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return "network config: " + e.Msg
	}
	return fmt.Sprintf("network config: key %q: %s", e.Key, e.Msg)
}

// keys the runtime may pass that we accept and mostly ignore.
var standardKeys = []string{"capabilities", "runtimeConfig", "args"}

type poolConf struct {
	Name      string `json:"name"`
	CIDR      string `json:"cidr"`
	BlockSize int    `json:"blockSize"`
}

// ParseNetConf decodes and validates a network configuration. Every problem
// comes back as a *ConfigError (joined when there are several), the first
// naming its key.
func ParseNetConf(data []byte) (*NetConf, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, &ConfigError{Msg: fmt.Sprintf("not a JSON object: %v", err)}
	}
	c := &NetConf{
		IPAMStore:     ipam.StoreSpec{Kind: "bolt", Path: ipam.DefaultBoltPath},
		AgentSocket:   endpointapi.DefaultSocket,
		PolicyTimeout: DefaultPolicyTimeout,
		MTU:           DefaultMTU,
	}
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, &ConfigError{Key: key, Msg: fmt.Sprintf(format, a...)})
	}
	str := func(key string, dst *string) bool {
		v, ok := raw[key]
		if !ok {
			return false
		}
		if err := json.Unmarshal(v, dst); err != nil {
			bad(key, "want a string")
			return false
		}
		return true
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := raw[k]
		switch k {
		case "cniVersion":
			str(k, &c.CNIVersion)
		case "name":
			str(k, &c.Name)
		case "type":
			str(k, &c.Type)
		case "dns":
			if err := json.Unmarshal(v, &c.DNS); err != nil {
				bad(k, "malformed: %v", err)
			}
		case "prevResult":
			c.PrevResult = v
		case "cni.dev/valid-attachments", "cni.dev/attachments":
			var atts []types.GCAttachment
			if err := json.Unmarshal(v, &atts); err != nil {
				bad(k, "want a list of {containerID, ifname}: %v", err)
				continue
			}
			// libcni sends both keys with the same list; take the union.
			c.ValidAttachments = append(c.ValidAttachments, atts...)
			c.HasValidAttachments = true
		case "ipamStore":
			var s string
			if str(k, &s) {
				spec, err := ipam.ParseStoreSpec(s)
				if err != nil {
					bad(k, "%v", err)
				} else {
					c.IPAMStore = spec
				}
			}
		case "pools":
			var ps []poolConf
			dec := json.NewDecoder(strings.NewReader(string(v)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&ps); err != nil {
				bad(k, "want a list of {name, cidr, blockSize}: %v", err)
				continue
			}
			for i, p := range ps {
				key := fmt.Sprintf("pools[%d]", i)
				cidr, err := netip.ParsePrefix(p.CIDR)
				if err != nil {
					bad(key+".cidr", "%v", err)
					continue
				}
				if p.Name == "" {
					bad(key+".name", "required")
					continue
				}
				c.Pools = append(c.Pools, ipam.Pool{Name: p.Name, CIDR: cidr.Masked(), BlockSize: p.BlockSize})
			}
		case "agentSocket":
			if str(k, &c.AgentSocket) && c.AgentSocket == "" {
				bad(k, "must not be empty")
			}
		case "policyTimeout":
			var s string
			if str(k, &s) {
				d, err := time.ParseDuration(s)
				if err != nil || d <= 0 {
					bad(k, "want a positive duration such as \"10s\", got %q", s)
				} else {
					c.PolicyTimeout = d
				}
			}
		case "failOpenWithoutAgent":
			if err := json.Unmarshal(v, &c.FailOpenWithoutAgent); err != nil {
				bad(k, "want true or false")
			}
		case "mtu":
			if err := json.Unmarshal(v, &c.MTU); err != nil || c.MTU < 576 || c.MTU > 65535 {
				bad(k, "want an integer from 576 to 65535")
			}
		case "nodeName":
			str(k, &c.NodeName)
		case "nodeNetns":
			if str(k, &c.NodeNetns) && !strings.HasPrefix(c.NodeNetns, "/") {
				bad(k, "want an absolute path such as /run/netns/node, got %q", c.NodeNetns)
			}
		case "ipam":
			bad(k, "calyx has its own IPAM; configure it with ipamStore and pools")
		default:
			if slices.Contains(standardKeys, k) {
				continue
			}
			bad(k, "unknown key")
		}
	}
	if c.Name == "" {
		bad("name", "required")
	}
	if c.CNIVersion == "" {
		bad("cniVersion", "required")
	}
	if len(errs) > 0 {
		return nil, joinConfigErrors(errs)
	}
	return c, nil
}

// joinConfigErrors returns the only error, or the first one with the others
// appended to its message so a person sees them all at once.
func joinConfigErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	first := *errs[0].(*ConfigError)
	var more []string
	for _, e := range errs[1:] {
		more = append(more, e.Error())
	}
	first.Msg += "; also " + strings.Join(more, "; ")
	return &first
}

// families reports which address families a pod gets from the pools.
func families(pools []ipam.Pool) (v4, v6 int) {
	for _, p := range pools {
		if p.Disabled {
			continue
		}
		if p.CIDR.Addr().Is4() {
			v4 = 1
		} else {
			v6 = 1
		}
	}
	return v4, v6
}

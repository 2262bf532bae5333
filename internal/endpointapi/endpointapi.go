// Package endpointapi is the local protocol between the CNI plugin and the
// node agent: the plugin registers a pod's endpoint after plumbing it, asks
// whether the agent has enforced its policy yet, and unregisters it on DEL.
//
// The transport is a unix stream socket; each connection carries exactly
// one JSON request and one JSON response, so a plugin process that dies
// mid-call leaves nothing half-read on a shared connection. The agent
// embeds a [Server] backed by a [Handler]; the plugin uses a [Client].
//
// Register is idempotent: the runtime may retry an ADD, and a second
// registration of the same endpoint ID replaces the first.
package endpointapi

import (
	"errors"
	"net/netip"
)

// DefaultSocket is where the node agent listens.
const DefaultSocket = "/var/run/calyx/endpoint.sock"

// Endpoint is what the plugin tells the agent about a new pod attachment.
type Endpoint struct {
	// ID identifies the attachment (the plugin's IPAM handle).
	ID string `json:"id"`
	// Namespace and Pod are the Kubernetes identity, empty outside
	// Kubernetes.
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	// ContainerID and IfName name the attachment as the runtime does.
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	// HostIf is the host-side interface the policy is enforced on.
	HostIf string `json:"hostIf"`
	// Addrs are the pod's addresses on this attachment.
	Addrs []netip.Addr `json:"addrs"`
}

// Errors callers branch on.
var (
	// ErrUnavailable means the agent could not be reached.
	ErrUnavailable = errors.New("endpointapi: agent unavailable")
	// ErrNotEnforced means the agent did not report the endpoint enforced
	// before the deadline.
	ErrNotEnforced = errors.New("endpointapi: policy not enforced in time")
	// ErrCannotProgram means the agent is running but cannot currently
	// program policy into the dataplane.
	ErrCannotProgram = errors.New("endpointapi: agent cannot program policy")
	// ErrUnknownEndpoint means the agent does not know the endpoint ID.
	ErrUnknownEndpoint = errors.New("endpointapi: unknown endpoint")
	// ErrProtocol means a malformed request or response.
	ErrProtocol = errors.New("endpointapi: protocol error")
)

// Op is a request kind.
type Op string

// The operations of the protocol.
const (
	OpRegister   Op = "register"
	OpUnregister Op = "unregister"
	OpEnforced   Op = "enforced"
	OpStatus     Op = "status"
)

// request is one call on the wire.
type request struct {
	Op       Op        `json:"op"`
	Endpoint *Endpoint `json:"endpoint,omitempty"`
	ID       string    `json:"id,omitempty"`
}

// Error codes on the wire; they map one to one onto the sentinels above.
const (
	codeOK            = ""
	codeCannotProgram = "cannot-program"
	codeUnknown       = "unknown-endpoint"
	codeInvalid       = "invalid"
	codeInternal      = "internal"
)

// response is the answer to one request.
type response struct {
	Code     string `json:"code,omitempty"`
	Message  string `json:"message,omitempty"`
	Enforced bool   `json:"enforced,omitempty"`
}

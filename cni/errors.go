package cni

import (
	"context"
	"errors"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/ipam"
)

// Errors callers branch on.
var (
	// ErrInvalidNetNS means CNI_NETNS could not be opened (code 8).
	ErrInvalidNetNS = errors.New("cni: invalid network namespace")
	// ErrNoAgent means no node agent answered and the configuration fails
	// closed (code 11).
	ErrNoAgent = errors.New("cni: no calyx agent: policy cannot be enforced")
	// ErrCheckFailed means CHECK found the attachment differs from its
	// prevResult or its allocation is gone (code 999).
	ErrCheckFailed = errors.New("cni: attachment does not match prevResult")
	// ErrPluginNotAvailable is STATUS's code 50: IPAM or the agent is
	// unreachable, or the pools are exhausted.
	ErrPluginNotAvailable = errors.New("cni: plugin not available")
	// ErrLimitedConnectivity is STATUS's code 51: policy cannot currently
	// be programmed.
	ErrLimitedConnectivity = errors.New("cni: policy cannot be programmed")
)

// CNI error codes this plugin returns beyond those of package types.
const (
	codePluginNotAvailable  uint = 50
	codeLimitedConnectivity uint = 51
)

// toCNIError maps an error onto a CNI error with a code; it is the only
// place errors meet CNI codes.
func toCNIError(err error) *types.Error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	var ce *ConfigError
	code := types.ErrInternal
	switch {
	case errors.As(err, &ce):
		code = types.ErrInvalidNetworkConfig
	case errors.Is(err, ErrPluginNotAvailable):
		code = codePluginNotAvailable
	case errors.Is(err, ErrLimitedConnectivity):
		code = codeLimitedConnectivity
	case errors.Is(err, ErrInvalidNetNS):
		code = types.ErrInvalidNetNS
	case errors.Is(err, ErrNoAgent),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, endpointapi.ErrUnavailable),
		errors.Is(err, endpointapi.ErrNotEnforced),
		errors.Is(err, endpointapi.ErrCannotProgram),
		errors.Is(err, ipam.ErrExhausted),
		errors.Is(err, ipam.ErrCoolingDown),
		errors.Is(err, ipam.ErrTooManyRetries):
		code = types.ErrTryAgainLater
	}
	return types.NewError(code, err.Error(), "")
}

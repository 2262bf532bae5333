//go:build linux

package nftables

import (
	"testing"

	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/lab/labtest"
)

// TestModelEqualsKernel: random Rulesets applied one after the other; the
// lab's matrix must be the model's, and Reconcile must find no drift after
// each Apply (the incremental change built what a fresh one would).
func TestModelEqualsKernel(t *testing.T) {
	spec := lab.Spec{Pods: labtest.Pods(5, tcp80, udp53, tcp443), External: labtest.ExternalAddrs,
		ExternalPorts: []lab.Port{tcp80, udp53}}
	r := newRig(t, spec)
	conformance.ModelEqualsKernel(t, spec, r.lab, r.b, r.noDrift)
}

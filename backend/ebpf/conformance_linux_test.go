//go:build linux

package ebpf

import (
	"testing"

	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/conformance"
	"github.com/calyxnet/calyx/internal/lab/labtest"
)

// TestConformance runs the shared hand-written Calico semantics cases one
// after another on one lab (each Apply is a diff of the previous one).
func TestConformance(t *testing.T) {
	r := newRig(t, conformance.Spec())
	for _, sc := range conformance.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			b := r.ir()
			conformance.WithAllowAllProfiles(b)
			sc.Build(b)
			m := r.conform(t, b.RS)
			denied := 0
			for _, ok := range m.Allowed {
				if !ok {
					denied++
				}
			}
			t.Logf("%d probes, %d denied", len(m.Probes), denied)
		})
	}
}

// TestModelEqualsKernel: random Rulesets applied one after the other in a
// real lab; the observed matrix must be the model's, and Reconcile must
// find no drift after each Apply.
func TestModelEqualsKernel(t *testing.T) {
	spec := lab.Spec{Pods: labtest.Pods(5, tcp80, udp53, tcp443), External: labtest.ExternalAddrs,
		ExternalPorts: []lab.Port{tcp80, udp53}}
	r := newRig(t, spec)
	conformance.ModelEqualsKernel(t, spec, r.lab, r.b, r.noDrift)
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// TestHarnessSmoke runs the whole harness at toy sizes, for each
// dataplane: every figure the full run prints must come out.
func TestHarnessSmoke(t *testing.T) {
	for _, d := range []string{"nftables", "iptables"} {
		t.Run(d, func(t *testing.T) { harnessSmoke(t, d) })
	}
}

func harnessSmoke(t *testing.T, dataplane string) {
	netnstest.RequireRoot(t)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-small", "-reps", "1", "-duration", "1s", "-dataplane", dataplane}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"(" + dataplane + ", medians", "10 policies from scratch", "100 policies from scratch", "+1 pod on 100 policies",
		"label change on 100", `ratios against "empty"`, "a-10k-policies", "b-10k-rules"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
}

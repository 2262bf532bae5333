package main

import (
	"bytes"
	"context"
	"strconv"
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

// TestTrafficEBPF runs the traffic figures of the eBPF dataplane at toy
// sizes with flow events both ways and the programs' statistics: every
// configuration comes out both ways, and the programs on the pair's hooks
// ran (their run time per run is not 0) in each but "no-table".
func TestTrafficEBPF(t *testing.T) {
	netnstest.RequireRoot(t)
	var out bytes.Buffer
	args := []string{"-only", "traffic", "-dataplane", "ebpf", "-small", "-reps", "2", "-duration", "1s", "-flowevents", "both", "-bpfstats"}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{`ratios against "empty/events=off"`, `% of the time (medians); ratios "empty" / config`} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		// "  rep N LABEL G Gbit/s RR RR/s CRR CRR/s | bpf ns/run I R C, time I% R% C%"
		if len(f) != 19 || f[0] != "rep" || f[10] != "bpf" {
			continue
		}
		seen[f[2]] = true
		for _, v := range append(f[12:15:15], f[16:]...) {
			v = strings.TrimRight(v, ",%")
			ns, err := strconv.ParseFloat(v, 64)
			// No dataplane, no programs: nothing ran.
			if err != nil || (ns > 0) != (f[2] != "no-table") {
				t.Errorf("%s: program run time %q: %s", f[2], v, line)
			}
		}
	}
	for _, cfg := range []string{"empty", "a-10k-policies", "b-10k-rules"} {
		for _, suffix := range []string{"", "/events=off"} {
			if !seen[cfg+suffix] {
				t.Errorf("no measurement of %s%s:\n%s", cfg, suffix, text)
			}
		}
	}
	t.Log("\n" + text)
}

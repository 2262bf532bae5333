// Command bench measures the kernel dataplanes (nftables, iptables, ebpf): how
// long programming a node takes, and what policy costs per packet, as ratios against a
// no-policy baseline measured in the same run (medians of interleaved
// repetitions). It needs root: everything runs in network namespaces it
// creates and removes.
//
//	go run ./bench                      # everything, 5 repetitions
//	go run ./bench -only program -reps 3
//	go run ./bench -only repair -dataplane nftables,iptables,ebpf
//	go run ./bench -only traffic -duration 2s
//	go run ./bench -dataplane nftables,iptables   # side by side, one run
//	go run ./bench -only program -sizes 10000 -cpuprofile /tmp/cpu.out
//
// The traffic figures (-only traffic) are issue #7's per-packet load
// cases between two pods, against "empty" (the dataplane installed, the
// pair's endpoints, no policy) and "no-table" (no dataplane): (a) a node
// of -sizes' largest count of policies, (b) one policy of that many rules
// (internal/benchset builds both). Each is iperf3 throughput, RR (one-byte
// transactions on one established connection: conntrack only) and CRR (a
// new connection per transaction: every one judged), the rates the median
// of ten slices of the window; the configurations are interleaved,
// forwards and backwards in turn, and the medians of the repetitions
// compared. For eBPF, -flowevents both measures every configuration with
// flow events on and off in one run, and -bpfstats reads the programs'
// own run time per run around each measurement (kernel BPF statistics, on
// for the run), the figure that a busy machine disturbs least:
//
//	go run ./bench -only traffic -dataplane ebpf -sizes 10000 -flowevents both -bpfstats -reps 9
//
// With -paired, one Ruleset holds every configuration at once, each on its
// own pair of pods (and a second pair without policy as a control), and
// the figures alternate short slices between the pairs round after round
// (-rounds, -slice): a ratio is taken within each round, so a noisy
// machine's drift cancels, and the median, interquartile range and a
// bootstrap 95% interval of the per-round ratios are reported:
//
//	go run ./bench -only traffic -dataplane ebpf -sizes 10000 -paired -rounds 30
//
// Throughput is the noisiest figure; -metrics and -iperfslice measure it
// alone, in longer slices:
//
//	go run ./bench -only traffic -dataplane ebpf -sizes 10000 -paired -rounds 60 -metrics gbit -iperfslice 2s
//
// BenchmarkEstablished in backend/ebpf runs the same configurations'
// programs on a packet of an established connection (BPF_PROG_TEST_RUN).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config holds the flags.
type config struct {
	only     string
	reps     int
	duration time.Duration
	sizes    []int
	pods     int
	planes   []dataplane
	// flowEvents: the traffic figures with flow events on (true), off
	// (false) or both, for dataplanes that have them.
	flowEvents []bool
	// bpfStats: read the eBPF programs' own run time around each traffic
	// measurement.
	bpfStats bool
	// paired: the traffic figures in paired rounds (paired.go), rounds
	// of them, RR and CRR slices of slice.
	paired bool
	rounds int
	slice  time.Duration
	// iperfSlice is the length of one iperf3 slice (whole seconds);
	// metrics the paired figures to measure (nil: all).
	iperfSlice time.Duration
	metrics    map[string]bool
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.only, "only", "", "run only \"program\", \"repair\" or \"traffic\"")
	fs.IntVar(&c.reps, "reps", 5, "repetitions per figure (medians are reported)")
	fs.DurationVar(&c.duration, "duration", 2*time.Second, "length of one traffic measurement")
	fs.IntVar(&c.pods, "pods", 110, "pods on the node")
	small := fs.Bool("small", false, "tiny sizes (a smoke run)")
	planes := fs.String("dataplane", "nftables", "dataplanes to measure, comma-separated: nftables, iptables")
	sizes := fs.String("sizes", "", "policy counts to program from scratch, comma-separated (default 100,1000,10000)")
	events := fs.String("flowevents", "on", "traffic figures with eBPF flow events \"on\", \"off\" or \"both\" (each configuration measured both ways, in one run)")
	fs.BoolVar(&c.bpfStats, "bpfstats", false, "traffic: also report the eBPF programs' own run time per run (kernel BPF statistics, on during the run)")
	fs.BoolVar(&c.paired, "paired", false, "traffic: every configuration at once on its own pair, measured in alternating slices; ratios per round")
	fs.IntVar(&c.rounds, "rounds", 30, "traffic -paired: rounds (each measures every pair twice per figure)")
	fs.DurationVar(&c.slice, "slice", 300*time.Millisecond, "traffic -paired: length of one RR or CRR slice")
	fs.DurationVar(&c.iperfSlice, "iperfslice", 0, "traffic -paired: length of one iperf3 slice, whole seconds (default: -slice rounded, at least 1s)")
	metrics := fs.String("metrics", "rr,crr,gbit", "traffic -paired: figures to measure, comma-separated: rr, crr, gbit")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if c.planes, err = parseDataplanes(*planes); err != nil {
		return err
	}
	switch *events {
	case "on":
		c.flowEvents = []bool{true}
	case "off":
		c.flowEvents = []bool{false}
	case "both":
		c.flowEvents = []bool{true, false}
	default:
		return fmt.Errorf("-flowevents: %q is not on, off or both", *events)
	}
	if c.metrics, err = parseMetrics(*metrics); err != nil {
		return err
	}
	if c.iperfSlice != 0 && (c.iperfSlice < time.Second || c.iperfSlice%time.Second != 0) {
		return fmt.Errorf("-iperfslice: %v is not a whole number of seconds", c.iperfSlice)
	}
	c.sizes = []int{100, 1000, 10000}
	if *small {
		c.sizes = []int{10, 100}
	}
	if *sizes != "" {
		c.sizes = nil
		for _, f := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return fmt.Errorf("-sizes: %q is not a positive count", f)
			}
			c.sizes = append(c.sizes, n)
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces, nftables, iptables)")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if c.only == "" || c.only == "program" {
		for _, d := range c.planes {
			if err := benchProgram(ctx, &c, d, out); err != nil {
				return fmt.Errorf("%s: %w", d.name, err)
			}
		}
	}
	if c.only == "" || c.only == "repair" {
		for _, d := range c.planes {
			if err := benchRepair(ctx, &c, d, out); err != nil {
				return fmt.Errorf("%s: %w", d.name, err)
			}
		}
	}
	if c.only == "" || c.only == "traffic" {
		bench := benchTraffic
		if c.paired {
			bench = benchPaired
		}
		if err := bench(ctx, &c, out); err != nil {
			return err
		}
	}
	return nil
}

// parseMetrics reads the -metrics flag.
func parseMetrics(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); f {
		case "rr", "crr", "gbit":
			out[f] = true
		default:
			return nil, fmt.Errorf("-metrics: %q is not rr, crr or gbit", f)
		}
	}
	return out, nil
}

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
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if c.planes, err = parseDataplanes(*planes); err != nil {
		return err
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
		if err := benchTraffic(ctx, &c, out); err != nil {
			return err
		}
	}
	return nil
}

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/internal/netns"
)

// The eBPF programs' own run time (-bpfstats): with the kernel's BPF
// statistics on, each program counts its runs and the nanoseconds they
// took (tail calls included). Read before and after a measurement, the
// difference is what the programs on the pair's interfaces cost per
// packet in real traffic, cache misses included, and without the
// scheduling noise that dominates RR on a busy machine: the CPU time of
// the programs themselves, not the transactions' wall time.

// enableBPFStats turns the kernel's BPF run-time statistics on until the
// returned Closer is closed. They are global: every program on the
// machine pays two clock reads per run meanwhile.
func enableBPFStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable BPF statistics: %w", err)
	}
	return c, nil
}

// hookProgs are the programs attached to the TCX hooks of some
// interfaces, opened by ID.
type hookProgs struct {
	progs []*ebpf.Program
}

// attachedPrograms opens the programs on both TCX hooks of ifaces in ns.
// The programs a Backend attaches stay until its next Apply: open them
// after it, read them around each measurement.
func attachedPrograms(ns *netns.NS, ifaces ...string) (*hookProgs, error) {
	var ids []ebpf.ProgramID
	err := ns.Do(func() error {
		for _, name := range ifaces {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				res, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: at})
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				for _, p := range res.Programs {
					ids = append(ids, p.ID)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	hp := &hookProgs{}
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			hp.close()
			return nil, fmt.Errorf("program %d: %w", id, err)
		}
		hp.progs = append(hp.progs, p)
	}
	return hp, nil
}

func (hp *hookProgs) close() {
	if hp == nil {
		return
	}
	for _, p := range hp.progs {
		_ = p.Close()
	}
}

// runStats is the programs' accumulated run time and runs.
type runStats struct {
	runtime time.Duration
	runs    uint64
}

// read sums the statistics of the programs (zero without programs).
func (hp *hookProgs) read() (runStats, error) {
	var s runStats
	if hp == nil {
		return s, nil
	}
	var errs []error
	for _, p := range hp.progs {
		st, err := p.Stats()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.runtime += st.Runtime
		s.runs += st.RunCount
	}
	return s, errors.Join(errs...)
}

// perRun is the mean run time of one program run between two readings.
func perRun(before, after runStats) float64 {
	if after.runs <= before.runs {
		return 0
	}
	return float64((after.runtime - before.runtime).Nanoseconds()) / float64(after.runs-before.runs)
}

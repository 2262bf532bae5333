//go:build unix

package selector

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time the process has used. Benchmarks report
// it per operation next to wall time: on a shared, loaded machine wall time
// includes the time the benchmark waited for a CPU, CPU time does not.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

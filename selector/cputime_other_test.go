//go:build !unix

package selector

import "time"

// processCPU is not measured on this platform; benchmarks then report no
// CPU time.
func processCPU() time.Duration { return 0 }

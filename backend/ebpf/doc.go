// Package ebpf renders a compile.Ruleset into eBPF programs generated in
// Go with cilium/ebpf's asm package (no clang, no object files) and
// attached with TCX to the host side of every pod's veth.
package ebpf

package ebpf

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
)

// Map references the generated programs use; load resolves them.
const (
	refScratch = "map_scratch"
	refSets    = "map_sets"
	refPorts   = "map_ports"
	refCT      = "map_ct"
	refFrags   = "map_frags"
	refEvents  = "map_events"
	refTail    = "map_tail"
	refAddrs   = "map_addrs"
	refLost    = "map_lost"
)

// Registers: R6 holds the context, R7 the scratch area in every program.
const (
	rCtx = asm.R6
	rS   = asm.R7
)

// gen assembles one program: labels attach to the next instruction, and
// several labels on one instruction become aliases.
type gen struct {
	insns   asm.Instructions
	pending []string
	alias   map[string]string
	n       int
	pfx     string
	events  bool // flow events
	hostEP  bool // a host endpoint's program: no source check
}

func newGen() *gen { return &gen{alias: map[string]string{}} }

func (g *gen) label(name string) { g.pending = append(g.pending, name) }

func (g *gen) fresh(prefix string) string {
	g.n++
	return fmt.Sprintf("%s%s_%d", g.pfx, prefix, g.n)
}

// splice appends the code of another generator, its labels and aliases.
func (g *gen) splice(o *gen) {
	g.emit(o.insns...)
	for a, c := range o.alias {
		g.alias[a] = c
	}
	for _, l := range o.pending {
		g.label(l)
	}
}

func (g *gen) emit(ins ...asm.Instruction) {
	for _, in := range ins {
		if len(g.pending) > 0 {
			target, rest := in.Symbol(), g.pending
			if target == "" {
				target, rest = g.pending[0], g.pending[1:]
				in = in.WithSymbol(target)
			}
			for _, a := range rest {
				g.alias[a] = target
			}
			g.pending = g.pending[:0]
		}
		g.insns = append(g.insns, in)
	}
}

// finish resolves aliases and drops instructions no path reaches (the
// verifier refuses unreachable code).
func (g *gen) finish() (asm.Instructions, error) {
	if len(g.pending) > 0 {
		return nil, fmt.Errorf("ebpf: codegen: dangling labels %v", g.pending)
	}
	canon := func(s string) string {
		for {
			t, ok := g.alias[s]
			if !ok {
				return s
			}
			s = t
		}
	}
	sym := map[string]int{}
	for i, in := range g.insns {
		if s := in.Symbol(); s != "" {
			sym[s] = i
		}
	}
	targets := make([]int, len(g.insns))
	for i := range g.insns {
		in := &g.insns[i]
		targets[i] = -1
		if in.OpCode.JumpOp() != asm.InvalidJumpOp && in.OpCode.JumpOp() != asm.Call && in.OpCode.JumpOp() != asm.Exit {
			ref := canon(in.Reference())
			if ref != in.Reference() {
				*in = in.WithReference(ref)
			}
			t, ok := sym[ref]
			if !ok {
				return nil, fmt.Errorf("ebpf: codegen: unknown label %q", ref)
			}
			targets[i] = t
		}
	}
	reach := make([]bool, len(g.insns))
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if i >= len(g.insns) || reach[i] {
			continue
		}
		reach[i] = true
		in := g.insns[i]
		op := in.OpCode.JumpOp()
		switch {
		case op == asm.Exit:
		case op == asm.Ja:
			stack = append(stack, targets[i])
		case targets[i] >= 0:
			stack = append(stack, i+1, targets[i])
		default:
			stack = append(stack, i+1)
		}
	}
	out := make(asm.Instructions, 0, len(g.insns))
	for i, in := range g.insns {
		if reach[i] {
			out = append(out, in)
		}
	}
	return out, nil
}

// Small instruction helpers.

func ldb(dst asm.Register, off int16) asm.Instruction { return asm.LoadMem(dst, rS, off, asm.Byte) }
func ldh(dst asm.Register, off int16) asm.Instruction { return asm.LoadMem(dst, rS, off, asm.Half) }
func ldw(dst asm.Register, off int16) asm.Instruction { return asm.LoadMem(dst, rS, off, asm.Word) }
func stb(off int16, src asm.Register) asm.Instruction { return asm.StoreMem(rS, off, src, asm.Byte) }
func sth(off int16, src asm.Register) asm.Instruction { return asm.StoreMem(rS, off, src, asm.Half) }
func stw(off int16, src asm.Register) asm.Instruction { return asm.StoreMem(rS, off, src, asm.Word) }
func stib(off int16, v int64) asm.Instruction         { return asm.StoreImm(rS, off, v, asm.Byte) }
func stiw(off int16, v int64) asm.Instruction         { return asm.StoreImm(rS, off, v, asm.Word) }
func mapPtr(dst asm.Register, ref string) asm.Instruction {
	return asm.LoadMapPtr(dst, 0).WithReference(ref)
}

// lookup emits R0 = bpf_map_lookup_elem(ref, R7+keyOff).
func (g *gen) lookup(ref string, keyOff int32) {
	g.emit(mapPtr(asm.R1, ref), asm.Mov.Reg(asm.R2, rS), asm.Add.Imm(asm.R2, keyOff), asm.FnMapLookupElem.Call())
}

// update emits bpf_map_update_elem(ref, R7+keyOff, R7+valOff, BPF_ANY).
func (g *gen) update(ref string, keyOff, valOff int32) {
	g.emit(mapPtr(asm.R1, ref), asm.Mov.Reg(asm.R2, rS), asm.Add.Imm(asm.R2, keyOff),
		asm.Mov.Reg(asm.R3, rS), asm.Add.Imm(asm.R3, valOff), asm.Mov.Imm(asm.R4, 0), asm.FnMapUpdateElem.Call())
}

// loadBytes emits bpf_skb_load_bytes(ctx, off, R7+oHdr, n) with the
// offset in a register or an immediate, jumping to fail on error.
func (g *gen) loadBytesReg(off asm.Register, n int32, fail string) {
	g.emit(asm.Mov.Reg(asm.R1, rCtx), asm.Mov.Reg(asm.R2, off), asm.Mov.Reg(asm.R3, rS), asm.Add.Imm(asm.R3, oHdr),
		asm.Mov.Imm(asm.R4, n), asm.FnSkbLoadBytes.Call(), asm.JNE.Imm(asm.R0, 0, fail))
}

func (g *gen) loadBytesImm(off, n int32, fail string) {
	g.emit(asm.Mov.Imm(asm.R2, off))
	g.emit(asm.Mov.Reg(asm.R1, rCtx), asm.Mov.Reg(asm.R3, rS), asm.Add.Imm(asm.R3, oHdr),
		asm.Mov.Imm(asm.R4, n), asm.FnSkbLoadBytes.Call(), asm.JNE.Imm(asm.R0, 0, fail))
}

// copyWords copies n 4-byte words from R7+from to each R7+to.
func (g *gen) copyWords(from int16, n int16, to ...int16) {
	for w := range n {
		g.emit(ldw(asm.R1, from+4*w))
		for _, t := range to {
			g.emit(stw(t+4*w, asm.R1))
		}
	}
}

// prologue: R6 = ctx, R7 = scratch (fail closed without it).
func (g *gen) prologue() {
	ok := g.fresh("have_scratch")
	g.emit(asm.Mov.Reg(rCtx, asm.R1),
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
		mapPtr(asm.R1, refScratch), asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, ok),
		asm.Mov.Imm(asm.R0, tcxDrop), asm.Return())
	g.label(ok)
	g.emit(asm.Mov.Reg(rS, asm.R0))
}

// ret emits "return v".
func (g *gen) ret(v int32) { g.emit(asm.Mov.Imm(asm.R0, v), asm.Return()) }

//go:build linux

package ebpf

import (
	"os"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
)

// requireBPF skips without the rights to load programs, and fails instead
// when CI is set.
func requireBPF(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("eBPF tests need root (CI is set: not skipping)")
	}
	tb.Skip("eBPF tests need root")
}

// harness runs a Ruleset's real programs with BPF_PROG_TEST_RUN, without
// attaching anything: the source's egress program, then the
// destination's ingress program, as a packet between two pods meets them.
type harness struct {
	tb    testing.TB
	objs  *objects
	ids   *ids
	progs map[string]*loaded
	rs    *compile.Ruleset
	plan  *plan
	idx   *model.Index
	cache *progCache
	// events: flow events in the programs (the backend's default).
	events bool
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	requireBPF(tb)
	objs, err := openObjects("")
	if err != nil {
		tb.Fatalf("maps: %v", err)
	}
	h := &harness{tb: tb, objs: objs, ids: newIDs(), progs: map[string]*loaded{}, cache: newProgCache(),
		events: defaultSettings().flowEvents}
	tb.Cleanup(func() {
		for _, l := range h.progs {
			l.close()
		}
		objs.close()
	})
	return h
}

// apply loads rs: programs not loaded yet, and set entries (added and
// removed, as the backend does).
func (h *harness) apply(rs *compile.Ruleset) {
	h.tb.Helper()
	p, err := makePlan(rs, h.ids, config{timeouts: DefaultTimeouts(), events: h.events}, h.cache)
	if err != nil {
		h.tb.Fatalf("plan: %v", err)
	}
	for fp, ps := range p.progs {
		if _, ok := h.progs[fp]; ok {
			continue
		}
		l, err := h.objs.load(ps)
		if err != nil {
			h.tb.Fatalf("load: %v", err)
		}
		h.progs[fp] = l
	}
	if err := syncEntries(h.objs, h.plan, p); err != nil {
		h.tb.Fatalf("entries: %v", err)
	}
	// BPF_PROG_TEST_RUN runs on the loopback device: every endpoint's
	// addresses are its own there.
	for _, ep := range rs.Endpoints {
		for _, a := range ep.Addrs {
			if err := h.objs.maps[refAddrs].Put(srcKey(1, a), uint32(1)); err != nil {
				h.tb.Fatalf("addrs: %v", err)
			}
		}
	}
	h.rs, h.plan, h.idx = rs, p, model.NewIndex(rs)
}

// resolver names the events of the programs of the last apply.
func (h *harness) resolver() resolver {
	return resolver{refs: []map[string]map[uint64]stepRef{h.plan.refs}, sets: h.rs.Sets}
}

// run runs the program of endpoint ep at hook hk on p.
func (h *harness) run(ep *compile.Endpoint, hk hook, p *pkt) bool {
	h.tb.Helper()
	fp := h.plan.attach[attachKey{ep.Interface, hk}]
	l := h.progs[fp]
	ret, err := l.entry.Run(&ebpf.RunOptions{Data: frame(p)})
	if err != nil {
		h.tb.Fatalf("run: %v", err)
	}
	return int32(ret) != tcxDrop
}

// verdict is what the node's dataplane does with p: the source endpoint's
// egress program, then the destination's ingress program.
func (h *harness) verdict(p *pkt) bool {
	h.tb.Helper()
	src, srcOK := h.idx.Endpoint(p.Src)
	dst, dstOK := h.idx.Endpoint(p.Dst)
	if srcOK && dstOK && src == dst {
		return true
	}
	if srcOK && !h.run(src, hookIngress, p) {
		return false
	}
	if dstOK && !h.run(dst, hookEgress, p) {
		return false
	}
	return true
}

// flush forgets every conntrack and fragment entry.
func (h *harness) flush() {
	h.tb.Helper()
	for _, name := range []string{refCT, refFrags} {
		m := h.objs.maps[name]
		var k []byte
		var keys [][]byte
		it := m.Iterate()
		var v []byte
		for it.Next(&k, &v) {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			_ = m.Delete(k)
		}
	}
}

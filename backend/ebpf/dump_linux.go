//go:build linux

package ebpf

import (
	"context"
	"fmt"
	"strings"

	"github.com/calyxnet/calyx/backend"
)

// Dump lists what the backend owns, deterministically: the pin
// directory, the maps, each program (chunks, instructions, steps), which
// program each interface and hook runs, and every set's entries as last
// applied (Reconcile keeps the maps equal to them).
func (b *Backend) Dump(ctx context.Context) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	var w strings.Builder
	fmt.Fprintf(&w, "# calyx eBPF dataplane, layout %s, pins in %s\n", LayoutVersion, b.dir)
	for _, name := range sortedNames(b.objs.maps) {
		m := b.objs.maps[name]
		fmt.Fprintf(&w, "map %s %s key=%d value=%d max=%d\n", name, m.Type(), m.KeySize(), m.ValueSize(), m.MaxEntries())
	}
	if b.cur == nil {
		return []byte(w.String()), nil
	}
	links := make(map[attachKey]string, len(b.links))
	for ak, a := range b.links {
		links[ak] = a.fp
	}
	planText(&w, b.cur, b.ids, links)
	return []byte(w.String()), nil
}

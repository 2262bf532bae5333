package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/ebpf"
	"github.com/calyxnet/calyx/backend/iptables"
	"github.com/calyxnet/calyx/backend/nftables"
)

// applyStats is what the harness prints about one Apply, whatever the
// dataplane: render and kernel time, and how many kernel messages
// (nftables: netlink messages; iptables: restore commands) it took.
type applyStats struct {
	render, kernel time.Duration
	messages       int
}

// dataplane opens one kind of backend and reads its last Apply's stats.
type dataplane struct {
	name  string
	open  func(ctx context.Context, opts backend.Options) (backend.Backend, error)
	stats func(b backend.Backend) applyStats
	// freshVeth: the "+1 pod" figure creates the new pod's veth afresh
	// before every Apply, as the CNI plugin does (eBPF: a veth never seen
	// needs its TCX links).
	freshVeth bool
	// variants are other ways to open the same dataplane whose "+1 pod"
	// figure is measured too, in the same run (eBPF: without the link
	// watcher).
	variants []variant
	// withoutEvents opens the dataplane with flow events off (nil: it has
	// none); the traffic figures measure it with -flowevents off or both.
	withoutEvents func(ctx context.Context, opts backend.Options) (backend.Backend, error)
}

// variant is another configuration of a dataplane.
type variant struct {
	name string
	open func(ctx context.Context, opts backend.Options) (backend.Backend, error)
}

var dataplanes = map[string]dataplane{
	nftables.Name: {
		name: nftables.Name,
		open: func(ctx context.Context, o backend.Options) (backend.Backend, error) { return nftables.New(ctx, o) },
		stats: func(b backend.Backend) applyStats {
			st := b.(*nftables.Backend).LastApply()
			return applyStats{render: st.Render, kernel: st.Kernel, messages: st.Messages()}
		},
	},
	ebpf.Name: {
		name: ebpf.Name,
		open: func(ctx context.Context, o backend.Options) (backend.Backend, error) { return ebpf.New(ctx, o) },
		stats: func(b backend.Backend) applyStats {
			st := b.(*ebpf.Backend).LastApply()
			return applyStats{render: st.Render, kernel: st.Load + st.Kernel,
				messages: st.ProgramsLoaded + st.LinksAttached + st.LinksUpdated + st.EntriesAdded + st.EntriesDeleted}
		},
		freshVeth: true,
		variants: []variant{{name: "no link watch", open: func(ctx context.Context, o backend.Options) (backend.Backend, error) {
			return ebpf.New(ctx, o, ebpf.WithLinkWatch(false))
		}}},
		withoutEvents: func(ctx context.Context, o backend.Options) (backend.Backend, error) {
			return ebpf.New(ctx, o, ebpf.WithFlowEvents(false))
		},
	},
	iptables.Name: {
		name: iptables.Name,
		open: func(ctx context.Context, o backend.Options) (backend.Backend, error) { return iptables.New(ctx, o) },
		stats: func(b backend.Backend) applyStats {
			st := b.(*iptables.Backend).LastApply()
			return applyStats{render: st.Render, kernel: st.Kernel, messages: st.Commands}
		},
	},
}

// parseDataplanes reads the -dataplane flag: names separated by commas.
func parseDataplanes(s string) ([]dataplane, error) {
	var out []dataplane
	for _, n := range strings.Split(s, ",") {
		d, ok := dataplanes[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("unknown dataplane %q (nftables, iptables, ebpf)", n)
		}
		out = append(out, d)
	}
	return out, nil
}

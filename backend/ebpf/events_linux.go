//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
)

// ReadEvents calls fn for every event (Log rules, and with flow events
// the verdicts on new flows and denied packets) until ctx is done; it
// returns ctx's error then. Events the ring buffer had no room for are
// counted by LostEvents.
func (b *Backend) ReadEvents(ctx context.Context, fn func(Event)) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return backend.ErrClosed
	}
	m := b.objs.maps[refEvents]
	b.mu.Unlock()
	return readEvents(ctx, m, b.resolver, fn)
}

// resolver names event IDs from the current and the previous plan.
func (b *Backend) resolver() resolver {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sets map[compile.SetID]*compile.IPSet
	if b.rs != nil {
		sets = b.rs.Sets
	}
	return resolver{refs: []map[string]map[uint64]stepRef{b.refs, b.prevRefs}, sets: sets}
}

// LostEvents returns how many events the programs could not write because
// the ring buffer was full (nobody read it fast enough), summed over CPUs
// since the maps were created.
func (b *Backend) LostEvents() (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, backend.ErrClosed
	}
	return lostEvents(b.objs)
}

func lostEvents(o *objects) (uint64, error) {
	var per []uint64
	if err := o.maps[refLost].Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("ebpf: lost events: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

func readEvents(ctx context.Context, m *ebpf.Map, res func() resolver, fn func(Event)) error {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return fmt.Errorf("ebpf: ring buffer: %w", err)
	}
	defer rd.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rd.SetDeadline(time.Now().Add(100 * time.Millisecond))
		rec, err := rd.Read()
		if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("ebpf: ring buffer: %w", err)
		}
		e, err := decodeEvent(rec.RawSample, res())
		if err != nil {
			continue
		}
		fn(e)
	}
}

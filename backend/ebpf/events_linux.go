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
)

// ReadEvents calls fn for every Log event until ctx is done; it returns
// ctx's error then.
func (b *Backend) ReadEvents(ctx context.Context, fn func(Event)) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return backend.ErrClosed
	}
	m := b.objs.maps[refEvents]
	b.mu.Unlock()
	return readEvents(ctx, m, func() map[uint64]RuleRef {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.refs
	}, fn)
}

func readEvents(ctx context.Context, m *ebpf.Map, refs func() map[uint64]RuleRef, fn func(Event)) error {
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
		e, err := decodeEvent(rec.RawSample, refs())
		if err != nil {
			continue
		}
		fn(e)
	}
}

//go:build linux

package ebpf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/calyxnet/calyx/backend"
)

// TestMapOfAnotherLayoutIsReplaced: a pinned map whose shape differs from
// the current layout is replaced deliberately, never reused; maps of the
// right shape are adopted with their contents.
func TestMapOfAnotherLayoutIsReplaced(t *testing.T) {
	requireBPF(t)
	ctx := context.Background()
	name := "layouttest"
	b, err := New(ctx, backend.Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	dir := b.PinDir()
	// A set entry that must survive the restart, then a conntrack map of an
	// older layout in its place.
	key := srcKey(7, mustAddr("10.9.9.9"))
	if err := b.objs.maps[refAddrs].Put(key, uint32(1)); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.release()
	b.closed = true
	b.mu.Unlock()
	if err := os.Remove(filepath.Join(dir, refCT)); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: ctKeySize, ValueSize: 8, MaxEntries: 128})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(filepath.Join(dir, refCT)); err != nil {
		t.Fatal(err)
	}
	old.Close()

	b2, err := New(ctx, backend.Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close(ctx) })
	if !slices.Equal(b2.objs.replaced, []string{refCT}) {
		t.Errorf("replaced %v, want [%s]", b2.objs.replaced, refCT)
	}
	if vs := b2.objs.maps[refCT].ValueSize(); vs != ctValSize {
		t.Errorf("conntrack map value size %d, want %d", vs, ctValSize)
	}
	var v uint32
	if err := b2.objs.maps[refAddrs].Lookup(key, &v); err != nil {
		t.Errorf("adopted map lost its entry: %v", err)
	}
}

func TestKernelVersion(t *testing.T) {
	for _, c := range []struct {
		rel          string
		major, minor int
		ok           bool
		refused      bool
	}{
		{"6.18.44-fc-v782", 6, 18, true, false},
		{"6.6.0", 6, 6, true, false},
		{"5.15.0-91-generic", 5, 15, true, true},
		{"6.5-rc1", 6, 5, true, true},
		{"weird", 0, 0, false, false},
	} {
		t.Run(c.rel, func(t *testing.T) {
			major, minor, ok := kernelVersion(c.rel)
			if major != c.major || minor != c.minor || ok != c.ok {
				t.Errorf("kernelVersion(%q) = %d, %d, %v", c.rel, major, minor, ok)
			}
			// Older than 6.6 is refused as not supported, naming the
			// release; a release we cannot read is left to the attach.
			err := kernelError(c.rel)
			if c.refused != (err != nil) || err != nil && (!errors.Is(err, backend.ErrNotSupported) ||
				!strings.Contains(err.Error(), c.rel) || !strings.Contains(err.Error(), "6.6")) {
				t.Errorf("kernelError(%q) = %v", c.rel, err)
			}
		})
	}
}

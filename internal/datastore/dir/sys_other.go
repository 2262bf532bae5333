//go:build !unix

package dir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

func inode(os.FileInfo) uint64 { return 0 }

// lockFile takes the lock by creating path exclusively; without flock a
// crashed writer leaves it behind, to be removed by hand.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("directory store: lock: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("directory store: waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

//go:build linux

package netns_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/calyxnet/calyx/internal/netns"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Stat(path, &st))
	return st.Ino
}

func TestCreateDoDelete(t *testing.T) {
	netnstest.RequireRoot(t)
	name := netnstest.UniqueName("cxt-")
	ns, err := netns.Create(name)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ns.Delete() })

	_, err = netns.Create(name)
	require.ErrorIs(t, err, netns.ErrExists)

	own := inode(t, "/proc/self/ns/net")
	var inside uint64
	require.NoError(t, ns.Do(func() error {
		inside = inode(t, "/proc/thread-self/ns/net")
		return nil
	}))
	require.Equal(t, inode(t, filepath.Join(netns.RunDir, name)), inside)
	require.NotEqual(t, own, inside, "Do must run in the other namespace")
	require.Equal(t, own, inode(t, "/proc/thread-self/ns/net"), "caller's thread must stay put")

	boom := errors.New("boom")
	require.ErrorIs(t, ns.Do(func() error { return boom }), boom)

	// A sysctl written inside stays inside.
	require.NoError(t, ns.WriteSysctl("net.ipv4.ip_forward", "1"))
	var v []byte
	require.NoError(t, ns.Do(func() error {
		var err error
		v, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return err
	}))
	require.Equal(t, "1\n", string(v))

	names, err := netns.List("cxt-")
	require.NoError(t, err)
	require.Contains(t, names, name)

	require.NoError(t, ns.Delete())
	require.NoError(t, ns.Delete(), "second delete is a no-op")
	require.ErrorIs(t, ns.Do(func() error { return nil }), netns.ErrClosed)
	_, err = os.Stat(filepath.Join(netns.RunDir, name))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestManyDoInParallel(t *testing.T) {
	a := netnstest.New(t, "cxt-")
	b := netnstest.New(t, "cxt-")
	want := map[*netns.NS]uint64{a: inode(t, a.Path()), b: inode(t, b.Path())}
	errc := make(chan error, 200)
	for i := range 200 {
		ns := a
		if i%2 == 1 {
			ns = b
		}
		go func() {
			errc <- ns.Do(func() error {
				var st unix.Stat_t
				if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
					return err
				}
				if st.Ino != want[ns] {
					return errors.New("wrong namespace")
				}
				return nil
			})
		}()
	}
	for range 200 {
		require.NoError(t, <-errc)
	}
}

func TestOpenRejectsNonNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	_, err := netns.Open("/etc/hostname")
	require.Error(t, err)
}

package ipam

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// crashKills is how many times each crash test kills its child:
// IPAM_CRASH_KILLS=100 for the soak, a handful otherwise.
func crashKills(t *testing.T) int {
	t.Helper()
	if v := os.Getenv("IPAM_CRASH_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		return n
	}
	if testing.Short() {
		return 2
	}
	return 5
}

// TestCrashSafety kills a child allocating in a loop with SIGKILL at
// random points, then checks that the store is consistent and that every
// allocation the child acknowledged is still there.
func TestCrashSafety(t *testing.T) {
	stores := []struct {
		name string
		spec func(t *testing.T) string
	}{
		{"bolt", func(t *testing.T) string { return "bolt:" + filepath.Join(t.TempDir(), "ipam.db") }},
		{"etcd", func(t *testing.T) string { return "etcd:" + startEtcd(t) }},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			ctx := context.Background()
			spec := st.spec(t)
			ss, err := ParseStoreSpec(spec)
			require.NoError(t, err)
			s, err := ss.Open(ctx)
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			if es, ok := s.(*EtcdStore); ok {
				t.Cleanup(func() { _, _ = es.c.Delete(context.Background(), es.prefix, clientv3.WithPrefix()) })
			}
			a := New(s, Config{})
			require.NoError(t, a.UpsertPool(ctx, Pool{Name: "p", CIDR: netip.MustParsePrefix("10.2.0.0/16"), BlockSize: 26}))

			acked := map[string]netip.Addr{} // every acknowledged, never-released handle
			maybe := map[string]netip.Addr{} // release started, not acknowledged
			total := 0
			for kill := range crashKills(t) {
				cmd := childCmd(t, "loop", "IPAM_STORE="+spec, fmt.Sprint("IPAM_NAME=k", kill))
				out, err := cmd.StdoutPipe()
				require.NoError(t, err)
				require.NoError(t, cmd.Start())
				lines := make(chan string, 1024)
				go func() {
					defer close(lines)
					sc := bufio.NewScanner(out)
					for sc.Scan() {
						lines <- sc.Text()
					}
				}()
				// Kill at a random point after the child got going.
				killAfter := time.Duration(rand.IntN(40)) * time.Millisecond
				var timer <-chan time.Time
				deadline := time.After(60 * time.Second)
			read:
				for {
					select {
					case line, ok := <-lines:
						if !ok {
							break read
						}
						ev, isEv, err := parseEvent(line)
						require.NoError(t, err)
						if !isEv {
							continue
						}
						switch ev.kind {
						case "ack":
							total++
							acked[ev.handle] = ev.addr
							if timer == nil {
								timer = time.After(killAfter)
							}
						case "released":
							delete(acked, ev.handle)
							delete(maybe, ev.handle)
						}
						// Handles the child releases (every third) are
						// in doubt from their ack until "released".
						if ev.kind == "ack" && handleIndex(ev.handle)%3 == 2 {
							maybe[ev.handle] = ev.addr
							delete(acked, ev.handle)
						}
					case <-timer:
						require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
						timer = nil
					case <-deadline:
						_ = cmd.Process.Kill()
						t.Fatal("child made no progress")
					}
				}
				_ = cmd.Wait()

				// After the crash: consistent, nothing acknowledged lost.
				rep := requireClean(t, a)
				for h, addr := range acked {
					al, err := a.Lookup(ctx, addr)
					require.NoError(t, err, "kill %d: acknowledged %s (%s) lost", kill, h, addr)
					require.Equal(t, h, al.Handle)
				}
				for h, addr := range maybe {
					if al, err := a.Lookup(ctx, addr); err == nil && al.Handle == h {
						acked[h] = addr // the release did not land: still held
					}
					delete(maybe, h)
				}
				require.GreaterOrEqual(t, rep.Allocated, len(acked))
			}
			t.Logf("%d kills, %d acknowledged allocations, all present", crashKills(t), total)
		})
	}
}

func handleIndex(h string) int {
	i := strings.LastIndexByte(h, '-')
	n, _ := strconv.Atoi(h[i+1:])
	return n
}

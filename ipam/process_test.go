package ipam

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Child processes: the test binary re-executes itself with
// IPAM_TEST_CHILD set, runs TestChildProcess only, and talks to the parent
// on stdout, one line per event.
const childEnv = "IPAM_TEST_CHILD"

// childCmd returns a command running the test binary as a child.
func childCmd(t testing.TB, role string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+role)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestChildProcess is the body of the child processes; it does nothing in
// a normal run.
func TestChildProcess(t *testing.T) {
	role := os.Getenv(childEnv)
	if role == "" {
		t.Skip("runs only as a child of the concurrency and crash tests")
	}
	ctx := context.Background()
	spec, err := ParseStoreSpec(os.Getenv("IPAM_STORE"))
	if err != nil {
		fail(err)
	}
	s, err := spec.Open(ctx)
	if err != nil {
		fail(err)
	}
	defer s.Close()
	a := New(s, Config{Cooldown: -1, MaxRetries: 1000})
	name := os.Getenv("IPAM_NAME")
	n, _ := strconv.Atoi(os.Getenv("IPAM_N"))
	out := bufio.NewWriter(os.Stdout)
	switch role {
	case "churn":
		// Assign n handles; release every other one right away. Print the
		// held ones.
		for i := range n {
			h := fmt.Sprintf("%s-%d", name, i)
			res, err := a.AutoAssign(ctx, AssignRequest{Handle: h, Node: "node-1", IPv4: 1})
			if err != nil {
				fail(err)
			}
			if i%2 == 1 {
				if _, err := a.ReleaseByHandle(ctx, h); err != nil {
					fail(err)
				}
				continue
			}
			fmt.Fprintf(out, "held %s %s\n", h, res.IPv4[0])
		}
		_ = out.Flush()
	case "loop":
		// Allocate (and sometimes release) until killed; every line is
		// written straight to the pipe after the commit returned, so the
		// parent knows exactly what was acknowledged.
		for i := 0; ; i++ {
			h := fmt.Sprintf("%s-%d", name, i)
			res, err := a.AutoAssign(ctx, AssignRequest{Handle: h, Node: "node-1", IPv4: 1})
			if err != nil {
				fail(err)
			}
			fmt.Printf("ack %s %s\n", h, res.IPv4[0])
			if i%3 == 2 {
				if _, err := a.ReleaseByHandle(ctx, h); err != nil {
					fail(err)
				}
				fmt.Printf("released %s\n", h)
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "child:", err)
	os.Exit(3)
}

// event is one line a child printed.
type event struct {
	kind, handle string
	addr         netip.Addr
}

// parseEvent parses an event line; ok is false for the test framework's
// own output (PASS, ok …).
func parseEvent(line string) (ev event, ok bool, err error) {
	f := strings.Fields(line)
	if len(f) == 0 || (f[0] != "held" && f[0] != "ack" && f[0] != "released") {
		return event{}, false, nil
	}
	switch {
	case len(f) == 3 && (f[0] == "held" || f[0] == "ack"):
		a, err := netip.ParseAddr(f[2])
		return event{f[0], f[1], a}, true, err
	case len(f) == 2 && f[0] == "released":
		return event{kind: f[0], handle: f[1]}, true, nil
	}
	return event{}, false, fmt.Errorf("bad child line %q", line)
}

// waitOrKill waits for cmd, killing it after d.
func waitOrKill(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("child timed out after %v", d)
	}
}

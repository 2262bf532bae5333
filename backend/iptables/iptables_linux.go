//go:build linux

package iptables

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	goipt "github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/netns"
)

// runner runs a system binary with stdin in the backend's namespace: the
// seam between the bytes this package builds and the kernel.
type runner interface {
	run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// execRunner runs binaries, inside ns when it is set: the command is
// started from a thread switched into the namespace, which the child
// inherits (what `ip netns exec` does).
type execRunner struct {
	ns *netns.NS
}

func (e *execRunner) run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	var out []byte
	do := func() error {
		cmd := exec.CommandContext(ctx, name, args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		out = stdout.Bytes()
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return nil
	}
	if e.ns == nil {
		return out, do()
	}
	err := e.ns.Do(do)
	return out, err
}

// Stats describes the last Apply.
type Stats struct {
	// Render is the time spent building the restore inputs in memory;
	// Kernel the time the restore commands took.
	Render, Kernel time.Duration
	// Commands is the number of restore commands run; Bytes the size of
	// their input.
	Commands, Bytes int
}

// Backend is the iptables dataplane. It is safe for concurrent use.
type Backend struct {
	mu     sync.Mutex
	log    *slog.Logger
	name   string // Options.Name
	n      naming
	r      runner
	ns     *netns.NS
	wait   bool
	mode   string
	closed bool

	planned *plan
	cache   *renderCache
	// gen numbers the states applied (state.gen).
	gen uint64
	// nlh changes ipset members over netlink (members_linux.go);
	// nlFailed records that it could not be opened.
	nlh      *netlink.Handle
	nlFailed bool
	cur      [2]*state
	sets     map[string]*ipset
	last     Stats
}

var _ backend.Backend = (*Backend)(nil)

// Open is a backend.Factory for iptables.
func Open(ctx context.Context, opts backend.Options) (backend.Backend, error) {
	return New(ctx, opts)
}

// New opens the iptables backend on the namespace opts.NetNS (the caller's
// when empty). It finds iptables with go-iptables, checks its mode and
// lock support, and refuses a host whose rules are split between
// iptables-legacy and iptables-nft (ErrMixedMode). Nothing is changed
// until Apply.
func New(ctx context.Context, opts backend.Options) (*Backend, error) {
	b := &Backend{log: opts.Logger, n: newNaming(opts.Name), name: opts.Name, cache: newRenderCache()}
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.NetNS != "" {
		ns, err := netns.Open(opts.NetNS)
		if err != nil {
			return nil, fmt.Errorf("iptables: %w", err)
		}
		b.ns = ns
	}
	b.r = &execRunner{ns: b.ns}
	if err := b.detect(ctx); err != nil {
		b.closeNS()
		return nil, err
	}
	return b, nil
}

func (b *Backend) closeNS() {
	if b.ns != nil {
		_ = b.ns.Close()
	}
}

// detect learns the iptables mode and version and checks the other mode
// holds no rules.
func (b *Backend) detect(ctx context.Context) error {
	for _, bin := range []string{"iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save", "ipset"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%w: %s not found", backend.ErrNotSupported, bin)
		}
	}
	var ipt *goipt.IPTables
	detect := func() error {
		var err error
		ipt, err = goipt.New(goipt.IPFamily(goipt.ProtocolIPv4))
		return err
	}
	var err error
	if b.ns != nil {
		err = b.ns.Do(detect)
	} else {
		err = detect()
	}
	if err != nil {
		return fmt.Errorf("%w: iptables: %w", backend.ErrNotSupported, err)
	}
	v1, v2, v3 := ipt.GetIptablesVersion()
	// iptables-restore takes --wait from 1.6.2 on.
	b.wait = v1 > 1 || v1 == 1 && (v2 > 6 || v2 == 6 && v3 >= 2)
	out, err := b.r.run(ctx, nil, "iptables", "--version")
	if err != nil {
		return fmt.Errorf("%w: %w", backend.ErrNotSupported, err)
	}
	b.mode = "legacy"
	if strings.Contains(string(out), "nf_tables") {
		b.mode = "nf_tables"
	}
	other := map[string][]string{"nf_tables": {"iptables-legacy-save", "ip6tables-legacy-save"},
		"legacy": {"iptables-nft-save", "ip6tables-nft-save"}}[b.mode]
	for _, bin := range other {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		out, err := b.r.run(ctx, nil, bin)
		if err != nil {
			continue // that mode is not usable here: nothing can be split
		}
		if n := bytes.Count(out, []byte("\n-A ")); n > 0 {
			return fmt.Errorf("%w: iptables runs in %s mode but %s shows %d rules; move them to one mode first",
				ErrMixedMode, b.mode, bin, n)
		}
	}
	b.log.Debug("iptables detected", "mode", b.mode, "version", fmt.Sprintf("%d.%d.%d", v1, v2, v3), "wait", b.wait)
	return nil
}

// Name returns "iptables".
func (b *Backend) Name() string { return Name }

// Mode returns the iptables mode the host runs: "nf_tables" or "legacy".
func (b *Backend) Mode() string { return b.mode }

// LastApply describes the last Apply.
func (b *Backend) LastApply() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func (b *Backend) restoreArgs() []string {
	args := []string{"--noflush"}
	if b.wait {
		args = append(args, "--wait")
	}
	return args
}

// readKernel reads our chains, jumps and sets back from the kernel.
func (b *Backend) readKernel(ctx context.Context) ([2]*state, map[string]*ipset, error) {
	var st [2]*state
	for i, v := range []uint8{4, 6} {
		out, err := b.r.run(ctx, nil, cmdName(v)+"-save", "-t", "filter")
		if err != nil {
			return st, nil, fmt.Errorf("iptables: read: %w", err)
		}
		st[i] = parseSave(out, b.n)
	}
	out, err := b.r.run(ctx, nil, "ipset", "save")
	if err != nil {
		return st, nil, fmt.Errorf("iptables: read sets: %w", err)
	}
	return st, parseIpsetSave(out, b.n), nil
}

// transact moves the kernel from cur to want: sets first, then one
// iptables-restore per family, then sets no rule uses any more.
func (b *Backend) transact(ctx context.Context, cur [2]*state, curSets map[string]*ipset, want *plan, d *Drift) (st Stats, err error) {
	start := time.Now()
	wantSets := want.allSets()
	prep, destroy := setsInputs(curSets, wantSets, d)
	var ops []memberOp
	members := false
	if len(prep) > 0 && len(destroy) == 0 {
		ops, members = memberOps(curSets, wantSets)
	}
	var inputs [2][]byte
	for i, fp := range want.fams {
		inputs[i] = rulesInput(cur[i], fp, d)
	}
	st.Render = time.Since(start)
	start = time.Now()
	defer func() { st.Kernel = time.Since(start) }()
	run := func(stdin []byte, name string, args ...string) error {
		if len(stdin) == 0 {
			return nil
		}
		st.Commands++
		st.Bytes += len(stdin)
		if _, err := b.r.run(ctx, stdin, name, args...); err != nil {
			return fmt.Errorf("%w: %w", ErrRestoreFailed, err)
		}
		return nil
	}
	var h *netlink.Handle
	if members {
		h = b.ipsetHandle()
	}
	if h != nil {
		st.Commands++
		if err := b.applyMembers(h, ops); err != nil {
			return st, fmt.Errorf("%w: %w", ErrRestoreFailed, err)
		}
	} else if err := run(prep, "ipset", "restore", "-exist"); err != nil {
		return st, err
	}
	for i, fp := range want.fams {
		if err := run(inputs[i], cmdName(fp.v)+"-restore", b.restoreArgs()...); err != nil {
			return st, err
		}
		b.gen++
		for _, c := range fp.chains {
			c.applied[i] = b.gen
		}
		b.cur[i] = stateOf(fp)
		b.cur[i].gen = b.gen
	}
	if err := run(destroy, "ipset", "restore", "-exist"); err != nil {
		return st, err
	}
	return st, nil
}

// Apply makes the kernel enforce rs. The first Apply reads what is there
// (left by an earlier run) and patches it; later ones diff against the
// last applied state: only changed chains are rewritten, only changed set
// members touched.
func (b *Backend) Apply(ctx context.Context, rs *compile.Ruleset) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	start := time.Now()
	p, err := render(rs, b.n, b.cache)
	if err != nil {
		return err
	}
	renderTime := time.Since(start)
	cur, curSets := b.cur, b.sets
	if b.planned == nil {
		if cur, curSets, err = b.readKernel(ctx); err != nil {
			return err
		}
	}
	st, err := b.transact(ctx, cur, curSets, p, nil)
	st.Render += renderTime
	b.last = st
	if err != nil {
		// Force a read of the kernel next time: a family may be applied
		// while the other is not.
		b.planned = nil
		return err
	}
	b.planned, b.sets = p, p.allSets()
	b.cache.commit()
	return nil
}

// Check renders rs and applies it, from scratch, in a throw-away network
// namespace: ipset and iptables-restore run the very inputs Apply would
// and the running kernel validates every set, member and rule (its
// modules, its limits: what rendering alone cannot know), while nothing
// real changes. A Ruleset that refers to what it does not hold fails with
// ErrInvalidRuleset before any of that; one the kernel refuses, with
// ErrRestoreFailed. (iptables-restore --test against the real namespace
// cannot check rules whose ipsets do not exist there yet.)
func (b *Backend) Check(ctx context.Context, rs *compile.Ruleset) error {
	if _, err := render(rs, b.n, nil); err != nil {
		return err
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("iptables: check: %w", err)
	}
	ns, err := netns.Create(fmt.Sprintf("calyx-ipcheck-%x", rnd))
	if err != nil {
		return fmt.Errorf("iptables: check: %w", err)
	}
	defer ns.Delete()
	tmp, err := New(ctx, backend.Options{NetNS: ns.Path(), Name: b.name, Logger: b.log})
	if err != nil {
		return fmt.Errorf("iptables: check: %w", err)
	}
	defer tmp.Close(ctx)
	return tmp.Apply(ctx, rs)
}

// Dump returns the restore inputs of the state in force: `ipset restore`
// lines, then the iptables-restore input of each family.
func (b *Backend) Dump(ctx context.Context) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	if b.planned == nil {
		return nil, nil
	}
	return b.planned.dump(), nil
}

// Reconcile reads our chains, jumps and sets back from the kernel and
// repairs whatever others changed: rules deleted, changed or appended,
// jumps removed or moved, chains or sets added, members changed. It
// returns what it found.
func (b *Backend) Reconcile(ctx context.Context) (*Drift, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	d := &Drift{}
	if b.planned == nil {
		return d, nil
	}
	cur, curSets, err := b.readKernel(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := b.transact(ctx, cur, curSets, b.planned, d); err != nil {
		return d, err
	}
	return d, nil
}

// Close removes our jumps, chains and sets, and nothing else.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	defer b.closeNS()
	defer b.closeNetlink()
	cur, curSets, err := b.readKernel(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i, v := range []uint8{4, 6} {
		if in := removeInput(cur[i]); in != nil {
			if _, err := b.r.run(ctx, in, cmdName(v)+"-restore", b.restoreArgs()...); err != nil {
				errs = append(errs, fmt.Errorf("%w: %w", ErrRestoreFailed, err))
			}
		}
	}
	if _, destroy := setsInputs(curSets, nil, nil); len(destroy) > 0 {
		if _, err := b.r.run(ctx, destroy, "ipset", "restore", "-exist"); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrRestoreFailed, err))
		}
	}
	return errors.Join(errs...)
}

// Repair is Reconcile behind the backend.Repairer interface.
func (b *Backend) Repair(ctx context.Context) (backend.Drift, error) {
	d, err := b.Reconcile(ctx)
	if err != nil {
		return nil, err
	}
	return d, nil
}

var _ backend.Repairer = (*Backend)(nil)

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/endpointapi"
	"github.com/calyxnet/calyx/policy"
)

// Defaults of Config's zero fields.
const (
	DefaultReconcileInterval = 60 * time.Second
	DefaultCoalesce          = 10 * time.Millisecond
	DefaultRetryMin          = 100 * time.Millisecond
	DefaultRetryMax          = 30 * time.Second
	DefaultApplyTimeout      = 5 * time.Minute
)

// Errors callers branch on.
var (
	// ErrConfig is returned by New for a config it cannot run with.
	ErrConfig = errors.New("agent: invalid config")
	// ErrRunning is returned by a second concurrent Run.
	ErrRunning = errors.New("agent: already running")
	// ErrNotSynced is wrapped by Status (with endpointapi.ErrCannotProgram)
	// while the datastore has not reported its first sync.
	ErrNotSynced = errors.New("agent: datastore not in sync yet")
	// ErrUnpoliceable is returned by Register for an attachment whose host
	// interface the compiler cannot name (no Kubernetes identity, or an
	// interface other than compile.WorkloadInterface).
	ErrUnpoliceable = errors.New("agent: endpoint cannot be policed")
)

// Config is what an Agent runs with. Store and Backend are required and
// owned by the caller: the agent never closes the store, and closes the
// backend only when UninstallOnExit is set.
type Config struct {
	// Node is this node's name: pods and host endpoints of this node are
	// its endpoints. Empty is the virtual node holding every endpoint of
	// the cluster (tests, simulation).
	Node string
	// Store is the datastore to watch.
	Store datastore.Store
	// Backend is the dataplane to program. The caller owns it: Run
	// closes it only with UninstallOnExit. To hand a stopped agent's
	// enforcement to another backend in the same process, Release it
	// first if it is a backend.Releaser (the eBPF dataplane holds a lock
	// on its pins until then).
	Backend backend.Backend

	// ReconcileInterval is how often drift is repaired (backends that are
	// a backend.Repairer); 0 means DefaultReconcileInterval, negative
	// disables periodic repair.
	ReconcileInterval time.Duration
	// Coalesce is the least time between the end of one apply and the
	// start of the next: a change after a quiet spell is applied at once,
	// a burst is applied at most once per window, newest Ruleset only. 0
	// means DefaultCoalesce, negative means none.
	Coalesce time.Duration
	// RetryMin and RetryMax bound the exponential backoff between retries
	// after an apply error; 0 means the defaults.
	RetryMin, RetryMax time.Duration
	// ApplyTimeout bounds one Apply or Repair; 0 means DefaultApplyTimeout.
	// /livez fails while one runs for longer.
	ApplyTimeout time.Duration

	// EndpointSocket is the unix socket the CNI plugin talks to; empty
	// means Run serves none (the caller may serve Agent itself with
	// endpointapi.NewServer).
	EndpointSocket string
	// Listen is the address of /livez, /readyz, /metrics and /status;
	// empty means Run serves none (Handler still returns them).
	Listen string

	// FailsafeInbound and FailsafeOutbound are added to the fail-safe ports
	// of every Ruleset (FelixConfiguration's, or Calico's defaults).
	FailsafeInbound, FailsafeOutbound []compile.ProtoPort

	// UninstallOnExit makes Run close the backend (remove everything it
	// owns from the kernel) when it returns. Off by default: a stopped
	// agent leaves enforcement in place.
	UninstallOnExit bool

	// CompileOptions are passed to compile.New.
	CompileOptions []compile.Option
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.ReconcileInterval == 0 {
		out.ReconcileInterval = DefaultReconcileInterval
	}
	if out.Coalesce == 0 {
		out.Coalesce = DefaultCoalesce
	}
	if out.RetryMin <= 0 {
		out.RetryMin = DefaultRetryMin
	}
	if out.RetryMax <= 0 {
		out.RetryMax = DefaultRetryMax
	}
	if out.RetryMax < out.RetryMin {
		out.RetryMax = out.RetryMin
	}
	if out.ApplyTimeout <= 0 {
		out.ApplyTimeout = DefaultApplyTimeout
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}

// Agent is one node agent. Create it with New, start it with Run. Its
// methods are safe for concurrent use.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	repairer backend.Repairer
	// flows counts the dataplane's flow events; nil when it reports none.
	flows   *flowMetrics
	metrics *metrics
	dirty   chan struct{}
	started time.Time

	runMu   sync.Mutex
	running bool

	mu         sync.Mutex
	set        *policy.Set
	comp       *compile.Compiler
	ds         map[policy.ObjectKey]datastore.Item // the datastore's view
	relist     map[policy.ObjectKey]struct{}       // keys seen since a re-watch began; nil otherwise
	relistErrs map[string]struct{}                 // sources reported in error since a watch began; nil once it synced
	synced     bool
	latest     *compile.Ruleset
	gen        uint64
	touched    touched // what changed between the Ruleset last taken to apply and latest
	applied    *compile.Ruleset
	appliedGen uint64
	regs       map[string]*registration
	byPod      map[podKey]string
	regSeq     uint64
	sourceErrs map[string]string
	state      applyState
}

// applyState is what the apply goroutine reports, for Status and probes.
type applyState struct {
	failing      bool
	lastApply    time.Time
	lastDuration time.Duration
	lastErr      string
	lastErrTime  time.Time
	busySince    time.Time // an Apply or Repair in flight since
	applies      uint64
	applyErrors  uint64
	driftRepairs uint64
	counts       Counts
}

// New checks cfg and returns an agent ready to Run.
func New(cfg Config) (*Agent, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("a datastore (Config.Store) is required"))
	}
	if cfg.Backend == nil {
		errs = append(errs, errors.New("a dataplane (Config.Backend) is required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	cfg = cfg.withDefaults()
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Logger,
		metrics:    newMetrics(),
		dirty:      make(chan struct{}, 1),
		set:        policy.NewSet(),
		ds:         map[policy.ObjectKey]datastore.Item{},
		regs:       map[string]*registration{},
		byPod:      map[podKey]string{},
		sourceErrs: map[string]string{},
	}
	a.repairer, _ = cfg.Backend.(backend.Repairer)
	if fr, ok := cfg.Backend.(flowReader); ok {
		a.flows = a.metrics.watchFlows(fr)
	}
	a.comp = compile.New(a.set, cfg.Node, cfg.CompileOptions...)
	return a, nil
}

// Run watches the datastore and keeps the dataplane equal to it until ctx
// ends; it serves the endpoint socket and the HTTP endpoints when the
// config names them. It returns nil after ctx ends, or the error that
// stopped it (a socket or address it could not listen on). The backend is
// left in place unless Config.UninstallOnExit is set.
func (a *Agent) Run(ctx context.Context) (err error) {
	a.runMu.Lock()
	if a.running {
		a.runMu.Unlock()
		return ErrRunning
	}
	a.running = true
	a.started = time.Now()
	a.runMu.Unlock()
	defer func() {
		a.runMu.Lock()
		a.running = false
		a.runMu.Unlock()
	}()
	if a.cfg.UninstallOnExit {
		defer func() {
			if cerr := a.cfg.Backend.Close(context.WithoutCancel(ctx)); cerr != nil {
				err = errors.Join(err, fmt.Errorf("agent: uninstall dataplane: %w", cerr))
			}
		}()
	}

	var sockLn, httpLn net.Listener
	if a.cfg.EndpointSocket != "" {
		if sockLn, err = listenUnix(a.cfg.EndpointSocket); err != nil {
			return err
		}
	}
	if a.cfg.Listen != "" {
		if httpLn, err = net.Listen("tcp", a.cfg.Listen); err != nil {
			if sockLn != nil {
				_ = sockLn.Close()
			}
			return fmt.Errorf("agent: listen on %s: %w", a.cfg.Listen, err)
		}
	}
	a.log.Info("agent starting", "node", a.cfg.Node, "dataplane", a.cfg.Backend.Name(),
		"reconcileInterval", a.cfg.ReconcileInterval, "coalesce", a.cfg.Coalesce)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { a.watchLoop(gctx); return nil })
	g.Go(func() error { a.applyLoop(gctx); return nil })
	if a.flows != nil {
		g.Go(func() error { a.readFlows(gctx, a.cfg.Backend.(flowReader), a.flows); return nil })
	}
	if sockLn != nil {
		g.Go(func() error {
			err := endpointapi.NewServer(a, a.log).Serve(gctx, sockLn)
			_ = os.Remove(a.cfg.EndpointSocket)
			return err
		})
	}
	if httpLn != nil {
		srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("agent: http: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	err = g.Wait()
	a.log.Info("agent stopped; enforcement left in place", "uninstall", a.cfg.UninstallOnExit)
	return err
}

// listenUnix listens on path, replacing a stale socket a previous agent
// left behind (but no other kind of file).
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("agent: endpoint socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("agent: endpoint socket %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("agent: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: endpoint socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("agent: endpoint socket: %w", err)
	}
	return ln, nil
}

// markDirty wakes the apply goroutine; it never blocks.
func (a *Agent) markDirty() {
	select {
	case a.dirty <- struct{}{}:
	default:
	}
}

// publishLocked recompiles after changes (incrementally once synced) and
// hands the newest Ruleset to the apply goroutine. a.mu is held.
func (a *Agent) publishLocked(changes []policy.Change) {
	if !a.synced || len(changes) == 0 {
		return
	}
	rs, d, err := a.comp.Update(changes...)
	if err != nil {
		// The compiler's state may be half-updated: start over from the Set.
		a.log.Warn("incremental compile failed; compiling from scratch", "err", err)
		a.compileFullLocked()
		return
	}
	if d.Empty() && a.latest != nil {
		return
	}
	a.touched.add(d)
	a.setLatestLocked(rs)
}

// compileFullLocked compiles the whole Set with a fresh Compiler.
func (a *Agent) compileFullLocked() {
	a.comp = compile.New(a.set, a.cfg.Node, a.cfg.CompileOptions...)
	rs, err := a.comp.Compile()
	if err != nil {
		a.log.Error("compile failed; the last Ruleset stays in force", "err", err)
		a.noteErrorLocked(fmt.Errorf("compile: %w", err))
		return
	}
	a.touched.all = true
	a.setLatestLocked(rs)
}

func (a *Agent) setLatestLocked(rs *compile.Ruleset) {
	a.latest = a.withFailsafe(rs)
	a.gen++
	a.markDirty()
}

// withFailsafe returns rs with the configured extra fail-safe ports, as a
// shallow copy (the compiler's Ruleset is shared and read-only).
func (a *Agent) withFailsafe(rs *compile.Ruleset) *compile.Ruleset {
	in := addPorts(rs.Settings.FailsafeInbound, a.cfg.FailsafeInbound)
	out := addPorts(rs.Settings.FailsafeOutbound, a.cfg.FailsafeOutbound)
	if len(in) == len(rs.Settings.FailsafeInbound) && len(out) == len(rs.Settings.FailsafeOutbound) {
		return rs
	}
	cp := *rs
	cp.Settings.FailsafeInbound, cp.Settings.FailsafeOutbound = in, out
	return &cp
}

func addPorts(have, extra []compile.ProtoPort) []compile.ProtoPort {
	var add []compile.ProtoPort
	for _, p := range extra {
		found := false
		for _, h := range have {
			if h == p {
				found = true
				break
			}
		}
		for _, h := range add {
			if h == p {
				found = true
				break
			}
		}
		if !found {
			add = append(add, p)
		}
	}
	if len(add) == 0 {
		return have
	}
	out := make([]compile.ProtoPort, 0, len(have)+len(add))
	return append(append(out, have...), add...)
}

func (a *Agent) noteErrorLocked(err error) {
	a.state.lastErr = err.Error()
	a.state.lastErrTime = time.Now()
}

// Ruleset returns the newest compiled Ruleset (nil before the first sync)
// and the one last applied successfully (nil before the first apply).
func (a *Agent) Ruleset() (latest, applied *compile.Ruleset) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.latest, a.applied
}

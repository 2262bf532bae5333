// Command calyx-agent is the Calyx node agent: it watches a datastore (a
// directory of YAML, etcd or the Kubernetes API) and keeps this node's dataplane (nftables,
// iptables or eBPF) enforcing its policy, serves the endpoint socket the
// calyx-cni plugin talks to, and /livez, /readyz, /metrics and /status.
//
// It holds flag parsing and wiring only; the loop is internal/agent.
//
// SIGINT and SIGTERM stop it and leave enforcement in the kernel: a new
// agent adopts and patches it. --uninstall removes the dataplane and
// exits; --uninstall-on-exit removes it when the agent stops.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/calyxnet/calyx/backend"
	"github.com/calyxnet/calyx/backend/ebpf"
	"github.com/calyxnet/calyx/backend/iptables"
	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/backend/nftables"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/internal/datastore/dsconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	o, err := loadOptions(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "calyx-agent:", err)
		return 2
	}
	log := newLogger(o, stderr)
	if err := serve(ctx, o, log); err != nil {
		log.Error("calyx-agent failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(o options, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(o.LogLevel))
	hopts := &slog.HandlerOptions{Level: level}
	if o.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// dataplanes are the backends calyx-agent can run.
func dataplanes() *backend.Registry {
	r := &backend.Registry{}
	r.Register(nftables.Name, nftables.Open)
	r.Register(iptables.Name, iptables.Open)
	r.Register(ebpf.Name, ebpf.Open)
	r.Register(model.Name, model.Open)
	return r
}

func serve(ctx context.Context, o options, log *slog.Logger) error {
	be, err := dataplanes().Open(ctx, o.Dataplane, backend.Options{Logger: log, NetNS: o.NetNS, Name: o.DataplaneName})
	if err != nil {
		return err
	}
	if o.Uninstall {
		if err := be.Close(ctx); err != nil {
			return fmt.Errorf("uninstall: %w", err)
		}
		log.Info("dataplane removed", "dataplane", o.Dataplane)
		return nil
	}
	store, err := dsconfig.Open(ctx, o.Store, dsconfig.Options{Logger: log, DirOptions: dir.Options{StateDir: o.DirStateDir}})
	if err != nil {
		return fmt.Errorf("datastore %s: %w", o.Store, err)
	}
	defer store.Close()
	cfg := agent.Config{
		Node:              o.NodeName,
		Store:             store,
		Backend:           be,
		ReconcileInterval: time.Duration(o.ReconcileInterval),
		Coalesce:          time.Duration(o.Coalesce),
		EndpointSocket:    o.EndpointSocket,
		Listen:            o.Listen,
		UninstallOnExit:   o.UninstallOnExit,
		Logger:            log,
	}
	if p, ok := exposedPort(o.Listen); ok {
		// Never let host endpoint policy cut off the agent's own health
		// and metrics port.
		cfg.FailsafeInbound = append(cfg.FailsafeInbound, compile.ProtoPort{Protocol: 6, Port: p})
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	log.Info("calyx-agent", "node", o.NodeName, "datastore", o.Store.String(), "dataplane", be.Name(), "config", o.ConfigFile)
	return a.Run(ctx)
}

// exposedPort returns the port of a listen address reachable from other
// hosts (not loopback).
func exposedPort(listen string) (uint16, bool) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return 0, false
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
		return 0, false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return 0, false
	}
	return uint16(p), true
}

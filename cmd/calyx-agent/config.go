package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/datastore/dsconfig"
	"github.com/calyxnet/calyx/internal/endpointapi"
)

// DefaultConfigFile is read when neither --config nor CALYX_AGENT_CONFIG
// names another file; it may be missing.
const DefaultConfigFile = "/etc/calyx/agent.yaml"

// options are the agent's settings, as the config file spells them. The
// datastore is configured as for calyxctl (package dsconfig: its flags,
// CALYX_DATASTORE_TYPE and friends, and its config file, which
// datastoreConfig may name).
type options struct {
	NodeName          string   `json:"nodeName,omitempty"`
	DatastoreConfig   string   `json:"datastoreConfig,omitempty"`
	Dataplane         string   `json:"dataplane,omitempty"`
	DataplaneName     string   `json:"dataplaneName,omitempty"`
	NetNS             string   `json:"netns,omitempty"`
	ReconcileInterval duration `json:"reconcileInterval,omitempty"`
	Coalesce          duration `json:"coalesce,omitempty"`
	EndpointSocket    string   `json:"endpointSocket,omitempty"`
	Listen            string   `json:"listen,omitempty"`
	LogLevel          string   `json:"logLevel,omitempty"`
	LogFormat         string   `json:"logFormat,omitempty"`
	UninstallOnExit   bool     `json:"uninstallOnExit,omitempty"`
	DirStateDir       string   `json:"dirStateDir,omitempty"`

	// Uninstall (flag only) removes the dataplane and exits.
	Uninstall bool `json:"-"`
	// ConfigFile is where the file layer came from ("" if none).
	ConfigFile string `json:"-"`
	// Store is the datastore, resolved by dsconfig.
	Store dsconfig.Config `json:"-"`
}

// duration reads "60s" or a number of seconds.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err := json.Unmarshal(b, &secs); err != nil {
			return fmt.Errorf("duration: want \"60s\" or seconds, got %s", b)
		}
		*d = duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

func defaults() options {
	host, _ := os.Hostname()
	return options{
		NodeName:          host,
		Dataplane:         "nftables",
		ReconcileInterval: duration(agent.DefaultReconcileInterval),
		Coalesce:          duration(agent.DefaultCoalesce),
		EndpointSocket:    endpointapi.DefaultSocket,
		Listen:            "127.0.0.1:9099",
		LogLevel:          "info",
		LogFormat:         "text",
		DirStateDir:       DefaultDirStateDir,
	}
}

// DefaultDirStateDir is where the directory datastore keeps the last good
// content of every file, so an agent restarted while a file is broken
// still enforces what that file last said.
const DefaultDirStateDir = "/var/lib/calyx/dirstore"

// setting is one knob reachable by flag and environment variable.
type setting struct {
	flag, env, usage string
	set              func(o *options, v string) error
}

func str(p func(*options) *string) func(*options, string) error {
	return func(o *options, v string) error { *p(o) = v; return nil }
}

func dur(p func(*options) *duration) func(*options, string) error {
	return func(o *options, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*p(o) = duration(d)
		return nil
	}
}

func boolean(p func(*options) *bool) func(*options, string) error {
	return func(o *options, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		*p(o) = b
		return nil
	}
}

var settings = []setting{
	{"node-name", "CALYX_NODE_NAME", "this node's name (default: the host name)", str(func(o *options) *string { return &o.NodeName })},
	{"datastore-config", "", "datastore config file shared with calyxctl (default: $CALYX_CONFIG or " + dsconfig.DefaultConfigFile + ")", str(func(o *options) *string { return &o.DatastoreConfig })},
	{"dataplane", "CALYX_DATAPLANE", "dataplane: nftables, iptables, ebpf or model (no kernel)", str(func(o *options) *string { return &o.Dataplane })},
	{"dataplane-name", "CALYX_DATAPLANE_NAME", "instance name: suffixes the nftables table, iptables chain prefix or BPF pin directory", str(func(o *options) *string { return &o.DataplaneName })},
	{"netns", "CALYX_NETNS", "network namespace path to program (default: the agent's own)", str(func(o *options) *string { return &o.NetNS })},
	{"reconcile-interval", "CALYX_RECONCILE_INTERVAL", "period of drift repair (negative disables)", dur(func(o *options) *duration { return &o.ReconcileInterval })},
	{"coalesce", "CALYX_COALESCE", "how long a burst of changes settles before an apply", dur(func(o *options) *duration { return &o.Coalesce })},
	{"endpoint-socket", "CALYX_ENDPOINT_SOCKET", "unix socket the CNI plugin talks to (empty: none)", str(func(o *options) *string { return &o.EndpointSocket })},
	{"listen", "CALYX_LISTEN", "address of /livez, /readyz, /metrics and /status (empty: none)", str(func(o *options) *string { return &o.Listen })},
	{"log-level", "CALYX_LOG_LEVEL", "debug, info, warn or error", str(func(o *options) *string { return &o.LogLevel })},
	{"log-format", "CALYX_LOG_FORMAT", "text or json", str(func(o *options) *string { return &o.LogFormat })},
	{"dir-state-dir", "CALYX_DIR_STATE_DIR", "where the directory datastore keeps each file's last good content across restarts (empty: nowhere)", str(func(o *options) *string { return &o.DirStateDir })},
	{"uninstall-on-exit", "CALYX_UNINSTALL_ON_EXIT", "remove the dataplane when the agent stops (default: leave enforcement in place)", boolean(func(o *options) *bool { return &o.UninstallOnExit })},
}

// loadOptions layers the settings: defaults, then the config file, then
// CALYX_* environment variables, then flags (each wins over the ones
// before).
func loadOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	flags := flag.NewFlagSet("calyx-agent", flag.ContinueOnError)
	flags.SetOutput(stderr)
	type flagVal struct {
		s *setting
		v string
	}
	var flagged []flagVal
	for i := range settings {
		s := &settings[i]
		fn := func(v string) error { flagged = append(flagged, flagVal{s, v}); return nil }
		usage := s.usage
		if s.env != "" {
			usage += " (env " + s.env + ")"
		}
		if s.flag == "uninstall-on-exit" {
			flags.BoolFunc(s.flag, usage, fn)
			continue
		}
		flags.Func(s.flag, usage, fn)
	}
	var ds dsconfig.Config
	flags.StringVar(&ds.Type, "datastore-type", "", "datastore: dir, etcd or kubernetes (env CALYX_DATASTORE_TYPE)")
	flags.StringVar(&ds.Dir, "datastore-dir", "", "directory of the dir datastore (env CALYX_DATASTORE_DIR; default "+dsconfig.DefaultDir+")")
	flags.Func("etcd-endpoints", "comma-separated etcd client URLs (env CALYX_ETCD_ENDPOINTS)", func(v string) error {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				ds.EtcdEndpoints = append(ds.EtcdEndpoints, e)
			}
		}
		return nil
	})
	flags.StringVar(&ds.EtcdPrefix, "etcd-prefix", "", "etcd key prefix (env CALYX_ETCD_PREFIX)")
	flags.StringVar(&ds.EtcdCACertFile, "etcd-ca-cert-file", "", "CA certificate for etcd TLS (env CALYX_ETCD_CA_CERT_FILE)")
	flags.StringVar(&ds.EtcdCertFile, "etcd-cert-file", "", "client certificate for etcd TLS (env CALYX_ETCD_CERT_FILE)")
	flags.StringVar(&ds.EtcdKeyFile, "etcd-key-file", "", "client key for etcd TLS (env CALYX_ETCD_KEY_FILE)")
	flags.StringVar(&ds.Kubeconfig, "kubeconfig", "", "kubeconfig of the kubernetes datastore (env KUBECONFIG; default in-cluster)")
	configFlag := flags.String("config", "", "agent config file (env CALYX_AGENT_CONFIG; default "+DefaultConfigFile+" if it exists)")
	uninstall := flags.Bool("uninstall", false, "remove everything the dataplane owns from the kernel and exit")
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), `Usage: calyx-agent [flags]

calyx-agent watches a datastore and keeps this node's dataplane enforcing
its policy. Settings come from flags, then CALYX_* environment variables,
then the agent's config file (YAML; keys are the flag names in camelCase:
nodeName, dataplane, reconcileInterval, listen, datastoreConfig …). The
datastore is configured as for calyxctl: --datastore-type and friends,
then CALYX_DATASTORE_TYPE, CALYX_DATASTORE_DIR, CALYX_ETCD_ENDPOINTS,
KUBECONFIG …, then the datastore config file (--datastore-config,
CALYX_CONFIG, /etc/calyx/calyxctl.yaml).
SIGINT/SIGTERM stop the agent and leave enforcement in place.

Flags:
`)
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return options{}, err
	}
	if flags.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %v", flags.Args())
	}

	o := defaults()
	path, explicit := *configFlag, true
	if path == "" {
		path = getenv("CALYX_AGENT_CONFIG")
	}
	if path == "" {
		path, explicit = DefaultConfigFile, false
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := yaml.UnmarshalStrict(data, &o); err != nil {
			return options{}, fmt.Errorf("config file %s: %w", path, err)
		}
		o.ConfigFile = path
	case explicit || !errors.Is(err, fs.ErrNotExist):
		return options{}, fmt.Errorf("config file: %w", err)
	}
	for i := range settings {
		s := &settings[i]
		if s.env == "" {
			continue
		}
		if v, ok := lookupEnv(getenv, s.env); ok {
			if err := s.set(&o, v); err != nil {
				return options{}, fmt.Errorf("%s=%q: %w", s.env, v, err)
			}
		}
	}
	for _, f := range flagged {
		if err := f.s.set(&o, f.v); err != nil {
			return options{}, fmt.Errorf("--%s=%q: %w", f.s.flag, f.v, err)
		}
	}
	o.Uninstall = *uninstall
	if err := o.validate(); err != nil {
		return options{}, err
	}
	// The datastore: its flags, then its environment, then its file; the
	// node is the agent's (the kubernetes store picks local pods by it).
	ds.NodeName = o.NodeName
	o.Store, err = dsconfig.Resolve(dsconfig.Sources{Flags: ds, ConfigFile: o.DatastoreConfig, Getenv: getenv})
	if err != nil {
		return options{}, fmt.Errorf("datastore: %w", err)
	}
	return o, nil
}

func lookupEnv(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	return v, v != ""
}

func (o *options) validate() error {
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("no node name: set --node-name or CALYX_NODE_NAME"))
	}
	switch strings.ToLower(o.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("unknown log level %q", o.LogLevel))
	}
	switch o.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("unknown log format %q", o.LogFormat))
	}
	return errors.Join(errs...)
}

// Package dsconfig says which datastore a tool talks to and opens it, the
// way calicoctl does: flags win over environment variables, which win over
// a config file, which wins over the defaults.
//
// # Environment
//
//	CALYX_DATASTORE_TYPE      dir, etcd or kubernetes (etcdv3, kdd, k8s accepted)
//	CALYX_DATASTORE_DIR       the directory of the dir datastore
//	CALYX_ETCD_ENDPOINTS      comma-separated etcd client URLs
//	CALYX_ETCD_PREFIX         key prefix (default /calyx/v1/)
//	CALYX_ETCD_CA_CERT_FILE, CALYX_ETCD_CERT_FILE, CALYX_ETCD_KEY_FILE
//	CALYX_ETCD_USERNAME, CALYX_ETCD_PASSWORD
//	KUBECONFIG                the kubeconfig of the kubernetes datastore
//	CALYX_NODE_NAME           the node (kubernetes datastore: local pods)
//	CALYX_CONFIG              the config file (default /etc/calyx/calyxctl.yaml)
//
// # Config file
//
//	apiVersion: calyx/v1
//	kind: CalyxConfig
//	spec:
//	  datastoreType: etcd
//	  etcdEndpoints: http://10.0.0.1:2379,http://10.0.0.2:2379
//
// The spec fields are the Config fields' JSON names. A calicoctl config
// (kind: CalicoAPIConfig, datastoreType etcdv3 or kubernetes) is read as
// well; its fields Calyx has no use for are ignored.
//
// When no layer names a type, the type is etcd if etcd endpoints are set,
// else dir.
package dsconfig

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/internal/datastore/etcd"
	"github.com/calyxnet/calyx/internal/datastore/kube"
)

// Datastore types.
const (
	TypeDir        = "dir"
	TypeEtcd       = "etcd"
	TypeKubernetes = "kubernetes"
)

// Defaults.
const (
	// DefaultConfigFile is read when neither a flag nor CALYX_CONFIG
	// names a file; it may be missing.
	DefaultConfigFile = "/etc/calyx/calyxctl.yaml"
	// DefaultDir is the directory of the dir datastore.
	DefaultDir = "/etc/calyx/policy"
)

// Config says which datastore to open and how.
type Config struct {
	// Type is TypeDir, TypeEtcd or TypeKubernetes.
	Type string `json:"datastoreType,omitempty"`
	// Dir is the dir datastore's directory.
	Dir string `json:"dir,omitempty"`
	// EtcdEndpoints are etcd client URLs.
	EtcdEndpoints []string `json:"-"`
	// EtcdPrefix is the etcd key prefix ("" means etcd.DefaultPrefix).
	EtcdPrefix string `json:"etcdPrefix,omitempty"`
	// EtcdCACertFile, EtcdCertFile and EtcdKeyFile configure etcd TLS.
	EtcdCACertFile string `json:"etcdCACertFile,omitempty"`
	EtcdCertFile   string `json:"etcdCertFile,omitempty"`
	EtcdKeyFile    string `json:"etcdKeyFile,omitempty"`
	// EtcdUsername and EtcdPassword authenticate to etcd.
	EtcdUsername string `json:"etcdUsername,omitempty"`
	EtcdPassword string `json:"etcdPassword,omitempty"`
	// Kubeconfig is the kubernetes datastore's kubeconfig ("" means
	// in-cluster, then the default loading rules).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// NodeName is this node (kubernetes datastore).
	NodeName string `json:"nodeName,omitempty"`
}

// String names the datastore for messages: "dir /etc/calyx/policy",
// "etcd http://… (prefix /calyx/v1/)", "kubernetes (kubeconfig …)".
func (c Config) String() string {
	switch c.Type {
	case TypeDir:
		return "dir " + c.Dir
	case TypeEtcd:
		p := c.EtcdPrefix
		if p == "" {
			p = etcd.DefaultPrefix
		}
		return fmt.Sprintf("etcd %s (prefix %s)", strings.Join(c.EtcdEndpoints, ","), p)
	case TypeKubernetes:
		if c.Kubeconfig == "" {
			return "kubernetes (in-cluster or default kubeconfig)"
		}
		return "kubernetes (kubeconfig " + c.Kubeconfig + ")"
	}
	return c.Type
}

// Sources are the layers Resolve merges.
type Sources struct {
	// Flags are the values given on the command line; empty fields are
	// unset.
	Flags Config
	// ConfigFile is the --config flag ("" is unset).
	ConfigFile string
	// Getenv reads the environment; nil reads none.
	Getenv func(string) string
	// ReadFile reads the config file; nil means os.ReadFile.
	ReadFile func(string) ([]byte, error)
}

// Resolve merges the layers into one Config, checks it and fills the
// defaults.
func Resolve(src Sources) (Config, error) {
	getenv := src.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	read := src.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	path, explicit := src.ConfigFile, true
	if path == "" {
		path = getenv("CALYX_CONFIG")
	}
	if path == "" {
		path, explicit = DefaultConfigFile, false
	}
	var file Config
	data, err := read(path)
	switch {
	case err == nil:
		if file, err = parseFile(data); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	case explicit || !errors.Is(err, fs.ErrNotExist):
		return Config{}, fmt.Errorf("config file: %w", err)
	}
	env := Config{
		Type:           getenv("CALYX_DATASTORE_TYPE"),
		Dir:            getenv("CALYX_DATASTORE_DIR"),
		EtcdEndpoints:  splitList(getenv("CALYX_ETCD_ENDPOINTS")),
		EtcdPrefix:     getenv("CALYX_ETCD_PREFIX"),
		EtcdCACertFile: getenv("CALYX_ETCD_CA_CERT_FILE"),
		EtcdCertFile:   getenv("CALYX_ETCD_CERT_FILE"),
		EtcdKeyFile:    getenv("CALYX_ETCD_KEY_FILE"),
		EtcdUsername:   getenv("CALYX_ETCD_USERNAME"),
		EtcdPassword:   getenv("CALYX_ETCD_PASSWORD"),
		Kubeconfig:     getenv("KUBECONFIG"),
		NodeName:       getenv("CALYX_NODE_NAME"),
	}
	c := merge(src.Flags, merge(env, file))
	if c.Type == "" {
		c.Type = TypeDir
		if len(c.EtcdEndpoints) > 0 {
			c.Type = TypeEtcd
		}
	}
	t, err := ParseType(c.Type)
	if err != nil {
		return Config{}, err
	}
	c.Type = t
	switch c.Type {
	case TypeDir:
		if c.Dir == "" {
			c.Dir = DefaultDir
		}
	case TypeEtcd:
		if len(c.EtcdEndpoints) == 0 {
			return Config{}, errors.New("datastore etcd: no endpoints (--etcd-endpoints, CALYX_ETCD_ENDPOINTS or etcdEndpoints in the config file)")
		}
	}
	return c, nil
}

// ParseType reads a datastore type, accepting calicoctl's names.
func ParseType(s string) (string, error) {
	switch strings.ToLower(s) {
	case "dir", "directory", "file":
		return TypeDir, nil
	case "etcd", "etcdv3":
		return TypeEtcd, nil
	case "kubernetes", "kdd", "k8s":
		return TypeKubernetes, nil
	}
	return "", fmt.Errorf("unknown datastore type %q (want dir, etcd or kubernetes)", s)
}

// merge returns hi with its unset fields taken from lo.
func merge(hi, lo Config) Config {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	out := Config{
		Type:           pick(hi.Type, lo.Type),
		Dir:            pick(hi.Dir, lo.Dir),
		EtcdEndpoints:  hi.EtcdEndpoints,
		EtcdPrefix:     pick(hi.EtcdPrefix, lo.EtcdPrefix),
		EtcdCACertFile: pick(hi.EtcdCACertFile, lo.EtcdCACertFile),
		EtcdCertFile:   pick(hi.EtcdCertFile, lo.EtcdCertFile),
		EtcdKeyFile:    pick(hi.EtcdKeyFile, lo.EtcdKeyFile),
		EtcdUsername:   pick(hi.EtcdUsername, lo.EtcdUsername),
		EtcdPassword:   pick(hi.EtcdPassword, lo.EtcdPassword),
		Kubeconfig:     pick(hi.Kubeconfig, lo.Kubeconfig),
		NodeName:       pick(hi.NodeName, lo.NodeName),
	}
	if len(out.EtcdEndpoints) == 0 {
		out.EtcdEndpoints = lo.EtcdEndpoints
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// fileSpec is the spec of a config file.
type fileSpec struct {
	Config
	EtcdEndpoints string `json:"etcdEndpoints,omitempty"`
}

// parseFile reads a CalyxConfig, or a calicoctl CalicoAPIConfig.
func parseFile(data []byte) (Config, error) {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &head); err != nil {
		return Config{}, err
	}
	var doc struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata,omitempty"`
		Spec       fileSpec       `json:"spec"`
	}
	switch head.Kind {
	case "CalyxConfig":
		if err := yaml.UnmarshalStrict(data, &doc); err != nil {
			return Config{}, err
		}
	case "CalicoAPIConfig":
		// calicoctl's file has fields Calyx has no use for.
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return Config{}, err
		}
	default:
		return Config{}, fmt.Errorf("kind %q: want CalyxConfig (or calicoctl's CalicoAPIConfig)", head.Kind)
	}
	c := doc.Spec.Config
	c.EtcdEndpoints = splitList(doc.Spec.EtcdEndpoints)
	return c, nil
}

// Options are the optional knobs of Open.
type Options struct {
	// Logger is given to the store; nil discards.
	Logger *slog.Logger
	// DirOptions tune the dir datastore (its Logger is set from Logger
	// when nil).
	DirOptions dir.Options
	// RequestTimeout bounds each etcd request; 0 means the etcd store's
	// default.
	RequestTimeout time.Duration
}

// Open opens the datastore c names.
func Open(ctx context.Context, c Config, opts Options) (datastore.Store, error) {
	switch c.Type {
	case TypeDir:
		do := opts.DirOptions
		if do.Logger == nil {
			do.Logger = opts.Logger
		}
		return dir.Open(ctx, c.Dir, do)
	case TypeEtcd:
		return etcd.Dial(ctx, etcd.Config{
			Endpoints: c.EtcdEndpoints, CACertFile: c.EtcdCACertFile, CertFile: c.EtcdCertFile, KeyFile: c.EtcdKeyFile,
			Username: c.EtcdUsername, Password: c.EtcdPassword,
		}, etcd.Options{Prefix: c.EtcdPrefix, Logger: opts.Logger, RequestTimeout: opts.RequestTimeout})
	case TypeKubernetes:
		return kube.Connect(ctx, c.Kubeconfig, kube.Options{NodeName: c.NodeName, Logger: opts.Logger})
	}
	return nil, fmt.Errorf("unknown datastore type %q", c.Type)
}

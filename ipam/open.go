package ipam

import (
	"context"
	"fmt"
	"strings"
)

// DefaultBoltPath is where the node keeps its embedded store.
const DefaultBoltPath = "/var/lib/calyx/ipam.db"

// StoreSpec names a store: "bolt:/path/to/file" or
// "etcd:http://host:2379[,http://other:2379]".
type StoreSpec struct {
	// Kind is "bolt" or "etcd".
	Kind string
	// Path is the bbolt file.
	Path string
	// Endpoints are the etcd endpoints.
	Endpoints []string
}

// ParseStoreSpec parses the text form of a [StoreSpec].
func ParseStoreSpec(s string) (StoreSpec, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return StoreSpec{}, fmt.Errorf("%w: store %q: want bolt:/path or etcd:http://host:port", ErrInvalid, s)
	}
	switch kind {
	case "bolt":
		if strings.ContainsRune(rest, 0) {
			return StoreSpec{}, fmt.Errorf("%w: store %q: bad path", ErrInvalid, s)
		}
		return StoreSpec{Kind: kind, Path: rest}, nil
	case "etcd":
		var eps []string
		for _, e := range strings.Split(rest, ",") {
			if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") || len(e) <= len("https://") {
				return StoreSpec{}, fmt.Errorf("%w: store %q: endpoint %q must be http(s)://host:port", ErrInvalid, s, e)
			}
			eps = append(eps, e)
		}
		return StoreSpec{Kind: kind, Endpoints: eps}, nil
	}
	return StoreSpec{}, fmt.Errorf("%w: store %q: unknown kind %q (bolt, etcd)", ErrInvalid, s, kind)
}

// String returns the text form.
func (s StoreSpec) String() string {
	if s.Kind == "etcd" {
		return "etcd:" + strings.Join(s.Endpoints, ",")
	}
	return s.Kind + ":" + s.Path
}

// Open opens the store the spec names, creating a missing bbolt file.
func (s StoreSpec) Open(ctx context.Context) (Store, error) {
	return s.open(ctx, false)
}

// OpenExisting is Open for tools that only inspect or repair: a missing
// bbolt file is an error matching fs.ErrNotExist, not a new empty store.
func (s StoreSpec) OpenExisting(ctx context.Context) (Store, error) {
	return s.open(ctx, true)
}

func (s StoreSpec) open(ctx context.Context, mustExist bool) (Store, error) {
	switch s.Kind {
	case "bolt":
		return OpenBolt(ctx, s.Path, &BoltOptions{MustExist: mustExist})
	case "etcd":
		return DialEtcd(ctx, s.Endpoints, "")
	}
	return nil, fmt.Errorf("%w: store kind %q", ErrInvalid, s.Kind)
}

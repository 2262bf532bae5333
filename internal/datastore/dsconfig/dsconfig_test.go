package dsconfig_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/internal/datastore/dir"
	"github.com/calyxnet/calyx/internal/datastore/dsconfig"
	"github.com/calyxnet/calyx/internal/datastore/etcd"
)

func files(m map[string]string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if s, ok := m[p]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("open %s: %w", p, fs.ErrNotExist)
	}
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

const etcdFile = `apiVersion: calyx/v1
kind: CalyxConfig
spec:
  datastoreType: etcd
  etcdEndpoints: http://file:2379, http://file2:2379
  etcdPrefix: /file/
  dir: /file/dir
`

func TestResolve(t *testing.T) {
	tests := []struct {
		name  string
		src   dsconfig.Sources
		files map[string]string
		want  dsconfig.Config
		err   string
	}{
		{name: "defaults", want: dsconfig.Config{Type: "dir", Dir: dsconfig.DefaultDir}},
		{
			name:  "default file",
			files: map[string]string{dsconfig.DefaultConfigFile: etcdFile},
			want:  dsconfig.Config{Type: "etcd", Dir: "/file/dir", EtcdEndpoints: []string{"http://file:2379", "http://file2:2379"}, EtcdPrefix: "/file/"},
		},
		{
			name:  "env over file",
			src:   dsconfig.Sources{Getenv: env(map[string]string{"CALYX_ETCD_ENDPOINTS": "http://env:2379", "CALYX_ETCD_PREFIX": "/env/"})},
			files: map[string]string{dsconfig.DefaultConfigFile: etcdFile},
			want:  dsconfig.Config{Type: "etcd", Dir: "/file/dir", EtcdEndpoints: []string{"http://env:2379"}, EtcdPrefix: "/env/"},
		},
		{
			name: "flags over env over file",
			src: dsconfig.Sources{
				Flags:  dsconfig.Config{Type: "dir", Dir: "/flag"},
				Getenv: env(map[string]string{"CALYX_DATASTORE_TYPE": "etcd", "CALYX_DATASTORE_DIR": "/env"}),
			},
			files: map[string]string{dsconfig.DefaultConfigFile: etcdFile},
			want:  dsconfig.Config{Type: "dir", Dir: "/flag", EtcdEndpoints: []string{"http://file:2379", "http://file2:2379"}, EtcdPrefix: "/file/"},
		},
		{
			name: "config named by env",
			src:  dsconfig.Sources{Getenv: env(map[string]string{"CALYX_CONFIG": "/x.yaml"})},
			files: map[string]string{"/x.yaml": `kind: CalyxConfig
spec: {datastoreType: kubernetes, kubeconfig: /k}`},
			want: dsconfig.Config{Type: "kubernetes", Kubeconfig: "/k"},
		},
		{
			name: "calicoctl config",
			src:  dsconfig.Sources{ConfigFile: "/etc/calico/calicoctl.cfg"},
			files: map[string]string{"/etc/calico/calicoctl.cfg": `apiVersion: projectcalico.org/v3
kind: CalicoAPIConfig
metadata: {}
spec:
  datastoreType: etcdv3
  etcdEndpoints: http://calico:2379
  k8sAPIEndpoint: https://ignored
`},
			want: dsconfig.Config{Type: "etcd", EtcdEndpoints: []string{"http://calico:2379"}},
		},
		{
			name: "endpoints imply etcd",
			src:  dsconfig.Sources{Flags: dsconfig.Config{EtcdEndpoints: []string{"http://flag:2379"}}},
			want: dsconfig.Config{Type: "etcd", EtcdEndpoints: []string{"http://flag:2379"}},
		},
		{name: "explicit file missing", src: dsconfig.Sources{ConfigFile: "/nope.yaml"}, err: "/nope.yaml"},
		{name: "etcd without endpoints", src: dsconfig.Sources{Flags: dsconfig.Config{Type: "etcdv3"}}, err: "no endpoints"},
		{name: "unknown type", src: dsconfig.Sources{Getenv: env(map[string]string{"CALYX_DATASTORE_TYPE": "consul"})}, err: `unknown datastore type "consul"`},
		{name: "unknown field", src: dsconfig.Sources{ConfigFile: "/c"}, files: map[string]string{"/c": "kind: CalyxConfig\nspec: {datastoreTyp: dir}\n"}, err: "datastoreTyp"},
		{name: "wrong kind", src: dsconfig.Sources{ConfigFile: "/c"}, files: map[string]string{"/c": "kind: Pod\n"}, err: `kind "Pod"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.src.ReadFile = files(tt.files)
			got, err := dsconfig.Resolve(tt.src)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestOpen(t *testing.T) {
	root := filepath.Join(t.TempDir(), "policy")
	s, err := dsconfig.Open(context.Background(), dsconfig.Config{Type: dsconfig.TypeDir, Dir: root}, dsconfig.Options{})
	require.NoError(t, err)
	defer s.Close()
	assert.IsType(t, &dir.Store{}, s)

	s, err = dsconfig.Open(context.Background(), dsconfig.Config{Type: dsconfig.TypeEtcd, EtcdEndpoints: []string{"http://127.0.0.1:1"}}, dsconfig.Options{})
	require.NoError(t, err)
	defer s.Close()
	assert.IsType(t, &etcd.Store{}, s)

	_, err = dsconfig.Open(context.Background(), dsconfig.Config{Type: "consul"}, dsconfig.Options{})
	require.Error(t, err)
}

func ExampleResolve() {
	c, err := dsconfig.Resolve(dsconfig.Sources{
		Flags: dsconfig.Config{EtcdPrefix: "/prod/"},
		Getenv: func(k string) string {
			return map[string]string{"CALYX_ETCD_ENDPOINTS": "http://10.0.0.1:2379"}[k]
		},
		ReadFile: func(string) ([]byte, error) { return nil, fs.ErrNotExist },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c)
	// Output: etcd http://10.0.0.1:2379 (prefix /prod/)
}

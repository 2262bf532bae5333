package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfigFile: any agent config file is either refused with an error
// or yields options that pass validation, never a panic.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"",
		"nodeName: n\ndataplane: iptables\nreconcileInterval: 30s\n",
		"coalesce: 0.5\nuninstallOnExit: true\n",
		"logLevel: loud\n",
		"reconcileInterval: [1]\n",
		"nodeName: {a: b}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		file := filepath.Join(dir, "agent.yaml")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dsFile := filepath.Join(dir, "calyxctl.yaml")
		if err := os.WriteFile(dsFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{"CALYX_NODE_NAME": "n", "CALYX_CONFIG": dsFile}
		o, err := loadOptions([]string{"--config", file}, envOf(env), &bytes.Buffer{})
		if err != nil {
			if o.NodeName != "" || o.ConfigFile != "" {
				t.Fatalf("options returned with an error: %+v", o)
			}
			return
		}
		if err := o.validate(); err != nil {
			t.Fatalf("accepted options do not validate: %v", err)
		}
		if o.ConfigFile != file || o.Store.Type == "" {
			t.Fatalf("incomplete options: %+v", o)
		}
	})
}

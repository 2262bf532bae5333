package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runCLI runs calyxctl with args and stdin, returning the exit code, stdout
// and stderr.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// writeInput writes content to name in a fresh temporary directory and
// returns its path.
func writeInput(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// testPod is a pod with one address and declared ports ("80/TCP").
func testPod(ns, name, ip, labels string, ports ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\n  labels: {%s}\nspec:\n  containers:\n  - name: c\n    image: x\n", name, ns, labels)
	if len(ports) > 0 {
		b.WriteString("    ports:\n")
		for _, p := range ports {
			port, proto, _ := strings.Cut(p, "/")
			fmt.Fprintf(&b, "    - {containerPort: %s, protocol: %s}\n", port, proto)
		}
	}
	fmt.Fprintf(&b, "status:\n  podIP: %s\n  podIPs: [{ip: %s}]\n", ip, ip)
	return b.String()
}

func docs(d ...string) string { return strings.Join(d, "---\n") }

const portWithoutProtocol = `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-payment-access
  namespace: shop
spec:
  selector: app == 'order-service'
  types: [Egress]
  egress:
  - action: Allow
    destination:
      selector: app == 'payment-service'
      ports: [8080]
`

func TestValidate(t *testing.T) {
	unknownTier := `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: audit
spec:
  tier: security
  selector: all()
  ingress: [{action: Allow}]
`
	twice := `apiVersion: v1
kind: Namespace
metadata: {name: shop}
`
	tests := []struct {
		name       string
		files      map[string]string
		stdin      string
		args       []string
		code       int
		stdout     []string
		stderr     []string
		noStderrOf []string
	}{
		{
			name:   "a port without protocol: the line and the field path",
			files:  map[string]string{"bad.yaml": portWithoutProtocol},
			code:   exitFindings,
			stderr: []string{"bad.yaml:13: error: NetworkPolicy \"shop/allow-payment-access\": spec.egress[0].destination.ports: numeric ports need a protocol on the rule: add `protocol: TCP`", "calyxctl: 1 problem in the input"},
		},
		{
			name:   "every problem across files",
			files:  map[string]string{"a.yaml": portWithoutProtocol, "b.yaml": strings.Replace(portWithoutProtocol, "[8080]", "[8080, 99999]", 1)},
			code:   exitFindings,
			stderr: []string{"a.yaml:13: error:", "b.yaml:13: error:", "b.yaml:13: error: NetworkPolicy \"shop/allow-payment-access\": spec.egress[0].destination.ports[1]:", "3 problems in the input"},
		},
		{
			name:   "a tier that does not exist",
			files:  map[string]string{"tier.yaml": unknownTier},
			code:   exitFindings,
			stderr: []string{"tier.yaml:6: error: GlobalNetworkPolicy \"audit\": spec.tier: tier \"security\" does not exist"},
		},
		{
			name:   "valid input, with warnings",
			files:  map[string]string{"ok.yaml": docs(twice, twice, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n")},
			code:   exitOK,
			stdout: []string{"valid: 2 objects in 1 file\n"},
			stderr: []string{"ok.yaml:5: warning: Namespace shop is defined again (first at", "ok.yaml:1): the later one is used", "ok.yaml:9: warning: Deployment \"web\": skipped"},
		},
		{
			name:   "stdin",
			stdin:  portWithoutProtocol,
			args:   []string{"-f", "-"},
			code:   exitFindings,
			stderr: []string{"-:13: error: NetworkPolicy"},
		},
		{
			name:   "a file that does not exist",
			args:   []string{"-f", "/nonexistent/policy.yaml"},
			code:   exitUsage,
			stderr: []string{"calyxctl: read policy:", "no such file"},
		},
		{
			name:   "no -f",
			args:   []string{},
			code:   exitUsage,
			stderr: []string{"no input: pass -f PATH"},
		},
		{
			name:   "the examples are valid",
			args:   []string{"-f", "../../examples/ecommerce", "-f", "../../examples/tiers"},
			code:   exitOK,
			stdout: []string{"valid: 21 objects in 4 files\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"validate"}, tt.args...)
			if len(tt.files) > 0 {
				dir := t.TempDir()
				for name, content := range tt.files {
					require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
				}
				args = append(args, "-f", dir)
			}
			code, stdout, stderr := runCLI(t, tt.stdin, args...)
			assert.Equal(t, tt.code, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			for _, want := range tt.stdout {
				assert.Contains(t, stdout, want)
			}
			for _, want := range tt.stderr {
				assert.Contains(t, stderr, want)
			}
			if tt.code != exitOK {
				assert.Empty(t, stdout)
			}
		})
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	for _, cmd := range []string{"reach", "trace", "validate", "lint"} {
		t.Run(cmd, func(t *testing.T) {
			code, stdout, _ := runCLI(t, "", cmd, "--help")
			require.Equal(t, exitOK, code)
			assert.Contains(t, stdout, "Exit codes:")
			assert.Contains(t, stdout, "-f, --filename")
		})
	}
}

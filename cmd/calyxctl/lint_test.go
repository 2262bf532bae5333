package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLintSeedPolicies(t *testing.T) {
	seed := filepath.Join("..", "..", "policy", "testdata", "seed-policies.yaml")
	code, stdout, stderr := runCLI(t, "", "lint", "-f", seed)
	require.Equal(t, exitOK, code, "warnings only: exit 0\n%s", stderr)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	require.Len(t, lines, 3, stdout)
	assert.True(t, strings.HasPrefix(lines[0], seed+`:50: warning: GlobalNetworkPolicy deny-mining-pools: spec.egress: the policy has only Deny rules for egress: it makes tier "default" apply`), lines[0])
	assert.True(t, strings.HasSuffix(lines[0], "[implicit-end-of-tier-deny]"), lines[0])
	assert.True(t, strings.HasPrefix(lines[1], seed+":53: info: GlobalNetworkPolicy deny-mining-pools: spec.egress[0].destination.domains: "), lines[1])
	assert.Equal(t, "0 errors, 1 warning, 1 info", lines[2])
}

func TestLintExitCodes(t *testing.T) {
	unknownTier := `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: audit}
spec:
  tier: security
  selector: all()
  ingress: [{action: Allow}]
`
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"an error finding", []string{"-f", writeInput(t, "tier.yaml", unknownTier)}, exitFindings,
			[]string{`tier.yaml:5: error: GlobalNetworkPolicy audit: spec.tier: tier "security" does not exist`, "1 error, 0 warnings, 0 info"}, "calyxctl: lint: 1 error"},
		{"a clean scenario", []string{"-f", filepath.Join("..", "..", "examples", "ecommerce")}, exitOK,
			[]string{"0 errors, 0 warnings, 0 info\n"}, ""},
		{"invalid input", []string{"-f", writeInput(t, "bad.yaml", portWithoutProtocol)}, exitFindings, nil, "bad.yaml:13: error:"},
		{"bad output", []string{"-f", writeInput(t, "tier.yaml", unknownTier), "-o", "yaml"}, exitUsage, nil, `-o "yaml": want text or json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", append([]string{"lint"}, tt.args...)...)
			assert.Equal(t, tt.code, code, stderr)
			for _, want := range tt.stdout {
				assert.Contains(t, stdout, want)
			}
			if tt.stderr == "" {
				assert.Empty(t, stderr)
			} else {
				assert.Contains(t, stderr, tt.stderr)
			}
		})
	}
}

// TestLintStagedWithPods: the command wires the model in, so a staged
// version of a policy that would cut traffic is reported with the
// connections it changes.
func TestLintStagedWithPods(t *testing.T) {
	staged := `apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: y, namespace: a}
spec:
  selector: app == 'y'
  types: [Ingress]
`
	code, stdout, stderr := runCLI(t, "", "lint", "-f", smallCluster(t), "-f", writeInput(t, "staged.yaml", staged), "-o", "json")
	require.Equal(t, exitOK, code, stderr)
	var out struct {
		Findings []map[string]any `json:"findings"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &out), stdout)
	require.Len(t, out.Findings, 1, stdout)
	f := out.Findings[0]
	msg, _ := f["message"].(string)
	assert.Contains(t, msg, "enforcing it would change the verdict of 1 connection (a/x → a/y 80/TCP allowed→denied)")
	delete(f, "message")
	assert.Equal(t, map[string]any{"source": f["source"], "line": 1.0, "severity": "warning",
		"code": "staged-changes-verdicts", "object": "StagedNetworkPolicy a/y", "field": ""}, f)
	assert.True(t, strings.HasSuffix(f["source"].(string), "staged.yaml"), f["source"])
}

func TestLintJSONEmpty(t *testing.T) {
	code, stdout, stderr := runCLI(t, "", "lint", "-f", filepath.Join("..", "..", "examples", "tiers"), "-o", "json")
	require.Equal(t, exitOK, code, stderr)
	assert.Equal(t, "{\"findings\":[]}\n", stdout)
}

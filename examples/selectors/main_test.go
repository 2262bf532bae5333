package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/selector"
)

// section returns the lines of the report from the heading source up to the
// next blank line.
func section(t *testing.T, out, source string) string {
	t.Helper()
	i := strings.Index(out, "\n"+source+"\n")
	require.GreaterOrEqual(t, i, 0, "no section %q in:\n%s", source, out)
	rest := out[i+1:]
	if j := strings.Index(rest, "\n\n"); j >= 0 {
		rest = rest[:j+1]
	}
	return rest
}

func TestRunReport(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, run(&buf, []string{`tier == "backend"`}))
	out := buf.String()

	assert.True(t, strings.HasPrefix(out, "9 endpoints in 4 namespaces, 12 selectors\n"), out)

	tests := []struct {
		source    string
		canonical string
		evaluated string
		matches   []string
	}{
		{"allow-payment-access spec.selector", `app == "order-service"`, "",
			[]string{"shop/order-service-7c9d8", "shop/order-service-k2m4q"}},
		{"allow-payment-access egress[0].destination.selector", `app == "payment-service"`, "",
			[]string{"payments/payment-service-84f6d"}},
		{"default-deny spec.namespaceSelector", `has(projectcalico.org/name)`, `has(pcns.projectcalico.org/name)`,
			[]string{"data/database-0", "payments/payment-service-84f6d", "web/frontend-9x2lp"}},
		{"pci-isolation spec.namespaceSelector", `pci == "true"`, `pcns.pci == "true"`,
			[]string{"data/database-0", "data/database-1", "payments/payment-service-84f6d"}},
		{"backend-stable spec.selector", `(tier in {"backend", "data"} && version != "canary")`, "",
			[]string{"data/database-0", "payments/payment-service-84f6d", "shop/order-service-7c9d8"}},
		{"host-firewall spec.namespaceSelector", `global()`, `!has(projectcalico.org/namespace)`,
			[]string{"node-1.eth0"}},
		{"argument 1", `tier == "backend"`, "",
			[]string{"shop/order-service-k2m4q", "payments/payment-service-84f6d"}},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			sec := section(t, out, tt.source)
			assert.Contains(t, sec, "  canonical  "+tt.canonical+"\n")
			assert.Contains(t, sec, "  unique id  "+selector.MustParse(tt.canonical).UniqueID()+"\n")
			if tt.evaluated != "" {
				assert.Contains(t, sec, "  evaluated  "+tt.evaluated+"\n")
			} else {
				assert.NotContains(t, sec, "evaluated")
			}
			for _, m := range tt.matches {
				assert.Contains(t, sec, m+"\n")
			}
		})
	}

	// Namespace selectors never pick the host endpoint; all() does.
	assert.NotContains(t, section(t, out, "default-deny spec.namespaceSelector"), "node-1.eth0")
	assert.Contains(t, section(t, out, "deny-mining-pools spec.selector"), "node-1.eth0")
	// The canary order service is not stable.
	assert.NotContains(t, section(t, out, "backend-stable spec.selector"), "order-service-k2m4q")

	assert.Contains(t, out, "\nnamespace payments drops its pci label:\n"+
		"  pci-isolation spec.namespaceSelector stops matching payments/payment-service-84f6d\n")
}

func TestRunIsDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	require.NoError(t, run(&a, nil))
	require.NoError(t, run(&b, nil))
	assert.Equal(t, a.String(), b.String())
}

func TestRunBadSelector(t *testing.T) {
	var buf bytes.Buffer
	err := run(&buf, []string{"app =="})
	require.Error(t, err)
	var pe *selector.ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 6, pe.Offset)
	assert.Contains(t, err.Error(), "argument 1")
}

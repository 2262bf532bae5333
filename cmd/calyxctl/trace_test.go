package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTrace(t *testing.T) {
	ecommerce := filepath.Join("..", "..", "examples", "ecommerce")
	policies := filepath.Join(ecommerce, "policies.yaml")
	cluster := smallCluster(t)
	tests := []struct {
		name string
		args []string
		// want are substrings that must appear in this order.
		want []string
		// not must not appear.
		not []string
	}{
		{
			name: "denied by the baseline's Deny rule, ingress not judged",
			args: []string{"-f", ecommerce, "--from", "shop/frontend", "--to", "shop/payment-service", "--port", "8443/TCP"},
			want: []string{
				"shop/frontend → shop/payment-service 8443/TCP\n",
				"packet: 10.48.0.10:40000 -> 10.48.0.13:8443/TCP\n",
				"\negress of shop/frontend:\n  tier default:\n",
				"    default/shop/frontend spec.egress[0] (" + policies + ":35): no match\n",
				"    default/default-deny spec.egress[0] (" + policies + ":14): MATCH → Deny\n",
				"\ningress of shop/payment-service: not judged (egress already denied)\n",
				"\nverdict: DENIED\n",
				"decided by: shop/frontend egress: default/default-deny spec.egress[0] (" + policies + ":14): MATCH → Deny\n",
			},
		},
		{
			name: "allowed: egress, then ingress, each with the deciding rule",
			args: []string{"-f", ecommerce, "--from", "shop/api-gateway", "--to", "shop/payment-service", "--port", "8443"},
			want: []string{
				"\negress of shop/api-gateway:\n",
				"default/shop/api-gateway spec.egress[1] (" + policies + ":64): MATCH → Allow\n",
				"\ningress of shop/payment-service:\n",
				"default/shop/payment-service spec.ingress[0] (" + policies + ":122): MATCH → Allow\n",
				"\nverdict: ALLOWED\n",
				"decided by: shop/payment-service ingress: default/shop/payment-service spec.ingress[0]",
			},
			not: []string{"default-deny"},
		},
		{
			name: "the implicit end-of-tier deny is explicit",
			args: []string{"-f", cluster, "--from", "b/z", "--to", "a/y", "--port", "80/TCP"},
			want: []string{
				"\negress of b/z:\n  no policy applies: profiles decide\n  profiles:\n    profile profile:kns.b: MATCH → Allow\n",
				"\ningress of a/y:\n  tier default:\n    default/a/y spec.ingress[0] (" + cluster + ":60): no match\n",
				"    end of tier \"default\": deny\n",
				"\nverdict: DENIED\n",
				"decided by: a/y ingress: end of tier \"default\": deny\n",
			},
		},
		{
			name: "to an address outside the input",
			args: []string{"-f", cluster, "--from", "a/x", "--to", "192.0.2.1", "--port", "443/TCP"},
			want: []string{
				"a/x → 192.0.2.1 443/TCP\n",
				"\negress of a/x:\n  no policy applies: profiles decide\n",
				"\ningress of 192.0.2.1: not judged (192.0.2.1 is not an endpoint of the input)\n",
				"\nverdict: ALLOWED\n",
			},
		},
		{
			name: "from an address outside the input",
			args: []string{"-f", cluster, "--from", "192.0.2.1", "--to", "a/y", "--port", "80/TCP"},
			want: []string{
				"192.0.2.1 → a/y 80/TCP\npacket: 192.0.2.1:40000 -> 10.0.0.2:80/TCP\n\negress of 192.0.2.1: not judged (192.0.2.1 is not an endpoint of the input)\n",
				"\ningress of a/y:\n",
				"end of tier \"default\": deny\n",
				"\nverdict: DENIED\n",
			},
		},
		{
			name: "a pod to itself",
			args: []string{"-f", cluster, "--from", "a/y", "--to", "a/y", "--port", "53/UDP"},
			want: []string{"\na/y: traffic to itself: allow\n", "\nverdict: ALLOWED\n"},
			not:  []string{"not judged"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", append([]string{"trace"}, tt.args...)...)
			require.Equal(t, exitOK, code, stderr)
			assertTrace(t, stdout, tt.want, tt.not)
		})
	}
}

func TestTraceErrors(t *testing.T) {
	cluster := smallCluster(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"missing --port", []string{"-f", cluster, "--from", "a/x", "--to", "a/y"}, exitUsage, "trace needs --from, --to and --port"},
		{"bad --port", []string{"-f", cluster, "--from", "a/x", "--to", "a/y", "--port", "http"}, exitUsage, `--port: probe "http"`},
		{"unknown pod", []string{"-f", cluster, "--from", "a/nope", "--to", "a/y", "--port", "80"}, exitUsage, `--from "a/nope": no such pod in the input`},
		{"neither a pod nor an address", []string{"-f", cluster, "--from", "x", "--to", "a/y", "--port", "80"}, exitUsage, `want namespace/name, host:NAME or an IP address`},
		{"two addresses", []string{"-f", cluster, "--from", "192.0.2.1", "--to", "192.0.2.2", "--port", "80"}, exitUsage, "must name a pod"},
		{"families differ", []string{"-f", cluster, "--from", "a/x", "--to", "2001:db8::1", "--port", "80"}, exitUsage, "no addresses of one family"},
		{"invalid input", []string{"-f", writeInput(t, "bad.yaml", portWithoutProtocol), "--from", "a/x", "--to", "a/y", "--port", "80"}, exitFindings, "bad.yaml:13: error:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", append([]string{"trace"}, tt.args...)...)
			assert.Equal(t, tt.code, code, stderr)
			assert.Contains(t, stderr, tt.stderr)
			assert.Empty(t, stdout)
		})
	}
}

// TestTraceHostEndpoints: trace names host endpoints as reach does and
// explains the node's own traffic: the fail-safe port before any policy,
// the end-of-tier deny, a dual-stack endpoint asked from IPv6 (its IPv6
// address), and the node's egress.
func TestTraceHostEndpoints(t *testing.T) {
	cluster := hostCluster(t)
	tests := []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"fail-safe SSH despite the Deny rule",
			[]string{"--from", "203.0.113.9", "--to", "host:node1/eth0", "--port", "22/TCP"},
			[]string{"203.0.113.9 → host:node1-eth0 22/TCP\n", "packet: 203.0.113.9:40000 -> 192.0.2.10:22/TCP\n",
				"\ningress of host:node1-eth0:\n  fail-safe port: allow\n", "\nverdict: ALLOWED\n"},
			[]string{"host-protection"}},
		{"the end of the tier denies 8080 from another net",
			[]string{"--from", "203.0.113.9", "--to", "host:node1-eth0", "--port", "8080/TCP"},
			[]string{"\ningress of host:node1-eth0:\n  tier default:\n", "spec.ingress[2]", "no match\n",
				"    end of tier \"default\": deny\n", "\nverdict: DENIED\n"}, nil},
		{"a dual-stack endpoint asked from IPv6",
			[]string{"--from", "2001:db8:77::7", "--to", "host:node5-dual", "--port", "443/TCP"},
			[]string{"packet: [2001:db8:77::7]:40000 -> [2001:db8:5::10]:443/TCP\n", "spec.ingress[1]", "MATCH → Allow\n", "\nverdict: ALLOWED\n"}, nil},
		{"the node's egress",
			[]string{"--from", "host:node1-ips", "--to", "198.51.100.7", "--port", "443/TCP"},
			[]string{"packet: 192.0.2.30:40000 -> 198.51.100.7:443/TCP\n", "\negress of host:node1-ips:\n", "spec.egress[0]", "MATCH → Allow\n",
				"\ningress of 198.51.100.7: not judged", "\nverdict: ALLOWED\n"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", append([]string{"trace", "-f", cluster}, tt.args...)...)
			require.Equal(t, exitOK, code, stderr)
			assertTrace(t, stdout, tt.want, tt.not)
		})
	}
	for _, e := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"--from", "host:node1", "--to", "198.51.100.7", "--port", "443"}, `host endpoint "node1": 3 match`},
		{[]string{"--from", "203.0.113.9", "--to", "host:node4-eth0", "--port", "22"}, "the host endpoint has no expectedIPs"},
		{[]string{"--from", "203.0.113.9", "--to", "host:nope", "--port", "22"}, `host endpoint "nope"`},
	} {
		code, stdout, stderr := runCLI(t, "", append([]string{"trace", "-f", cluster}, e.args...)...)
		assert.Equal(t, exitUsage, code, stderr)
		assert.Contains(t, stderr, e.stderr)
		assert.Empty(t, stdout)
	}
}

// assertTrace checks that want appear in stdout in this order and none of
// not does.
func assertTrace(t *testing.T, stdout string, want, not []string) {
	t.Helper()
	rest := stdout
	for _, w := range want {
		i := strings.Index(rest, w)
		require.GreaterOrEqual(t, i, 0, "want %q (in order) in:\n%s", w, stdout)
		rest = rest[i+len(w):]
	}
	for _, n := range not {
		assert.NotContains(t, stdout, n)
	}
}

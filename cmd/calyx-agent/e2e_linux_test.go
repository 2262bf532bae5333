//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/require"

	"github.com/calyxnet/calyx/backend/ebpf"
	"github.com/calyxnet/calyx/backend/nftables"
	"github.com/calyxnet/calyx/compile"
	"github.com/calyxnet/calyx/internal/agent"
	"github.com/calyxnet/calyx/internal/datastore/dsconfig"
	"github.com/calyxnet/calyx/internal/etcdtest"
	"github.com/calyxnet/calyx/internal/lab"
	"github.com/calyxnet/calyx/internal/lab/labtest"
	"github.com/calyxnet/calyx/internal/netns/netnstest"
)

// e2eDataplane is a kernel dataplane of calyx-agent and ways to break it
// from outside.
type e2eDataplane struct {
	name   string
	breaks []e2eBreak
	// installed reports whether anything of the dataplane is left in the
	// kernel.
	installed func(t *testing.T, l *lab.Lab) bool
}

// e2eBreak changes the dataplane behind the agent's back so that it no
// longer enforces the policy: pod0 gets through to the victim (whose
// ingress only its own namespace may reach), or no longer reaches pod2.
type e2eBreak struct {
	what string
	do   func(t *testing.T, l *lab.Lab, victim lab.Pod)
}

func e2eDataplanes() []e2eDataplane {
	return []e2eDataplane{
		{"nftables", []e2eBreak{
			{"set element added: pod0 in every address set", func(t *testing.T, l *lab.Lab, _ lab.Pod) {
				table := nftables.TableName(l.ID())
				out := inNode(t, l, "nft", "list", "table", "inet", table)
				n := 0
				for _, m := range regexp.MustCompile(`set (s-[0-9a-f]+-(4|6)) \{`).FindAllStringSubmatch(out, -1) {
					ip := "10.77.0.1"
					if m[2] == "6" {
						ip = "fd77::1"
					}
					inNode(t, l, "nft", "add", "element", "inet", table, m[1], "{ "+ip+" }")
					n++
				}
				require.NotZero(t, n, out)
			}},
			{"rule added: accept at the top of forward-ingress", func(t *testing.T, l *lab.Lab, _ lab.Pod) {
				inNode(t, l, "nft", "insert", "rule", "inet", nftables.TableName(l.ID()), "forward-ingress", "accept")
			}},
			{"chain added: a base chain dropping all forwarded traffic", func(t *testing.T, l *lab.Lab, _ lab.Pod) {
				inNode(t, l, "nft", "add", "chain", "inet", nftables.TableName(l.ID()), "foreign",
					"{ type filter hook forward priority -10; policy drop; }")
			}},
			{"rules deleted: the drop at the end of every tier chain", func(t *testing.T, l *lab.Lab, _ lab.Pod) {
				table := nftables.TableName(l.ID())
				handles := nftTierDrops(t, inNode(t, l, "nft", "-a", "list", "table", "inet", table))
				for chain, hs := range handles {
					for _, h := range hs {
						inNode(t, l, "nft", "delete", "rule", "inet", table, chain, "handle", h)
					}
				}
			}},
		}, func(t *testing.T, l *lab.Lab) bool {
			return strings.Contains(inNode(t, l, "nft", "list", "tables"), nftables.TableName(l.ID()))
		}},
		{"iptables", []e2eBreak{
			{"rule added: ACCEPT before our jump in FORWARD", func(t *testing.T, l *lab.Lab, _ lab.Pod) {
				inNode(t, l, "iptables", "-w", "-I", "FORWARD", "1", "-j", "ACCEPT")
				inNode(t, l, "ip6tables", "-w", "-I", "FORWARD", "1", "-j", "ACCEPT")
			}},
			{"set member added: pod0 in every hash:net set", func(t *testing.T, l *lab.Lab, _ lab.Pod) {
				out := inNode(t, l, "ipset", "list", "-t")
				var name string
				n := 0
				for _, line := range strings.Split(out, "\n") {
					if v, ok := strings.CutPrefix(line, "Name: "); ok {
						name = v
					}
					if line == "Type: hash:net" && strings.HasPrefix(name, "calyx-") {
						ip := "10.77.0.1"
						if strings.Contains(name, "-6-") {
							ip = "fd77::1"
						}
						inNode(t, l, "ipset", "-exist", "add", name, ip)
						n++
					}
				}
				require.NotZero(t, n, out)
			}},
			{"rule added: ACCEPT at the top of the calyx forward chain", func(t *testing.T, l *lab.Lab, _ lab.Pod) {
				for _, cmd := range []string{"iptables", "ip6tables"} {
					chain := iptablesFwdChain(t, l, cmd)
					inNode(t, l, cmd, "-w", "-I", chain, "1", "-j", "ACCEPT")
				}
			}},
			{"rules deleted: the DROP at the end of every tier chain", func(t *testing.T, l *lab.Lab, _ lab.Pod) {
				for _, cmd := range []string{"iptables", "ip6tables"} {
					for chain, n := range iptablesTierChains(t, l, cmd) {
						inNode(t, l, cmd, "-w", "-D", chain, strconv.Itoa(n))
					}
				}
			}},
		}, func(t *testing.T, l *lab.Lab) bool {
			return strings.Contains(inNode(t, l, "iptables-save", "-t", "filter")+inNode(t, l, "ip6tables-save", "-t", "filter")+inNode(t, l, "ipset", "list", "-n"), "calyx-")
		}},
		{"ebpf", []e2eBreak{
			{"program detached: the victim's ingress link", func(t *testing.T, l *lab.Lab, victim lab.Pod) {
				// TCX egress of the host-side veth runs the pod's ingress
				// policy; detach it through its pinned link.
				p := filepath.Join(ebpfPinDir(t, l), "link_"+victim.Interface()+"_eg")
				lk, err := link.LoadPinnedLink(p, nil)
				require.NoError(t, err)
				defer lk.Close()
				require.NoError(t, lk.Detach(), p)
			}},
			{"program replaced: the victim's ingress link runs pod0's", func(t *testing.T, l *lab.Lab, victim lab.Pod) {
				dir := ebpfPinDir(t, l)
				donor, err := link.LoadPinnedLink(filepath.Join(dir, "link_"+l.Spec().Pods[0].Interface()+"_eg"), nil)
				require.NoError(t, err)
				defer donor.Close()
				info, err := donor.Info()
				require.NoError(t, err)
				prog, err := cebpf.NewProgramFromID(info.Program)
				require.NoError(t, err)
				defer prog.Close()
				lk, err := link.LoadPinnedLink(filepath.Join(dir, "link_"+victim.Interface()+"_eg"), nil)
				require.NoError(t, err)
				defer lk.Close()
				require.NoError(t, lk.Update(prog))
			}},
			{"program in front: a foreign TCX_PASS program ahead of the victim's ingress link", func(t *testing.T, l *lab.Lab, victim lab.Pod) {
				pass, err := cebpf.NewProgram(&cebpf.ProgramSpec{Type: cebpf.SchedCLS, AttachType: cebpf.AttachTCXEgress, License: "MIT",
					Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0 /* TCX_PASS */), asm.Return()}})
				require.NoError(t, err)
				t.Cleanup(func() { _ = pass.Close() })
				var lk link.Link
				require.NoError(t, l.NodeNS().Do(func() error {
					ifc, err := net.InterfaceByName(victim.Interface())
					if err != nil {
						return err
					}
					lk, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: pass, Attach: cebpf.AttachTCXEgress, Anchor: link.Head()})
					return err
				}))
				t.Cleanup(func() { _ = lk.Close() })
			}},
		}, func(t *testing.T, l *lab.Lab) bool {
			_, err := os.Stat(ebpfPinDir(t, l))
			return err == nil
		}},
	}
}

// nftTierDrops returns, by chain, the handles of the "end of tier" drops
// in the tier chains of `nft -a list table` output.
func nftTierDrops(t *testing.T, listing string) map[string][]string {
	t.Helper()
	chainRe := regexp.MustCompile(`^\s*chain (\S+) \{`)
	dropRe := regexp.MustCompile(`^\s*drop comment "end of tier [^"]*" # handle (\d+)$`)
	out := map[string][]string{}
	chain := ""
	for _, line := range strings.Split(listing, "\n") {
		if m := chainRe.FindStringSubmatch(line); m != nil {
			chain = m[1]
			continue
		}
		if m := dropRe.FindStringSubmatch(line); m != nil && strings.HasPrefix(chain, "tier-") {
			out[chain] = append(out[chain], m[1])
		}
	}
	require.NotEmpty(t, out, "no end-of-tier drop in:\n%s", listing)
	return out
}

// iptablesTierChains returns our tier chains whose last rule is a DROP,
// with that rule's number.
func iptablesTierChains(t *testing.T, l *lab.Lab, cmd string) map[string]int {
	t.Helper()
	listing := inNode(t, l, cmd, "-w", "-S")
	rules := map[string][]string{}
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "-A" && strings.HasPrefix(f[1], "calyx-") && strings.Contains(f[1], "-t-") {
			rules[f[1]] = append(rules[f[1]], line)
		}
	}
	out := map[string]int{}
	for chain, rs := range rules {
		if strings.HasSuffix(rs[len(rs)-1], "-j DROP") {
			out[chain] = len(rs)
		}
	}
	require.NotEmpty(t, out, "no tier chain ending in DROP in %s:\n%s", cmd, listing)
	return out
}

// iptablesFwdChain finds our chain in FORWARD's jump.
func iptablesFwdChain(t *testing.T, l *lab.Lab, cmd string) string {
	t.Helper()
	out := inNode(t, l, cmd, "-w", "-S", "FORWARD")
	m := regexp.MustCompile(`-j (calyx-\S*fwd)\b`).FindStringSubmatch(out)
	require.NotNil(t, m, "no calyx jump in %s FORWARD:\n%s", cmd, out)
	return m[1]
}

// inNode runs a command in the lab's node namespace and returns its
// output.
func inNode(t *testing.T, l *lab.Lab, name string, args ...string) string {
	t.Helper()
	return labtest.InNode(t, l, name, args...)
}

// e2eStore is a datastore the agent and calyxctl share.
type e2eStore struct {
	name string
	// allBreaks: every break of each dataplane, not only its first (the
	// datastore plays no part in repairs).
	allBreaks bool
	// open returns the datastore's flags (the same for calyx-agent and
	// calyxctl) and its configuration.
	open func(t *testing.T) ([]string, dsconfig.Config)
}

func e2eStores() []e2eStore {
	return []e2eStore{
		{"dir", true, func(t *testing.T) ([]string, dsconfig.Config) {
			root := t.TempDir()
			return []string{"--datastore-type", "dir", "--datastore-dir", root},
				dsconfig.Config{Type: dsconfig.TypeDir, Dir: root}
		}},
		{"etcd", false, func(t *testing.T) ([]string, dsconfig.Config) {
			url := etcdtest.Start(t)
			prefix := "/calyx-e2e/" + strings.ReplaceAll(t.Name(), "/", "-") + "/"
			return []string{"--datastore-type", "etcd", "--etcd-endpoints", url, "--etcd-prefix", prefix},
				dsconfig.Config{Type: dsconfig.TypeEtcd, EtcdEndpoints: []string{url}, EtcdPrefix: prefix}
		}},
	}
}

// e2ePolicy is applied and deleted with calyxctl: a Kubernetes
// NetworkPolicy that lets only pod1's own namespace (where it is alone)
// reach it, and a Calico GlobalNetworkPolicy that lets pod2 reach pod0
// only.
const e2ePolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: pod1-same-namespace, namespace: ns1}
spec:
  podSelector: {matchLabels: {app: pod1}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {}}]}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pod2-to-pod0-only}
spec:
  selector: app == 'pod2'
  types: [Egress]
  egress: [{action: Allow, destination: {selector: app == 'pod0'}}]
`

// e2eBase is what the datastore holds before the policy: the lab's
// namespaces and pods on node-a, pods free to reach their node.
func e2eBase(l *lab.Lab) string {
	var b strings.Builder
	b.WriteString("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {defaultEndpointToHostAction: Accept}\n")
	for _, ns := range []string{"ns0", "ns1"} {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {name: %s}}\n", ns, ns)
	}
	for _, p := range l.Spec().Pods {
		var ips []string
		for _, a := range p.IPs {
			ips = append(ips, fmt.Sprintf("{ip: %q}", a))
		}
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s, labels: {app: %s}}\nspec: {nodeName: node-a, containers: [{name: c, image: i}]}\nstatus: {podIP: %q, podIPs: [%s]}\n",
			p.Name, p.Namespace, p.Name, p.IPs[0], strings.Join(ips, ", "))
	}
	return b.String()
}

// The proof, end to end as processes: for each datastore and each
// kernel dataplane, calyx-agent programs a lab node; `calyxctl apply -f`
// of Kubernetes and Calico policy changes the matrix observed in the lab
// to what the model computes from the datastore, within a bounded time;
// rules and set members added or deleted, or programs detached or
// replaced, from outside are repaired, counted in /metrics, and the
// matrix is right again; `calyxctl delete -f` brings the matrix back.
// Then SIGTERM leaves the policy enforced, a change made while no agent
// runs is patched in by the next one, and --uninstall leaves nothing
// behind.
func TestAgentEndToEnd(t *testing.T) {
	netnstest.RequireRoot(t)
	bins := buildBinaries(t)
	var all []*e2eTimes
	for _, st := range e2eStores() {
		for _, dp := range e2eDataplanes() {
			times := &e2eTimes{name: st.name + "/" + dp.name}
			t.Run(times.name, func(t *testing.T) {
				runEndToEnd(t, bins, st, dp, times)
				all = append(all, times)
			})
		}
	}
	t.Logf("times from the start of calyxctl (apply, delete) or of the break (repair); load %s\n%s", loadavg(), e2eTable(all))
}

// e2eTimes are what one subtest measured.
type e2eTimes struct {
	name string
	// apply and del: calyxctl's run, the end of the agent's last apply,
	// the first probe of pod0→pod1 to see the change, the end of the first
	// probe round of the whole lab to match the model.
	apply, del [4]time.Duration
	// repairs: the repair counted in /metrics, the lab matching again.
	repairs [][2]time.Duration
}

func e2eTable(all []*e2eTimes) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "subtest\tapply: ctl\tagent\tflow\tmatrix\tdelete: ctl\tagent\tflow\tmatrix\trepairs: counted/matrix\t")
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	for _, e := range all {
		row := []string{e.name}
		for _, d := range append(e.apply[:], e.del[:]...) {
			row = append(row, ms(d))
		}
		var rep []string
		for _, r := range e.repairs {
			rep = append(rep, ms(r[0])+"/"+ms(r[1]))
		}
		row = append(row, strings.Join(rep, " "))
		fmt.Fprintln(w, strings.Join(row, "\t")+"\t")
	}
	_ = w.Flush()
	return b.String() + "(ms)"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func runEndToEnd(t *testing.T, bins binaries, st e2eStore, dp e2eDataplane, times *e2eTimes) {
	tcp80 := lab.Port{Protocol: 6, Port: 80}
	l := labtest.New(t, lab.Spec{Pods: labtest.Pods(3, tcp80), External: labtest.ExternalAddrs[:1], ExternalPorts: []lab.Port{tcp80}},
		lab.Options{ProbeTimeout: 250 * time.Millisecond})
	victim := l.Spec().Pods[1] // ns1/pod1, closed by the NetworkPolicy
	storeArgs, cfg := st.open(t)
	dpArgs := []string{"--netns", l.NodeNS().Path(), "--dataplane", dp.name, "--dataplane-name", l.ID()}
	// Cleanups run last-in first: the agent is killed, then what it
	// programmed is removed (BPF pins outlive the lab), then the lab.
	t.Cleanup(func() {
		out, err := exec.Command(bins.agent, append([]string{"--uninstall", "--config", emptyFile(t)}, dpArgs...)...).CombinedOutput()
		if err != nil {
			t.Errorf("calyx-agent --uninstall: %v\n%s", err, out)
		}
		if dp.installed(t, l) {
			t.Errorf("calyx-agent --uninstall left %s state behind", dp.name)
		}
	})

	dir := t.TempDir()
	basePath, policyPath := filepath.Join(dir, "base.yaml"), filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(basePath, []byte(e2eBase(l)), 0o644))
	require.NoError(t, os.WriteFile(policyPath, []byte(e2ePolicy), 0o644))
	ctl(t, bins, storeArgs, "apply", "-f", basePath)

	agentArgs := append(append(dpArgs, storeArgs...),
		"--reconcile-interval", "1s", "--coalesce", "10ms",
		"--endpoint-socket", filepath.Join(dir, "ep.sock"), "--dir-state-dir", filepath.Join(dir, "dirstate"))
	a := startAgent(t, bins.agent, agentArgs...)
	a.waitReady(t)
	base := storeRuleset(t, cfg)
	awaitMatrix(t, l, base, time.Now(), "no policy")

	// calyxctl apply → the lab observes the policy.
	t0 := time.Now()
	flip := watchFlip(t, l, "ns0/pod0", victim.Key(), false, t0)
	ctl(t, bins, storeArgs, "apply", "-f", policyPath)
	ctlTook := time.Since(t0)
	require.Equal(t, "globalnetworkpolicy.projectcalico.org/pod2-to-pod0-only\n", ctl(t, bins, storeArgs, "get", "gnp", "-o", "name"))
	require.Equal(t, "networkpolicy.networking.k8s.io/pod1-same-namespace\n", ctl(t, bins, storeArgs, "get", "knp", "-n", "ns1", "-o", "name"))
	_, code := ctlExit(t, bins, storeArgs, "diff", "-f", policyPath)
	require.Equal(t, 0, code, "calyxctl diff after apply: in sync")
	withPolicy := storeRuleset(t, cfg)
	requireDiffers(t, l, base, withPolicy)
	observed := awaitMatrix(t, l, withPolicy, t0, "policy applied")
	agentApplied := a.lastApply(t).Sub(t0)
	require.Positive(t, agentApplied, "the agent applied nothing after calyxctl apply")
	times.apply = [4]time.Duration{ctlTook, agentApplied, flip(t), observed}
	t.Logf("%s: calyxctl apply (ran %v) → agent's last apply done %v → pod0→pod1 denied %v → lab observed the new matrix %v",
		t.Name(), ctlTook.Round(time.Millisecond), agentApplied.Round(time.Millisecond), times.apply[2].Round(time.Millisecond), observed.Round(time.Millisecond))

	// Break the dataplane from outside → repaired, counted, matrix right.
	breaks := dp.breaks
	if !st.allBreaks {
		breaks = breaks[:1]
	}
	for _, br := range breaks {
		repairs := a.metric(t, "calyx_drift_repairs_total")
		tb := time.Now()
		br.do(t, l, victim)
		requireBroken(t, l, a, victim, withPolicy, repairs, br.what)
		for a.metric(t, "calyx_drift_repairs_total") <= repairs {
			require.Less(t, time.Since(tb), 15*time.Second, "%s: drift never repaired", br.what)
			time.Sleep(10 * time.Millisecond)
		}
		counted := time.Since(tb)
		repaired := awaitMatrix(t, l, withPolicy, tb, "repaired: "+br.what)
		times.repairs = append(times.repairs, [2]time.Duration{counted, repaired})
		t.Logf("%s: %s → repair counted in /metrics %v → lab observed the right matrix %v (reconcile interval 1s)",
			t.Name(), br.what, counted.Round(time.Millisecond), repaired.Round(time.Millisecond))
	}

	// calyxctl delete → the matrix returns.
	t0 = time.Now()
	flip = watchFlip(t, l, "ns0/pod0", victim.Key(), true, t0)
	ctl(t, bins, storeArgs, "delete", "-f", policyPath)
	ctlTook = time.Since(t0)
	after := storeRuleset(t, cfg)
	require.Empty(t, ctl(t, bins, storeArgs, "get", "gnp", "-o", "name"))
	require.Empty(t, ctl(t, bins, storeArgs, "get", "knp", "-A", "-o", "name"))
	_, code = ctlExit(t, bins, storeArgs, "diff", "-f", policyPath)
	require.Equal(t, 1, code, "calyxctl diff after delete: changes")
	returned := awaitMatrix(t, l, after, t0, "policy deleted")
	requireSameMatrix(t, l, base, after)
	agentApplied = a.lastApply(t).Sub(t0)
	require.Positive(t, agentApplied, "the agent applied nothing after calyxctl delete")
	times.del = [4]time.Duration{ctlTook, agentApplied, flip(t), returned}
	t.Logf("%s: calyxctl delete (ran %v) → agent's last apply done %v → pod0→pod1 allowed %v → lab observed the matrix return %v",
		t.Name(), ctlTook.Round(time.Millisecond), agentApplied.Round(time.Millisecond), times.del[2].Round(time.Millisecond), returned.Round(time.Millisecond))

	// calyxctl node status reads the agent's own account.
	var st1 agent.Status
	require.NoError(t, json.Unmarshal([]byte(ctl(t, bins, nil, "node", "status", "--agent", a.url, "-o", "json")), &st1))
	require.True(t, st1.Ready)
	require.True(t, st1.Datastore.Synced)
	require.Equal(t, dp.name, st1.Dataplane)
	require.Equal(t, 3, st1.Counts.Endpoints)
	require.GreaterOrEqual(t, st1.DriftRepairs, uint64(len(breaks)))
	require.Zero(t, st1.ApplyErrors, "last error: %s", st1.LastError)

	// Restart: SIGTERM leaves the policy enforced while no agent runs; a
	// change made meanwhile is patched in by the next agent, which adopts
	// the dataplane.
	ctl(t, bins, storeArgs, "apply", "-f", policyPath)
	awaitMatrix(t, l, withPolicy, time.Now(), "policy applied again")
	require.NoError(t, a.term(t), "SIGTERM is a clean stop")
	awaitMatrix(t, l, withPolicy, time.Now(), "agent stopped: enforcement left in place")
	ctl(t, bins, storeArgs, "delete", "-f", policyPath)
	t0 = time.Now()
	a2 := startAgent(t, bins.agent, agentArgs...)
	a2.waitReady(t)
	d := awaitMatrix(t, l, after, t0, "new agent: the change made while none ran is patched in")
	t.Logf("%s: policy deleted while no agent ran → new agent started, matrix patched %v", t.Name(), d.Round(time.Millisecond))
}

// flipProbeTimeout bounds each probe of watchFlip: the resolution of the
// time it measures when the flow goes from allowed to denied.
const flipProbeTimeout = 100 * time.Millisecond

// watchFlip probes one IPv4 flow from one party to another over and over,
// from source ports of its own (above the lab's), until its outcome is
// want; the returned function waits for that and returns the time from
// since to the start of the first probe that saw it (for a denial, the
// first of two in a row: a loaded machine can miss one answer).
func watchFlip(t *testing.T, l *lab.Lab, from, to string, want bool, since time.Time) func(*testing.T) time.Duration {
	t.Helper()
	var flow lab.Probe
	spec := l.Spec()
	for _, p := range spec.Probes(0) {
		if p.From == from && p.To == to && p.Dst.Is4() {
			flow = p
		}
	}
	require.NotEmpty(t, flow.From, "no probe %s -> %s", from, to)
	ns, ok := l.NS(from)
	require.True(t, ok)
	type result struct {
		d   time.Duration
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	go func() {
		var first time.Time
		for i := 0; ctx.Err() == nil; i++ {
			p := flow
			p.SrcPort = 55000 + uint16(i%10000)
			start := time.Now()
			got, err := lab.ProbeFrom(ctx, ns, p, flipProbeTimeout)
			if err != nil {
				done <- result{err: err}
				return
			}
			switch {
			case got != want:
				first = time.Time{}
			case want || !first.IsZero():
				if first.IsZero() {
					first = start
				}
				done <- result{d: first.Sub(since)}
				return
			default:
				first = start
			}
			time.Sleep(2 * time.Millisecond)
		}
		done <- result{err: fmt.Errorf("%s -> %s never became allowed=%v", from, to, want)}
	}()
	return func(t *testing.T) time.Duration {
		t.Helper()
		r := <-done
		require.NoError(t, r.err)
		return r.d
	}
}

// requireBroken requires the break to show: pod0's flows to the victim
// (denied by the policy) or to pod2 (allowed) do not do what the policy
// says, unless the agent has already repaired it (the repair counter
// moved), in which case the race is lost, not the proof.
func requireBroken(t *testing.T, l *lab.Lab, a *agentProc, victim lab.Pod, rs *compile.Ruleset, repairs float64, what string) {
	t.Helper()
	var probes []lab.Probe
	for _, p := range l.Probes() {
		if p.From == "ns0/pod0" && (p.To == victim.Key() || p.To == "ns0/pod2") {
			probes = append(probes, p)
		}
	}
	require.NotEmpty(t, probes)
	m, err := l.Run(context.Background(), probes)
	require.NoError(t, err)
	if len(m.Diff(lab.Expected(rs, probes))) > 0 {
		return
	}
	require.Greater(t, a.metric(t, "calyx_drift_repairs_total"), repairs,
		"%s: no effect on %v and no repair was counted", what, probes)
	t.Logf("%s: %s: repaired before the broken state could be probed", t.Name(), what)
}

// requireDiffers requires the two Rulesets to give the lab different
// matrices: the change is visible.
func requireDiffers(t *testing.T, l *lab.Lab, a, b *compile.Ruleset) {
	t.Helper()
	spec := l.Spec()
	probes := spec.Probes(20000)
	require.NotEmpty(t, lab.Expected(a, probes).Diff(lab.Expected(b, probes)), "the policy changes nothing in the lab")
}

// requireSameMatrix requires the two Rulesets to give the lab the same
// matrix.
func requireSameMatrix(t *testing.T, l *lab.Lab, a, b *compile.Ruleset) {
	t.Helper()
	spec := l.Spec()
	probes := spec.Probes(20000)
	require.Empty(t, lab.Expected(a, probes).Diff(lab.Expected(b, probes)))
}

// ctl runs calyxctl against the datastore (storeArgs are its flags) and
// returns its standard output; it must succeed.
func ctl(t *testing.T, bins binaries, storeArgs []string, args ...string) string {
	t.Helper()
	out, code := ctlExit(t, bins, storeArgs, args...)
	require.Zero(t, code, "calyxctl %s: exit %d", strings.Join(args, " "), code)
	return out
}

// ctlExit runs calyxctl and returns its standard output and exit code.
func ctlExit(t *testing.T, bins binaries, storeArgs []string, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd := exec.Command(bins.ctl, append(args, storeArgs...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if stderr.Len() > 0 {
			t.Logf("calyxctl %s: exit %d: %s", strings.Join(args, " "), ee.ExitCode(), stderr.String())
		}
		return stdout.String(), ee.ExitCode()
	}
	require.NoError(t, err, "calyxctl %s: %s", strings.Join(args, " "), stderr.String())
	return stdout.String(), 0
}

// metric reads one unlabelled sample from the agent's /metrics.
func (p *agentProc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(p.url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			require.NoError(t, err)
			return f
		}
	}
	require.NoError(t, sc.Err())
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// lastApply is when the agent's last successful apply ended.
func (p *agentProc) lastApply(t *testing.T) time.Time {
	t.Helper()
	st, ok := p.status(t)
	require.True(t, ok, "no /status")
	return st.LastApply
}

// ebpfPinDir is the pin directory of the lab node's eBPF backend.
func ebpfPinDir(t *testing.T, l *lab.Lab) string {
	t.Helper()
	dir, err := ebpf.PinDir(l.ID(), l.NodeNS().Path())
	require.NoError(t, err)
	return dir
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/calyxnet/calyx/internal/datastore"
	"github.com/calyxnet/calyx/internal/datastore/dsconfig"
	"github.com/calyxnet/calyx/internal/resource"
	"github.com/calyxnet/calyx/policy"
)

const datastoreHelp = `
The datastore is chosen as calicoctl does: flags, then the environment
(CALYX_DATASTORE_TYPE, CALYX_DATASTORE_DIR, CALYX_ETCD_ENDPOINTS,
CALYX_ETCD_PREFIX, KUBECONFIG …), then the config file (--config,
CALYX_CONFIG, or /etc/calyx/calyxctl.yaml), then the default: the
directory /etc/calyx/policy.`

// storeFlags are the flags that choose a datastore.
type storeFlags struct {
	cfg        dsconfig.Config
	endpoints  string
	configFile string
	timeout    time.Duration
}

func addStoreFlags(cmd *cobra.Command) *storeFlags {
	sf := &storeFlags{}
	f := cmd.Flags()
	f.StringVar(&sf.cfg.Type, "datastore-type", "", "datastore: dir, etcd or kubernetes")
	f.StringVar(&sf.cfg.Dir, "datastore-dir", "", "directory of the dir datastore")
	f.StringVar(&sf.endpoints, "etcd-endpoints", "", "comma-separated etcd client URLs")
	f.StringVar(&sf.cfg.EtcdPrefix, "etcd-prefix", "", "etcd key prefix (default /calyx/v1/)")
	f.StringVar(&sf.cfg.Kubeconfig, "kubeconfig", "", "kubeconfig of the kubernetes datastore")
	f.StringVar(&sf.configFile, "config", "", "config file (default /etc/calyx/calyxctl.yaml)")
	f.DurationVar(&sf.timeout, "request-timeout", 10*time.Second, "bound on each datastore request (etcd)")
	return sf
}

// open resolves the datastore and opens it; failures are usage errors.
func (sf *storeFlags) open(ctx context.Context) (datastore.Store, error) {
	flags := sf.cfg
	for _, e := range strings.Split(sf.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			flags.EtcdEndpoints = append(flags.EtcdEndpoints, e)
		}
	}
	cfg, err := dsconfig.Resolve(dsconfig.Sources{Flags: flags, ConfigFile: sf.configFile, Getenv: os.Getenv})
	if err != nil {
		return nil, exitError{code: exitUsage, err: err}
	}
	s, err := dsconfig.Open(ctx, cfg, dsconfig.Options{RequestTimeout: sf.timeout})
	if err != nil {
		return nil, exitError{code: exitUsage, err: fmt.Errorf("datastore %s: %w", cfg, err)}
	}
	return s, nil
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// namespaceFlags are -n and -A.
type namespaceFlags struct {
	namespace string
	all       bool
}

func addNamespaceFlags(cmd *cobra.Command, withAll bool) *namespaceFlags {
	nf := &namespaceFlags{}
	cmd.Flags().StringVarP(&nf.namespace, "namespace", "n", "default", "namespace of namespaced objects")
	if withAll {
		cmd.Flags().BoolVarP(&nf.all, "all-namespaces", "A", false, "every namespace")
	}
	return nf
}

// readObjects reads -f input for a write; objects without namespace get
// -n's, and with -n given an object in another namespace is refused, as
// kubectl does.
func readObjects(cmd *cobra.Command, files []string, nf *namespaceFlags, stdin io.Reader, stderr io.Writer) ([]policy.Object, error) {
	if len(files) == 0 {
		return nil, exitError{code: exitUsage, err: errors.New(`no input: pass -f PATH (a file, a directory, or "-" for stdin)`)}
	}
	res, err := policy.LoadPathsWithOptions(cmdContext(cmd), policy.DecodeOptions{Stdin: stdin, DefaultNamespace: nf.namespace}, files...)
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, formatWarning(w))
	}
	if err != nil {
		problems, others := splitErrors(err)
		printProblems(stderr, problems)
		if len(others) > 0 {
			return nil, exitError{code: exitUsage, err: errors.Join(others...)}
		}
		return nil, exitError{code: exitFindings, err: fmt.Errorf("%s in the input", plural(len(problems), "problem"))}
	}
	if cmd.Flags().Changed("namespace") {
		for _, o := range res.Objects {
			if policy.KindOf(o).Namespaced() && o.GetNamespace() != nf.namespace {
				return nil, exitError{code: exitFindings, err: fmt.Errorf("%s is in namespace %q, not %q: pass -n %s or leave -n out",
					policy.KeyOf(o), o.GetNamespace(), nf.namespace, o.GetNamespace())}
			}
		}
	}
	return res.Objects, nil
}

// dryRun is the --dry-run flag.
type dryRun string

const (
	dryNone   dryRun = "none"
	dryClient dryRun = "client"
	dryServer dryRun = "server"
)

func parseDryRun(s string) (dryRun, error) {
	switch d := dryRun(s); d {
	case dryNone, dryClient, dryServer:
		return d, nil
	}
	return "", exitError{code: exitUsage, err: fmt.Errorf("--dry-run=%q: want none, client or server", s)}
}

// simFlags are the knobs of --dry-run=server.
type simFlags struct {
	node    string
	maxPods int
}

func addSimFlags(cmd *cobra.Command) *simFlags {
	s := &simFlags{}
	cmd.Flags().StringVar(&s.node, "node", "", "with --dry-run=server: the node whose dataplane change is shown (default: every endpoint)")
	cmd.Flags().IntVar(&s.maxPods, "max-reach-pods", resource.DefaultMaxReachPods, "with --dry-run=server: compare reachability only up to this many pods (negative: never)")
	return s
}

// printChanges prints one line per object, kubectl style, and the refused
// ones to stderr; it returns the exit error for refusals.
func printChanges(stdout, stderr io.Writer, changes []resource.Change, suffix string) error {
	refused := 0
	for _, c := range changes {
		if c.Err != nil {
			refused++
			// The object's own problems, by file and line; anything
			// else (a broken store file, a conflict) whole.
			if problems, ok := c.Err.(policy.ValidationErrors); ok {
				printProblems(stderr, problems)
			} else {
				fmt.Fprintf(stderr, "error: %s: %v\n", datastore.ResourceName(c.Key), c.Err)
			}
			continue
		}
		fmt.Fprintf(stdout, "%s %s%s\n", datastore.ResourceName(c.Key), c.Action, suffix)
	}
	if refused > 0 {
		return exitError{code: exitFindings, err: fmt.Errorf("%d of %s refused", refused, plural(len(changes), "object"))}
	}
	return nil
}

// simulate prints what the changes would do to the dataplane and to
// reachability.
func simulate(ctx context.Context, s datastore.Store, changes []resource.Change, sim *simFlags, stdout, stderr io.Writer) error {
	items, err := s.List(ctx)
	if err != nil {
		return exitError{code: exitUsage, err: err}
	}
	current := make([]policy.Object, len(items))
	for i, it := range items {
		current[i] = it.Object
	}
	eff, err := resource.Simulate(ctx, current, changes, resource.SimulateOptions{Node: sim.node, MaxReachPods: sim.maxPods})
	if err != nil {
		return exitError{code: exitFindings, err: err}
	}
	if eff.Problems != nil {
		problems, others := splitErrors(eff.Problems)
		for _, p := range problems {
			fmt.Fprintln(stderr, strings.Replace(formatProblem(p), ": error: ", ": warning: ", 1))
		}
		for _, o := range others {
			fmt.Fprintln(stderr, "warning:", o)
		}
	}
	_, err = io.WriteString(stdout, eff.String())
	return err
}

// newWriteCmd wires apply, create and replace.
func newWriteCmd(op resource.Op, name, short, long string, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var files []string
	var dry string
	var sf *storeFlags
	var nf *namespaceFlags
	var sim *simFlags
	cmd := &cobra.Command{
		Use:   name + " -f PATH... [--dry-run=none|client|server]",
		Short: short,
		Long: long + `

--dry-run=client only validates the input. --dry-run=server reads the
datastore, says what would be done to each object, compiles the current and
the resulting state and prints the dataplane change (for --node, default
every endpoint) and, by the reference model, which pod pairs would gain (+)
or lose (-) reachability on the ports the pods declare.
` + datastoreHelp + `

Exit codes: 0 success, 1 invalid input or a refused object, 2 bad flags,
unreadable input or an unreachable datastore.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mode, err := parseDryRun(dry)
			if err != nil {
				return err
			}
			objs, err := readObjects(cmd, files, nf, stdin, stderr)
			if err != nil {
				return err
			}
			if mode == dryClient {
				for _, o := range objs {
					fmt.Fprintf(stdout, "%s valid (client dry run)\n", datastore.ResourceName(policy.KeyOf(o)))
				}
				return nil
			}
			ctx := cmdContext(cmd)
			s, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			if mode == dryServer {
				changes, err := resource.Plan(ctx, s, op, objs, resource.Options{})
				if err != nil {
					return exitError{code: exitUsage, err: err}
				}
				refused := printChanges(stdout, stderr, changes, " (server dry run)")
				if err := simulate(ctx, s, changes, sim, stdout, stderr); err != nil {
					return err
				}
				return refused
			}
			changes, err := resource.Do(ctx, s, op, objs, resource.Options{})
			refused := printChanges(stdout, stderr, changes, "")
			if err != nil {
				return exitError{code: exitUsage, err: err}
			}
			return refused
		},
	}
	addFileFlag(cmd, &files)
	cmd.Flags().StringVar(&dry, "dry-run", string(dryNone), "none, client (validate only) or server (show what would change)")
	nf = addNamespaceFlags(cmd, false)
	sf = addStoreFlags(cmd)
	sim = addSimFlags(cmd)
	return cmd
}

func newApplyCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	return newWriteCmd(resource.OpApply, "apply", "Create or update objects in the datastore",
		`apply stores every object of the files (directories recursively), creating
or replacing each whole. Objects already stored with the same content are
"unchanged" and not written.`, stdin, stdout, stderr)
}

func newCreateCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	return newWriteCmd(resource.OpCreate, "create", "Create objects; existing ones are refused",
		`create stores every object of the files; an object already stored is
refused (the others are still created).`, stdin, stdout, stderr)
}

func newReplaceCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	return newWriteCmd(resource.OpReplace, "replace", "Replace stored objects; missing ones are refused",
		`replace stores a new version of every object of the files; a missing object
is refused. An object carrying metadata.resourceVersion (as get -o yaml
prints it) is replaced only if the stored object is still at that version:
edit what you read, and no one else's change in between is lost.`, stdin, stdout, stderr)
}

// parseKeys turns KIND NAME... into keys.
func parseKeys(args []string, nf *namespaceFlags) ([]policy.ObjectKey, error) {
	kind, err := datastore.ParseKind(args[0])
	if err != nil {
		return nil, exitError{code: exitUsage, err: err}
	}
	var keys []policy.ObjectKey
	for _, name := range args[1:] {
		k := policy.ObjectKey{Kind: kind, Name: name}
		if kind.Namespaced() {
			k.Namespace = nf.namespace
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func newDeleteCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var files []string
	var dry string
	var ignore bool
	var sf *storeFlags
	var nf *namespaceFlags
	var sim *simFlags
	cmd := &cobra.Command{
		Use:   "delete (-f PATH... | KIND NAME...) [--dry-run=none|client|server]",
		Short: "Delete objects from the datastore",
		Long: `delete removes the objects of the files, or the objects of one kind named on
the command line (in the namespace of -n for namespaced kinds). An object
from a file carrying metadata.resourceVersion is deleted only if the stored
object is still at that version. --dry-run as for apply.
` + datastoreHelp + `

Exit codes: 0 success, 1 a missing or changed object, 2 bad flags,
unreadable input or an unreachable datastore.`,
		Example: `  calyxctl delete gnp security.deny-all
  calyxctl delete -n shop networkpolicy allow-web
  calyxctl delete -f policies/`,
		RunE: func(cmd *cobra.Command, args []string) error {
			mode, err := parseDryRun(dry)
			if err != nil {
				return err
			}
			if (len(files) > 0) == (len(args) > 0) {
				return exitError{code: exitUsage, err: errors.New("give either -f PATH or KIND and names")}
			}
			var objs []policy.Object
			var keys []policy.ObjectKey
			if len(files) > 0 {
				if objs, err = readObjects(cmd, files, nf, stdin, stderr); err != nil {
					return err
				}
			} else {
				if len(args) < 2 {
					return exitError{code: exitUsage, err: errors.New("give KIND and at least one NAME")}
				}
				if keys, err = parseKeys(args, nf); err != nil {
					return err
				}
			}
			if mode == dryClient {
				for _, o := range objs {
					keys = append(keys, policy.KeyOf(o))
				}
				for _, k := range keys {
					fmt.Fprintf(stdout, "%s valid (client dry run)\n", datastore.ResourceName(k))
				}
				return nil
			}
			ctx := cmdContext(cmd)
			s, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			opts := resource.Options{IgnoreNotFound: ignore}
			var changes []resource.Change
			switch {
			case mode == dryServer && objs != nil:
				changes, err = resource.Plan(ctx, s, resource.OpDelete, objs, opts)
			case mode == dryServer:
				changes, err = resource.PlanDelete(ctx, s, keys, opts)
			case objs != nil:
				changes, err = resource.Do(ctx, s, resource.OpDelete, objs, opts)
			default:
				changes, err = resource.Delete(ctx, s, keys, opts)
			}
			suffix := ""
			if mode == dryServer {
				suffix = " (server dry run)"
			}
			refused := printChanges(stdout, stderr, changes, suffix)
			if err != nil {
				return exitError{code: exitUsage, err: err}
			}
			if mode == dryServer {
				if err := simulate(ctx, s, changes, sim, stdout, stderr); err != nil {
					return err
				}
			}
			return refused
		},
	}
	addFileFlag(cmd, &files)
	cmd.Flags().StringVar(&dry, "dry-run", string(dryNone), "none, client (validate only) or server (show what would change)")
	cmd.Flags().BoolVar(&ignore, "ignore-not-found", false, "a missing object is not an error")
	nf = addNamespaceFlags(cmd, false)
	sf = addStoreFlags(cmd)
	sim = addSimFlags(cmd)
	return cmd
}

func newGetCmd(stdout, stderr io.Writer) *cobra.Command {
	var output string
	var sf *storeFlags
	var nf *namespaceFlags
	cmd := &cobra.Command{
		Use:   "get KIND [NAME...] [-n NAMESPACE | -A] [-o yaml|json|wide|name]",
		Short: "Print objects from the datastore",
		Long: `get prints the stored objects of one kind: all of them, or those named. KIND
is a kind's name, plural or short name (globalnetworkpolicy, gnp, np, knp,
netpol, hep, ns, po …; a bare networkpolicy is Calico's). Namespaced kinds
are read from -n's namespace (default "default"), or every namespace with -A.

Output: a table (default; -o wide adds each kind's main fields), yaml
(multi-document, ready for replace -f: metadata.resourceVersion included),
json (one object, or a v1 List), or name (kind.group/name per line).
` + datastoreHelp + `

Exit codes: 0 success, 1 a named object is missing, 2 bad flags or an
unreachable datastore.`,
		Example: `  calyxctl get gnp
  calyxctl get networkpolicies -A -o wide
  calyxctl get gnp security.deny-all -o yaml > deny.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "", "yaml", "json", "wide", "name":
			default:
				return exitError{code: exitUsage, err: fmt.Errorf("-o %q: want yaml, json, wide or name", output)}
			}
			kind, err := datastore.ParseKind(args[0])
			if err != nil {
				return exitError{code: exitUsage, err: err}
			}
			ctx := cmdContext(cmd)
			s, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			items, err := s.List(ctx)
			if err != nil {
				return exitError{code: exitUsage, err: err}
			}
			warnProblems(ctx, s, stderr)
			names := args[1:]
			var objs []policy.Object
			for _, it := range items {
				k := policy.KeyOf(it.Object)
				if k.Kind != kind || kind.Namespaced() && !nf.all && k.Namespace != nf.namespace {
					continue
				}
				if len(names) > 0 && !slices.Contains(names, k.Name) {
					continue
				}
				objs = append(objs, it.Object)
			}
			var missing error
			if len(names) > 0 {
				objs = orderByNames(objs, names)
				var absent []string
				for _, n := range names {
					if !slices.ContainsFunc(objs, func(o policy.Object) bool { return o.GetName() == n }) {
						absent = append(absent, n)
					}
				}
				if len(absent) > 0 {
					missing = exitError{code: exitFindings, err: fmt.Errorf("%s %s: %w", kind.WireName(), strings.Join(absent, ", "), datastore.ErrNotFound)}
				}
			}
			if len(objs) == 0 && missing == nil {
				where := ""
				if kind.Namespaced() && !nf.all {
					where = " in namespace " + nf.namespace
				}
				fmt.Fprintf(stderr, "No %s found%s.\n", kind.WireName(), where)
				return nil
			}
			if err := printObjects(stdout, objs, output, kind.Namespaced() && nf.all); err != nil {
				return err
			}
			return missing
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "yaml, json, wide or name (default: a table)")
	nf = addNamespaceFlags(cmd, true)
	sf = addStoreFlags(cmd)
	return cmd
}

// warnProblems prints what a store knows to be wrong with its sources
// (the dir store's broken files and duplicates).
func warnProblems(ctx context.Context, s datastore.Store, stderr io.Writer) {
	p, ok := s.(interface {
		Problems(context.Context) ([]error, error)
	})
	if !ok {
		return
	}
	problems, err := p.Problems(ctx)
	if err != nil {
		return
	}
	for _, e := range problems {
		fmt.Fprintln(stderr, "warning:", e)
	}
}

func orderByNames(objs []policy.Object, names []string) []policy.Object {
	out := slices.Clone(objs)
	slices.SortStableFunc(out, func(a, b policy.Object) int {
		return slices.Index(names, a.GetName()) - slices.Index(names, b.GetName())
	})
	return out
}

func printObjects(w io.Writer, objs []policy.Object, output string, withNamespace bool) error {
	switch output {
	case "yaml":
		return policy.Encode(w, objs)
	case "json":
		for _, o := range objs {
			k := policy.KindOf(o)
			o.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(k.APIVersion(), k.WireName()))
		}
		var v any = objs[0]
		if len(objs) > 1 {
			v = map[string]any{"apiVersion": "v1", "kind": "List", "items": objs}
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "name":
		for _, o := range objs {
			fmt.Fprintln(w, datastore.ResourceName(policy.KeyOf(o)))
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	head := []string{"NAME"}
	if withNamespace {
		head = append([]string{"NAMESPACE"}, head...)
	}
	if output == "wide" {
		head = append(head, wideHeader(policy.KindOf(objs[0]))...)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, o := range objs {
		row := []string{o.GetName()}
		if withNamespace {
			row = append([]string{o.GetNamespace()}, row...)
		}
		if output == "wide" {
			row = append(row, wideRow(o)...)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func wideHeader(k policy.Kind) []string {
	switch k {
	case policy.KindNetworkPolicy, policy.KindGlobalNetworkPolicy, policy.KindStagedNetworkPolicy, policy.KindStagedGlobalNetworkPolicy:
		return []string{"TIER", "ORDER", "SELECTOR"}
	case policy.KindK8sNetworkPolicy:
		return []string{"POD-SELECTOR", "POLICY-TYPES"}
	case policy.KindTier:
		return []string{"ORDER"}
	case policy.KindPod:
		return []string{"NODE", "IP", "LABELS"}
	case policy.KindNetworkSet, policy.KindGlobalNetworkSet:
		return []string{"NETS"}
	case policy.KindHostEndpoint:
		return []string{"NODE", "INTERFACE", "IPS"}
	}
	return []string{"LABELS"}
}

func wideRow(o policy.Object) []string {
	or := func(s string, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	order := func(f *float64) string {
		if f == nil {
			return "-"
		}
		return fmt.Sprint(*f)
	}
	tier := func(t string) string { return or(t, "default") }
	switch v := o.(type) {
	case *policy.NetworkPolicy:
		return []string{tier(v.Spec.Tier), order(v.Spec.Order), or(v.Spec.Selector, "all()")}
	case *policy.GlobalNetworkPolicy:
		return []string{tier(v.Spec.Tier), order(v.Spec.Order), or(v.Spec.Selector, "all()")}
	case *policy.StagedNetworkPolicy:
		return []string{tier(v.Spec.Tier), order(v.Spec.Order), or(v.Spec.Selector, "all()")}
	case *policy.StagedGlobalNetworkPolicy:
		return []string{tier(v.Spec.Tier), order(v.Spec.Order), or(v.Spec.Selector, "all()")}
	case *networkingv1.NetworkPolicy:
		var types []string
		for _, t := range v.Spec.PolicyTypes {
			types = append(types, string(t))
		}
		return []string{or(metav1.FormatLabelSelector(&v.Spec.PodSelector), "<none>"), or(strings.Join(types, ","), "-")}
	case *policy.Tier:
		return []string{order(v.Spec.Order)}
	case *corev1.Pod:
		return []string{or(v.Spec.NodeName, "<none>"), or(v.Status.PodIP, "<none>"), labelString(v.Labels)}
	case *policy.NetworkSet:
		return []string{or(strings.Join(v.Spec.Nets, ","), "<none>")}
	case *policy.GlobalNetworkSet:
		return []string{or(strings.Join(v.Spec.Nets, ","), "<none>")}
	case *policy.HostEndpoint:
		return []string{or(v.Spec.Node, "<none>"), or(v.Spec.InterfaceName, "*"), or(strings.Join(v.Spec.ExpectedIPs, ","), "<none>")}
	}
	return []string{labelString(o.GetLabels())}
}

func labelString(l map[string]string) string {
	if len(l) == 0 {
		return "<none>"
	}
	var parts []string
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func newLabelCmd(stdout, stderr io.Writer) *cobra.Command {
	var overwrite bool
	var sf *storeFlags
	var nf *namespaceFlags
	cmd := &cobra.Command{
		Use:   "label KIND NAME KEY=VALUE... KEY-...",
		Short: "Set or remove labels of a stored object",
		Long: `label sets (key=value) and removes (key-) labels of one stored object,
checked against the object's revision so a concurrent change is not lost.
Changing an existing label's value needs --overwrite.
` + datastoreHelp + `

Exit codes: 0 success, 1 a missing object or a label already set, 2 bad
flags or arguments, or an unreachable datastore.`,
		Example: `  calyxctl label gnp security.deny-all owner=secops
  calyxctl label -n shop np allow-web team-`,
		Args: cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := parseKeys(args[:2], nf)
			if err != nil {
				return err
			}
			changes, err := resource.ParseLabelChanges(args[2:])
			if err != nil {
				return exitError{code: exitUsage, err: err}
			}
			ctx := cmdContext(cmd)
			s, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			changed, err := resource.Label(ctx, s, keys[0], changes, overwrite)
			switch {
			case errors.Is(err, datastore.ErrNotFound) || errors.Is(err, resource.ErrLabelExists) ||
				errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrReadOnly):
				return exitError{code: exitFindings, err: err}
			case err != nil:
				return exitError{code: exitUsage, err: err}
			}
			if changed {
				fmt.Fprintf(stdout, "%s labeled\n", datastore.ResourceName(keys[0]))
			} else {
				fmt.Fprintf(stdout, "%s not labeled\n", datastore.ResourceName(keys[0]))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "allow changing the value of an existing label")
	nf = addNamespaceFlags(cmd, false)
	sf = addStoreFlags(cmd)
	return cmd
}

// Exit codes of diff, as kubectl diff's.
const (
	diffNone    = 0
	diffChanges = 1
	diffError   = 2
)

func newDiffCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var files []string
	var sf *storeFlags
	var nf *namespaceFlags
	cmd := &cobra.Command{
		Use:   "diff -f PATH...",
		Short: "Show what apply -f would change, as a unified diff",
		Long: `diff compares every object of the files with the stored one and prints a
unified diff (--- live/<name>, +++ new/<name>) of each that apply would
create or change.
` + datastoreHelp + `

Exit codes, as kubectl diff: 0 no change, 1 changes, 2 (more than 1) an
error: invalid input, bad flags, an unreachable datastore.`,
		Example: `  calyxctl diff -f policies/ && echo "in sync"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			objs, err := readObjects(cmd, files, nf, stdin, stderr)
			if err != nil {
				return asDiffError(err)
			}
			ctx := cmdContext(cmd)
			s, err := sf.open(ctx)
			if err != nil {
				return asDiffError(err)
			}
			defer s.Close()
			changes, err := resource.Plan(ctx, s, resource.OpApply, objs, resource.Options{})
			if err != nil {
				return exitError{code: diffError, err: err}
			}
			if err := resource.Failed(changes); err != nil {
				return exitError{code: diffError, err: err}
			}
			for _, c := range changes {
				if c.Action == resource.Unchanged {
					continue
				}
				var old, new []byte
				if c.Old != nil {
					if old, err = datastore.Encoding(c.Old); err != nil {
						return exitError{code: diffError, err: err}
					}
				}
				if new, err = datastore.Encoding(c.New); err != nil {
					return exitError{code: diffError, err: err}
				}
				name := datastore.ResourceName(c.Key)
				if c.Key.Namespace != "" {
					name = c.Key.Namespace + "/" + name
				}
				fmt.Fprint(stdout, resource.UnifiedDiff("live/"+name, "new/"+name, string(old), string(new)))
			}
			if resource.Changed(changes) {
				return exitError{code: diffChanges}
			}
			return nil
		},
	}
	addFileFlag(cmd, &files)
	nf = addNamespaceFlags(cmd, false)
	sf = addStoreFlags(cmd)
	return cmd
}

// asDiffError gives every failure diff's error code (>1): its 1 means
// "changes".
func asDiffError(err error) error {
	var ee exitError
	if errors.As(err, &ee) {
		ee.code = diffError
		return ee
	}
	return exitError{code: diffError, err: err}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/calyxnet/calyx/internal/agent"
)

// defaultAgentURL is where calyx-agent serves /status by default.
const defaultAgentURL = "http://127.0.0.1:9099"

// newNodeCmd wires `calyxctl node status` to the agent's /status.
func newNodeCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Inspect the Calyx agent of a node",
	}
	var agentURL, output string
	var timeout time.Duration
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the node agent's health, datastore sync, dataplane and last apply",
		Long: `status asks a node's calyx-agent for its state (GET <agent>/status):
whether it is live and ready, whether its datastore is in sync (and which
sources have errors), the dataplane in use, the size of the Ruleset in
force, the last apply and its duration, and the last error.

The agent is --agent, else $CALYX_AGENT, else ` + defaultAgentURL + `.

Exit codes: 0 the agent is ready, 1 it is not ready or cannot be reached,
2 bad flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "text", "json", "yaml":
			default:
				return exitError{code: exitUsage, err: fmt.Errorf("unknown output format %q (text, json or yaml)", output)}
			}
			if agentURL == "" {
				agentURL = os.Getenv("CALYX_AGENT")
			}
			if agentURL == "" {
				agentURL = defaultAgentURL
			}
			if !strings.Contains(agentURL, "://") {
				agentURL = "http://" + agentURL
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			st, err := fetchNodeStatus(ctx, agentURL)
			if err != nil {
				return exitError{code: exitFindings, err: err}
			}
			if err := writeNodeStatus(stdout, st, output); err != nil {
				return err
			}
			if !st.Ready {
				return exitError{code: exitFindings}
			}
			return nil
		},
	}
	status.Flags().StringVar(&agentURL, "agent", "", "the agent's HTTP address (default $CALYX_AGENT or "+defaultAgentURL+")")
	status.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or yaml")
	status.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	cmd.AddCommand(status)
	return cmd
}

func fetchNodeStatus(ctx context.Context, base string) (agent.Status, error) {
	var st agent.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/status", nil)
	if err != nil {
		return st, fmt.Errorf("agent address: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("agent unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("agent answered %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("agent status: %w", err)
	}
	return st, nil
}

func writeNodeStatus(w io.Writer, st agent.Status, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	case "yaml":
		b, err := yaml.Marshal(st)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	yesNo := func(b bool, yes, no string) string {
		if b {
			return yes
		}
		return no
	}
	health := yesNo(st.Live, "live", "NOT LIVE") + ", " + yesNo(st.Ready, "ready", "NOT READY")
	ds := yesNo(st.Datastore.Synced, "in sync", "NOT IN SYNC") + fmt.Sprintf(" (%d objects)", st.Datastore.Objects)
	fmt.Fprintf(tw, "Node:\t%s\n", st.Node)
	fmt.Fprintf(tw, "Agent:\t%s\n", health)
	fmt.Fprintf(tw, "Datastore:\t%s\n", ds)
	for _, e := range st.Datastore.Errors {
		fmt.Fprintf(tw, "  error:\t%s: %s\n", e.Source, e.Error)
	}
	fmt.Fprintf(tw, "Dataplane:\t%s\n", st.Dataplane)
	fmt.Fprintf(tw, "Endpoints:\t%d (%d registered by CNI)\n", st.Counts.Endpoints, st.Registered)
	fmt.Fprintf(tw, "Policies:\t%d (%d rules)\n", st.Counts.Policies, st.Counts.Rules)
	fmt.Fprintf(tw, "IP sets:\t%d (%d members)\n", st.Counts.Sets, st.Counts.SetMembers)
	last := "never"
	if !st.LastApply.IsZero() {
		last = fmt.Sprintf("%s, took %s", st.LastApply.Format(time.RFC3339), time.Duration(st.LastApplySeconds*float64(time.Second)).Round(time.Microsecond))
	}
	fmt.Fprintf(tw, "Last apply:\t%s\n", last)
	fmt.Fprintf(tw, "Applies:\t%d ok, %d failed%s\n", st.Applies, st.ApplyErrors, yesNo(st.Failing, " (failing now, retrying)", ""))
	fmt.Fprintf(tw, "Drift repairs:\t%d\n", st.DriftRepairs)
	lastErr := "none"
	if st.LastError != "" {
		lastErr = st.LastError
		if !st.LastErrorTime.IsZero() {
			lastErr += " (" + st.LastErrorTime.Format(time.RFC3339) + ")"
		}
	}
	fmt.Fprintf(tw, "Last error:\t%s\n", lastErr)
	return errors.Join(tw.Flush())
}

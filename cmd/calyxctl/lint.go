package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/calyxnet/calyx/backend/model"
	"github.com/calyxnet/calyx/compile"
)

// newLintCmd wires `calyxctl lint`.
func newLintCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var (
		files  []string
		output string
	)
	cmd := &cobra.Command{
		Use:   "lint -f PATH... [-o text|json]",
		Short: "Report policy that is wrong, dead or surprising",
		Long: `lint reads the input as validate does, compiles it, and reports findings,
each with its source position, severity and code:

  error    unknown-tier                 the policy's tier does not exist
  warning  shadowed-rule                an earlier rule (of the policy, or of an earlier policy
                                        of the tier for all its endpoints) decides first, differently
  info     redundant-rule               such an earlier rule already does the same
  warning  rule-never-matches           the rule's own conditions exclude every packet
  warning  policy-selects-nothing       no endpoint of the input is selected
  warning  selector-matches-nothing     a rule selector picks no endpoint or network set
  warning  named-port-matches-nothing   no endpoint the rule picks declares the named port
  warning  implicit-end-of-tier-deny    a Log- or Deny-only policy makes its tier apply,
                                        so everything else is denied at the end of the tier
  warning  policy-never-evaluated       an earlier tier with no Pass rule decides every packet
                                        for all the endpoints the policy applies to
  warning  staged-changes-verdicts      enforcing a staged policy changes pod-to-pod verdicts
  warning  staged-delete-missing        a staged Delete names no existing policy
  info     overlapping-nets             two nets of one list overlap
  warning  http-not-enforced            http matches are not enforced at L3/L4
  warning  services-not-enforced        service matches are not enforced yet (rule left out)
  info     domains-need-dns             domains match only once DNS fills their set

Checks that need endpoints run only when the input has pods or host
endpoints.

Exit codes: 0 no errors (warnings and info do not count), 1 lint errors or
invalid input, 2 bad flags or unreadable input.`,
		Example: `  calyxctl lint -f policies/ -f cluster/pods.yaml
  calyxctl lint -f policies/ -o json   # {"findings":[{"source","line","severity","code","object","field","message"}, …]}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return exitError{code: exitUsage, err: fmt.Errorf("-o %q: want text or json", output)}
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			in, err := loadInput(ctx, files, stdin, stderr, false)
			if err != nil {
				return err
			}
			rs, err := compile.New(in.set, "").Compile()
			if err != nil {
				return exitError{code: exitFindings, err: err}
			}
			findings := compile.Lint(in.set, rs, compile.LintOptions{Judge: modelJudge})
			counts := map[compile.Severity]int{}
			for _, f := range findings {
				counts[f.Severity]++
			}
			if output == "json" {
				if err := writeFindingsJSON(stdout, findings); err != nil {
					return err
				}
			} else {
				for _, f := range findings {
					fmt.Fprintln(stdout, f)
				}
				fmt.Fprintf(stdout, "%s, %s, %d info\n", plural(counts[compile.SeverityError], "error"),
					plural(counts[compile.SeverityWarning], "warning"), counts[compile.SeverityInfo])
			}
			if n := counts[compile.SeverityError]; n > 0 {
				return exitError{code: exitFindings, err: fmt.Errorf("lint: %s", plural(n, "error"))}
			}
			return nil
		},
	}
	addFileFlag(cmd, &files)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// jsonFinding is one finding in -o json: flat, lower-case keys.
type jsonFinding struct {
	Source   string `json:"source"`
	Line     int    `json:"line"`
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Object   string `json:"object"`
	Field    string `json:"field"`
	Message  string `json:"message"`
}

// writeFindingsJSON prints {"findings":[…]}, in Lint's order.
func writeFindingsJSON(w io.Writer, findings []compile.Finding) error {
	out := make([]jsonFinding, 0, len(findings))
	for _, f := range findings {
		out = append(out, jsonFinding{Source: f.Position.Source, Line: f.Position.Line, Severity: f.Severity.String(),
			Code: f.Code, Object: f.Object, Field: f.Field, Message: f.Message})
	}
	return json.NewEncoder(w).Encode(struct {
		Findings []jsonFinding `json:"findings"`
	}{out})
}

// modelJudge decides lint's staged-policy flows with the reference model.
func modelJudge(rs *compile.Ruleset) func(compile.Flow) bool {
	idx := model.NewIndex(rs)
	return func(f compile.Flow) bool {
		return idx.Allowed(model.Packet{Src: f.Src, Dst: f.Dst, Protocol: f.Protocol, SrcPort: 40000, DstPort: f.DstPort})
	}
}

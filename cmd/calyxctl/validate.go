package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/calyxnet/calyx/policy"
)

// newValidateCmd wires `calyxctl validate -f PATH…`.
func newValidateCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "validate -f PATH...",
		Short: "Check policy YAML and report every problem with its source position",
		Long: `validate reads every object in the files and directories given (directories
recursively: .yaml, .yml and .json; "-" is stdin) and reports every problem
it finds, each as file:line with the object and the field path, then the
warnings (skipped kinds, objects defined twice).

Exit codes: 0 when the input is valid (warnings do not count), 1 when it has
problems, 2 when it cannot be read.`,
		Example: `  calyxctl validate -f policies/
  kubectl get networkpolicies -A -o yaml | calyxctl validate -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := loadInput(cmd.Context(), files, stdin, stderr, true)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "valid: %s in %s\n", plural(len(in.res.Objects), "object"), plural(in.sources(), "file"))
			return nil
		},
	}
	addFileFlag(cmd, &files)
	return cmd
}

// addFileFlag adds the kubectl-style -f/--filename flag.
func addFileFlag(cmd *cobra.Command, files *[]string) {
	cmd.Flags().StringArrayVarP(files, "filename", "f", nil,
		`files or directories of policy YAML/JSON (repeatable; "-" reads stdin)`)
}

// input is what a command read: the decoded objects and the Set built from
// them.
type input struct {
	res policy.Result
	set *policy.Set
}

// sources counts the distinct files the objects came from.
func (in *input) sources() int {
	seen := map[string]bool{}
	for _, o := range in.res.Origins {
		if o != nil {
			seen[o.Source] = true
		}
	}
	return len(seen)
}

// loadInput reads paths into a policy.Set. Every problem and warning is
// written to stderr with its source position; the error returned is an
// exitError: exitFindings for invalid input, exitUsage for input that
// cannot be read. checkSet adds the checks that need the whole set (a
// policy's tier must exist); lint reports those as findings instead.
func loadInput(ctx context.Context, paths []string, stdin io.Reader, stderr io.Writer, checkSet bool) (*input, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if len(paths) == 0 {
		return nil, exitError{code: exitUsage, err: errors.New(`no input: pass -f PATH (a file, a directory, or "-" for stdin)`)}
	}
	res, err := policy.LoadPathsWithOptions(ctx, policy.DecodeOptions{Stdin: stdin}, paths...)
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
	in := &input{res: res, set: policy.NewSet()}
	if _, err := in.set.UpsertResult(res); err != nil {
		problems, others := splitErrors(err)
		printProblems(stderr, problems)
		if len(others) > 0 {
			return nil, exitError{code: exitFindings, err: errors.Join(others...)}
		}
		return nil, exitError{code: exitFindings, err: fmt.Errorf("%s in the input", plural(len(problems), "problem"))}
	}
	// The same object twice: the later document wins, as with
	// kubectl apply of both; say so, since it is rarely meant.
	first := map[policy.ObjectKey]*policy.Origin{}
	for i, obj := range res.Objects {
		k := policy.KeyOf(obj)
		o := res.Origins[i]
		if prev, dup := first[k]; dup && prev != nil && o != nil {
			fmt.Fprintf(stderr, "%s: warning: %s is defined again (first at %s): the later one is used\n", o.Position, k, prev.Position)
			continue
		}
		first[k] = o
	}
	if checkSet {
		if err := in.set.Validate(); err != nil {
			problems, others := splitErrors(err)
			printProblems(stderr, problems)
			if len(others) > 0 {
				return nil, exitError{code: exitFindings, err: errors.Join(others...)}
			}
			return nil, exitError{code: exitFindings, err: fmt.Errorf("%s in the input", plural(len(problems), "problem"))}
		}
	}
	return in, nil
}

// splitErrors separates validation problems from everything else (I/O,
// no objects).
func splitErrors(err error) (policy.ValidationErrors, []error) {
	var problems policy.ValidationErrors
	var others []error
	var walk func(error)
	walk = func(e error) {
		switch v := e.(type) {
		case policy.ValidationErrors:
			problems = append(problems, v...)
			return
		case *policy.ValidationError:
			problems = append(problems, v)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		var list policy.ValidationErrors
		if errors.As(e, &list) {
			problems = append(problems, list...)
			return
		}
		others = append(others, e)
	}
	walk(err)
	return problems, others
}

func printProblems(w io.Writer, problems policy.ValidationErrors) {
	for _, p := range problems {
		fmt.Fprintln(w, formatProblem(p))
	}
}

// formatProblem prints a validation problem as file:line: error: rest.
func formatProblem(p *policy.ValidationError) string {
	pos := p.Position.String()
	return pos + ": error: " + strings.TrimPrefix(p.Error(), pos+": ")
}

// formatWarning prints a decode warning as file:line: warning: rest.
func formatWarning(w policy.Warning) string {
	pos := w.Position.String()
	return pos + ": warning: " + strings.TrimPrefix(w.String(), pos+": ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

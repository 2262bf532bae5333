// Command calyxctl is the Calyx command-line tool: it reads policy the way
// calicoctl and kubectl users write it and answers questions about it.
//
// It holds flag parsing and wiring only; the logic lives in the library
// packages so that Go users can call it directly.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes, documented in --help.
const (
	exitOK       = 0 // success
	exitFindings = 1 // validation problems, lint errors, or a failed check
	exitUsage    = 2 // bad flags or arguments, unreadable input
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run builds the command tree and executes it; it returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		if code, ok := err.(exitError); ok {
			if code.err != nil {
				fmt.Fprintln(stderr, "calyxctl:", code.err)
			}
			return code.code
		}
		fmt.Fprintln(stderr, "calyxctl:", err)
		return exitUsage
	}
	return exitOK
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "calyxctl",
		Short: "Inspect, check and apply Calyx network policy",
		Long: `calyxctl reads Calico (projectcalico.org/v3) and Kubernetes
(networking.k8s.io/v1) policy YAML and answers questions about it.

Exit codes:
  0  success
  1  findings: validation problems, lint errors, a failed check
  2  usage: bad flags or arguments, unreadable input`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Subcommands are added here, one constructor per file.
	root.AddCommand(newIPAMCmd(stdout))
	root.AddCommand(newReachCmd(stdin, stdout, stderr))
	root.AddCommand(newTraceCmd(stdin, stdout, stderr))
	root.AddCommand(newValidateCmd(stdin, stdout, stderr))
	root.AddCommand(newLintCmd(stdin, stdout, stderr))
	root.AddCommand(newApplyCmd(stdin, stdout, stderr))
	root.AddCommand(newCreateCmd(stdin, stdout, stderr))
	root.AddCommand(newReplaceCmd(stdin, stdout, stderr))
	root.AddCommand(newDeleteCmd(stdin, stdout, stderr))
	root.AddCommand(newGetCmd(stdout, stderr))
	root.AddCommand(newLabelCmd(stdout, stderr))
	root.AddCommand(newDiffCmd(stdin, stdout, stderr))
	root.AddCommand(newNodeCmd(stdout))
	return root
}

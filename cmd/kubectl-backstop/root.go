package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Options is what every command shares: where it writes, what time it is,
// and how it reaches the cluster.
type Options struct {
	// Streams are the command's input and outputs.
	Streams genericiooptions.IOStreams
	// Clock tells the time that ages and durations are counted to.
	Clock clock.PassiveClock
	// IsTerminal says whether w is a terminal; status --watch redraws the
	// view in place on one.
	IsTerminal func(w io.Writer) bool

	// gv is the API version of Rollouts asked for; a test changes it to
	// meet a cluster without Backstop's CRDs.
	gv schema.GroupVersion
	// watchSeconds, when set, has the server end every watch after so many
	// seconds, for a test to see the watches started again.
	watchSeconds int64

	flags *genericclioptions.ConfigFlags
}

// Execute runs the plugin with args (without the program's name) and
// returns its exit code: 0 on success, 1 on an error, and for status
// --watch 1 when the release was rolled back and 2 on --timeout.
func Execute(ctx context.Context, o Options, args []string) int {
	root := NewRootCommand(&o)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var exit *exitError
	var usage *usageError
	switch {
	case errors.As(err, &exit):
		if exit.message != "" {
			fmt.Fprintln(o.Streams.ErrOut, exit.message)
		}
		return exit.code
	case errors.As(err, &usage):
		fmt.Fprintf(o.Streams.ErrOut, "error: %v\nSee '%s --help' for usage.\n", usage.err, cmd.CommandPath())
	default:
		fmt.Fprintf(o.Streams.ErrOut, "error: %v\n", err)
	}
	return 1
}

// NewRootCommand returns the kubectl-backstop command with its subcommands.
func NewRootCommand(o *Options) *cobra.Command {
	if o.gv.Empty() {
		o.gv = backstopv1.GroupVersion
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	o.flags = genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:   "kubectl-backstop",
		Short: "Watch and steer Backstop's Rollouts",
		Long: `Watch and steer Backstop's Rollouts: list them, follow a release step by
step with its checks, hooks, revert and Events, promote, abort or retry a
release, pause it, and read the history of past releases.

It uses your kubeconfig and kubectl's flags (--kubeconfig, --context,
-n/--namespace, --as, ...).`,
		Annotations:       map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl backstop"},
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetIn(o.Streams.In)
	root.SetOut(o.Streams.Out)
	root.SetErr(o.Streams.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	o.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newGetCommand(o),
		newStatusCommand(o),
		newHistoryCommand(o),
		newPromoteCommand(o),
		newAbortCommand(o),
		newRetryCommand(o),
		newPauseCommand(o),
		newResumeCommand(o),
		newSkipAnalysisCommand(o),
	)
	return root
}

// connect reaches the cluster as kubectl's flags say.
func (o *Options) connect() (*kube, error) {
	k, err := connect(o.flags, o.gv)
	if err != nil {
		return nil, err
	}
	k.watchSeconds = o.watchSeconds
	return k, nil
}

// exitError ends the plugin with a code of its own and a message (which
// may be empty) on stderr.
type exitError struct {
	code    int
	message string
}

func (e *exitError) Error() string { return e.message }

// usageError is a mistake in the command line: the message is followed by
// a pointer to the help.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }

// oneName accepts exactly one argument, the Rollout's name.
func oneName(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		return nil
	case 0:
		return &usageError{fmt.Errorf("the name of a Rollout is required: %s", cmd.UseLine())}
	}
	return &usageError{fmt.Errorf("one Rollout at a time, got %d names: %s", len(args), strings.Join(args, " "))}
}

// outputFormat checks an -o value against the formats a command takes.
func outputFormat(got string, allowed ...string) error {
	for _, a := range allowed {
		if got == a {
			return nil
		}
	}
	return &usageError{fmt.Errorf("unknown output format %q: use one of %s", got, strings.Join(allowed[1:], ", "))}
}

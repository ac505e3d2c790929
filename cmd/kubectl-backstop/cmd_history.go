package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

func newHistoryCommand(o *Options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "List a Rollout's past releases and how each ended",
		Long: `List the releases of a Rollout that ended, newest first (#1), as
status.history keeps them (the last 10).

FROM→TO are the pod template revisions the release went from and to;
SOURCE is the Git revision it was applied from; OUTCOME is Promoted,
RolledBack, Withdrawn (the change went away during the release) or
Replaced (a newer revision started a new release); REASON and FAILED CHECK
say what decided it; REVERT COMMIT is the revert pushed to Git after a
rollback. -o wide adds the decision's message; -o json and -o yaml print
the records.`,
		Example: `  kubectl backstop history app
  kubectl backstop history app -o yaml`,
		Args: oneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(output, "", "wide", "json", "yaml"); err != nil {
				return err
			}
			k, err := o.connect()
			if err != nil {
				return err
			}
			ro, err := k.getRollout(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			history := ro.Status.History
			if history == nil {
				history = []backstopv1.ReleaseRecord{}
			}
			switch output {
			case "json":
				out, err := json.MarshalIndent(history, "", "    ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(o.Streams.Out, "%s\n", out)
				return err
			case "yaml":
				out, err := yaml.Marshal(history)
				if err != nil {
					return err
				}
				_, err = o.Streams.Out.Write(out)
				return err
			}
			if len(history) == 0 {
				fmt.Fprintf(o.Streams.ErrOut, "No release of rollout %q has ended yet.\n", ro.Name)
				return nil
			}
			return historyTable(o.Streams.Out, history, o.Clock.Now(), output == "wide")
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: wide, json or yaml.")
	return cmd
}

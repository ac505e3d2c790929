package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/printers"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

func newGetCommand(o *Options) *cobra.Command {
	var (
		all      bool
		output   string
		selector string
	)
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "List Rollouts with their phase, step and weights",
		Long: `List the Rollouts of a namespace (or of all of them with -A), or show one.

STEP is the running step of a canary release out of its steps (the short
form stepWeight/maxWeight/interval counted as its setWeight and analysis
steps), or the stage of a blue-green release; "-" when no release runs.
WEIGHT is the canary's share of the traffic. STABLE and CANARY are the pod
template revisions, REVERT the state of the Git revert of the last
rollback. -o wide adds the Ready condition and its message; -o json and
-o yaml print the objects.`,
		Example: `  kubectl backstop get
  kubectl backstop get -A -o wide
  kubectl backstop get app -o yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return oneName(cmd, args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(output, "", "wide", "json", "yaml"); err != nil {
				return err
			}
			if len(args) == 1 && (all || selector != "") {
				return &usageError{fmt.Errorf("a NAME goes with neither --all-namespaces nor --selector")}
			}
			k, err := o.connect()
			if err != nil {
				return err
			}
			var items []backstopv1.Rollout
			if len(args) == 1 {
				ro, err := k.getRollout(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				items = []backstopv1.Rollout{*ro}
			} else {
				list, err := k.listRollouts(cmd.Context(), all, selector)
				if err != nil {
					return err
				}
				items = list.Items
			}
			switch output {
			case "json", "yaml":
				return printObjects(o, output, items, len(args) == 1)
			}
			if len(items) == 0 {
				if all {
					fmt.Fprintln(o.Streams.ErrOut, "No rollouts found.")
				} else {
					fmt.Fprintf(o.Streams.ErrOut, "No rollouts found in namespace %q.\n", k.namespace)
				}
				return nil
			}
			return rolloutTable(o.Streams.Out, items, o.Clock.Now(), all, output == "wide")
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "List the Rollouts of every namespace.")
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: wide, json or yaml.")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "Label selector to filter on, such as -l team=shop.")
	return cmd
}

// printObjects prints the Rollouts as JSON or YAML: the one Rollout asked
// for by name, or a RolloutList. Managed fields are left out, as kubectl
// does.
func printObjects(o *Options, format string, items []backstopv1.Rollout, one bool) error {
	var p printers.ResourcePrinter = &printers.JSONPrinter{}
	if format == "yaml" {
		p = &printers.YAMLPrinter{}
	}
	for i := range items {
		items[i].ManagedFields = nil
		items[i].SetGroupVersionKind(o.gv.WithKind(backstopv1.RolloutKind))
	}
	if one {
		return p.PrintObj(&items[0], o.Streams.Out)
	}
	list := &backstopv1.RolloutList{Items: items}
	list.SetGroupVersionKind(o.gv.WithKind(backstopv1.RolloutKind + "List"))
	return p.PrintObj(list, o.Streams.Out)
}

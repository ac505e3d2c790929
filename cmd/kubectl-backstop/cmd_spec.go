package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// specChange is one of the spec switches the plugin sets: the field, the
// value, and what to say when it is set or already was.
type specChange struct {
	field   string
	value   bool
	current func(*backstopv1.Rollout) bool
	done    string
	already string
}

func newPauseCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "pause NAME",
		Short: "Hold a Rollout's release where it is (spec.paused)",
		Long: `Set spec.paused: no step advances and no traffic moves until the Rollout
is resumed; a release that starts while paused scales its canary up and
waits. A failed check, an abort or a new revision still act.

A GitOps tool that applies the Rollout from Git sets spec.paused back at
its next sync unless it is changed in Git too.`,
		Example: `  kubectl backstop pause app`,
		Args:    oneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return setSpec(cmd.Context(), o, args[0], specChange{
				field: "paused", value: true,
				current: func(ro *backstopv1.Rollout) bool { return ro.Spec.Paused },
				done:    "paused", already: "is already paused",
			})
		},
	}
}

func newResumeCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "resume NAME",
		Short: "Let a paused Rollout go on (spec.paused=false)",
		Long: `Clear spec.paused: the release goes on, and the current step's clock
starts again.

A GitOps tool that applies the Rollout from Git sets spec.paused back at
its next sync unless it is changed in Git too.`,
		Example: `  kubectl backstop resume app`,
		Args:    oneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return setSpec(cmd.Context(), o, args[0], specChange{
				field: "paused", value: false,
				current: func(ro *backstopv1.Rollout) bool { return ro.Spec.Paused },
				done:    "resumed", already: "is not paused",
			})
		},
	}
}

func newSkipAnalysisCommand(o *Options) *cobra.Command {
	var off bool
	cmd := &cobra.Command{
		Use:   "skip-analysis NAME",
		Short: "Release without judging (spec.skipAnalysis); --off judges again",
		Long: `Set spec.skipAnalysis: analysis steps end at once and the release goes
through every step unjudged, and no bake time follows its promotion. With
--off, clear it.

A GitOps tool that applies the Rollout from Git sets spec.skipAnalysis
back at its next sync unless it is changed in Git too.`,
		Example: `  kubectl backstop skip-analysis app
  kubectl backstop skip-analysis app --off`,
		Args: oneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			change := specChange{
				field: "skipAnalysis", value: true,
				current: func(ro *backstopv1.Rollout) bool { return ro.Spec.SkipAnalysis },
				done:    "skips its analysis", already: "already skips its analysis",
			}
			if off {
				change.value, change.done, change.already = false, "runs its analysis again", "already runs its analysis"
			}
			return setSpec(cmd.Context(), o, args[0], change)
		},
	}
	cmd.Flags().BoolVar(&off, "off", false, "Judge releases again (spec.skipAnalysis=false).")
	return cmd
}

// setSpec merge-patches one boolean of the Rollout's spec, unless it
// already has the value.
func setSpec(ctx context.Context, o *Options, name string, c specChange) error {
	k, err := o.connect()
	if err != nil {
		return err
	}
	ro, err := k.getRollout(ctx, name)
	if err != nil {
		return err
	}
	if c.current(ro) == c.value {
		fmt.Fprintf(o.Streams.Out, "rollout %q %s\n", name, c.already)
		return nil
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]bool{c.field: c.value}})
	if err != nil {
		return err
	}
	if _, err := k.patchRollout(ctx, name, patch); err != nil {
		return err
	}
	fmt.Fprintf(o.Streams.Out, "rollout %q %s\n", name, c.done)
	fmt.Fprintf(o.Streams.ErrOut, "Note: a GitOps tool that applies this Rollout from Git sets spec.%s back unless it is changed in Git too.\n", c.field)
	return nil
}

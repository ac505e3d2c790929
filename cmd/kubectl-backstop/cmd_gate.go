package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// phases are every phase of a Rollout, in the order of its life.
var phases = []backstopv1.RolloutPhase{
	backstopv1.PhaseInitializing, backstopv1.PhaseIdle, backstopv1.PhaseProgressing, backstopv1.PhasePaused,
	backstopv1.PhasePromoting, backstopv1.PhaseSucceeded, backstopv1.PhaseRollingBack, backstopv1.PhaseRolledBack,
}

// gateConflictRetries is how often a gate is asked again when the Rollout
// changed between reading its phase and writing the annotation.
const gateConflictRetries = 3

func newPromoteCommand(o *Options) *cobra.Command {
	var full bool
	cmd := &cobra.Command{
		Use:   "promote NAME",
		Short: "End the running step of a release now, or with --full promote at once",
		Long: `Ask Backstop to promote a release: the running pause or analysis step ends
now and the release goes on to the next step (on a release paused by an
inconclusive check, it moves on to the next step). With --full every
remaining step is skipped and the canary is promoted.

It sets the annotation ` + backstopv1.GateAnnotation + `, which Backstop removes once it has
acted on it. It applies while a release is Progressing or Paused.`,
		Example: `  kubectl backstop promote app
  kubectl backstop promote app --full`,
		Args: oneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			gate, verb := backstopv1.GatePromote, "promote"
			if full {
				gate, verb = backstopv1.GatePromoteFull, "promote --full"
			}
			return askGate(cmd.Context(), o, args[0], gate, verb)
		},
	}
	cmd.Flags().BoolVar(&full, "full", false, "Skip every remaining step and promote.")
	return cmd
}

func newAbortCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "abort NAME",
		Short: "Roll a release back",
		Long: `Ask Backstop to roll a release back: traffic goes back to the stable
revision, the canary is scaled down and the change is reverted in Git as
for a failed check. During the bake time after a promotion, it restores
the version the promotion replaced.

It sets the annotation ` + backstopv1.GateAnnotation + `. It applies while a release is
Progressing or Paused, and while a promotion bakes.`,
		Example: `  kubectl backstop abort app`,
		Args:    oneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return askGate(cmd.Context(), o, args[0], backstopv1.GateAbort, "abort")
		},
	}
}

func newRetryCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "retry NAME",
		Short: "Release again a revision that was rolled back",
		Long: `Ask Backstop to release again the revision that was rolled back, from
the first step, for example after fixing what made its check fail outside
the application.

It sets the annotation ` + backstopv1.GateAnnotation + `. It applies while the Rollout is
RolledBack.`,
		Example: `  kubectl backstop retry app`,
		Args:    oneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return askGate(cmd.Context(), o, args[0], backstopv1.GateRetry, "retry")
		},
	}
}

// askGate sets the gate annotation on the Rollout when the gate applies in
// its phase. The write carries the resourceVersion the phase was read at,
// so a Rollout that moved on in between is read and checked again.
func askGate(ctx context.Context, o *Options, name string, gate backstopv1.Gate, verb string) error {
	k, err := o.connect()
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		ro, err := k.getRollout(ctx, name)
		if err != nil {
			return err
		}
		baking := ro.Status.PreviousStableRevision != ""
		if !backstopv1.GateApplies(ro.Status.Phase, gate, baking) {
			return gateRefusal(ro, gate, verb)
		}
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": ro.ResourceVersion,
			"annotations":     map[string]string{backstopv1.GateAnnotation: string(gate)},
		}})
		if err != nil {
			return err
		}
		_, err = k.patchRollout(ctx, name, patch)
		if apierrors.IsConflict(err) && attempt < gateConflictRetries {
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(o.Streams.Out, "rollout %q: %s\n", name, gateAsked(ro, gate))
		return nil
	}
}

// gateAsked says what the gate will do.
func gateAsked(ro *backstopv1.Rollout, gate backstopv1.Gate) string {
	switch gate {
	case backstopv1.GatePromote:
		return "asked to promote; the running step ends now"
	case backstopv1.GatePromoteFull:
		return "asked to promote fully; the remaining steps are skipped"
	case backstopv1.GateAbort:
		if ro.Status.Phase == backstopv1.PhaseSucceeded {
			return fmt.Sprintf("asked to abort; revision %s is restored", ro.Status.PreviousStableRevision)
		}
		return fmt.Sprintf("asked to abort; traffic goes back to revision %s", ro.Status.StableRevision)
	case backstopv1.GateRetry:
		return fmt.Sprintf("asked to retry revision %s", ro.Status.CanaryRevision)
	}
	return "asked to " + string(gate)
}

// gateRefusal says why a gate does not apply to the Rollout, and when it
// would.
func gateRefusal(ro *backstopv1.Rollout, gate backstopv1.Gate, verb string) error {
	state := "it has no phase yet"
	if p := ro.Status.Phase; p != "" {
		state = "it is " + string(p)
		if backstopv1.GateApplies(p, gate, true) {
			state += " and no bake time runs"
		}
	}
	command := strings.Fields(verb)[0]
	return fmt.Errorf("cannot %s rollout %q: %s; %s applies %s", command, ro.Name, state, verb, whenGateApplies(gate))
}

// whenGateApplies lists the phases in which gate acts, as GateApplies
// decides.
func whenGateApplies(gate backstopv1.Gate) string {
	var always, baking []string
	for _, p := range phases {
		switch {
		case backstopv1.GateApplies(p, gate, false):
			always = append(always, string(p))
		case backstopv1.GateApplies(p, gate, true):
			baking = append(baking, string(p))
		}
	}
	var parts []string
	if len(always) > 0 {
		parts = append(parts, "while a release is "+orList(always))
	}
	if len(baking) > 0 {
		parts = append(parts, "while a promotion bakes ("+orList(baking)+" with its bake time running)")
	}
	if len(parts) == 0 {
		return "in no phase"
	}
	return strings.Join(parts, ", or ")
}

// orList writes a, b or c.
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

package controllers

import (
	"context"
	"time"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/notify"
)

// Notifier posts a Rollout's recorded phase changes to its notification
// targets (notify.Dispatcher). Notify must return at once: messages are
// posted beside the state machine, and a failed one never holds it up.
type Notifier interface {
	Notify(ro *backstopv1.Rollout, n notify.Notification)
}

// notifyPhaseChange hands a recorded phase change to the Notifier, with
// the decision that made it.
func (r *RolloutReconciler) notifyPhaseChange(_ context.Context, before, after *backstopv1.Rollout, decided plan.Event) {
	if r.Notifier == nil || before.Status.Phase == after.Status.Phase {
		return
	}
	var steps int32
	if c := after.Spec.Strategy.Canary; c != nil {
		steps = int32(len(plan.Steps(c)))
	}
	n := notify.PhaseChange(before, after, steps, time.Now())
	n.Reason, n.Message, n.Warning = decided.Reason, decided.Message, decided.Warning
	r.Notifier.Notify(after, n)
}

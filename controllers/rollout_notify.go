package controllers

import (
	"context"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
)

// Notifier posts a Rollout's phase changes. Notify must not block.
type Notifier interface {
	Notify(ctx context.Context, before, after *backstopv1.Rollout, decided plan.Event)
}

// notifyPhaseChange hands a recorded phase change to the Notifier.
func (r *RolloutReconciler) notifyPhaseChange(ctx context.Context, before, after *backstopv1.Rollout, decided plan.Event) {
	if r.Notifier == nil || before.Status.Phase == after.Status.Phase {
		return
	}
	r.Notifier.Notify(ctx, before, after, decided)
}

package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// setProblemConditions reports a problem as Ready=False, and as
// Stalled=True when only a change to the spec can fix it or Reconciling=True
// when the Rollout waits for an object that may still appear. It returns
// whether the Ready condition changed, so the caller records one Event per
// new problem rather than one per reconcile.
func setProblemConditions(ro *backstopv1.Rollout, p *specProblem) bool {
	changed := setCondition(ro, backstopv1.ReadyCondition, metav1.ConditionFalse, p.Reason, p.Message)
	abnormal, other := backstopv1.ReconcilingCondition, backstopv1.StalledCondition
	if p.Reason == backstopv1.ReasonInvalidSpec {
		abnormal, other = other, abnormal
	}
	setCondition(ro, abnormal, metav1.ConditionTrue, p.Reason, p.Message)
	meta.RemoveStatusCondition(&ro.Status.Conditions, other)
	return changed
}

// setValidConditions reports a valid spec whose references all resolve. It
// returns whether the Ready condition changed.
func setValidConditions(ro *backstopv1.Rollout) bool {
	meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.StalledCondition)
	meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.ReconcilingCondition)
	return setCondition(ro, backstopv1.ReadyCondition, metav1.ConditionTrue, backstopv1.ReasonSpecValid,
		"The spec is valid and every reference resolves")
}

// setCondition sets a condition for the Rollout's current generation and
// returns whether its status, reason or message changed.
func setCondition(ro *backstopv1.Rollout, typ string, status metav1.ConditionStatus, reason, message string) bool {
	old := meta.FindStatusCondition(ro.Status.Conditions, typ)
	changed := old == nil || old.Status != status || old.Reason != reason || old.Message != message
	meta.SetStatusCondition(&ro.Status.Conditions, metav1.Condition{
		Type:               typ,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: ro.Generation,
	})
	return changed
}

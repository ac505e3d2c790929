package controllers

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
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

// clearProblemConditions removes what setProblemConditions set, once the
// spec is valid and its references resolve. It returns whether the Rollout
// had a problem before, so the caller can say it was fixed.
func clearProblemConditions(ro *backstopv1.Rollout) bool {
	ready := meta.FindStatusCondition(ro.Status.Conditions, backstopv1.ReadyCondition)
	had := ready != nil && problemReasons[ready.Reason]
	if had {
		meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.StalledCondition)
		meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.ReconcilingCondition)
	}
	return had
}

var problemReasons = map[string]bool{
	backstopv1.ReasonInvalidSpec: true, backstopv1.ReasonTargetNotFound: true, backstopv1.ReasonRouteNotFound: true,
	backstopv1.ReasonParentNotFound: true, backstopv1.ReasonTemplateNotFound: true, backstopv1.ReasonSecretNotFound: true,
	backstopv1.ReasonRouteNotAllowed: true,
}

// setReleaseConditions reports where a valid Rollout's release stands, and
// returns whether the Ready condition changed:
// Ready=True once the primary serves the stable version and nothing is
// under way; Reconciling=True (kstatus: InProgress) while a release or a
// rollback runs; Stalled=True (kstatus: Failed) once a release was rolled
// back, until the target returns to the stable version.
//
// The reason stays the phase, and the message says more in two phases. A
// paused release's Ready and Reconciling say why it holds (hold, from the
// plan: spec.paused, an inconclusive check, a step waiting to be
// promoted); tools such as the Argo CD health check read the reason Paused
// as "waiting for a person". A rolled-back release's Ready and Stalled say
// why it was rolled back, from status.history: the failed check, the hook,
// the abort, or the canary's pods that never became ready.
func setReleaseConditions(ro *backstopv1.Rollout, s plan.State, w plan.World, hold *plan.Event) bool {
	reason, message := string(s.Phase), phaseMessage(s)
	if s.Phase == backstopv1.PhasePaused && hold != nil {
		message += ": " + hold.Message
	}
	if h := ro.Status.History; s.Phase == backstopv1.PhaseRolledBack && len(h) > 0 && h[0].Outcome == backstopv1.OutcomeRolledBack &&
		h[0].ToRevision == s.Canary && h[0].Message != "" {
		message += ". " + h[0].Reason + ": " + h[0].Message
	}
	if releaseEnded(s.Phase) {
		setCondition(ro, backstopv1.ProgressingCondition, metav1.ConditionFalse, string(s.Phase), phaseMessage(s))
	} else {
		setCondition(ro, backstopv1.ProgressingCondition, metav1.ConditionTrue, string(s.Phase), phaseMessage(s))
	}
	rejected := w.Routes.Rejected != "" && s.Phase != backstopv1.PhaseRolledBack
	if rejected {
		// Whatever the phase, traffic is not where Backstop put it until
		// the gateway accepts the route.
		reason, message = backstopv1.ReasonRouteRejected, "A gateway rejected a route: "+w.Routes.Rejected
	}
	switch {
	case rejected:
		meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.StalledCondition)
		setCondition(ro, backstopv1.ReconcilingCondition, metav1.ConditionTrue, reason, message)
		return setCondition(ro, backstopv1.ReadyCondition, metav1.ConditionFalse, reason, message)
	case s.Phase == backstopv1.PhaseIdle, s.Phase == backstopv1.PhaseSucceeded:
		meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.ReconcilingCondition)
		meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.StalledCondition)
		return setCondition(ro, backstopv1.ReadyCondition, metav1.ConditionTrue, reason, message)
	case s.Phase == backstopv1.PhaseRolledBack:
		meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.ReconcilingCondition)
		setCondition(ro, backstopv1.StalledCondition, metav1.ConditionTrue, reason, message)
		return setCondition(ro, backstopv1.ReadyCondition, metav1.ConditionFalse, reason, message)
	default:
		meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.StalledCondition)
		setCondition(ro, backstopv1.ReconcilingCondition, metav1.ConditionTrue, reason, message)
		return setCondition(ro, backstopv1.ReadyCondition, metav1.ConditionFalse, reason, message)
	}
}

// setRevertCondition reports status.revert as the Reverted condition (see
// backstopv1.RevertedCondition).
func setRevertCondition(ro *backstopv1.Rollout) {
	st := ro.Status.Revert
	if st == nil || st.State == "" {
		meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.RevertedCondition)
		return
	}
	status := metav1.ConditionFalse
	switch st.State {
	case backstopv1.RevertPending:
		status = metav1.ConditionUnknown
	case backstopv1.RevertPushed:
		status = metav1.ConditionTrue
	}
	message := st.Message
	if message == "" {
		message = "The revert is " + string(st.State)
	}
	setCondition(ro, backstopv1.RevertedCondition, status, string(st.State), message)
}

func releaseEnded(p backstopv1.RolloutPhase) bool {
	return p == backstopv1.PhaseIdle || p == backstopv1.PhaseSucceeded || p == backstopv1.PhaseRolledBack
}

func phaseMessage(s plan.State) string {
	switch s.Phase {
	case backstopv1.PhaseIdle, backstopv1.PhaseSucceeded:
		return fmt.Sprintf("Revision %s serves all traffic", s.Stable)
	case backstopv1.PhaseProgressing:
		return fmt.Sprintf("Releasing revision %s: step %d, %d%% of traffic", s.Canary, s.Step+1, s.Weight)
	case backstopv1.PhasePaused:
		return fmt.Sprintf("Release of revision %s paused at step %d, %d%% of traffic", s.Canary, s.Step+1, s.Weight)
	case backstopv1.PhasePromoting:
		return fmt.Sprintf("Promoting revision %s", s.Canary)
	case backstopv1.PhaseRollingBack:
		return fmt.Sprintf("Rolling back revision %s", s.Canary)
	case backstopv1.PhaseRolledBack:
		return fmt.Sprintf("Revision %s was rolled back; revision %s serves all traffic", s.Canary, s.Stable)
	}
	return "Setting up the primary Deployment, Services and routes"
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

package controllers

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// The reconciler's metrics, served with the manager's own at /metrics.
// Labels are bounded: a Rollout's namespace and name, and small fixed sets
// (phases, strategies, outcomes, reasons, check names); never a revision or
// a commit.
var (
	revertsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "backstop_reverts_total",
		Help: "Git reverts of rolled-back releases that came to an end, by state (Pushed, Conflict, Failed or Skipped).",
	}, []string{"state"})

	rolloutPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "backstop_rollout_phase",
		Help: "1 for the phase each Rollout is in; the other phases have no series.",
	}, []string{"namespace", "rollout", "phase"})

	canaryWeight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "backstop_rollout_canary_weight",
		Help: "Percentage of the traffic each Rollout sends to its canary.",
	}, []string{"namespace", "rollout"})

	checkValue = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "backstop_check_value",
		Help: "The last value each check of a running release saw.",
	}, []string{"namespace", "rollout", "check"})

	releaseDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "backstop_release_duration_seconds",
		Help:    "Time from the start of a release to its outcome, by strategy and outcome (Succeeded or RolledBack).",
		Buckets: []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200},
	}, []string{"strategy", "outcome"})

	stepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "backstop_step_duration_seconds",
		Help:    "Time each step of a release took, by strategy.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800},
	}, []string{"strategy"})

	rollbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "backstop_rollbacks_total",
		Help: "Releases rolled back, by the reason of the decision (such as AnalysisFailed, Aborted or AlertAfterPromotion).",
	}, []string{"reason"})
)

// rollbackReasons are the reasons a rollback is decided with; their series
// start at 0, so that increase() sees the first rollback of each.
var rollbackReasons = []string{
	"AnalysisFailed", "AnalysisInconclusive", "Aborted", "ProgressDeadlineExceeded", backstopv1.ReasonHookFailed,
	"ReleaseWithdrawn", "AlertAfterPromotion", "PreviousRestored",
}

func init() {
	metrics.Registry.MustRegister(revertsFinished, rolloutPhase, canaryWeight, checkValue, releaseDuration, stepDuration, rollbacks)
	for _, s := range []backstopv1.RevertState{backstopv1.RevertPushed, backstopv1.RevertConflict, backstopv1.RevertFailed, backstopv1.RevertSkipped} {
		revertsFinished.WithLabelValues(string(s))
	}
	for _, r := range rollbackReasons {
		rollbacks.WithLabelValues(r)
	}
}

// phases are every value of backstop_rollout_phase's phase label.
var phases = []backstopv1.RolloutPhase{
	backstopv1.PhaseInitializing, backstopv1.PhaseIdle, backstopv1.PhaseProgressing, backstopv1.PhasePaused,
	backstopv1.PhasePromoting, backstopv1.PhaseSucceeded, backstopv1.PhaseRollingBack, backstopv1.PhaseRolledBack,
}

// recordMetrics updates the metrics of a Rollout whose status went from
// before to after, as written; reason is that of the decision's Event.
func recordMetrics(before, after *backstopv1.Rollout, reason string, now time.Time) {
	from, to := before.Status, after.Status
	if to.Phase == "" {
		return
	}
	// One series per Rollout, not one per phase: at 10,000 Rollouts the
	// eight series each held tens of MiB of the manager's memory.
	for _, p := range phases {
		if p == to.Phase {
			rolloutPhase.WithLabelValues(after.Namespace, after.Name, string(p)).Set(1)
		} else {
			rolloutPhase.DeleteLabelValues(after.Namespace, after.Name, string(p))
		}
	}
	canaryWeight.WithLabelValues(after.Namespace, after.Name).Set(float64(to.CanaryWeight))
	if a := to.Analysis; a != nil {
		for _, c := range a.Checks {
			if v, err := strconv.ParseFloat(c.Value, 64); err == nil {
				checkValue.WithLabelValues(after.Namespace, after.Name, c.Name).Set(v)
			}
		}
	}
	if revertFinished(from.Revert, to.Revert) {
		revertsFinished.WithLabelValues(string(to.Revert.State)).Inc()
	}
	if from.Phase == to.Phase && from.CurrentStep == to.CurrentStep {
		return
	}
	strategy := "canary"
	if after.Spec.Strategy.BlueGreen != nil {
		strategy = "blueGreen"
	}
	if releasing(from.Phase) && from.StepStartTime != nil {
		stepDuration.WithLabelValues(strategy).Observe(now.Sub(from.StepStartTime.Time).Seconds())
	}
	if to.Phase == backstopv1.PhaseRollingBack && from.Phase != backstopv1.PhaseRollingBack {
		if reason == "" {
			reason = "Unknown"
		}
		rollbacks.WithLabelValues(reason).Inc()
	}
	if (to.Phase == backstopv1.PhaseSucceeded || to.Phase == backstopv1.PhaseRolledBack) && to.Phase != from.Phase {
		// The release started when Progressing last became True.
		if c := meta.FindStatusCondition(from.Conditions, backstopv1.ProgressingCondition); c != nil && c.Status == "True" {
			releaseDuration.WithLabelValues(strategy, string(to.Phase)).Observe(now.Sub(c.LastTransitionTime.Time).Seconds())
		}
	}
}

// revertFinished says a revert came to an end between two recorded statuses:
// it was running (or not yet recorded) before and has a final state now.
func revertFinished(from, to *backstopv1.RevertStatus) bool {
	if to == nil || to.State == "" || to.State == backstopv1.RevertPending {
		return false
	}
	return from == nil || from.State == backstopv1.RevertPending || from.Release != to.Release
}

// forgetMetrics removes the series of a Rollout that no longer exists.
func forgetMetrics(key types.NamespacedName) {
	labels := prometheus.Labels{"namespace": key.Namespace, "rollout": key.Name}
	rolloutPhase.DeletePartialMatch(labels)
	canaryWeight.DeletePartialMatch(labels)
	checkValue.DeletePartialMatch(labels)
}

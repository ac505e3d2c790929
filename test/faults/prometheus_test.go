package faults

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/rig"
)

// inconclusiveLimit is the Rollouts' spec.analysis.inconclusiveLimit in
// TestPrometheusStoppedMidRelease.
const inconclusiveLimit = 3

// TestPrometheusStoppedMidRelease proves that a release whose Prometheus
// stops while the canary has 20% of the traffic is never promoted on
// missing data: its check is inconclusive at every evaluation, and once
// inconclusiveLimit evaluations in a row were, the release does what
// spec.analysis.onInconclusive says. Pause holds it at 20% (phase Paused,
// an AnalysisInconclusive Event and the check's status saying Prometheus
// is unreachable; the Ready condition is False, reason Paused, and says
// the check was inconclusive) for as
// long as Prometheus is down, and it resumes and
// is promoted once Prometheus is back. RollBack puts the traffic back on
// the primary and pushes the revert of the release. It prints how many
// inconclusive evaluations preceded the decision and how long after the
// stop it came.
func TestPrometheusStoppedMidRelease(t *testing.T) {
	for _, policy := range []backstopv1.InconclusivePolicy{backstopv1.InconclusivePause, backstopv1.InconclusiveRollBack} {
		t.Run(string(policy), func(t *testing.T) {
			ctx := testContext(t)
			r := rig.New(t, env, rig.Options{Apps: 1, Rollout: func(ro *backstopv1.Rollout) {
				// A long first pause: the decision falls within it, not
				// at the end of the release.
				ro.Spec.Strategy.Canary.Steps = []backstopv1.CanaryStep{
					{SetWeight: ptr.To[int32](20)},
					{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: 20 * time.Second}}},
					{SetWeight: ptr.To[int32](60)},
					{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: 2 * time.Second}}},
				}
				ro.Spec.Analysis.InconclusiveLimit = ptr.To[int32](inconclusiveLimit)
				ro.Spec.Analysis.OnInconclusive = policy
			}})
			r.StartManager(t)
			app := r.Apps[0]

			rel, err := r.Release(ctx, app, "v2", rig.Healthy)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.WaitForRouteState(ctx, app, 1, rig.RouteState(app, 20)); err != nil {
				t.Fatal(err)
			}
			r.Prometheus.Stop()
			stopped := time.Now()

			decided := map[backstopv1.InconclusivePolicy]func(*backstopv1.Rollout) bool{
				backstopv1.InconclusivePause: func(ro *backstopv1.Rollout) bool { return ro.Status.Phase == backstopv1.PhasePaused },
				backstopv1.InconclusiveRollBack: func(ro *backstopv1.Rollout) bool {
					return ro.Status.Phase == backstopv1.PhaseRollingBack || ro.Status.Phase == backstopv1.PhaseRolledBack
				},
			}[policy]
			ro, err := r.WaitForRollout(ctx, app, "the inconclusive decision", decided)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(stopped)
			ev, err := event(ctx, r, app, "AnalysisInconclusive")
			if err != nil {
				t.Fatal(err)
			}
			n, err := inARow(ev.Note)
			if err != nil {
				t.Fatal(err)
			}
			if n < inconclusiveLimit {
				t.Errorf("decided after %d inconclusive evaluations in a row; want at least the limit, %d", n, inconclusiveLimit)
			}
			if !strings.Contains(ev.Note, "connection refused") {
				t.Errorf("the AnalysisInconclusive Event does not say Prometheus cannot be reached: %q", ev.Note)
			}
			expectPromotions(t, r, app, "v1")

			switch policy {
			case backstopv1.InconclusivePause:
				// Held at 20% while Prometheus stays down.
				time.Sleep(5 * time.Second)
				if ro, err = r.Rollout(ctx, app); err != nil {
					t.Fatal(err)
				}
				if ro.Status.Phase != backstopv1.PhasePaused || ro.Status.CanaryWeight != 20 {
					t.Errorf("5s after the pause: %s; want Paused at 20%%", rig.Describe(ro))
				}
				if ev.Type != "Normal" {
					t.Errorf("AnalysisInconclusive is %s; want Normal for a pause", ev.Type)
				}
				checks := ""
				if a := ro.Status.Analysis; a != nil && len(a.Checks) > 0 {
					checks = string(a.Checks[0].Verdict) + ": " + a.Checks[0].Message
				}
				if !strings.Contains(checks, "Inconclusive: ") || !strings.Contains(checks, "connection refused") {
					t.Errorf("status.analysis.checks[0] = %q; want Inconclusive, saying Prometheus cannot be reached", checks)
				}
				expectRoutes(t, r, app, 0, 20)
				expectPromotions(t, r, app, "v1")
				held := time.Since(stopped)
				ready := meta.FindStatusCondition(ro.Status.Conditions, backstopv1.ReadyCondition)
				if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != string(backstopv1.PhasePaused) ||
					!strings.Contains(ready.Message, "was inconclusive") {
					t.Errorf("Ready = %+v; want False, reason Paused, saying the check was inconclusive", ready)
				} else {
					t.Logf("Ready=False %s: %s", ready.Reason, ready.Message)
				}

				r.Prometheus.Restart(t)
				back := time.Now()
				if err := r.WaitForEnd(ctx, rel); err != nil {
					t.Fatal(err)
				}
				expectRoutes(t, r, app, 0, 20, 60, 0)
				expectPromotions(t, r, app, "v1", "v2")
				t.Logf("Pause: paused %s after Prometheus stopped, after %d inconclusive evaluations in a row (limit %d); held at 20%% for %s with no promotion; promoted %s after Prometheus was back; route writes %d, promotions 1",
					seconds(took), n, inconclusiveLimit, seconds(held), seconds(time.Since(back)), len(r.RouteWrites(app)))

			case backstopv1.InconclusiveRollBack:
				if ev.Type != "Warning" {
					t.Errorf("AnalysisInconclusive is %s; want Warning for a rollback", ev.Type)
				}
				if _, _, err := r.WaitForRouteState(ctx, app, 2, rig.RouteState(app, 0)); err != nil {
					t.Fatal(err)
				}
				onPrimary := time.Since(stopped)
				// The release failed for want of data: the rig waits for
				// it as for a faulty one (rolled back, reverted, Idle).
				rel.Faulty = true
				if err := r.WaitForEnd(ctx, rel); err != nil {
					t.Fatal(err)
				}
				expectRoutes(t, r, app, 0, 20, 0)
				expectPromotions(t, r, app, "v1")
				reverts := expectOneRevert(t, r, app, "v1")
				t.Logf("RollBack: rolled back %s after Prometheus stopped, after %d inconclusive evaluations in a row (limit %d); traffic on the primary %s after the stop; revert commits %d; promotions 0",
					seconds(took), n, inconclusiveLimit, seconds(onPrimary), len(reverts))
			}
		})
	}
}

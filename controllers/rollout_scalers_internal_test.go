package controllers

import (
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
)

// TestScalerPause specifies when the canary's ScaledObjects are paused and
// resumed, and whether before or after the decision's action.
func TestScalerPause(t *testing.T) {
	const keep = "keep"
	for _, tc := range []struct {
		name   string
		action plan.ActionKind
		next   backstopv1.RolloutPhase
		want   string // "pause", "run" or keep
		first  bool
	}{
		{"a release starts", plan.ActScaleCanaryUp, backstopv1.PhaseProgressing, "run", true},
		{"the release moves traffic", plan.ActSetTraffic, backstopv1.PhaseProgressing, "run", true},
		{"the release waits for promotion", plan.ActNone, backstopv1.PhasePaused, "run", true},
		{"setting up, the primary is copied", plan.ActCopyToPrimary, backstopv1.PhaseInitializing, keep, false},
		{"setting up, the target is scaled down", plan.ActScaleCanaryDown, backstopv1.PhaseInitializing, "pause", true},
		{"promoting, the template is copied", plan.ActCopyToPrimary, backstopv1.PhasePromoting, keep, false},
		{"promoting, the traffic moves back", plan.ActSetTraffic, backstopv1.PhasePromoting, keep, false},
		{"promoting, the canary is scaled down", plan.ActScaleCanaryDown, backstopv1.PhasePromoting, "pause", true},
		{"promoted", plan.ActNone, backstopv1.PhaseSucceeded, "pause", false},
		{"a rollback moves the traffic", plan.ActSetTraffic, backstopv1.PhaseRollingBack, keep, false},
		{"a rollback scales the canary down", plan.ActScaleCanaryDown, backstopv1.PhaseRollingBack, "pause", true},
		{"rolled back, the revert starts", plan.ActRevert, backstopv1.PhaseRolledBack, "pause", false},
		{"idle", plan.ActNone, backstopv1.PhaseIdle, "pause", false},
		{"idle, a route is put back", plan.ActSetTraffic, backstopv1.PhaseIdle, "pause", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := plan.Decision{Action: plan.Action{Kind: tc.action}, Next: plan.State{Phase: tc.next}}
			pause, decided := scalerPause(d)
			got := keep
			switch {
			case decided && pause:
				got = "pause"
			case decided:
				got = "run"
			}
			if got != tc.want {
				t.Errorf("scalerPause = %s, want %s", got, tc.want)
			}
			if decided && scalerPauseFirst(d) != tc.first {
				t.Errorf("scalerPauseFirst = %v, want %v", !tc.first, tc.first)
			}
		})
	}
}

func TestOnlyConflicts(t *testing.T) {
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "keda.sh", Resource: "scaledobjects"}, "web", errors.New("the object has been modified"))
	other := errors.New("connection refused")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"a conflict", fmt.Errorf("pausing scaledobject demo/web: %w", conflict), true},
		{"conflicts joined", errors.Join(conflict, fmt.Errorf("updating: %w", conflict)), true},
		{"a conflict joined with another error", errors.Join(conflict, other), false},
		{"another error", other, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := onlyConflicts(tc.err); got != tc.want {
				t.Errorf("onlyConflicts(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

package controllers

import (
	"context"
	"testing"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
)

// TestSourceRevisionsOfTheBakeTime follows the source revisions through a
// promotion with a bake time, and the restore an alert makes in it: the
// revert then spans the promoted change.
func TestSourceRevisionsOfTheBakeTime(t *testing.T) {
	const v1, v2 = "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"
	type revs struct{ stable, canary, previous string }
	tests := []struct {
		name     string
		before   revs
		from, to plan.State
		want     revs
	}{{
		name:   "a promotion with a bake time keeps the stable source revision",
		before: revs{v1, v2, ""},
		from:   plan.State{Phase: backstopv1.PhasePromoting, Stable: "aaa", Canary: "bbb"},
		to:     plan.State{Phase: backstopv1.PhaseSucceeded, Stable: "bbb", Previous: "aaa"},
		want:   revs{v2, v2, v1},
	}, {
		name:   "a promotion without one keeps nothing",
		before: revs{v1, v2, ""},
		from:   plan.State{Phase: backstopv1.PhasePromoting, Stable: "aaa", Canary: "bbb"},
		to:     plan.State{Phase: backstopv1.PhaseSucceeded, Stable: "bbb"},
		want:   revs{v2, v2, ""},
	}, {
		name:   "an alert in the bake time restores the previous one",
		before: revs{v2, v2, v1},
		from:   plan.State{Phase: backstopv1.PhaseSucceeded, Stable: "bbb", Previous: "aaa"},
		to:     plan.State{Phase: backstopv1.PhaseRollingBack, Stable: "aaa", Canary: "bbb"},
		want:   revs{v1, v2, ""},
	}, {
		name:   "the end of the bake time lets it go",
		before: revs{v2, v2, v1},
		from:   plan.State{Phase: backstopv1.PhaseSucceeded, Stable: "bbb", Previous: "aaa"},
		to:     plan.State{Phase: backstopv1.PhaseSucceeded, Stable: "bbb"},
		want:   revs{v2, v2, ""},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro := &backstopv1.Rollout{Status: backstopv1.RolloutStatus{
				StableSourceRevision: tt.before.stable, CanarySourceRevision: tt.before.canary, PreviousStableSourceRevision: tt.before.previous}}
			(&RolloutReconciler{}).recordSourceRevisions(context.Background(), ro, nil, tt.from, tt.to)
			got := revs{ro.Status.StableSourceRevision, ro.Status.CanarySourceRevision, ro.Status.PreviousStableSourceRevision}
			if got != tt.want {
				t.Errorf("stable, canary, previous = %+v, want %+v", got, tt.want)
			}
		})
	}
}

package controllers

import (
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/metrics"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestRevertFinished: a revert is counted once, when the status that
// records its end is written, and not again when the same status is
// written again (a decision repeated after a conflict).
func TestRevertFinished(t *testing.T) {
	st := func(state backstopv1.RevertState, release string) *backstopv1.RevertStatus {
		return &backstopv1.RevertStatus{State: state, Release: release}
	}
	tests := []struct {
		name     string
		from, to *backstopv1.RevertStatus
		want     bool
	}{
		{"pushed after running", st(backstopv1.RevertPending, "ns/app@b"), st(backstopv1.RevertPushed, "ns/app@b"), true},
		{"skipped at once", nil, st(backstopv1.RevertSkipped, "ns/app@b"), true},
		{"failed again after a retry", st(backstopv1.RevertPending, "ns/app@b"), st(backstopv1.RevertFailed, "ns/app@b"), true},
		{"another release's revert ended", st(backstopv1.RevertPushed, "ns/app@b"), st(backstopv1.RevertConflict, "ns/app@c"), true},
		{"still running", nil, st(backstopv1.RevertPending, "ns/app@b"), false},
		{"unchanged", st(backstopv1.RevertPushed, "ns/app@b"), st(backstopv1.RevertPushed, "ns/app@b"), false},
		{"no revert", nil, nil, false},
	}
	for _, tc := range tests {
		if got := revertFinished(tc.from, tc.to); got != tc.want {
			t.Errorf("%s: revertFinished = %t, want %t", tc.name, got, tc.want)
		}
	}
}

// TestCountersStartAtZero: the series of every revert state and rollback
// reason exist before the first event, so increase() counts it.
func TestCountersStartAtZero(t *testing.T) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				seen[f.GetName()+"/"+l.GetValue()] = true
			}
		}
	}
	for _, want := range []string{"backstop_reverts_total/Conflict", "backstop_reverts_total/Pushed", "backstop_rollbacks_total/AnalysisFailed", "backstop_rollbacks_total/HookFailed"} {
		if !seen[want] {
			t.Errorf("no series %s before any event", want)
		}
	}
}

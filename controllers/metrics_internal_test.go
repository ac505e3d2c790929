package controllers

import (
	"testing"

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

package main

import (
	"testing"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestSpecSwitches runs pause, resume and skip-analysis and checks the
// spec on the server, the confirmation, and the note about GitOps that
// follows a change (and only a change).
func TestSpecSwitches(t *testing.T) {
	ns := env.Namespace(t)
	for _, tc := range []struct {
		name                 string
		paused, skip         bool
		args                 []string
		wantPaused, wantSkip bool
		says, note           string
	}{
		{"pause", false, false, []string{"pause"}, true, false,
			`rollout "pause" paused`, "spec.paused"},
		{"pause-again", true, false, []string{"pause"}, true, false,
			`rollout "pause-again" is already paused`, ""},
		{"resume", true, false, []string{"resume"}, false, false,
			`rollout "resume" resumed`, "spec.paused"},
		{"resume-running", false, false, []string{"resume"}, false, false,
			`rollout "resume-running" is not paused`, ""},
		{"skip", false, false, []string{"skip-analysis"}, false, true,
			`rollout "skip" skips its analysis`, "spec.skipAnalysis"},
		{"skip-off", false, true, []string{"skip-analysis", "--off"}, false, false,
			`rollout "skip-off" runs its analysis again`, "spec.skipAnalysis"},
		{"skip-off-again", false, false, []string{"skip-analysis", "--off"}, false, false,
			`rollout "skip-off-again" already runs its analysis`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := rollout(ns, tc.name, canarySteps())
			ro.Spec.Paused, ro.Spec.SkipAnalysis = tc.paused, tc.skip
			create(t, ro, &backstopv1.RolloutStatus{Phase: backstopv1.PhaseProgressing})
			got := run(t, t0, append(append([]string{"-n", ns}, tc.args...), tc.name)...)
			if got.code != 0 {
				t.Fatalf("exit code %d, stderr %q", got.code, got.err)
			}
			if got.out != tc.says+"\n" {
				t.Errorf("printed %q; want %q", got.out, tc.says+"\n")
			}
			wantNote := ""
			if tc.note != "" {
				wantNote = "Note: a GitOps tool that applies this Rollout from Git sets " + tc.note + " back unless it is changed in Git too.\n"
			}
			if got.err != wantNote {
				t.Errorf("stderr %q; want %q", got.err, wantNote)
			}
			after := fetch(t, ns, tc.name)
			if after.Spec.Paused != tc.wantPaused || after.Spec.SkipAnalysis != tc.wantSkip {
				t.Errorf("spec.paused=%t, spec.skipAnalysis=%t; want %t, %t", after.Spec.Paused, after.Spec.SkipAnalysis, tc.wantPaused, tc.wantSkip)
			}
		})
	}
}

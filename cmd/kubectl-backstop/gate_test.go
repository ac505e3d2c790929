package main

import (
	"strings"
	"testing"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestGatesSetTheAnnotation runs each gate command on a Rollout in a phase
// where it applies and checks the annotation on the server.
func TestGatesSetTheAnnotation(t *testing.T) {
	ns := env.Namespace(t)
	for _, tc := range []struct {
		name     string
		phase    backstopv1.RolloutPhase
		previous string
		args     []string
		want     backstopv1.Gate
		says     string
	}{
		{"promote", backstopv1.PhaseProgressing, "", []string{"promote"}, backstopv1.GatePromote, "asked to promote; the running step ends now"},
		{"promote-paused", backstopv1.PhasePaused, "", []string{"promote"}, backstopv1.GatePromote, "asked to promote"},
		{"promote-full", backstopv1.PhaseProgressing, "", []string{"promote", "--full"}, backstopv1.GatePromoteFull, "asked to promote fully"},
		{"abort", backstopv1.PhasePaused, "", []string{"abort"}, backstopv1.GateAbort, "asked to abort; traffic goes back to revision s1"},
		{"abort-baking", backstopv1.PhaseSucceeded, "s0", []string{"abort"}, backstopv1.GateAbort, "asked to abort; revision s0 is restored"},
		{"retry", backstopv1.PhaseRolledBack, "", []string{"retry"}, backstopv1.GateRetry, "asked to retry revision c1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			create(t, rollout(ns, tc.name, canarySteps()), &backstopv1.RolloutStatus{
				Phase: tc.phase, StableRevision: "s1", CanaryRevision: "c1", PreviousStableRevision: tc.previous,
			})
			got := run(t, t0, append(append([]string{"-n", ns}, tc.args...), tc.name)...)
			if got.code != 0 {
				t.Fatalf("exit code %d, stderr %q", got.code, got.err)
			}
			if want := `rollout "` + tc.name + `": ` + tc.says; !strings.HasPrefix(got.out, want) {
				t.Errorf("printed %q; want it to start with %q", got.out, want)
			}
			if a := fetch(t, ns, tc.name).Annotations[backstopv1.GateAnnotation]; a != string(tc.want) {
				t.Errorf("annotation %s=%q; want %q", backstopv1.GateAnnotation, a, tc.want)
			}
		})
	}
}

// TestGatesRefuseOtherPhases checks that a gate that does not apply in the
// Rollout's phase is refused with the phases it applies in, and that
// nothing is written.
func TestGatesRefuseOtherPhases(t *testing.T) {
	ns := env.Namespace(t)
	for _, tc := range []struct {
		name  string
		phase backstopv1.RolloutPhase
		args  []string
		want  string
	}{
		{"promote-idle", backstopv1.PhaseIdle, []string{"promote"},
			`cannot promote rollout "promote-idle": it is Idle; promote applies while a release is Progressing or Paused`},
		{"promote-new", "", []string{"promote"},
			`cannot promote rollout "promote-new": it has no phase yet; promote applies while a release is Progressing or Paused`},
		{"promote-full-promoting", backstopv1.PhasePromoting, []string{"promote", "--full"},
			`cannot promote rollout "promote-full-promoting": it is Promoting; promote --full applies while a release is Progressing or Paused`},
		{"abort-rolledback", backstopv1.PhaseRolledBack, []string{"abort"},
			`cannot abort rollout "abort-rolledback": it is RolledBack; abort applies while a release is Progressing or Paused, or while a promotion bakes (Succeeded with its bake time running)`},
		{"abort-succeeded", backstopv1.PhaseSucceeded, []string{"abort"},
			`cannot abort rollout "abort-succeeded": it is Succeeded and no bake time runs; abort applies while a release is Progressing or Paused, or while a promotion bakes (Succeeded with its bake time running)`},
		{"retry-progressing", backstopv1.PhaseProgressing, []string{"retry"},
			`cannot retry rollout "retry-progressing": it is Progressing; retry applies while a release is RolledBack`},
		{"retry-rollingback", backstopv1.PhaseRollingBack, []string{"retry"},
			`cannot retry rollout "retry-rollingback": it is RollingBack; retry applies while a release is RolledBack`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := create(t, rollout(ns, tc.name, canarySteps()), &backstopv1.RolloutStatus{Phase: tc.phase})
			got := run(t, t0, append(append([]string{"-n", ns}, tc.args...), tc.name)...)
			if got.code != 1 || got.out != "" {
				t.Errorf("exit code %d, stdout %q; want 1 and nothing", got.code, got.out)
			}
			if got.err != "error: "+tc.want+"\n" {
				t.Errorf("stderr %q; want %q", got.err, "error: "+tc.want+"\n")
			}
			after := fetch(t, ns, tc.name)
			if after.ResourceVersion != ro.ResourceVersion {
				t.Errorf("the Rollout was written (resourceVersion %s, was %s)", after.ResourceVersion, ro.ResourceVersion)
			}
			if _, ok := after.Annotations[backstopv1.GateAnnotation]; ok {
				t.Errorf("the annotation %s was set", backstopv1.GateAnnotation)
			}
		})
	}
}

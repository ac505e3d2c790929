package main

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
)

// This file holds what the views share: how a Rollout's strategy, step and
// times read. Every function here and in the other render_*.go files is
// pure: objects and the time in, text out.

// blueGreenStages name the stages of a blue-green release, which its status
// counts as steps (see docs/conditions.md).
var blueGreenStages = plan.BlueGreenStageNames[:]

func strategyName(ro *backstopv1.Rollout) string {
	switch {
	case ro.Spec.Strategy.BlueGreen != nil:
		return "blueGreen"
	case ro.Spec.Strategy.Canary != nil:
		return "canary"
	}
	return "-"
}

// releasing says a release runs its steps.
func releasing(p backstopv1.RolloutPhase) bool {
	return p == backstopv1.PhaseProgressing || p == backstopv1.PhasePaused
}

// ended says no release or rollback is under way.
func ended(p backstopv1.RolloutPhase) bool {
	return p == backstopv1.PhaseIdle || p == backstopv1.PhaseSucceeded || p == backstopv1.PhaseRolledBack
}

// stepCount is the number of steps of the Rollout's release: the canary's
// steps with the short form expanded, or the blue-green stages.
func stepCount(ro *backstopv1.Rollout) int {
	if ro.Spec.Strategy.BlueGreen != nil {
		return len(blueGreenStages)
	}
	return len(plan.Steps(ro.Spec.Strategy.Canary))
}

// currentStep is the running step counted from 1, within 1..the step
// count: a status written by hand (or by another tool) may hold any
// number, and the plugin shows the nearest step rather than failing.
func currentStep(ro *backstopv1.Rollout) int {
	return max(1, min(int(ro.Status.CurrentStep)+1, stepCount(ro)))
}

// stepColumn is the STEP of `get`: i/n of a running canary release, the
// stage of a blue-green one, and "-" outside a release.
func stepColumn(ro *backstopv1.Rollout) string {
	if !releasing(ro.Status.Phase) || stepCount(ro) == 0 {
		return "-"
	}
	if ro.Spec.Strategy.BlueGreen != nil {
		return blueGreenStages[currentStep(ro)-1]
	}
	return fmt.Sprintf("%d/%d", currentStep(ro), stepCount(ro))
}

// stepProgress is i/n of a running release, with the stage's name for a
// blue-green one; "-" outside a release.
func stepProgress(ro *backstopv1.Rollout) string {
	if !releasing(ro.Status.Phase) || stepCount(ro) == 0 {
		return "-"
	}
	s := fmt.Sprintf("%d/%d", currentStep(ro), stepCount(ro))
	if ro.Spec.Strategy.BlueGreen != nil {
		s += " " + blueGreenStages[currentStep(ro)-1]
	}
	return s
}

// describeStep says what a canary step does.
func describeStep(s backstopv1.CanaryStep) string {
	switch {
	case s.SetWeight != nil:
		return fmt.Sprintf("setWeight %d", *s.SetWeight)
	case s.Pause != nil && s.Pause.Duration != nil:
		return "pause " + shortDuration(s.Pause.Duration.Duration)
	case s.Pause != nil:
		return "pause until promoted"
	case s.Analysis != nil:
		out := "analysis " + shortDuration(s.Analysis.Window.Duration)
		if len(s.Analysis.Checks) > 0 {
			out += " (" + strings.Join(s.Analysis.Checks, ", ") + ")"
		}
		return out
	}
	return "empty step"
}

// describeStages says what each stage of a blue-green release does.
func describeStages(spec *backstopv1.RolloutSpec) []string {
	cfg := plan.BlueGreenConfigOf(spec)
	analysis := "analysis: none"
	if cfg.Window > 0 {
		analysis = "analysis " + shortDuration(cfg.Window)
	}
	promotion := "promotion: automatic"
	if !cfg.AutoPromote {
		promotion = "promotion: waits to be promoted"
	}
	preview := "preview: checks only"
	if cfg.Preview {
		preview = "preview: " + describePreview(spec.Strategy.BlueGreen)
	}
	return []string{
		preview,
		analysis,
		promotion,
		"switch all traffic",
		"scale-down delay " + shortDuration(cfg.ScaleDownDelay),
	}
}

func describePreview(bg *backstopv1.BlueGreenStrategy) string {
	var parts []string
	if m := bg.Preview; m != nil {
		for _, h := range m.Headers {
			parts = append(parts, fmt.Sprintf("header %s=%s", h.Name, h.Value))
		}
		for _, c := range m.Cookies {
			parts = append(parts, fmt.Sprintf("cookie %s=%s", c.Name, c.Value))
		}
	}
	for _, h := range bg.PreviewHostnames {
		parts = append(parts, "host "+string(h))
	}
	return strings.Join(parts, ", ")
}

// shortDuration writes 5m rather than 5m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// age is how long ago t was, as kubectl writes ages; "-" for no time.
func age(now time.Time, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t))
}

// ago is age with " ago".
func ago(now time.Time, t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return age(now, t.Time) + " ago"
}

// short cuts a commit or revision to n characters.
func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readyCondition is the Rollout's Ready condition, or nil.
func readyCondition(ro *backstopv1.Rollout) *metav1.Condition {
	return meta.FindStatusCondition(ro.Status.Conditions, backstopv1.ReadyCondition)
}

func phaseName(p backstopv1.RolloutPhase) string {
	if p == "" {
		return "-"
	}
	return string(p)
}

package main

import (
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestStepColumn checks the STEP of `get`: the short form counts as its
// expanded steps, a blue-green release shows its stage, and no step shows
// outside a release.
func TestStepColumn(t *testing.T) {
	blueGreen := backstopv1.Strategy{BlueGreen: &backstopv1.BlueGreenStrategy{}}
	for _, tc := range []struct {
		name     string
		strategy backstopv1.Strategy
		phase    backstopv1.RolloutPhase
		step     int32
		want     string
	}{
		{"explicit steps", canarySteps(), backstopv1.PhaseProgressing, 0, "1/7"},
		{"paused", canarySteps(), backstopv1.PhasePaused, 4, "5/7"},
		{"short form to 100", shortForm(30, 0, time.Minute), backstopv1.PhaseProgressing, 1, "2/8"},
		{"short form to a max", shortForm(10, 30, time.Minute), backstopv1.PhaseProgressing, 5, "6/6"},
		{"past the last step", canarySteps(), backstopv1.PhaseProgressing, 9, "7/7"},
		{"negative step", canarySteps(), backstopv1.PhaseProgressing, -3, "1/7"},
		{"promoting", canarySteps(), backstopv1.PhasePromoting, 7, "-"},
		{"idle", canarySteps(), backstopv1.PhaseIdle, 0, "-"},
		{"rolled back", canarySteps(), backstopv1.PhaseRolledBack, 3, "-"},
		{"blue-green preview", blueGreen, backstopv1.PhaseProgressing, 0, "preview"},
		{"blue-green waiting", blueGreen, backstopv1.PhasePaused, 2, "promotion"},
		{"blue-green scale-down delay", blueGreen, backstopv1.PhaseProgressing, 4, "scale-down delay"},
		{"blue-green negative step", blueGreen, backstopv1.PhaseProgressing, -1, "preview"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := rollout("ns", "app", tc.strategy)
			ro.Status = backstopv1.RolloutStatus{Phase: tc.phase, CurrentStep: tc.step}
			if got := stepColumn(ro); got != tc.want {
				t.Errorf("stepColumn = %q; want %q", got, tc.want)
			}
		})
	}
}

// TestRedraw checks what a terminal gets on every change: the sequence
// that clears it and moves the cursor home, then the whole view.
func TestRedraw(t *testing.T) {
	ro := rollout("shop", "app", canarySteps())
	ro.Status = backstopv1.RolloutStatus{Phase: backstopv1.PhaseProgressing, CurrentStep: 1, CanaryWeight: 5}
	view := statusView(ro, noEvents, t0)
	got := redraw(view)
	if !strings.HasPrefix(got, "\x1b[H\x1b[2J") {
		t.Errorf("redraw starts with %q; want the clear-screen sequence", got[:min(len(got), 8)])
	}
	if strings.TrimPrefix(got, "\x1b[H\x1b[2J") != view {
		t.Errorf("redraw changed the view:\n%s", got)
	}
	for _, want := range []string{"Rollout:    shop/app\n", "Step:       2/7 analysis 5m (error-rate), started -\n", "  →  2  analysis 5m (error-rate)\n", "Events:  <none>\n"} {
		if !strings.Contains(view, want) {
			t.Errorf("the view lacks %q:\n%s", want, view)
		}
	}
}

// TestWatchLine checks the piped line: the newest Event by its time (the
// last of a series), whatever the order of the list.
func TestWatchLine(t *testing.T) {
	ro := rollout("shop", "app", canarySteps())
	ro.Status = backstopv1.RolloutStatus{Phase: backstopv1.PhasePaused, CurrentStep: 4, CanaryWeight: 20}
	at := func(d time.Duration) metav1.MicroTime { return metav1.NewMicroTime(t0.Add(d)) }
	events := []eventsv1.Event{
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, EventTime: at(-time.Minute), Reason: "WaitingForPromotion", Note: "Step 5 waits\nto be promoted"},
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, EventTime: at(-time.Hour), Reason: "HookRetried", Note: "again",
			Series: &eventsv1.EventSeries{Count: 4, LastObservedTime: at(-30 * time.Second)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "c"}, EventTime: at(-2 * time.Minute), Reason: "StepStarted", Note: "Step 5 of 7: pause until promoted"},
	}
	want := "10:00:00  Paused        step 5/7  weight 20%  HookRetried: again\n"
	if got := watchLine(ro, events, t0); got != want {
		t.Errorf("watchLine = %q; want %q", got, want)
	}
	events[0].EventTime = at(0)
	want = "10:00:00  Paused        step 5/7  weight 20%  WaitingForPromotion: Step 5 waits to be promoted\n"
	if got := watchLine(ro, events, t0); got != want {
		t.Errorf("watchLine = %q; want %q", got, want)
	}
}

// TestWhenGateApplies checks the phases a refusal names against
// GateApplies.
func TestWhenGateApplies(t *testing.T) {
	for gate, want := range map[backstopv1.Gate]string{
		backstopv1.GatePromote:     "while a release is Progressing or Paused",
		backstopv1.GatePromoteFull: "while a release is Progressing or Paused",
		backstopv1.GateAbort:       "while a release is Progressing or Paused, or while a promotion bakes (Succeeded with its bake time running)",
		backstopv1.GateRetry:       "while a release is RolledBack",
		backstopv1.Gate("bogus"):   "in no phase",
	} {
		if got := whenGateApplies(gate); got != want {
			t.Errorf("whenGateApplies(%s) = %q; want %q", gate, got, want)
		}
	}
}

// TestShortDuration checks that durations drop their zero tails only.
func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Minute:              "5m",
		time.Hour:                    "1h",
		90 * time.Second:             "1m30s",
		time.Hour + 30*time.Minute:   "1h30m",
		30 * time.Second:             "30s",
		2*time.Hour + 10*time.Second: "2h0m10s",
		0:                            "0s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q; want %q", d, got, want)
		}
	}
}

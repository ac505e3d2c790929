package main

import (
	"fmt"
	"time"

	eventsv1 "k8s.io/api/events/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

// redraw is what status --watch writes to a terminal on every change: the
// whole view, in place of the last one.
func redraw(view string) string {
	return clearScreen + view
}

// watchLine is what status --watch writes on every change when its output
// is not a terminal: the time, the phase, the step, the canary's weight and
// the newest Event.
func watchLine(ro *backstopv1.Rollout, events []eventsv1.Event, now time.Time) string {
	return now.Format(time.TimeOnly) + "  " + watchSummary(ro, events) + "\n"
}

// watchSummary is watchLine without the time: a change is worth a line
// when it changes this.
func watchSummary(ro *backstopv1.Rollout, events []eventsv1.Event) string {
	line := fmt.Sprintf("%-12s  step %s  weight %d%%", phaseName(ro.Status.Phase), stepProgress(ro), ro.Status.CanaryWeight)
	if last := lastEvents(events, 1); len(last) == 1 {
		line += fmt.Sprintf("  %s: %s", last[0].Reason, oneLine(last[0].Note))
	}
	return line
}

// rollbackReason says why a release was rolled back: the decision of its
// history entry, or else the Ready condition's message.
func rollbackReason(ro *backstopv1.Rollout) string {
	if h := ro.Status.History; len(h) > 0 && h[0].Outcome == backstopv1.OutcomeRolledBack {
		out := h[0].Reason
		if h[0].Message != "" {
			out += ": " + oneLine(h[0].Message)
		}
		return out
	}
	if c := readyCondition(ro); c != nil {
		return oneLine(c.Message)
	}
	return "no reason recorded"
}

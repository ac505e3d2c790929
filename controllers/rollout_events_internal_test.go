package controllers

import (
	"context"
	"testing"

	"k8s.io/client-go/tools/events"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestEventsWaitForTheStatusWrite: the Events of a reconcile go out only
// when the reconcile sends them (after its status write), in the order
// they were recorded; a reconcile whose write conflicted never sends them,
// so the decision made again does not report itself twice.
func TestEventsWaitForTheStatusWrite(t *testing.T) {
	rec := events.NewFakeRecorder(10)
	r := &RolloutReconciler{Recorder: rec}
	ro := &backstopv1.Rollout{}
	got := func() []string {
		var out []string
		for {
			select {
			case e := <-rec.Events:
				out = append(out, e)
			default:
				return out
			}
		}
	}

	// A reconcile whose status write conflicted.
	ctx, _ := withPendingEvents(context.Background())
	r.eventf(ctx, ro, "Normal", "ReleaseStarted", "Release", "Releasing revision %s", "abc")
	if e := got(); len(e) != 0 {
		t.Fatalf("Events before the status write: %q", e)
	}

	// The same decision made again, and written.
	ctx, send := withPendingEvents(context.Background())
	r.eventf(ctx, ro, "Normal", "ReleaseStarted", "Release", "Releasing revision %s", "abc")
	r.eventf(ctx, ro, "Warning", "AnalysisFailed", "Release", "%s", "error-rate failed")
	send()
	send() // sending twice sends nothing more
	want := []string{"Normal ReleaseStarted Releasing revision abc", "Warning AnalysisFailed error-rate failed"}
	if e := got(); len(e) != len(want) || e[0] != want[0] || e[1] != want[1] {
		t.Errorf("Events after the status write: %q; want %q", e, want)
	}

	// Outside a reconcile, an Event goes out at once.
	r.eventf(context.Background(), ro, "Warning", "RevertFailed", "Revert", "%s", "no route to host")
	if e := got(); len(e) != 1 || e[0] != "Warning RevertFailed no route to host" {
		t.Errorf("an Event outside a reconcile: %q", e)
	}
}

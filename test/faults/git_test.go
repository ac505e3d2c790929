package faults

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/rig"
)

// TestGitDownWhenARevertIsDue proves that a rollback does not wait for
// Git and that its revert is not lost when Git is down and the manager
// dies meanwhile. A faulty release's check fails while the git server is
// stopped: the route goes back to 100% primary while the server is still
// down (the rig sees the write before it starts the server again); the
// revert is Pending and says which try failed and when the next is; the
// manager is killed (SIGKILL) and started again while the server is still
// down, and its revert is Pending again and tried again; once the server
// is back, the revert is pushed, exactly once (one commit with the
// release's trailer), the manifest on the branch is back at v1, and no
// route was written twice. It prints the time from the canary's errors
// showing in Prometheus to the route write (the check runs every second),
// and how long Git was down.
//
// Git is down for less than a run of the revert's tries (5, 10, 20 and
// 40 s apart): a longer outage ends the run Failed, and the revert is run
// again five minutes after its last try (docs/revert.md).
func TestGitDownWhenARevertIsDue(t *testing.T) {
	ctx := testContext(t)
	r := rig.New(t, env, rig.Options{Apps: 1})
	r.StartManager(t)
	app := r.Apps[0]

	rel, err := r.Release(ctx, app, "v2", rig.Faulty)
	if err != nil {
		t.Fatal(err)
	}
	pushesBefore := r.Git.Pushes()
	r.Git.Stop()
	down := time.Now()

	// The canary gets traffic: its errors show, and the check fails.
	if _, _, err := r.WaitForRouteState(ctx, app, 1, rig.RouteState(app, 20)); err != nil {
		t.Fatal(err)
	}
	if err := r.SetErrorRatio(ctx, app, 1); err != nil {
		t.Fatal(err)
	}
	failing := time.Now() // Prometheus holds the errors: the next evaluation fails
	_, onPrimary, err := r.WaitForRouteState(ctx, app, 2, rig.RouteState(app, 0))
	if err != nil {
		t.Fatal(err)
	}
	// Git is still down: the rollback's route write did not wait for it.
	checkToRoute := onPrimary.Sub(failing)
	if _, err := event(ctx, r, app, "AnalysisFailed"); err != nil {
		t.Fatal(err)
	}

	// The revert fails and is tried again, and status says so.
	isRetrying := func(ro *backstopv1.Rollout) bool {
		st := ro.Status.Revert
		return ro.Status.Phase == backstopv1.PhaseRolledBack && st != nil && st.State == backstopv1.RevertPending &&
			st.Attempts >= 1 && strings.HasPrefix(st.Message, "Try ")
	}
	ro, err := r.WaitForRollout(ctx, app, "a failed try of the revert", isRetrying)
	if err != nil {
		t.Fatal(err)
	}
	before := *ro.Status.Revert
	if !strings.Contains(before.Message, "connection refused") {
		t.Errorf("status.revert.message = %q; want the reason of the failed try", before.Message)
	}
	if c := meta.FindStatusCondition(ro.Status.Conditions, backstopv1.RevertedCondition); c == nil || c.Status != metav1.ConditionUnknown {
		t.Errorf("condition Reverted = %+v; want Unknown while the revert is tried again", c)
	}

	// The manager dies and comes back while Git is still down: the
	// revert is started again, and fails again.
	r.Manager.Kill()
	killed := time.Now()
	r.StartManager(t)
	ro, err = r.WaitForRollout(ctx, app, "a failed try of the revert after the restart", func(ro *backstopv1.Rollout) bool {
		return isRetrying(ro) && ro.Status.Revert.LastAttemptTime.After(killed)
	})
	if err != nil {
		t.Fatal(err)
	}
	after := *ro.Status.Revert

	r.Git.Start(t)
	gitDown := time.Since(down)
	back := time.Now()
	if err := r.WaitForEnd(ctx, rel); err != nil {
		t.Fatal(err)
	}
	landed := time.Since(back)

	expectRoutes(t, r, app, 0, 20, 0)
	expectPromotions(t, r, app, "v1")
	reverts := expectOneRevert(t, r, app, "v1")
	if n := r.Git.Pushes() - pushesBefore; n != 1 {
		t.Errorf("the manager pushed %d times; want once", n)
	}
	if n := countEvents(ctx, t, r, app, "Reverted"); n != 1 {
		t.Errorf("%d Reverted Events; want 1", n)
	}
	ro, err = r.Rollout(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("errors in Prometheus to route on the primary: %s, with Git down (down %s in all); before the restart: %q (try %d); after it: %q (try %d); pushed %s after Git was back; revert commits %d, pushes to the server %d, route writes %d",
		seconds(checkToRoute), seconds(gitDown), before.Message, before.Attempts, after.Message, after.Attempts,
		seconds(landed), len(reverts), r.Git.Pushes()-pushesBefore, len(r.RouteWrites(app)))
}

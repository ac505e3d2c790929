package faults

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/rig"
	"backstop.dev/backstop/test/testenv"
)

// TestRejectedRouteHoldsAndResumes proves, on the manager binary, what
// controllers' TestRejectedRouteHoldsTheRelease does not: that a release
// held by a rejected route goes on by itself once the gateway accepts the
// route, and that nothing was applied past the rejected write. The
// gateway rejects the app's route; a release starts, writes the route's
// first step (20%), which the gateway rejects, and holds there: for as
// long as the route is rejected there is no further route write and no
// promotion, and Ready is False, reason RouteRejected, quoting the
// gateway. Once the gateway accepts the route, Ready clears and the
// release ends promoted, each route state written once. It prints how
// long the release was held and the number of RouteRejected Events.
func TestRejectedRouteHoldsAndResumes(t *testing.T) {
	ctx := testContext(t)
	r := rig.New(t, env, rig.Options{Apps: 1})
	r.StartManager(t)
	app := r.Apps[0]
	const why = "listener http does not allow routes from this namespace"
	setReject := func(value *string) {
		t.Helper()
		patch := `{"metadata":{"annotations":{"` + testenv.RejectAnnotation + `":null}}}`
		if value != nil {
			patch = `{"metadata":{"annotations":{"` + testenv.RejectAnnotation + `":"` + *value + `"}}}`
		}
		route := &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: app}}
		if err := r.Env.Client.Patch(ctx, route, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			t.Fatal(err)
		}
	}
	rejected := func(ro *backstopv1.Rollout) bool {
		c := meta.FindStatusCondition(ro.Status.Conditions, backstopv1.ReadyCondition)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == backstopv1.ReasonRouteRejected
	}

	reason := why
	setReject(&reason)
	if _, err := r.WaitForRollout(ctx, app, "Ready=False RouteRejected", rejected); err != nil {
		t.Fatal(err)
	}
	rel, err := r.Release(ctx, app, "v2", rig.Healthy)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.WaitForRouteState(ctx, app, 1, rig.RouteState(app, 20)); err != nil {
		t.Fatal(err)
	}
	held := time.Now()
	// Longer than the whole release would take (two 2s pauses).
	time.Sleep(8 * time.Second)
	ro, err := r.Rollout(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	if !rejected(ro) || ro.Status.CurrentStep != 0 {
		t.Errorf("with the route rejected: %s; want held at step 1, Ready=False RouteRejected", rig.Describe(ro))
	}
	if c := meta.FindStatusCondition(ro.Status.Conditions, backstopv1.ReadyCondition); c == nil || !strings.Contains(c.Message, why) {
		t.Errorf("Ready = %+v; want the gateway's message %q", c, why)
	}
	expectRoutes(t, r, app, 0, 20)
	expectPromotions(t, r, app, "v1")

	setReject(nil)
	accepted := time.Now()
	heldFor := accepted.Sub(held)
	if err := r.WaitForEnd(ctx, rel); err != nil {
		t.Fatal(err)
	}
	resumed := time.Since(accepted)
	expectRoutes(t, r, app, 0, 20, 60, 0)
	expectPromotions(t, r, app, "v1", "v2")
	if ro, err = r.Rollout(ctx, app); err != nil {
		t.Fatal(err)
	}
	if !meta.IsStatusConditionTrue(ro.Status.Conditions, backstopv1.ReadyCondition) {
		t.Errorf("after the release: %s; want Ready=True", rig.Describe(ro))
	}
	events := countEvents(ctx, t, r, app, backstopv1.ReasonRouteRejected)
	if events < 1 || events > 2 {
		t.Errorf("%d RouteRejected Events; want one per rejection (the idle route's, and perhaps the release's write)", events)
	}
	t.Logf("held at 20%% for %s with the route rejected (no route write, no promotion); promoted %s after the gateway accepted it; RouteRejected Events %d, route writes %d, promotions 1",
		seconds(heldFor), seconds(resumed), events, len(r.RouteWrites(app)))
}

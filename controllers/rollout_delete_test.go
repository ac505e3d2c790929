package controllers_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/controllers/workload"
	"backstop.dev/backstop/test/testenv"
)

// handedBack is the route of a Rollout whose workload was handed back: all
// traffic to the Service that selects the target's pods.
const handedBack = "app-primary=0,app-canary=100"

// pausedCanary is a canary at half the primary's size that stops at 30%
// until promoted.
func pausedCanary() backstopv1.Strategy {
	return backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{ReplicaPercent: ptr.To[int32](50), Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
		{Pause: &backstopv1.PauseStep{}},
	}}}
}

// deleteRollout deletes ro and waits until it is gone.
func deleteRollout(t *testing.T, c client.Client, ro *backstopv1.Rollout) {
	t.Helper()
	if err := c.Delete(context.Background(), ro); err != nil {
		t.Fatalf("deleting the Rollout: %v", err)
	}
	waitGone(t, c, ro)
}

// waitGone waits until the Rollout no longer exists.
func waitGone(t *testing.T, c client.Client, ro *backstopv1.Rollout) {
	t.Helper()
	deadline := time.Now().Add(testenv.Timeout)
	var last backstopv1.Rollout
	for time.Now().Before(deadline) {
		err := c.Get(context.Background(), client.ObjectKeyFromObject(ro), &last)
		if apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(testenv.Poll)
	}
	t.Fatalf("the deleted Rollout is still there after %s: finalizers %v, conditions %+v",
		testenv.Timeout, last.Finalizers, last.Status.Conditions)
}

// routeOf describes the HTTPRoute ns/name.
func routeOf(t *testing.T, c client.Client, ns, name string) (*gwapiv1.HTTPRoute, string) {
	t.Helper()
	var route gwapiv1.HTTPRoute
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &route); err != nil {
		t.Fatalf("reading HTTPRoute %s: %v", name, err)
	}
	return &route, testenv.DescribeRoute(&route)
}

// ownerUIDs lists the UIDs obj names as owners.
func ownerUIDs(obj client.Object) []types.UID {
	var out []types.UID
	for _, ref := range obj.GetOwnerReferences() {
		out = append(out, ref.UID)
	}
	return out
}

// assertHandedBack checks what a hand-back leaves: the target ready at
// replicas with the primary's template, the generated route "app" sending
// it all traffic through the Service app-canary, and both no longer owned
// by the Rollout, whose uid was uid.
func assertHandedBack(t *testing.T, c client.Client, ns string, uid types.UID, replicas int32, image string) {
	t.Helper()
	ctx := context.Background()
	var target appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &target); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(target.Spec.Replicas, 1); got != replicas {
		t.Errorf("the target has %d replicas after the hand-back; want the primary's %d", got, replicas)
	}
	if ok, why := workload.Ready(&target); !ok {
		t.Errorf("the target is not ready after the hand-back: %s", why)
	}
	if got := target.Spec.Template.Spec.Containers[0].Image; got != image {
		t.Errorf("the target runs %s after the hand-back; want the primary's %s", got, image)
	}
	if got := target.Spec.Template.Labels["app"]; got != "app" {
		t.Errorf("the target's pods are labelled app=%s; want app=app, as its selector says", got)
	}
	route, desc := routeOf(t, c, ns, "app")
	if desc != handedBack {
		t.Errorf("HTTPRoute app after the hand-back: %s; want %s", desc, handedBack)
	}
	if slices.Contains(ownerUIDs(route), uid) {
		t.Errorf("HTTPRoute app is still owned by the deleted Rollout: the garbage collector would delete it")
	}
	var svc corev1.Service
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-canary"}, &svc); err != nil {
		t.Fatalf("Service app-canary after the hand-back: %v", err)
	}
	if slices.Contains(ownerUIDs(&svc), uid) {
		t.Errorf("Service app-canary is still owned by the deleted Rollout: the garbage collector would delete it")
	}
	if got := svc.Spec.Selector; len(got) != 1 || got["app"] != "app" {
		t.Errorf("Service app-canary selects %v; want the target's pods, app=app", got)
	}
}

// assertLeftToGC checks that what the hand-back does not keep still
// belongs to the deleted Rollout, for the garbage collector to delete.
func assertLeftToGC(t *testing.T, c client.Client, ns string, uid types.UID) {
	t.Helper()
	for _, obj := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "app-primary"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "app-primary"}},
	} {
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: obj.GetName()}, obj); err != nil {
			t.Fatalf("%T %s: %v", obj, obj.GetName(), err)
		}
		if !slices.Contains(ownerUIDs(obj), uid) {
			t.Errorf("%T %s no longer belongs to the deleted Rollout; the garbage collector must delete it", obj, obj.GetName())
		}
	}
}

// TestDeleteIdleRolloutHandsBack: deleting an idle Rollout scales the
// target up to the primary's size, sends every request to it once it is
// ready, leaves the Service and route that carry that traffic in place, and
// only then lets the Rollout go.
func TestDeleteIdleRolloutHandsBack(t *testing.T) {
	ns := releaseEnv(t)
	routes := env.WatchRouteWrites(t, ns, "app")
	ro := releaseRollout(ns, pausedCanary())
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	if !slices.Contains(idle.Finalizers, controllers.HandBackFinalizer) {
		t.Fatalf("an idle Rollout has finalizers %v; want %s", idle.Finalizers, controllers.HandBackFinalizer)
	}
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 1); got != 0 {
		t.Fatalf("the target has %d replicas while idle; want 0", got)
	}

	start := time.Now()
	deleteRollout(t, env.Client, idle)
	t.Logf("handed back in %s", time.Since(start).Round(time.Millisecond))

	assertHandedBack(t, env.Client, ns, idle.UID, 4, "app:v1")
	assertLeftToGC(t, env.Client, ns, idle.UID)
	assertStates(t, routes.States(), []string{"app-primary=100,app-canary=0", handedBack})
	ctx := context.Background()
	if n := waitForEvent(t, ctx, ro, "Normal", backstopv1.ReasonHandingBack); !strings.Contains(n, "handing Deployment app back, with the primary's template and 4 replicas") {
		t.Errorf("HandingBack Event %q; want it to say what is handed back", n)
	}
	if n := waitForEvent(t, ctx, ro, "Normal", backstopv1.ReasonHandedBack); !strings.Contains(n, "Deployment app serves all traffic through Service app-canary") {
		t.Errorf("HandedBack Event %q; want it to say who serves now", n)
	}
}

// TestDeleteMidReleaseRestoresThePrimary: a Rollout deleted while a
// release holds 30% on the new version hands back the stable version: the
// canary's share goes to the primary, the target gets the primary's
// template and size, and all traffic goes to it once it is ready.
func TestDeleteMidReleaseRestoresThePrimary(t *testing.T) {
	ns := releaseEnv(t)
	routes := env.WatchRouteWrites(t, ns, "app")
	ro := releaseRollout(ns, pausedCanary())
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setImage(t, ns, "app:v2")
	paused := waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 0); got != 2 {
		t.Fatalf("the canary has %d replicas; want half the primary's 4", got)
	}

	deleteRollout(t, env.Client, paused)

	assertHandedBack(t, env.Client, ns, paused.UID, 4, "app:v1")
	if got := workload.Revision(deploymentOf(t, ns, "app")); got != paused.Status.StableRevision {
		t.Errorf("the target runs revision %s after the hand-back; want the stable %s", got, paused.Status.StableRevision)
	}
	for k := range deploymentOf(t, ns, "app").Spec.Template.Annotations {
		if strings.HasPrefix(k, workload.AnnotationPrefix) {
			t.Errorf("the target's template carries the primary's annotation %s", k)
		}
	}
	// The canary's 30% went back to the primary before the target's
	// template changed, and all traffic went to the target after.
	assertStates(t, routes.States(), []string{
		"app-primary=100,app-canary=0",
		"app-primary=70,app-canary=30",
		"app-primary=100,app-canary=0",
		handedBack,
	})
}

// TestDeleteWaitsForATargetThatIsNotReady: while the target's pods are not
// ready, the deleted Rollout stays, says in its Ready condition what it
// waits for and how to let it go, and keeps all traffic on the primary;
// once they are ready, the hand-back ends.
func TestDeleteWaitsForATargetThatIsNotReady(t *testing.T) {
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	deployments, stopDeployments := context.WithCancel(ctx)
	env.RunDeploymentController(deployments, ns)
	env.RunGateway(ctx, ns)
	d := deployment("app")(ns).(*appsv1.Deployment)
	d.Spec.Replicas = ptr.To[int32](4)
	mustCreate(t, d)
	mustCreate(t, gateway("public")(ns))
	ro := releaseRollout(ns, pausedCanary())
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

	// From here on no Deployment controller reports on the target: its
	// status is what the test writes.
	stopDeployments()
	time.Sleep(200 * time.Millisecond)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-1", Labels: map[string]string{"app": "app"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:v1"}}},
	}
	mustCreate(t, pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "app:v1", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 10s restarting failed container"}}}}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, idle); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the target to be scaled up", func() bool {
		return ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 0) == 4
	})
	setStatus := func(ready int32) {
		t.Helper()
		target := deploymentOf(t, ns, "app")
		target.Status = appsv1.DeploymentStatus{ObservedGeneration: target.Generation, Replicas: 4, UpdatedReplicas: 4,
			ReadyReplicas: ready, AvailableReplicas: ready, UnavailableReplicas: 4 - ready}
		if err := env.Client.Status().Update(ctx, target); err != nil {
			t.Fatal(err)
		}
	}
	setStatus(0)

	c := waitForReady(t, ro, func(c *metav1.Condition) bool {
		return c.Reason == backstopv1.ReasonHandingBack && strings.Contains(c.Message, "0 of 4 replicas available")
	})
	for _, want := range []string{
		"The Rollout was deleted; handing Deployment app back: waiting for it to be ready",
		`1 pod: CrashLoopBackOff (back-off 10s restarting failed container)`,
		"remove its finalizer " + controllers.HandBackFinalizer,
	} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("Ready message %q does not say %q", c.Message, want)
		}
	}
	waiting := get(t, ro)
	if r := meta.FindStatusCondition(waiting.Status.Conditions, backstopv1.ReconcilingCondition); r == nil || r.Reason != backstopv1.ReasonHandingBack {
		t.Errorf("Reconciling while handing back = %+v; want True, reason HandingBack", r)
	}
	// It keeps waiting, with the traffic on the primary.
	time.Sleep(2 * time.Second)
	waiting = get(t, ro)
	if !slices.Contains(waiting.Finalizers, controllers.HandBackFinalizer) {
		t.Fatalf("the finalizer went before the target was ready")
	}
	if _, desc := routeOf(t, env.Client, ns, "app"); desc != "app-primary=100,app-canary=0" {
		t.Errorf("HTTPRoute app while the target is not ready: %s; want all traffic on the primary", desc)
	}

	setStatus(4)
	waitGone(t, env.Client, ro)
	assertHandedBack(t, env.Client, ns, idle.UID, 4, "app:v1")
}

// TestDeleteWithNothingToHandBack: a deleted Rollout whose target is gone,
// that never made a primary, or whose target another Rollout keeps, is let
// go at once, and touches nothing.
func TestDeleteWithNothingToHandBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup makes the Rollout to delete, and says what it must not
		// touch.
		setup func(t *testing.T, ns string) (*backstopv1.Rollout, func(t *testing.T))
		// event starts the HandedBack Event's note.
		event string
	}{
		{
			name: "target deleted",
			setup: func(t *testing.T, ns string) (*backstopv1.Rollout, func(t *testing.T)) {
				ro := releaseRollout(ns, pausedCanary())
				mustCreate(t, ro)
				waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
				if err := env.Client.Delete(context.Background(), deploymentOf(t, ns, "app")); err != nil {
					t.Fatal(err)
				}
				return ro, func(t *testing.T) {
					if _, desc := routeOf(t, env.Client, ns, "app"); desc != "app-primary=100,app-canary=0" {
						t.Errorf("HTTPRoute app: %s; want it as it was", desc)
					}
				}
			},
			event: "Nothing to hand back: Deployment app does not exist",
		},
		{
			name: "namespace being deleted",
			setup: func(t *testing.T, ns string) (*backstopv1.Rollout, func(t *testing.T)) {
				ro := releaseRollout(ns, pausedCanary())
				mustCreate(t, ro)
				waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
				// envtest runs no namespace controller: the namespace
				// stays Terminating, with everything in it.
				if err := env.Client.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
					t.Fatal(err)
				}
				return ro, func(t *testing.T) {
					if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 1); got != 0 {
						t.Errorf("the target in a namespace being deleted was scaled to %d; want it left alone", got)
					}
				}
			},
			// No Event: nothing can be created in a namespace that is
			// being deleted.
			event: "",
		},
		{
			name: "primary never made",
			setup: func(t *testing.T, ns string) (*backstopv1.Rollout, func(t *testing.T)) {
				ro := releaseRollout(ns, pausedCanary())
				ro.Spec.TargetRef.Name = "missing"
				mustCreate(t, ro)
				waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == backstopv1.ReasonTargetNotFound })
				if !slices.Contains(get(t, ro).Finalizers, controllers.HandBackFinalizer) {
					t.Errorf("a Rollout with a problem has no finalizer")
				}
				return ro, func(*testing.T) {}
			},
			event: "Nothing to hand back: Deployment missing does not exist",
		},
		{
			name: "another Rollout keeps the target",
			setup: func(t *testing.T, ns string) (*backstopv1.Rollout, func(t *testing.T)) {
				keeper := releaseRollout(ns, pausedCanary())
				mustCreate(t, keeper)
				waitForPhase(t, keeper, backstopv1.PhaseIdle, -1)
				second := releaseRollout(ns, pausedCanary())
				second.Name = "second"
				second.Spec.Routes[0].Name = "second"
				mustCreate(t, second)
				waitForReady(t, second, func(c *metav1.Condition) bool { return c.Reason == backstopv1.ReasonInvalidSpec })
				return second, func(t *testing.T) {
					if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 1); got != 0 {
						t.Errorf("the target has %d replicas; the keeper's idle target must stay at 0", got)
					}
					if got := get(t, keeper); got.Status.Phase != backstopv1.PhaseIdle || !got.DeletionTimestamp.IsZero() {
						t.Errorf("the keeper is %s (deleted: %v); want it idle", got.Status.Phase, !got.DeletionTimestamp.IsZero())
					}
				}
			},
			event: "Nothing to hand back: Deployment app-primary is not this Rollout's",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := releaseEnv(t)
			ro, untouched := tc.setup(t, ns)
			deleteRollout(t, env.Client, ro)
			untouched(t)
			if tc.event == "" {
				return
			}
			if n := waitForEvent(t, context.Background(), ro, "Normal", backstopv1.ReasonHandedBack); !strings.HasPrefix(n, tc.event) {
				t.Errorf("HandedBack Event %q; want it to start %q", n, tc.event)
			}
			if n := countEvents(t, context.Background(), ro, backstopv1.ReasonHandingBack); n != 0 {
				t.Errorf("%d HandingBack Events; want none, there was nothing to hand back", n)
			}
		})
	}
}

// TestDeleteHandsBackExistingRoutes: an existing route gets all its
// traffic on the target by its weights alone, and an existing route that
// is gone does not hold the hand-back: it is skipped and said so.
func TestDeleteHandsBackExistingRoutes(t *testing.T) {
	ns := releaseEnv(t)
	ctx := context.Background()
	svcRef := func(name string, weight int32) gwapiv1.HTTPBackendRef {
		return gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{Weight: ptr.To(weight),
			BackendObjectReference: gwapiv1.BackendObjectReference{Name: gwapiv1.ObjectName(name), Port: ptr.To[gwapiv1.PortNumber](8080)}}}
	}
	mustCreate(t, &gwapiv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "user", Namespace: ns, Labels: map[string]string{"team": "web"}},
		Spec: gwapiv1.HTTPRouteSpec{
			CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: []gwapiv1.ParentReference{{Name: "public"}}},
			Rules: []gwapiv1.HTTPRouteRule{
				{BackendRefs: []gwapiv1.HTTPBackendRef{svcRef("app-primary", 100), svcRef("app-canary", 0)}},
				{BackendRefs: []gwapiv1.HTTPBackendRef{svcRef("legacy", 1)}},
			},
		},
	})
	ro := releaseRollout(ns, pausedCanary())
	ro.Spec.Routes = []backstopv1.Route{{Name: "user", Existing: true}}
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	// A route that does not exist keeps the Rollout from its releases, not
	// from being deleted.
	latest := get(t, ro)
	patch := client.MergeFrom(latest.DeepCopy())
	latest.Spec.Routes = append(latest.Spec.Routes, backstopv1.Route{Name: "gone", Existing: true})
	if err := env.Client.Patch(ctx, latest, patch); err != nil {
		t.Fatal(err)
	}
	waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == backstopv1.ReasonRouteNotFound })
	// With the target at zero and a missing route, delete.
	deleteRollout(t, env.Client, latest)

	route, desc := routeOf(t, env.Client, ns, "user")
	if want := handedBack + " | legacy=1"; desc != want {
		t.Errorf("existing HTTPRoute user after the hand-back: %s; want %s (only the two weights changed)", desc, want)
	}
	if route.Labels["team"] != "web" || len(route.OwnerReferences) != 0 {
		t.Errorf("existing HTTPRoute user has labels %v and owners %v; want them as they were", route.Labels, route.OwnerReferences)
	}
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 0); got != 4 {
		t.Errorf("the target has %d replicas after the hand-back; want 4", got)
	}
	if n := waitForEvent(t, ctx, ro, "Warning", backstopv1.ReasonHandBackSkipped); !strings.Contains(n, "HTTPRoute gone does not exist") {
		t.Errorf("HandBackSkipped Event %q; want it to name the missing route", n)
	}
}

// TestDeleteInTheForeground: a Rollout deleted with foreground propagation
// has its primary, Services and routes deleted by Kubernetes before it, so
// there is nothing left to hand back; Backstop lets it go at once and says
// so in a Warning, rather than racing the garbage collector.
func TestDeleteInTheForeground(t *testing.T) {
	ns := releaseEnv(t)
	ctx := context.Background()
	ro := releaseRollout(ns, pausedCanary())
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	if err := env.Client.Delete(ctx, idle, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
		t.Fatal(err)
	}
	n := waitForEvent(t, ctx, ro, "Warning", backstopv1.ReasonHandBackSkipped)
	if !strings.Contains(n, "deleted with foreground propagation") {
		t.Errorf("HandBackSkipped Event %q; want it to say the deletion was in the foreground", n)
	}
	testenv.Eventually(t, "the finalizer to go", func() bool {
		return !slices.Contains(get(t, ro).Finalizers, controllers.HandBackFinalizer)
	})
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 1); got != 0 {
		t.Errorf("the target has %d replicas; want it left alone", got)
	}
	// envtest runs no garbage collector to finish the deletion.
	latest := get(t, ro)
	patch := client.MergeFrom(latest.DeepCopy())
	latest.Finalizers = nil
	if err := env.Client.Patch(ctx, latest, patch); err != nil {
		t.Fatal(err)
	}
	waitGone(t, env.Client, ro)
}

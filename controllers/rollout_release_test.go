package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/test/testenv"
)

// releaseTimeout bounds a whole release in these tests.
const releaseTimeout = 90 * time.Second

// releaseEnv starts the stand-ins for the Deployment controller and the
// gateway in a new namespace, with the target Deployment and Gateway.
func releaseEnv(t *testing.T) string {
	t.Helper()
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env.RunDeploymentController(ctx, ns)
	env.RunGateway(ctx, ns)
	d := deployment("app")(ns).(*appsv1.Deployment)
	d.Spec.Replicas = ptr.To[int32](4)
	mustCreate(t, d)
	mustCreate(t, gateway("public")(ns))
	return ns
}

func releaseRollout(ns string, strategy backstopv1.Strategy) *backstopv1.Rollout {
	return &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: "app"},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes:    []backstopv1.Route{{Name: "app", ParentRefs: []gwapiv1.ParentReference{{Name: "public"}}}},
			Strategy:  strategy,
		},
	}
}

func waitForPhase(t *testing.T, ro *backstopv1.Rollout, phase backstopv1.RolloutPhase, step int32) *backstopv1.Rollout {
	t.Helper()
	deadline := time.Now().Add(releaseTimeout)
	var last backstopv1.Rollout
	for time.Now().Before(deadline) {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(ro), &last); err == nil &&
			last.Status.Phase == phase && (step < 0 || last.Status.CurrentStep == step) {
			return &last
		}
		time.Sleep(testenv.Poll)
	}
	t.Fatalf("Rollout did not reach %s (step %d) within %s; status: %+v", phase, step, releaseTimeout, last.Status)
	return nil
}

func setImage(t *testing.T, ns, image string) {
	t.Helper()
	var d appsv1.Deployment
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "app"}, &d); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.Containers[0].Image = image
	if err := env.Client.Patch(context.Background(), &d, patch); err != nil {
		t.Fatal(err)
	}
}

func setGate(t *testing.T, ro *backstopv1.Rollout, gate string) {
	t.Helper()
	obj := &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: ro.Name}}
	patch := []byte(`{"metadata":{"annotations":{"` + controllers.GateAnnotation + `":"` + gate + `"}}}`)
	if err := env.Client.Patch(context.Background(), obj, client.RawPatch("application/merge-patch+json", patch)); err != nil {
		t.Fatal(err)
	}
}

func deploymentOf(t *testing.T, ns, name string) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func assertStates(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("HTTPRoute went through\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestCanaryReleaseThroughEveryStep drives a Rollout from v1 to v2 through
// every canary step against the real apiserver and shows the HTTPRoute's
// weights at each one.
func TestCanaryReleaseThroughEveryStep(t *testing.T) {
	ns := releaseEnv(t)
	log := env.WatchRouteWrites(t, ns, "app")
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{
		ReplicaPercent: ptr.To[int32](50),
		Steps: []backstopv1.CanaryStep{
			{SetWeight: ptr.To[int32](10)},
			{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: time.Second}}},
			{SetWeight: ptr.To[int32](50)},
			{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: time.Second}}},
			{Pause: &backstopv1.PauseStep{}},
		},
	}})
	mustCreate(t, ro)

	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	if got := kstatusOf(t, idle); got != kstatus.CurrentStatus {
		t.Errorf("kstatus of an idle Rollout = %s, want Current", got)
	}
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 1); got != 0 {
		t.Errorf("target has %d replicas once idle; want 0 (the primary serves)", got)
	}
	if got := ptr.Deref(deploymentOf(t, ns, "app-primary").Spec.Replicas, 1); got != 4 {
		t.Errorf("primary has %d replicas; want the target's 4", got)
	}
	for _, svc := range []string{"app-primary", "app-canary"} {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: svc}, &corev1.Service{}); err != nil {
			t.Errorf("Service %s: %v", svc, err)
		}
	}

	setImage(t, ns, "app:v2")
	paused := waitForPhase(t, ro, backstopv1.PhasePaused, 4)
	if c := meta.FindStatusCondition(paused.Status.Conditions, backstopv1.ProgressingCondition); c == nil || c.Status != metav1.ConditionTrue || c.Reason != "Paused" {
		t.Errorf("Progressing while waiting for promotion = %+v; want True, reason Paused", c)
	}
	if c := meta.FindStatusCondition(paused.Status.Conditions, backstopv1.ReadyCondition); c == nil || c.Reason != "Paused" ||
		!strings.HasSuffix(c.Message, ": Step 5 waits to be promoted") {
		t.Errorf("Ready while waiting for promotion = %+v; want reason Paused and a message that says why", c)
	}
	if got := kstatusOf(t, paused); got != kstatus.InProgressStatus {
		t.Errorf("kstatus of a release waiting for promotion = %s, want InProgress", got)
	}
	if paused.Status.CanaryRevision == idle.Status.StableRevision || paused.Status.CanaryWeight != 50 {
		t.Errorf("paused at the last step with canary %s over %s at %d%%; want a new revision at 50%%",
			paused.Status.CanaryRevision, idle.Status.StableRevision, paused.Status.CanaryWeight)
	}
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 0); got != 2 {
		t.Errorf("canary has %d replicas; want 50%% of the primary's 4", got)
	}
	setGate(t, ro, "promote")
	done := waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)

	if c := meta.FindStatusCondition(done.Status.Conditions, backstopv1.ProgressingCondition); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Succeeded" {
		t.Errorf("Progressing after promotion = %+v; want False, reason Succeeded", c)
	}
	if done.Status.StableRevision != paused.Status.CanaryRevision {
		t.Errorf("stable revision %s after promotion; want %s", done.Status.StableRevision, paused.Status.CanaryRevision)
	}
	if img := deploymentOf(t, ns, "app-primary").Spec.Template.Spec.Containers[0].Image; img != "app:v2" {
		t.Errorf("primary runs %s after promotion; want app:v2", img)
	}
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 1); got != 0 {
		t.Errorf("canary has %d replicas after promotion; want 0", got)
	}
	if _, ok := done.Annotations[controllers.GateAnnotation]; ok {
		t.Errorf("the gate annotation was not cleared after the promotion")
	}
	states := log.States()
	assertStates(t, states, []string{
		"app-primary=100,app-canary=0",
		"app-primary=90,app-canary=10",
		"app-primary=50,app-canary=50",
		"app-primary=100,app-canary=0",
	})
}

// TestBlueGreenRelease drives a blue-green release: the new version at full
// size behind the preview header, then all traffic at once, then the copy
// to the primary.
func TestBlueGreenRelease(t *testing.T) {
	ns := releaseEnv(t)
	log := env.WatchRouteWrites(t, ns, "app")
	ro := releaseRollout(ns, backstopv1.Strategy{BlueGreen: &backstopv1.BlueGreenStrategy{
		Preview:        &backstopv1.TrafficMatch{Headers: []gwapiv1.HTTPHeaderMatch{{Name: "X-Preview", Value: "true"}}},
		Analysis:       &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: time.Second}},
		AutoPromote:    ptr.To(false),
		ScaleDownDelay: &metav1.Duration{Duration: time.Second},
	}})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, -1)
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 0); got != 4 {
		t.Errorf("new version has %d replicas before the switch; want the primary's 4", got)
	}
	setGate(t, ro, "promote")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	if img := deploymentOf(t, ns, "app-primary").Spec.Template.Spec.Containers[0].Image; img != "app:v2" {
		t.Errorf("primary runs %s after promotion; want app:v2", img)
	}
	states := log.States()
	assertStates(t, states, []string{
		"app-primary=100,app-canary=0",
		"app-canary=100 | app-primary=100,app-canary=0",
		"app-primary=0,app-canary=100",
		"app-primary=100,app-canary=0",
	})
}

// TestCanaryBreachRollsBack breaks the canary at its second step: the route
// goes back to 100/0 in one write, the canary is scaled to zero, and the
// Rollout ends RolledBack; when the target returns to v1 it goes idle.
func TestCanaryBreachRollsBack(t *testing.T) {
	ns := releaseEnv(t)
	log := env.WatchRouteWrites(t, ns, "app")
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
		{Pause: &backstopv1.PauseStep{}},
	}}})
	// Checks run every second, pauses included.
	ro.Spec.Analysis = &backstopv1.AnalysisSpec{Interval: &metav1.Duration{Duration: time.Second}}
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	writesBefore := len(log.States())
	verdicts.set(ro, analysis.Outcome{Result: backstopv1.VerdictFail, Check: "error-rate", Message: "0.31 > 0.01"})

	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	if got := kstatusOf(t, rolled); got != kstatus.FailedStatus {
		t.Errorf("kstatus of a rolled-back Rollout = %s, want Failed", got)
	}
	states := log.States()
	if writes := len(states) - writesBefore; writes != 1 {
		t.Errorf("the rollback wrote the route %d times; want 1", writes)
	}
	if last := states[len(states)-1]; last != "app-primary=100,app-canary=0" {
		t.Errorf("route after the rollback: %s; want app-primary=100,app-canary=0", last)
	}
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 1); got != 0 {
		t.Errorf("canary has %d replicas after the rollback; want 0", got)
	}
	if rolled.Status.CanaryWeight != 0 || rolled.Status.Revert == nil || rolled.Status.Revert.State != backstopv1.RevertSkipped {
		t.Errorf("status after the rollback: weight %d, revert %+v", rolled.Status.CanaryWeight, rolled.Status.Revert)
	}
	waitForEvent(t, context.Background(), ro, "Warning", "AnalysisFailed")

	// The revert lands: the target is v1 again, and the Rollout goes idle.
	verdicts.set(ro, analysis.Outcome{Result: backstopv1.VerdictPass})
	setImage(t, ns, "app:v1")
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
}

// TestRejectedRouteHoldsTheRelease: a gateway that rejects the route holds
// the release at its step, with Ready=False quoting the gateway's message.
func TestRejectedRouteHoldsTheRelease(t *testing.T) {
	ns := releaseEnv(t)
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
	}}})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

	var route gwapiv1.HTTPRoute
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "app"}, &route); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(route.DeepCopy())
	route.Annotations = map[string]string{testenv.RejectAnnotation: "listener http does not allow routes from this namespace"}
	if err := env.Client.Patch(context.Background(), &route, patch); err != nil {
		t.Fatal(err)
	}
	got := waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == backstopv1.ReasonRouteRejected })
	waitForEvent(t, context.Background(), ro, "Warning", backstopv1.ReasonRouteRejected)
	if got.Status != metav1.ConditionFalse || !strings.Contains(got.Message, "listener http does not allow routes from this namespace") {
		t.Errorf("Ready = %s %q; want False quoting the gateway", got.Status, got.Message)
	}

	setImage(t, ns, "app:v2")
	held := waitForPhase(t, ro, backstopv1.PhaseProgressing, 0)
	time.Sleep(3 * time.Second)
	if st := get(t, ro).Status; st.Phase != backstopv1.PhaseProgressing || st.CurrentStep != 0 {
		t.Errorf("release at %s step %d; want held at Progressing step 0", st.Phase, st.CurrentStep)
	}
	if got := kstatusOf(t, held); got != kstatus.InProgressStatus {
		t.Errorf("kstatus of a held release = %s, want InProgress", got)
	}
	if n := countEvents(t, context.Background(), ro, backstopv1.ReasonRouteRejected); n > 3 {
		t.Errorf("%d RouteRejected Events for one rejection held over several polls; want one per change of the Ready condition", n)
	}
}

// TestAbortThenRetry: the abort gate rolls the release back; retry releases
// the same revision again, which then promotes.
func TestAbortThenRetry(t *testing.T) {
	ns := releaseEnv(t)
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](40)},
		{Pause: &backstopv1.PauseStep{}},
	}}})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)

	setGate(t, ro, "abort")
	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	if rolled.Status.CanaryWeight != 0 {
		t.Errorf("weight %d after abort; want 0", rolled.Status.CanaryWeight)
	}
	waitForEvent(t, context.Background(), ro, "Warning", "Aborted")

	setGate(t, ro, "retry")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	setGate(t, ro, "promote-full")
	done := waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	if done.Status.StableRevision != rolled.Status.CanaryRevision {
		t.Errorf("stable revision %s; want the retried %s", done.Status.StableRevision, rolled.Status.CanaryRevision)
	}
	// The history holds both releases of the revision, newest first.
	var got []string
	for _, h := range done.Status.History {
		got = append(got, fmt.Sprintf("%s->%s %s %s start=%t", h.FromRevision, h.ToRevision, h.Outcome, h.Reason, h.StartTime != nil && !h.EndTime.Before(h.StartTime)))
	}
	from, to := rolled.Status.StableRevision, rolled.Status.CanaryRevision
	want := []string{from + "->" + to + " Promoted Promoted start=true", from + "->" + to + " RolledBack Aborted start=true"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("status.history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestGateThatDoesNotApplyIsRemoved: a gate set on an idle Rollout is
// removed with a Warning Event instead of acting on the next release.
func TestGateThatDoesNotApplyIsRemoved(t *testing.T) {
	ns := releaseEnv(t)
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
	}}})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setGate(t, ro, "abort")
	waitForEvent(t, context.Background(), ro, "Warning", backstopv1.ReasonGateIgnored)
	deadline := time.Now().Add(testenv.Timeout)
	for {
		if _, ok := get(t, ro).Annotations[controllers.GateAnnotation]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gate annotation was not removed")
		}
		time.Sleep(testenv.Poll)
	}
	// The next release is not aborted by the stale gate.
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
}

// TestFailedActionIsReported: an existing route with no rule naming both
// Services cannot carry the split; the failure shows in Ready and an Event
// rather than only in the manager's log.
func TestFailedActionIsReported(t *testing.T) {
	ns := releaseEnv(t)
	mustCreate(t, &gwapiv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "user", Namespace: ns},
		Spec: gwapiv1.HTTPRouteSpec{
			CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: []gwapiv1.ParentReference{{Name: "public"}}},
			Rules: []gwapiv1.HTTPRouteRule{{BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: gwapiv1.BackendRef{
				BackendObjectReference: gwapiv1.BackendObjectReference{Name: "legacy", Port: ptr.To[gwapiv1.PortNumber](80)}}}}}},
		},
	})
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
	}}})
	ro.Spec.Routes = []backstopv1.Route{{Name: "user", Existing: true}}
	mustCreate(t, ro)

	got := waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == backstopv1.ReasonActionFailed })
	if !strings.Contains(got.Message, `has no rule whose backendRefs name both Service "app-primary" and Service "app-canary"`) {
		t.Errorf("Ready message %q does not say why the route cannot carry the split", got.Message)
	}
	waitForEvent(t, context.Background(), ro, "Warning", backstopv1.ReasonActionFailed)
}

// TestIdleRolloutKeepsItsRoute: between releases, a change to the route
// template in the spec is applied, and a weight changed by hand is put back.
func TestIdleRolloutKeepsItsRoute(t *testing.T) {
	ns := releaseEnv(t)
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
	}}})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	ctx := context.Background()
	key := client.ObjectKey{Namespace: ns, Name: "app"}

	latest := get(t, ro)
	patch := client.MergeFrom(latest.DeepCopy())
	latest.Spec.Routes[0].Hostnames = []gwapiv1.Hostname{"app.example.com"}
	if err := env.Client.Patch(ctx, latest, patch); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the route to take the new hostname", func() bool {
		var route gwapiv1.HTTPRoute
		return env.Client.Get(ctx, key, &route) == nil && len(route.Spec.Hostnames) == 1 && route.Spec.Hostnames[0] == "app.example.com"
	})

	var route gwapiv1.HTTPRoute
	if err := env.Client.Get(ctx, key, &route); err != nil {
		t.Fatal(err)
	}
	rp := client.MergeFrom(route.DeepCopy())
	route.Spec.Rules[0].BackendRefs[0].Weight = ptr.To[int32](50)
	route.Spec.Rules[0].BackendRefs[1].Weight = ptr.To[int32](50)
	if err := env.Client.Patch(ctx, &route, rp); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the weights to be put back to 100/0", func() bool {
		var r gwapiv1.HTTPRoute
		return env.Client.Get(ctx, key, &r) == nil && testenv.DescribeRoute(&r) == "app-primary=100,app-canary=0"
	})
}

// TestCanaryThatNeverBecomesReadyRollsBack: a canary whose pods never
// become ready (here, an image that cannot be pulled) is rolled back once
// spec.progressDeadlineSeconds has passed, before any traffic reaches it,
// and the Ready condition, the Event and status.history say why, with the
// pods' own reason.
func TestCanaryThatNeverBecomesReadyRollsBack(t *testing.T) {
	ns := releaseEnv(t)
	log := env.WatchRouteWrites(t, ns, "app")
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
	}}})
	ro.Spec.ProgressDeadlineSeconds = ptr.To[int32](2)
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	writesBefore := len(log.States())

	// The kubelet's account of the canary's pod, and a target whose pods
	// the Deployment controller stand-in never reports ready.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-v2-1", Labels: map[string]string{"app": "app"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:v2"}}},
	}
	mustCreate(t, pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "app:v2", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "app:v2"`}}}}}
	if err := env.Client.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	d := deploymentOf(t, ns, "app")
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.Containers[0].Image = "app:v2"
	d.Spec.Template.Annotations = map[string]string{testenv.NeverReadyAnnotation: "true"}
	if err := env.Client.Patch(context.Background(), d, patch); err != nil {
		t.Fatal(err)
	}

	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	const why = `1 pod: ImagePullBackOff (Back-off pulling image "app:v2")`
	if h := rolled.Status.History; len(h) == 0 || h[0].Reason != "ProgressDeadlineExceeded" ||
		!strings.HasPrefix(h[0].Message, "The canary was not ready within 2s: ") || !strings.HasSuffix(h[0].Message, why) {
		t.Errorf("status.history[0] = %+v; want ProgressDeadlineExceeded, saying the canary was not ready and why", h)
	}
	ready := meta.FindStatusCondition(rolled.Status.Conditions, backstopv1.ReadyCondition)
	if ready == nil || ready.Reason != "RolledBack" || !strings.Contains(ready.Message, ". ProgressDeadlineExceeded: The canary was not ready within 2s") ||
		!strings.HasSuffix(ready.Message, why) {
		t.Errorf("Ready = %+v; want RolledBack, saying the deadline passed and what the pods say", ready)
	}
	waitForEvent(t, context.Background(), ro, "Warning", "ProgressDeadlineExceeded")
	if writes := log.States()[writesBefore:]; len(writes) != 0 {
		t.Errorf("the route was written %v; the canary never got traffic, so nothing had to move", writes)
	}
	t.Logf("Ready: %s", ready.Message)

	setImage(t, ns, "app:v1")
	d = deploymentOf(t, ns, "app")
	patch = client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Annotations = nil
	if err := env.Client.Patch(context.Background(), d, patch); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
}

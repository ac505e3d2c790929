package controllers_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/controllers/workload"
	"backstop.dev/backstop/test/testenv"
)

// These tests run without an HPA controller or KEDA: where one matters, the
// test acts as it, scaling the target through its scale subresource.

// scalerHPA returns a HorizontalPodAutoscaler of the Deployment target.
func scalerHPA(ns, name, target string, maxReplicas int32) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: target},
			MinReplicas:    ptr.To[int32](1),
			MaxReplicas:    maxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name:   corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](70)},
				},
			}},
		},
	}
}

// scalerSO returns a KEDA ScaledObject of the Deployment target.
func scalerSO(ns, name, target string, maxReplicas int64) *unstructured.Unstructured {
	so := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{
			"scaleTargetRef":  map[string]any{"name": target},
			"minReplicaCount": int64(1),
			"maxReplicaCount": maxReplicas,
			"triggers": []any{map[string]any{
				"type":     "cpu",
				"metadata": map[string]any{"type": "Utilization", "value": "70"},
			}},
		},
	}}
	so.SetGroupVersionKind(workload.ScaledObjectGVK)
	so.SetNamespace(ns)
	so.SetName(name)
	return so
}

// scaledObjectOf reads a ScaledObject; nil when there is none.
func scaledObjectOf(t *testing.T, ns, name string) *unstructured.Unstructured {
	t.Helper()
	so := &unstructured.Unstructured{}
	so.SetGroupVersionKind(workload.ScaledObjectGVK)
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, so)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return so
}

// hpaOf reads a HorizontalPodAutoscaler; nil when there is none.
func hpaOf(t *testing.T, ns, name string) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	var h autoscalingv2.HorizontalPodAutoscaler
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &h)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return &h
}

// pausedByBackstop says whether so carries Backstop's pause.
func pausedByBackstop(so *unstructured.Unstructured) bool {
	a := so.GetAnnotations()
	return a[workload.KEDAPausedReplicasAnnotation] == "0" && a[workload.ScalerPauseAnnotation] == "0"
}

// running says whether so carries no pause at all.
func running(so *unstructured.Unstructured) bool {
	a := so.GetAnnotations()
	_, paused := a[workload.KEDAPausedReplicasAnnotation]
	_, marked := a[workload.ScalerPauseAnnotation]
	return !paused && !marked
}

// patchSpec merges spec into an object's spec, as a person editing it in
// Git would have the GitOps tool do.
func patchSpec(t *testing.T, obj client.Object, spec string) {
	t.Helper()
	if err := env.Client.Patch(context.Background(), obj, client.RawPatch("application/merge-patch+json", []byte(`{"spec":`+spec+`}`))); err != nil {
		t.Fatal(err)
	}
}

// scaleAsAutoscaler sets the Deployment's replicas through its scale
// subresource, as an autoscaler does.
func scaleAsAutoscaler(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	ctx := context.Background()
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	var s autoscalingv1.Scale
	if err := env.Client.SubResource("scale").Get(ctx, d, &s); err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = replicas
	if err := env.Client.SubResource("scale").Update(ctx, d, client.WithSubResourceBody(&s)); err != nil {
		t.Fatal(err)
	}
}

func assertOwnedBy(t *testing.T, obj client.Object, ro *backstopv1.Rollout) {
	t.Helper()
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.Kind != backstopv1.RolloutKind || ref.Name != ro.Name || ref.UID != ro.UID {
		t.Errorf("%s: controller %+v, want Rollout %s", obj.GetName(), ref, ro.Name)
	}
}

// scalerSOList returns an empty list of ScaledObjects.
func scalerSOList() *unstructured.UnstructuredList {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(workload.ScaledObjectGVK.GroupVersion().WithKind("ScaledObjectList"))
	return list
}

// firstWrite watches the objects of list's kind in ns from now on, and
// sends the resourceVersion of the first write after which one satisfies
// ok; 0 when none did within releaseTimeout.
func firstWrite(t *testing.T, ns string, list client.ObjectList, ok func(client.Object) bool) <-chan int64 {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := wc.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	rv, err := meta.NewAccessor().ResourceVersion(list)
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(context.Background(), list, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan int64, 1)
	go func() {
		defer w.Stop()
		timeout := time.After(releaseTimeout)
		for {
			select {
			case e, open := <-w.ResultChan():
				if !open {
					out <- 0
					return
				}
				if o, isObj := e.Object.(client.Object); isObj && e.Type == watch.Modified && ok(o) {
					n, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
					out <- n
					return
				}
			case <-timeout:
				out <- 0
				return
			}
		}
	}()
	return out
}

// TestScalerHPATwinFollowsWhileIdle: the primary's HorizontalPodAutoscaler
// twin is made before any release and follows an edit of the user's at
// once, with no release; KEDA's own HorizontalPodAutoscaler gets no twin;
// the twin goes with its source.
func TestScalerHPATwinFollowsWhileIdle(t *testing.T) {
	ns := releaseEnv(t)
	ctx := context.Background()
	mustCreate(t, scalerHPA(ns, "app", "app", 5))
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
	}}})
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

	twinIs := func(what string, maxReplicas int32) *autoscalingv2.HorizontalPodAutoscaler {
		t.Helper()
		var twin *autoscalingv2.HorizontalPodAutoscaler
		testenv.Eventually(t, what, func() bool {
			twin = hpaOf(t, ns, "app-primary")
			return twin != nil && twin.Spec.MaxReplicas == maxReplicas
		})
		if ref := twin.Spec.ScaleTargetRef; ref.Name != "app-primary" || ref.Kind != "Deployment" {
			t.Errorf("twin scales %+v, want the Deployment app-primary", ref)
		}
		assertOwnedBy(t, twin, idle)
		return twin
	}
	twinIs("the twin of the user's HorizontalPodAutoscaler before any release", 5)

	patchSpec(t, hpaOf(t, ns, "app"), `{"maxReplicas":9}`)
	twinIs("the twin to follow the user's edit while idle", 9)
	if st := get(t, ro).Status; st.Phase != backstopv1.PhaseIdle || len(st.History) != 0 {
		t.Errorf("phase %s with %d releases; want Idle, and no release for an autoscaler's edit", st.Phase, len(st.History))
	}

	// KEDA's own HorizontalPodAutoscaler scales the target too.
	keda := scalerHPA(ns, "keda-hpa-app", "app", 5)
	keda.OwnerReferences = []metav1.OwnerReference{{APIVersion: "keda.sh/v1alpha1", Kind: "ScaledObject", Name: "app",
		UID: "6f1e9a52-4c1d-4f53-9a57-1d1b8d2c7e01", Controller: ptr.To(true)}}
	mustCreate(t, keda)
	patchSpec(t, hpaOf(t, ns, "app"), `{"maxReplicas":7}`)
	twinIs("the twin to follow the next edit", 7)
	if h := hpaOf(t, ns, "keda-hpa-app-primary"); h != nil {
		t.Errorf("KEDA's HorizontalPodAutoscaler got a twin %s", h.Name)
	}

	if err := env.Client.Delete(ctx, hpaOf(t, ns, "app")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the twin to go with its source", func() bool { return hpaOf(t, ns, "app-primary") == nil })
}

// TestScalerScaledObjectTwinAndPause: the ScaledObject's twin is made and
// follows while idle; the user's ScaledObject is paused between releases,
// running during one, paused again after a promotion and after a rollback;
// the twin goes with its source.
func TestScalerScaledObjectTwinAndPause(t *testing.T) {
	ns := releaseEnv(t)
	ctx := context.Background()
	mustCreate(t, scalerSO(ns, "app", "app", 5))
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{
		ReplicaPercent: ptr.To[int32](50),
		Steps:          []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](50)}, {Pause: &backstopv1.PauseStep{}}},
	}})
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

	twinIs := func(what string, maxReplicas int64) {
		t.Helper()
		var twin *unstructured.Unstructured
		testenv.Eventually(t, what, func() bool {
			if twin = scaledObjectOf(t, ns, "app-primary"); twin == nil {
				return false
			}
			got, _, _ := unstructured.NestedInt64(twin.Object, "spec", "maxReplicaCount")
			return got == maxReplicas
		})
		if target, ok := workload.ScaledObjectTarget(twin); !ok || target != "app-primary" {
			t.Errorf("twin scales %q, want the Deployment app-primary", target)
		}
		if twin.GetAnnotations()[workload.ScaledObjectSourceAnnotation] != "app" || !running(twin) {
			t.Errorf("twin annotations %v, want its source named and no pause", twin.GetAnnotations())
		}
		assertOwnedBy(t, twin, idle)
	}
	userIs := func(what string, ok func(*unstructured.Unstructured) bool) {
		t.Helper()
		testenv.Eventually(t, what, func() bool { return ok(scaledObjectOf(t, ns, "app")) })
	}

	twinIs("the twin of the user's ScaledObject before any release", 5)
	userIs("the user's ScaledObject paused while idle", pausedByBackstop)
	patchSpec(t, scaledObjectOf(t, ns, "app"), `{"maxReplicaCount":8}`)
	twinIs("the twin to follow the user's edit while idle", 8)

	resumed := firstWrite(t, ns, scalerSOList(), func(o client.Object) bool {
		return o.GetName() == "app" && running(o.(*unstructured.Unstructured))
	})
	scaledUp := firstWrite(t, ns, &appsv1.DeploymentList{}, func(o client.Object) bool {
		return o.GetName() == "app" && ptr.Deref(o.(*appsv1.Deployment).Spec.Replicas, 1) > 0
	})
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	userIs("the user's ScaledObject running during the release", running)
	// In the one etcd of the test's control plane, resourceVersions are
	// its revisions, so they order writes to objects of different kinds.
	if r, u := <-resumed, <-scaledUp; r >= u {
		t.Errorf("the ScaledObject was resumed at revision %d, after the canary was scaled up at %d; want before", r, u)
	}
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 0); got != 2 {
		t.Errorf("canary started at %d replicas; want 50%% of the primary's 4", got)
	}
	setGate(t, ro, "promote")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	userIs("the user's ScaledObject paused after the promotion", pausedByBackstop)

	setImage(t, ns, "app:v3")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	userIs("the user's ScaledObject running during the next release", running)
	setGate(t, ro, "abort")
	waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	userIs("the user's ScaledObject paused after the rollback", pausedByBackstop)
	twinIs("the twin kept through both releases", 8)

	if err := env.Client.Delete(ctx, scaledObjectOf(t, ns, "app")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the twin to go with its source", func() bool { return scaledObjectOf(t, ns, "app-primary") == nil })
}

// TestScalerUserPauseIsKept: a pause the user set on their ScaledObject is
// theirs: Backstop neither marks it nor removes it for a release.
func TestScalerUserPauseIsKept(t *testing.T) {
	ns := releaseEnv(t)
	so := scalerSO(ns, "app", "app", 5)
	so.SetAnnotations(map[string]string{workload.KEDAPausedReplicasAnnotation: "2"})
	mustCreate(t, so)
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)}, {Pause: &backstopv1.PauseStep{}},
	}}})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	testenv.Eventually(t, "the twin", func() bool { return scaledObjectOf(t, ns, "app-primary") != nil })
	want := map[string]string{workload.KEDAPausedReplicasAnnotation: "2"}
	check := func(when string) {
		t.Helper()
		if got := scaledObjectOf(t, ns, "app").GetAnnotations(); len(got) != 1 || got[workload.KEDAPausedReplicasAnnotation] != "2" {
			t.Errorf("annotations %s: %v, want the user's %v alone", when, got, want)
		}
	}
	check("while idle")
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	check("during a release")
	setGate(t, ro, "promote")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	check("after the promotion")
}

// TestScalerNoReplicaFight: during a release Backstop starts the canary
// from zero and then leaves its count to the canary's autoscaler; without
// one, it holds the canary at its count.
func TestScalerNoReplicaFight(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scaler func(ns string) client.Object
		// kept says the autoscaler's count stays; otherwise Backstop puts
		// back its own.
		kept bool
	}{
		{name: "no autoscaler", scaler: nil, kept: false},
		{name: "a HorizontalPodAutoscaler", scaler: func(ns string) client.Object { return scalerHPA(ns, "app", "app", 10) }, kept: true},
		{name: "a ScaledObject", scaler: func(ns string) client.Object { return scalerSO(ns, "app", "app", 10) }, kept: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := releaseEnv(t)
			if tc.scaler != nil {
				mustCreate(t, tc.scaler(ns))
			}
			ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{
				ReplicaPercent: ptr.To[int32](50),
				Steps:          []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](20)}, {Pause: &backstopv1.PauseStep{}}},
			}})
			// A look every second, pauses included.
			ro.Spec.Analysis = &backstopv1.AnalysisSpec{Interval: &metav1.Duration{Duration: time.Second}}
			mustCreate(t, ro)
			waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

			setImage(t, ns, "app:v2")
			waitForPhase(t, ro, backstopv1.PhasePaused, 1)
			if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 0); got != 2 {
				t.Errorf("canary started at %d replicas; want 50%% of the primary's 4", got)
			}

			scaleAsAutoscaler(t, ns, "app", 5)
			if tc.kept {
				// Several looks at the release go by.
				time.Sleep(3 * time.Second)
				if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 0); got != 5 {
					t.Errorf("canary at %d replicas; want the autoscaler's 5 left alone", got)
				}
				if st := get(t, ro).Status; st.Phase != backstopv1.PhasePaused || st.CurrentStep != 1 {
					t.Errorf("release at %s step %d; want it held at Paused step 1", st.Phase, st.CurrentStep)
				}
			} else {
				testenv.Eventually(t, "Backstop to put back the canary's 2 replicas", func() bool {
					return ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 0) == 2
				})
			}

			setGate(t, ro, "promote")
			waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
			testenv.Eventually(t, "the canary scaled to zero after the promotion", func() bool {
				return ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 1) == 0
			})
		})
	}
}

// TestScalerTwinNameTaken: a twin that cannot be written (its name belongs
// to another controller's object) is reported, and holds nothing: the
// Rollout still sets up and releases.
func TestScalerTwinNameTaken(t *testing.T) {
	ns := releaseEnv(t)
	mustCreate(t, scalerHPA(ns, "app", "app", 5))
	taken := scalerHPA(ns, "app-primary", "other", 3)
	taken.OwnerReferences = []metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "Autoscaler", Name: "other",
		UID: "3d0c1c0e-7f55-4c1b-8a55-6c7b0d6c9a21", Controller: ptr.To(true)}}
	mustCreate(t, taken)
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
	}}})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	msg := waitForEvent(t, context.Background(), ro, "Warning", controllers.ReasonScalerSyncFailed)
	if !strings.Contains(msg, `app-primary belongs to Autoscaler "other"`) {
		t.Errorf("Event message %q does not say who owns the twin's name", msg)
	}
	if h := hpaOf(t, ns, "app-primary"); h.Spec.ScaleTargetRef.Name != "other" || h.Spec.MaxReplicas != 3 {
		t.Errorf("the other controller's HorizontalPodAutoscaler was changed: %+v", h.Spec)
	}
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
}

// TestScalerPauseRemovedWhenDeleted: the hand-back of a deleted Rollout
// removes Backstop's pause from the user's ScaledObject, so KEDA sizes the
// target again once the Rollout is gone.
func TestScalerPauseRemovedWhenDeleted(t *testing.T) {
	ns := releaseEnv(t)
	ctx := context.Background()
	mustCreate(t, scalerSO(ns, "app", "app", 5))
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{
		Steps: []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](50)}},
	}})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	testenv.Eventually(t, "the user's ScaledObject paused while idle", func() bool { return pausedByBackstop(scaledObjectOf(t, ns, "app")) })

	if err := env.Client.Delete(ctx, ro); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the Rollout to be handed back and gone", func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &backstopv1.Rollout{}))
	})
	if so := scaledObjectOf(t, ns, "app"); !running(so) {
		t.Errorf("after the hand-back the user's ScaledObject has annotations %v; want Backstop's pause gone", so.GetAnnotations())
	}
	if got := ptr.Deref(deploymentOf(t, ns, "app").Spec.Replicas, 0); got < 1 {
		t.Errorf("after the hand-back the target has %d replicas; want it scaled up", got)
	}
}

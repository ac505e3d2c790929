package workload_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"backstop.dev/backstop/controllers/workload"
	"backstop.dev/backstop/test/testenv"
)

var kedaOnce sync.Once

// withKEDA installs the test definition of KEDA's ScaledObject into the
// package's control plane, once.
func withKEDA(t *testing.T) {
	t.Helper()
	var err error
	kedaOnce.Do(func() {
		_, err = envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{
			Paths:              []string{filepath.Join(testenv.RepoRoot(), "test", "testenv", "testdata", "keda-crds.yaml")},
			ErrorIfPathMissing: true,
		})
	})
	if err != nil {
		t.Fatalf("installing the ScaledObject CRD: %v", err)
	}
}

// scaledObject returns a ScaledObject scaling the Deployment target, with a
// Prometheus trigger whose query names it.
func scaledObject(ns, name, target string, maxReplicas int64) *unstructured.Unstructured {
	so := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{
			"scaleTargetRef":  map[string]any{"name": target},
			"minReplicaCount": int64(1),
			"maxReplicaCount": maxReplicas,
			"triggers": []any{map[string]any{
				"type": "prometheus",
				"metadata": map[string]any{
					"serverAddress": "http://prometheus:9090",
					"query":         `sum(rate(http_requests_total{deployment="` + target + `"}[1m]))`,
					"threshold":     "100",
				},
			}},
		},
	}}
	so.SetGroupVersionKind(workload.ScaledObjectGVK)
	so.SetNamespace(ns)
	so.SetName(name)
	return so
}

func getScaledObject(t *testing.T, ns, name string) *unstructured.Unstructured {
	t.Helper()
	so := &unstructured.Unstructured{}
	so.SetGroupVersionKind(workload.ScaledObjectGVK)
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, so); err != nil {
		t.Fatalf("reading scaledobject %s/%s: %v", ns, name, err)
	}
	return so
}

func TestScaledObjectTarget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ref    map[string]any
		want   string
		wantOK bool
	}{
		{"KEDA's defaults: an apps/v1 Deployment", map[string]any{"name": "web"}, "web", true},
		{"a Deployment named in full", map[string]any{"name": "web", "kind": "Deployment", "apiVersion": "apps/v1"}, "web", true},
		{"a StatefulSet", map[string]any{"name": "web", "kind": "StatefulSet", "apiVersion": "apps/v1"}, "", false},
		{"a custom resource called Deployment", map[string]any{"name": "web", "kind": "Deployment", "apiVersion": "example.com/v1"}, "", false},
		{"no name", map[string]any{"kind": "Deployment"}, "", false},
		{"no scaleTargetRef", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			so := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{}}}
			if tc.ref != nil {
				so.Object["spec"].(map[string]any)["scaleTargetRef"] = tc.ref
			}
			got, ok := workload.ScaledObjectTarget(so)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("ScaledObjectTarget = %q, %v; want %q, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestMirrorScaledObjects(t *testing.T) {
	withKEDA(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	ro := rollout(ns)
	user, other := scaledObject(ns, "web", "web", 5), scaledObject(ns, "other", "other", 5)
	if err := unstructured.SetNestedField(user.Object, "web-hpa", "spec", "advanced", "horizontalPodAutoscalerConfig", "name"); err != nil {
		t.Fatal(err)
	}
	create(t, ro, user, other)
	names := workload.NamesFor(ro)

	mirror := func(wantChanged bool) {
		t.Helper()
		changed, _, err := workload.MirrorScaledObjects(ctx, env.Client, env.Client, ro, names)
		if err != nil || changed != wantChanged {
			t.Fatalf("MirrorScaledObjects: changed=%v err=%v, want changed=%v", changed, err, wantChanged)
		}
	}
	checkTwin := func(wantMax int64) *unstructured.Unstructured {
		t.Helper()
		twin := getScaledObject(t, ns, "web-primary")
		if target, ok := workload.ScaledObjectTarget(twin); !ok || target != "web-primary" {
			t.Errorf("twin scales %q (ok %v), want the Deployment web-primary", target, ok)
		}
		if got, _, _ := unstructured.NestedInt64(twin.Object, "spec", "maxReplicaCount"); got != wantMax {
			t.Errorf("twin maxReplicaCount %d, want the user's %d", got, wantMax)
		}
		if got, _, _ := unstructured.NestedString(twin.Object, "spec", "advanced", "horizontalPodAutoscalerConfig", "name"); got != "web-hpa-primary" {
			t.Errorf("twin's HorizontalPodAutoscaler name %q, want web-hpa-primary", got)
		}
		triggers, _, _ := unstructured.NestedSlice(twin.Object, "spec", "triggers")
		if len(triggers) != 1 {
			t.Fatalf("twin triggers %v, want the user's one", triggers)
		}
		if q, _, _ := unstructured.NestedString(triggers[0].(map[string]any), "metadata", "query"); q != `sum(rate(http_requests_total{deployment="web"}[1m]))` {
			t.Errorf("twin query %q, want the user's copied as it is", q)
		}
		if src := twin.GetAnnotations()[workload.ScaledObjectSourceAnnotation]; src != "web" {
			t.Errorf("twin source annotation %q, want web", src)
		}
		assertControlledBy(t, twin, ro)
		return twin
	}

	mirror(true)
	twin := checkTwin(5)
	mirror(false)
	if again := checkTwin(5); again.GetResourceVersion() != twin.GetResourceVersion() {
		t.Errorf("twin resourceVersion %s -> %s after a MirrorScaledObjects that changed nothing", twin.GetResourceVersion(), again.GetResourceVersion())
	}

	// The user changes the spec; someone annotates the twin.
	user = getScaledObject(t, ns, "web")
	if err := unstructured.SetNestedField(user.Object, int64(9), "spec", "maxReplicaCount"); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Update(ctx, user); err != nil {
		t.Fatal(err)
	}
	twin = getScaledObject(t, ns, "web-primary")
	twin.SetAnnotations(map[string]string{"autoscaling.keda.sh/paused": "true", workload.ScaledObjectSourceAnnotation: "web"})
	if err := env.Client.Update(ctx, twin); err != nil {
		t.Fatal(err)
	}
	mirror(true)
	if got := checkTwin(9).GetAnnotations()["autoscaling.keda.sh/paused"]; got != "true" {
		t.Errorf("an annotation set on the twin was dropped: %q", got)
	}

	if err := env.Client.Delete(ctx, user); err != nil {
		t.Fatal(err)
	}
	mirror(true)
	gone := &unstructured.Unstructured{}
	gone.SetGroupVersionKind(workload.ScaledObjectGVK)
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-primary"}, gone); !apierrors.IsNotFound(err) {
		t.Errorf("twin after the user's ScaledObject was deleted: %v, want NotFound", err)
	}
	if other := getScaledObject(t, ns, "other"); other.GetAnnotations() != nil {
		t.Errorf("the ScaledObject of another Deployment was annotated: %v", other.GetAnnotations())
	}
	mirror(false)
}

func TestPauseScaledObjects(t *testing.T) {
	withKEDA(t)
	const (
		paused = workload.KEDAPausedReplicasAnnotation
		mark   = workload.ScalerPauseAnnotation
	)
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		pause       bool
		want        map[string]string
		wantChanged bool
	}{
		{"pauses a running one", nil, true,
			map[string]string{paused: "0", mark: "0"}, true},
		{"pausing a paused one writes nothing", map[string]string{paused: "0", mark: "0"}, true,
			map[string]string{paused: "0", mark: "0"}, false},
		{"resumes its own pause", map[string]string{paused: "0", mark: "0", "team": "web"}, false,
			map[string]string{"team": "web"}, true},
		{"resuming a running one writes nothing", map[string]string{"team": "web"}, false,
			map[string]string{"team": "web"}, false},
		{"keeps a user's pause when pausing", map[string]string{paused: "2"}, true,
			map[string]string{paused: "2"}, false},
		{"keeps a user's pause when resuming", map[string]string{paused: "0"}, false,
			map[string]string{paused: "0"}, false},
		{"a pause changed by a user becomes theirs", map[string]string{paused: "3", mark: "0"}, false,
			map[string]string{paused: "3"}, true},
		{"a pause removed by a user is set again", map[string]string{mark: "0"}, true,
			map[string]string{paused: "0", mark: "0"}, true},
		{"pauses at zero over a user's paused=true", map[string]string{"autoscaling.keda.sh/paused": "true"}, true,
			map[string]string{"autoscaling.keda.sh/paused": "true", paused: "0", mark: "0"}, true},
		{"resuming keeps a user's paused=true", map[string]string{"autoscaling.keda.sh/paused": "true", paused: "0", mark: "0"}, false,
			map[string]string{"autoscaling.keda.sh/paused": "true"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ns := env.Namespace(t)
			ro := rollout(ns)
			user, other := scaledObject(ns, "web", "web", 5), scaledObject(ns, "other", "other", 5)
			user.SetAnnotations(tc.annotations)
			create(t, user, other)
			before := getScaledObject(t, ns, "web")

			changed, err := workload.PauseScaledObjects(ctx, env.Client, env.Client, workload.NamesFor(ro), tc.pause)
			if err != nil || changed != tc.wantChanged {
				t.Fatalf("PauseScaledObjects(pause=%v): changed=%v err=%v, want changed=%v", tc.pause, changed, err, tc.wantChanged)
			}
			after := getScaledObject(t, ns, "web")
			if got := after.GetAnnotations(); !equalMaps(got, tc.want) {
				t.Errorf("annotations %v, want %v", got, tc.want)
			}
			if !tc.wantChanged && after.GetResourceVersion() != before.GetResourceVersion() {
				t.Errorf("resourceVersion %s -> %s, want no write", before.GetResourceVersion(), after.GetResourceVersion())
			}
			spec, _, _ := unstructured.NestedMap(after.Object, "spec")
			wantSpec, _, _ := unstructured.NestedMap(before.Object, "spec")
			if !equality.Semantic.DeepEqual(spec, wantSpec) {
				t.Errorf("spec changed to %v, want %v", spec, wantSpec)
			}
			if got := getScaledObject(t, ns, "other").GetAnnotations(); len(got) != 0 {
				t.Errorf("the ScaledObject of another Deployment got annotations %v", got)
			}
		})
	}
}

// TestPauseScaledObjectsKeepsAPauseSetMeanwhile: a resume decided on a copy
// older than a pause someone set meanwhile conflicts rather than removing
// that pause.
func TestPauseScaledObjectsKeepsAPauseSetMeanwhile(t *testing.T) {
	withKEDA(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	ro := rollout(ns)
	user := scaledObject(ns, "web", "web", 5)
	user.SetAnnotations(map[string]string{workload.KEDAPausedReplicasAnnotation: "0", workload.ScalerPauseAnnotation: "0"})
	create(t, user)
	stale := &frozenReader{list: *listScaledObjects(t, ns)}

	// A person pauses at 2 after the copy was read.
	cur := getScaledObject(t, ns, "web")
	cur.SetAnnotations(map[string]string{workload.KEDAPausedReplicasAnnotation: "2"})
	if err := env.Client.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if _, err := workload.PauseScaledObjects(ctx, env.Client, stale, workload.NamesFor(ro), false); !apierrors.IsConflict(err) {
		t.Fatalf("resume on a stale copy: %v, want a conflict", err)
	}
	if got := getScaledObject(t, ns, "web").GetAnnotations()[workload.KEDAPausedReplicasAnnotation]; got != "2" {
		t.Errorf("paused-replicas %q after a stale resume, want the person's 2", got)
	}
}

// frozenReader lists what it was given: a cache that lags behind.
type frozenReader struct {
	client.Reader
	list unstructured.UnstructuredList
}

func (f *frozenReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	f.list.DeepCopyInto(list.(*unstructured.UnstructuredList))
	return nil
}

func listScaledObjects(t *testing.T, ns string) *unstructured.UnstructuredList {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(workload.ScaledObjectGVK.GroupVersion().WithKind("ScaledObjectList"))
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return list
}

// TestMirrorHPALeavesKEDAsOwn: the HorizontalPodAutoscaler KEDA makes for a
// ScaledObject scales the target too, but gets no twin: the ScaledObject's
// twin makes the primary's.
func TestMirrorHPALeavesKEDAsOwn(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro := rollout(ns)
	keda := hpa(ns, "keda-hpa-web", "web", 5)
	keda.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "keda.sh/v1alpha1", Kind: "ScaledObject", Name: "web",
		UID: "0b6c54b4-7a3c-4c4e-9d40-0e3e0c1f0a11", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
	create(t, ro, keda)
	names := workload.NamesFor(ro)
	if changed, _, err := workload.MirrorHPA(ctx, env.Client, ro, names); err != nil || changed {
		t.Fatalf("MirrorHPA: changed=%v err=%v, want nothing written", changed, err)
	}
	var list autoscalingv2.HorizontalPodAutoscalerList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Errorf("%d HorizontalPodAutoscalers, want KEDA's alone", len(list.Items))
	}
	if has, err := workload.TargetHasHPA(ctx, env.Client, names); err != nil || !has {
		t.Errorf("TargetHasHPA = %v, %v; want true: KEDA's scales the target", has, err)
	}
	if _, ok := workload.UserHPATarget(keda); ok {
		t.Errorf("UserHPATarget takes KEDA's HorizontalPodAutoscaler for the user's")
	}
}

func TestScaleFromZero(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		replicas    int32
		want        int32
		wantChanged bool
	}{
		{"starts a Deployment at zero", 0, 2, true},
		{"leaves a running one to its autoscaler", 5, 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			d := target(ns)
			d.Spec.Replicas = ptr.To(tc.replicas)
			create(t, d)
			key := client.ObjectKeyFromObject(d)
			changed, err := workload.ScaleFromZero(ctx, env.Client, key, 2)
			if err != nil || changed != tc.wantChanged {
				t.Fatalf("ScaleFromZero: changed=%v err=%v, want changed=%v", changed, err, tc.wantChanged)
			}
			var got appsv1.Deployment
			get(t, ns, "web", &got)
			if r := ptr.Deref(got.Spec.Replicas, 1); r != tc.want {
				t.Errorf("%d replicas, want %d", r, tc.want)
			}
		})
	}
}

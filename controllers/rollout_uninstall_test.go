package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/controllers/workload"
	"backstop.dev/backstop/test/proc"
	"backstop.dev/backstop/test/testenv"
)

// These tests stop the manager, or delete the CRDs, so they run against a
// control plane of their own rather than the package's.

// ownControlPlane starts a control plane for one test.
func ownControlPlane(t *testing.T) *testenv.Env {
	t.Helper()
	e, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

// startManager runs the Rollout reconciler against e, acting on the
// Rollouts sel selects (nil: all), as cmd/backstop's manager does, until
// the returned function stops it.
func startManager(t *testing.T, e *testenv.Env, sel labels.Selector) (stop func()) {
	t.Helper()
	rollouts := cache.ByObject{}
	if sel != nil {
		rollouts.Label = sel
	}
	mgr, err := ctrl.NewManager(e.Config, ctrl.Options{
		Scheme:                 e.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The package's manager has a controller of the same name.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&backstopv1.Rollout{}: rollouts,
			&corev1.Service{}:     {Label: workload.ServiceCacheSelector()},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &controllers.RolloutReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder(controllers.ControllerName),
	}
	if err := r.SetupWithManager(mgr, 4); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// appIn makes, in a new namespace of e, the Deployment "app" at 4 replicas
// and the Gateway "public", with the stand-ins for the Deployment
// controller and the gateway, and returns the namespace.
func appIn(t *testing.T, e *testenv.Env) string {
	t.Helper()
	ns := e.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e.RunDeploymentController(ctx, ns)
	e.RunGateway(ctx, ns)
	d := deployment("app")(ns).(*appsv1.Deployment)
	d.Spec.Replicas = ptr.To[int32](4)
	for _, obj := range []client.Object{d, gateway("public")(ns)} {
		if err := e.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// phaseIn waits until the Rollout of e reaches phase and returns it.
func phaseIn(t *testing.T, e *testenv.Env, ro *backstopv1.Rollout, phase backstopv1.RolloutPhase) *backstopv1.Rollout {
	t.Helper()
	var last backstopv1.Rollout
	deadline := time.Now().Add(releaseTimeout)
	for time.Now().Before(deadline) {
		if err := e.Client.Get(context.Background(), client.ObjectKeyFromObject(ro), &last); err == nil && last.Status.Phase == phase {
			return &last
		}
		time.Sleep(testenv.Poll)
	}
	t.Fatalf("Rollout %s/%s did not reach %s; status %+v", ro.Namespace, ro.Name, phase, last.Status)
	return nil
}

// setTargetImage changes the image of the target "app" of e.
func setTargetImage(t *testing.T, e *testenv.Env, ns, image string) {
	t.Helper()
	var d appsv1.Deployment
	if err := e.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "app"}, &d); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.Containers[0].Image = image
	if err := e.Client.Patch(context.Background(), &d, patch); err != nil {
		t.Fatal(err)
	}
}

// managedLabel selects the Rollouts the manager of TestHandBackResumes acts
// on; taking it off stops the manager acting, as if it had been killed.
const managedLabel = "test.backstop.dev/managed"

func setManaged(t *testing.T, e *testenv.Env, ro *backstopv1.Rollout, on bool) {
	t.Helper()
	value := `null`
	if on {
		value = `"yes"`
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, managedLabel, value)
	obj := &backstopv1.Rollout{}
	obj.Namespace, obj.Name = ro.Namespace, ro.Name
	if err := e.Client.Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// TestHandBackResumes stops the hand-back after each of its steps (the
// manager killed there) and has a new manager take it over: whatever step
// it stopped after, the hand-back ends in the same state, having written
// the route the same times, and no step ever sent traffic to a target that
// was not ready or changed the target's template under traffic.
func TestHandBackResumes(t *testing.T) {
	e := ownControlPlane(t)
	sel := labels.SelectorFromSet(labels.Set{managedLabel: "yes"})
	startManager(t, e, sel)
	// step is the reconciler of a manager that is killed after the step
	// it takes.
	step := &controllers.RolloutReconciler{Client: e.Client, APIReader: e.Client}

	// What the route goes through, from idle, whatever step the first
	// manager stopped after: no write is repeated, none is missed.
	routeStates := map[string][]string{
		"idle":        {"app-primary=100,app-canary=0", handedBack},
		"mid-release": {"app-primary=100,app-canary=0", "app-primary=70,app-canary=30", "app-primary=100,app-canary=0", handedBack},
	}
	for _, tc := range []struct {
		scenario string
		// stopAfter is the step the first manager took last; "" stops
		// it before the first.
		stopAfter string
		// halfOrphaned has the manager killed in the middle of the
		// orphaning: the Service is orphaned, the route not.
		halfOrphaned bool
	}{
		{"idle", "", false},
		{"idle", "ScaleUp", false},
		{"idle", "TrafficToTarget", false},
		{"idle", "TrafficToTarget", true},
		{"idle", "Orphan", false},
		{"mid-release", "", false},
		{"mid-release", "TrafficToPrimary", false},
		{"mid-release", "RestoreTemplate", false},
		{"mid-release", "ScaleUp", false},
		{"mid-release", "TrafficToTarget", false},
		{"mid-release", "Orphan", false},
	} {
		name := tc.scenario + "/after " + tc.stopAfter
		if tc.halfOrphaned {
			name += " and half the orphaning"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := appIn(t, e)
			routes := e.WatchRouteWrites(t, ns, "app")
			ro := releaseRollout(ns, pausedCanary())
			ro.Labels = map[string]string{managedLabel: "yes"}
			if err := e.Client.Create(ctx, ro); err != nil {
				t.Fatal(err)
			}
			at := phaseIn(t, e, ro, backstopv1.PhaseIdle)
			if tc.scenario == "mid-release" {
				setTargetImage(t, e, ns, "app:v2")
				at = phaseIn(t, e, ro, backstopv1.PhasePaused)
			}
			// The manager stops acting on the Rollout; it is deleted.
			setManaged(t, e, ro, false)
			if err := e.Client.Delete(ctx, at); err != nil {
				t.Fatal(err)
			}
			key := client.ObjectKeyFromObject(ro)
			deadline := time.Now().Add(testenv.Timeout)
			for took := ""; tc.stopAfter != "" && took != tc.stopAfter; {
				if time.Now().After(deadline) {
					t.Fatalf("the hand-back never took step %s", tc.stopAfter)
				}
				// Only the steps write the route; the stand-in makes a
				// Deployment ready, never unready.
				_, before := routeOf(t, e.Client, ns, "app")
				var err error
				took, err = step.HandBackStep(ctx, key)
				if err != nil {
					t.Fatalf("step %s: %v", took, err)
				}
				switch took {
				case "RestoreTemplate":
					if before != "app-primary=100,app-canary=0" {
						t.Errorf("the target's template was changed while the route said %s", before)
					}
				case "TrafficToTarget":
					target, primary := deploymentIn(t, e, ns, "app"), deploymentIn(t, e, ns, "app-primary")
					if ready, why := workload.Ready(target); !ready || workload.Revision(target) != workload.Revision(primary) {
						t.Errorf("traffic was sent to the target while it was not ready (%s) or not running the primary's template", why)
					}
				case "WaitForTarget":
					time.Sleep(testenv.Poll)
				case "LetGo":
					t.Fatalf("the hand-back ended before step %s", tc.stopAfter)
				}
			}
			if tc.halfOrphaned {
				var svc corev1.Service
				if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-canary"}, &svc); err != nil {
					t.Fatal(err)
				}
				if wrote, err := workload.Disown(ctx, e.Client, at, &svc); err != nil || !wrote {
					t.Fatalf("orphaning the Service: wrote=%v err=%v", wrote, err)
				}
			}
			// A new manager takes the Rollout over.
			setManaged(t, e, ro, true)
			waitGone(t, e.Client, ro)
			assertHandedBack(t, e.Client, ns, at.UID, 4, "app:v1")
			assertLeftToGC(t, e.Client, ns, at.UID)
			assertStates(t, routes.States(), routeStates[tc.scenario])
		})
	}
}

func deploymentIn(t *testing.T, e *testenv.Env, ns, name string) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := e.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// TestUninstall follows docs/uninstall.md: every Rollout is deleted while
// the manager runs, then the manager stops, then the CRDs are deleted.
// Nothing is left stuck, each application is served by its target through
// the Service <svc>-canary, and the garbage collector (a real
// kube-controller-manager) deletes what Backstop made for itself and
// nothing the traffic needs.
func TestUninstall(t *testing.T) {
	gcBinary := filepath.Join(testenv.RepoRoot(), "bin", "kube-controller-manager")
	if _, err := os.Stat(gcBinary); err != nil {
		t.Skipf("kube-controller-manager is not built (make bin/kube-controller-manager): %v", err)
	}
	e := ownControlPlane(t)
	gc, err := proc.Start(t.TempDir(), "kube-controller-manager", gcBinary, []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--controllers=garbagecollector",
		"--leader-elect=false",
		"--secure-port=0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gc.Stop)
	stopManager := startManager(t, e, nil)
	ctx := context.Background()

	// An idle application, and one deleted in the middle of a release.
	var rollouts []*backstopv1.Rollout
	for _, midRelease := range []bool{false, true} {
		ns := appIn(t, e)
		ro := releaseRollout(ns, pausedCanary())
		if err := e.Client.Create(ctx, ro); err != nil {
			t.Fatal(err)
		}
		at := phaseIn(t, e, ro, backstopv1.PhaseIdle)
		if midRelease {
			setTargetImage(t, e, ns, "app:v2")
			at = phaseIn(t, e, ro, backstopv1.PhasePaused)
		}
		rollouts = append(rollouts, at)
	}
	tmpl := &backstopv1.ClusterSLOTemplate{}
	tmpl.Name = "uninstall-test"
	tmpl.Spec.Query = "vector(0)"
	tmpl.Spec.Max = ptr.To(backstopv1.Decimal("1"))
	if err := e.Client.Create(ctx, tmpl); err != nil {
		t.Fatal(err)
	}

	kubectl := func(args ...string) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 2*testenv.Timeout)
		defer cancel()
		if out, err := e.KubectlCmd(cctx, args...).CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	// 1. Delete every Rollout while the manager runs, and wait for them.
	kubectl("delete", "rollouts.backstop.dev", "--all", "--all-namespaces", "--wait=true", "--timeout=60s")
	// 2. Stop the manager.
	stopManager()
	// 3. Delete the CRDs (config/default deletes them with the RBAC and
	// the manager's namespace, which this control plane does not have).
	kubectl("delete", "-k", "config/crd", "--wait=true", "--timeout=60s")

	for _, name := range []string{"rollouts.backstop.dev", "slotemplates.backstop.dev", "clusterslotemplates.backstop.dev"} {
		crd := &unstructured.Unstructured{}
		crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
		if err := e.Client.Get(ctx, client.ObjectKey{Name: name}, crd); !apierrors.IsNotFound(err) {
			t.Errorf("CRD %s after the uninstall: %v (finalizers %v); want it gone", name, err, crd.GetFinalizers())
		}
	}
	for _, ro := range rollouts {
		ns := ro.Namespace
		assertHandedBack(t, e.Client, ns, ro.UID, 4, "app:v1")
		testenv.Eventually(t, "the garbage collector to delete the primary and its Service in "+ns, func() bool {
			errD := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-primary"}, &appsv1.Deployment{})
			errS := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-primary"}, &corev1.Service{})
			return apierrors.IsNotFound(errD) && apierrors.IsNotFound(errS)
		})
		var revisions appsv1.ControllerRevisionList
		if err := e.Client.List(ctx, &revisions, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, rev := range revisions.Items {
			if slices.Contains(ownerUIDs(&rev), ro.UID) {
				t.Errorf("ControllerRevision %s of the deleted Rollout is still there", rev.Name)
			}
		}
		// What carries the traffic outlived the garbage collector's pass.
		if _, desc := routeOf(t, e.Client, ns, "app"); desc != handedBack {
			t.Errorf("HTTPRoute app in %s after the uninstall: %s; want %s", ns, desc, handedBack)
		}
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-canary"}, &corev1.Service{}); err != nil {
			t.Errorf("Service app-canary in %s after the uninstall: %v", ns, err)
		}
		var route gwapiv1.HTTPRoute
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &route); err != nil || route.DeletionTimestamp != nil {
			t.Errorf("HTTPRoute app in %s is going: %v", ns, err)
		}
	}
}

// Package restart_test proves that a release survives its manager being
// killed at any moment: managers are started and stopped again and again
// during one release, and the release ends as an uninterrupted one does,
// with the same route writes and no more.
package restart_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	logs := io.Discard
	if os.Getenv("BACKSTOP_TEST_LOGS") != "" {
		logs = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))
	testenv.Main(m, &env)
}

// runManager starts a manager with the Rollout controller and returns a
// function that kills it (cancels its context) and waits until it stopped.
func runManager(t *testing.T) (kill func()) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Every manager of this test registers the same controller name.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &controllers.RolloutReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder(controllers.ControllerName),
	}
	if err := r.SetupWithManager(mgr, 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
}

func phaseOf(t *testing.T, key client.ObjectKey) backstopv1.RolloutStatus {
	t.Helper()
	var ro backstopv1.Rollout
	if err := env.Client.Get(context.Background(), key, &ro); err != nil {
		t.Fatal(err)
	}
	return ro.Status
}

// TestReleaseSurvivesManagerKills runs one canary release while killing the
// manager again and again, after lifetimes chosen to land at different
// points of the release (mid-step, mid-promotion, between a route write and
// its status write), and checks that it ends as an uninterrupted release
// does: promoted, with the route written exactly once per weight.
func TestReleaseSurvivesManagerKills(t *testing.T) {
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env.RunDeploymentController(ctx, ns)
	env.RunGateway(ctx, ns)

	labels := map[string]string{"app": "app"}
	mustCreate(t, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:v1"}}},
			},
		},
	})
	mustCreate(t, &gwapiv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "public", Namespace: ns},
		Spec: gwapiv1.GatewaySpec{GatewayClassName: "test",
			Listeners: []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType}}},
	})
	ro := &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: "app"},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes:    []backstopv1.Route{{Name: "app", ParentRefs: []gwapiv1.ParentReference{{Name: "public"}}}},
			Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
				{SetWeight: ptr.To[int32](20)},
				{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: time.Second}}},
				{SetWeight: ptr.To[int32](60)},
				{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: time.Second}}},
			}}},
		},
	}
	mustCreate(t, ro)
	writes := env.WatchRouteWrites(t, ns, "app")
	key := client.ObjectKeyFromObject(ro)

	kill := runManager(t)
	testenv.Eventually(t, "the Rollout to go idle", func() bool { return phaseOf(t, key).Phase == backstopv1.PhaseIdle })
	kill()

	var d appsv1.Deployment
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &d); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.Containers[0].Image = "app:v2"
	if err := env.Client.Patch(ctx, &d, patch); err != nil {
		t.Fatal(err)
	}

	lifetimes := []time.Duration{150, 400, 60, 900, 250, 30, 600, 120}
	deadline := time.Now().Add(2 * time.Minute)
	kills := 0
	for i := 0; phaseOf(t, key).Phase != backstopv1.PhaseSucceeded; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("release not done after %d kills; status %+v", kills, phaseOf(t, key))
		}
		kill := runManager(t)
		time.Sleep(lifetimes[i%len(lifetimes)] * time.Millisecond)
		kill()
		kills++
	}
	t.Logf("the release survived %d manager kills", kills)

	var primary appsv1.Deployment
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-primary"}, &primary); err != nil {
		t.Fatal(err)
	}
	if img := primary.Spec.Template.Spec.Containers[0].Image; img != "app:v2" {
		t.Errorf("primary runs %s; want app:v2", img)
	}
	want := []string{
		"app-primary=100,app-canary=0",
		"app-primary=80,app-canary=20",
		"app-primary=40,app-canary=60",
		"app-primary=100,app-canary=0",
	}
	if got := writes.States(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("route writes\n  %s\nwant exactly\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

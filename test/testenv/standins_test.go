package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

var env *Env

func TestMain(m *testing.M) { Main(m, &env) }

// eventually polls check every Poll until it returns nil, and fails the test
// with its last error when Timeout passes first.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v", what, Timeout, err)
		}
		time.Sleep(Poll)
	}
}

// consistently checks every Poll for d that check keeps returning nil.
func consistently(t *testing.T, what string, d time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := check(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(Poll)
	}
}

func deployment(ns, name string, replicas int32, neverReady bool) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.example/app:v1",
				}}},
			},
		},
	}
	if neverReady {
		d.Spec.Template.Annotations = map[string]string{NeverReadyAnnotation: "true"}
	}
	return d
}

// deploymentReady tells why d is not ready with replicas pods, as the
// Deployment controller reports a finished rollout.
func deploymentReady(d *appsv1.Deployment, replicas int32) error {
	s := d.Status
	if s.ObservedGeneration != d.Generation {
		return fmt.Errorf("observedGeneration %d, generation %d", s.ObservedGeneration, d.Generation)
	}
	if s.Replicas != replicas || s.UpdatedReplicas != replicas || s.ReadyReplicas != replicas || s.AvailableReplicas != replicas {
		return fmt.Errorf("replicas %d/%d/%d/%d (total/updated/ready/available), want %d",
			s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas, replicas)
	}
	for _, want := range []struct {
		t      appsv1.DeploymentConditionType
		reason string
	}{{appsv1.DeploymentAvailable, ""}, {appsv1.DeploymentProgressing, "NewReplicaSetAvailable"}} {
		c := deploymentCondition(d, want.t)
		if c == nil || c.Status != corev1.ConditionTrue || (want.reason != "" && c.Reason != want.reason) {
			return fmt.Errorf("condition %s: %+v", want.t, c)
		}
	}
	return nil
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// patch applies change to the latest obj with a merge patch, which needs no
// resourceVersion and so does not conflict with the stand-ins' status writes.
func patch[T client.Object](t *testing.T, obj T, change func(T)) {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	base := obj.DeepCopyObject().(T)
	change(obj)
	if err := env.Client.Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
}

func TestDeploymentController(t *testing.T) {
	ns := env.Namespace(t)
	env.RunDeploymentController(t.Context(), ns)
	ctx := context.Background()

	d := deployment(ns, "web", 2, false)
	if err := env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(d)
	waitReady := func(what string, replicas int32) {
		t.Helper()
		eventually(t, what, func() error {
			if err := env.Client.Get(ctx, key, d); err != nil {
				return err
			}
			return deploymentReady(d, replicas)
		})
	}
	waitReady("ready after create", 2)
	if d.Generation != 1 {
		t.Fatalf("generation %d after create, want 1", d.Generation)
	}

	// A finished rollout is left alone: no status writes in a loop.
	rv := d.ResourceVersion
	consistently(t, "resourceVersion after ready", 500*time.Millisecond, func() error {
		if err := env.Client.Get(ctx, key, d); err != nil {
			return err
		}
		if d.ResourceVersion != rv {
			return fmt.Errorf("resourceVersion %s, was %s", d.ResourceVersion, rv)
		}
		return nil
	})

	patch(t, d, func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](3) })
	waitReady("ready after scaling to 3", 3)
	if d.Generation != 2 {
		t.Fatalf("generation %d after scaling, want 2", d.Generation)
	}

	patch(t, d, func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "registry.example/app:v2" })
	waitReady("ready after a template change", 3)
	if d.Generation != 3 {
		t.Fatalf("generation %d after a template change, want 3", d.Generation)
	}

	patch(t, d, func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](0) })
	waitReady("ready after scaling to 0", 0)

	patch(t, d, func(d *appsv1.Deployment) { d.Spec.Replicas = nil })
	waitReady("ready after unsetting replicas", 1) // the apiserver defaults it to 1
}

func TestDeploymentControllerNeverReady(t *testing.T) {
	ns := env.Namespace(t)
	env.RunDeploymentController(t.Context(), ns)
	ctx := context.Background()

	d := deployment(ns, "stuck", 2, true)
	if err := env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(d)
	stuck := func() error {
		if err := env.Client.Get(ctx, key, d); err != nil {
			return err
		}
		s := d.Status
		if s.ObservedGeneration != d.Generation || s.Replicas != 2 || s.UpdatedReplicas != 2 {
			return fmt.Errorf("observedGeneration %d (generation %d), replicas %d, updated %d",
				s.ObservedGeneration, d.Generation, s.Replicas, s.UpdatedReplicas)
		}
		if c := deploymentCondition(d, appsv1.DeploymentAvailable); c == nil || c.Status != corev1.ConditionFalse {
			return fmt.Errorf("condition Available: %+v", c)
		}
		return nil
	}
	eventually(t, "observed", stuck)
	consistently(t, "never ready", 2*time.Second, func() error {
		if err := stuck(); err != nil {
			return err
		}
		if d.Status.ReadyReplicas != 0 || d.Status.AvailableReplicas != 0 {
			return fmt.Errorf("ready %d, available %d", d.Status.ReadyReplicas, d.Status.AvailableReplicas)
		}
		return nil
	})

	// Dropping the annotation is a template change; the new pods get ready.
	patch(t, d, func(d *appsv1.Deployment) { delete(d.Spec.Template.Annotations, NeverReadyAnnotation) })
	eventually(t, "ready once the annotation is gone", func() error {
		if err := env.Client.Get(ctx, key, d); err != nil {
			return err
		}
		return deploymentReady(d, 2)
	})
}

var parentRefs = []gwapiv1.ParentReference{
	{Name: "gw", SectionName: ptr.To[gwapiv1.SectionName]("http")},
	{Name: "gw", SectionName: ptr.To[gwapiv1.SectionName]("https")},
	{Name: "mesh-svc", Kind: ptr.To[gwapiv1.Kind]("Service"), Group: ptr.To[gwapiv1.Group]("")},
}

func httpRoute(ns, name string) *gwapiv1.HTTPRoute {
	return &gwapiv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: gwapiv1.HTTPRouteSpec{
			CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: parentRefs},
			Rules: []gwapiv1.HTTPRouteRule{{
				BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: gwapiv1.BackendRef{
					BackendObjectReference: gwapiv1.BackendObjectReference{Name: "web", Port: ptr.To[gwapiv1.PortNumber](80)},
				}}},
			}},
		},
	}
}

func grpcRoute(ns, name string) *gwapiv1.GRPCRoute {
	return &gwapiv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: gwapiv1.GRPCRouteSpec{
			CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: parentRefs},
			Rules: []gwapiv1.GRPCRouteRule{{
				BackendRefs: []gwapiv1.GRPCBackendRef{{BackendRef: gwapiv1.BackendRef{
					BackendObjectReference: gwapiv1.BackendObjectReference{Name: "web", Port: ptr.To[gwapiv1.PortNumber](9000)},
				}}},
			}},
		},
	}
}

// routeStatus tells why the route's status does not say, for every parentRef
// in its spec and at its current generation, Accepted with the given status,
// reason and message, and ResolvedRefs=True.
func routeStatus(obj client.Object, spec gwapiv1.CommonRouteSpec, status gwapiv1.RouteStatus,
	accepted metav1.ConditionStatus, reason, message string) error {
	if len(status.Parents) != len(spec.ParentRefs) {
		return fmt.Errorf("%d parents in status, %d parentRefs in spec", len(status.Parents), len(spec.ParentRefs))
	}
	gen := obj.GetGeneration()
	for i, p := range status.Parents {
		if !apiequality.Semantic.DeepEqual(p.ParentRef, spec.ParentRefs[i]) {
			return fmt.Errorf("parents[%d].parentRef %s, spec %s", i, toJSON(p.ParentRef), toJSON(spec.ParentRefs[i]))
		}
		if p.ControllerName != GatewayControllerName {
			return fmt.Errorf("parents[%d].controllerName %q", i, p.ControllerName)
		}
		a := meta.FindStatusCondition(p.Conditions, string(gwapiv1.RouteConditionAccepted))
		if a == nil || a.Status != accepted || a.Reason != reason || a.ObservedGeneration != gen || (message != "" && a.Message != message) {
			return fmt.Errorf("parents[%d] Accepted %+v at generation %d", i, a, gen)
		}
		r := meta.FindStatusCondition(p.Conditions, string(gwapiv1.RouteConditionResolvedRefs))
		if r == nil || r.Status != metav1.ConditionTrue || r.Reason != string(gwapiv1.RouteReasonResolvedRefs) || r.ObservedGeneration != gen {
			return fmt.Errorf("parents[%d] ResolvedRefs %+v at generation %d", i, r, gen)
		}
	}
	return nil
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestGatewayHTTPRoute(t *testing.T) {
	ns := env.Namespace(t)
	env.RunGateway(t.Context(), ns)
	ctx := context.Background()

	r := httpRoute(ns, "web")
	if err := env.Client.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(r)
	accepted := func() error {
		if err := env.Client.Get(ctx, key, r); err != nil {
			return err
		}
		return routeStatus(r, r.Spec.CommonRouteSpec, r.Status.RouteStatus, metav1.ConditionTrue, "Accepted", "")
	}
	eventually(t, "accepted after create", accepted)
	if r.Generation != 1 {
		t.Fatalf("generation %d after create, want 1", r.Generation)
	}
	rv := r.ResourceVersion
	consistently(t, "resourceVersion once accepted", 500*time.Millisecond, func() error {
		if err := env.Client.Get(ctx, key, r); err != nil {
			return err
		}
		if r.ResourceVersion != rv {
			return fmt.Errorf("resourceVersion %s, was %s", r.ResourceVersion, rv)
		}
		return nil
	})

	patch(t, r, func(r *gwapiv1.HTTPRoute) { r.Spec.Hostnames = []gwapiv1.Hostname{"web.example"} })
	eventually(t, "accepted after a spec change", accepted)
	if r.Generation != 2 {
		t.Fatalf("generation %d after a spec change, want 2", r.Generation)
	}

	patch(t, r, func(r *gwapiv1.HTTPRoute) { r.Spec.ParentRefs = r.Spec.ParentRefs[:1] })
	eventually(t, "accepted after dropping parentRefs", accepted)
}

func TestGatewayGRPCRoute(t *testing.T) {
	ns := env.Namespace(t)
	env.RunGateway(t.Context(), ns)
	ctx := context.Background()

	r := grpcRoute(ns, "api")
	if err := env.Client.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(r)
	accepted := func() error {
		if err := env.Client.Get(ctx, key, r); err != nil {
			return err
		}
		return routeStatus(r, r.Spec.CommonRouteSpec, r.Status.RouteStatus, metav1.ConditionTrue, "Accepted", "")
	}
	eventually(t, "accepted after create", accepted)
	patch(t, r, func(r *gwapiv1.GRPCRoute) { r.Spec.Hostnames = []gwapiv1.Hostname{"api.example"} })
	eventually(t, "accepted after a spec change", accepted)
	if r.Generation != 2 {
		t.Fatalf("generation %d after a spec change, want 2", r.Generation)
	}
}

func TestGatewayRejectedRoute(t *testing.T) {
	ns := env.Namespace(t)
	env.RunGateway(t.Context(), ns)
	ctx := context.Background()
	const msg = "no listener on gw allows routes from this namespace"

	h := httpRoute(ns, "rejected")
	h.Annotations = map[string]string{RejectAnnotation: msg}
	g := grpcRoute(ns, "rejected")
	g.Annotations = map[string]string{RejectAnnotation: msg}
	for _, o := range []client.Object{h, g} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "HTTPRoute rejected", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), h); err != nil {
			return err
		}
		return routeStatus(h, h.Spec.CommonRouteSpec, h.Status.RouteStatus, metav1.ConditionFalse, "NotAllowedByListeners", msg)
	})
	eventually(t, "GRPCRoute rejected", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(g), g); err != nil {
			return err
		}
		return routeStatus(g, g.Spec.CommonRouteSpec, g.Status.RouteStatus, metav1.ConditionFalse, "NotAllowedByListeners", msg)
	})

	// Removing the annotation (no generation bump) gets the route accepted.
	patch(t, h, func(h *gwapiv1.HTTPRoute) { delete(h.Annotations, RejectAnnotation) })
	eventually(t, "HTTPRoute accepted once the annotation is gone", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), h); err != nil {
			return err
		}
		return routeStatus(h, h.Spec.CommonRouteSpec, h.Status.RouteStatus, metav1.ConditionTrue, "Accepted", "")
	})
}

func TestStandInsStopWithContext(t *testing.T) {
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(t.Context())
	env.RunDeploymentController(ctx, ns)
	env.RunGateway(ctx, ns)
	cancel()
	time.Sleep(200 * time.Millisecond)

	d := deployment(ns, "orphan", 1, false)
	r := httpRoute(ns, "orphan")
	for _, o := range []client.Object{d, r} {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	consistently(t, "no status after the context ended", time.Second, func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(d), d); err != nil {
			return err
		}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(r), r); err != nil {
			return err
		}
		if d.Status.ObservedGeneration != 0 || len(r.Status.Parents) != 0 {
			return fmt.Errorf("deployment status %+v, route parents %d", d.Status, len(r.Status.Parents))
		}
		return nil
	})
}

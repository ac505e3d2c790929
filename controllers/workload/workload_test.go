package workload_test

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/workload"
	"backstop.dev/backstop/test/testenv"
)

// env is the control plane shared by this package's tests.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// rollout returns a valid Rollout of the Deployment "web", changed by edits.
func rollout(ns string, edits ...func(*backstopv1.Rollout)) *backstopv1.Rollout {
	ro := &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: "web"},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes:    []backstopv1.Route{{Name: "web", ParentRefs: []gwapiv1.ParentReference{{Name: "gw"}}}},
			Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{
				Steps: []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](10)}},
			}},
		},
	}
	for _, e := range edits {
		e(ro)
	}
	return ro
}

// target returns the Deployment "web" with selector app=web.
func target(ns string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: map[string]string{"kustomize.toolkit.fluxcd.io/name": "apps"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromString("50%")),
				},
			},
			MinReadySeconds:         5,
			RevisionHistoryLimit:    ptr.To[int32](4),
			ProgressDeadlineSeconds: ptr.To[int32](120),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      map[string]string{"app": "web", "tier": "frontend"},
					Annotations: map[string]string{"prometheus.io/scrape": "true"},
				},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "web",
					Image: "web:v1",
					Env:   []corev1.EnvVar{{Name: "MODE", Value: "fast"}},
					Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}},
				}}},
			},
		},
	}
}

// create creates each object in the apiserver and fails the test on error.
func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func get(t *testing.T, ns, name string, obj client.Object) {
	t.Helper()
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatalf("reading %T %s: %v", obj, name, err)
	}
}

func assertControlledBy(t *testing.T, obj client.Object, ro *backstopv1.Rollout) {
	t.Helper()
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.UID != ro.UID || ref.Kind != backstopv1.RolloutKind || ref.Name != ro.Name {
		t.Errorf("%T %s: controller reference %+v, want Rollout %s (%s)", obj, obj.GetName(), ref, ro.Name, ro.UID)
	}
}

func TestNamesFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		service string
		want    workload.Names
	}{
		{"service defaults to target", "", workload.Names{Namespace: "ns", Target: "web", Primary: "web-primary", Service: "web", PrimaryService: "web-primary", CanaryService: "web-canary"}},
		{"service named", "front", workload.Names{Namespace: "ns", Target: "web", Primary: "web-primary", Service: "front", PrimaryService: "front-primary", CanaryService: "front-canary"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := workload.NamesFor(rollout("ns", func(ro *backstopv1.Rollout) { ro.Spec.Service.Name = tc.service }))
			if got != tc.want {
				t.Errorf("NamesFor = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTemplateHash(t *testing.T) {
	base := func() corev1.PodTemplateSpec { return target("ns").Spec.Template }
	sel, err := workload.PrimarySelector(&metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		other func() corev1.PodTemplateSpec
		equal bool
	}{
		{"same template, maps built in another order", func() corev1.PodTemplateSpec {
			tmpl := base()
			tmpl.Labels = map[string]string{}
			tmpl.Labels["tier"] = "frontend"
			tmpl.Labels["app"] = "web"
			return tmpl
		}, true},
		{"primary template generated from it", func() corev1.PodTemplateSpec { return workload.PrimaryTemplate(base(), sel) }, true},
		{"primary template generated from the primary template", func() corev1.PodTemplateSpec {
			return workload.PrimaryTemplate(workload.PrimaryTemplate(base(), sel), sel)
		}, true},
		{"a Backstop annotation added", func() corev1.PodTemplateSpec {
			tmpl := base()
			tmpl.Annotations[workload.TemplateHashAnnotation] = "abc"
			return tmpl
		}, true},
		{"image changed", func() corev1.PodTemplateSpec {
			tmpl := base()
			tmpl.Spec.Containers[0].Image = "web:v2"
			return tmpl
		}, false},
		{"env changed", func() corev1.PodTemplateSpec {
			tmpl := base()
			tmpl.Spec.Containers[0].Env[0].Value = "slow"
			return tmpl
		}, false},
		{"user annotation changed", func() corev1.PodTemplateSpec {
			tmpl := base()
			tmpl.Annotations["kubectl.kubernetes.io/restartedAt"] = "2026-01-01T00:00:00Z"
			return tmpl
		}, false},
		{"label value ends in -primary without Backstop's annotation", func() corev1.PodTemplateSpec {
			tmpl := base()
			tmpl.Labels["app"] = "web-primary"
			return tmpl
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := workload.TemplateHash(base()), workload.TemplateHash(tc.other())
			if (a == b) != tc.equal {
				t.Errorf("TemplateHash: %s vs %s, want equal=%v", a, b, tc.equal)
			}
			if len(a) != 10 {
				t.Errorf("TemplateHash %q: want 10 characters", a)
			}
		})
	}
}

func TestPrimarySelector(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sel     *metav1.LabelSelector
		want    map[string]string
		wantErr string
	}{
		{"suffix on every matchLabels value", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "track": "main"}},
			map[string]string{"app": "web-primary", "track": "main-primary"}, ""},
		{"no matchLabels", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}},
			nil, "has no matchLabels"},
		{"value too long for the suffix", &metav1.LabelSelector{MatchLabels: map[string]string{"app": strings.Repeat("a", 60)}},
			nil, "cannot take the suffix"},
		{"key in matchLabels and matchExpressions", &metav1.LabelSelector{
			MatchLabels:      map[string]string{"app": "web"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}},
		}, nil, "both matchLabels and matchExpressions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := workload.PrimarySelector(tc.sel)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equalMaps(got.MatchLabels, tc.want) {
				t.Errorf("matchLabels %v, want %v", got.MatchLabels, tc.want)
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestEnsurePrimary(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	create(t, ro, tgt)

	p, changed, err := workload.EnsurePrimary(ctx, env.Client, ro, tgt, tgt.Spec.Template, 2, workload.PrimaryConfigs{})
	if err != nil || !changed {
		t.Fatalf("first EnsurePrimary: changed=%v err=%v, want a creation", changed, err)
	}
	var got appsv1.Deployment
	get(t, ns, "web-primary", &got)
	if got.UID != p.UID {
		t.Errorf("returned UID %s, stored %s", p.UID, got.UID)
	}
	if want := map[string]string{"app": "web-primary"}; !equalMaps(got.Spec.Selector.MatchLabels, want) {
		t.Errorf("selector %v, want %v", got.Spec.Selector.MatchLabels, want)
	}
	if want := map[string]string{"app": "web-primary", "tier": "frontend"}; !equalMaps(got.Spec.Template.Labels, want) {
		t.Errorf("pod labels %v, want %v", got.Spec.Template.Labels, want)
	}
	if len(got.Labels) != 0 {
		t.Errorf("primary labels %v: the target's (GitOps) labels must not be copied", got.Labels)
	}
	assertControlledBy(t, &got, ro)
	if h := got.Annotations[workload.TemplateHashAnnotation]; h != workload.TemplateHash(tgt.Spec.Template) {
		t.Errorf("hash annotation %q, want %q", h, workload.TemplateHash(tgt.Spec.Template))
	}
	if workload.Revision(&got) != workload.Revision(tgt) {
		t.Errorf("Revision(primary) %s != Revision(target) %s", workload.Revision(&got), workload.Revision(tgt))
	}
	if *got.Spec.Replicas != 2 || got.Spec.MinReadySeconds != 5 || *got.Spec.RevisionHistoryLimit != 4 ||
		*got.Spec.ProgressDeadlineSeconds != 120 || got.Spec.Strategy.RollingUpdate.MaxSurge.String() != "50%" {
		t.Errorf("spec not copied from the target: replicas=%d minReadySeconds=%d revisionHistoryLimit=%d progressDeadlineSeconds=%d strategy=%+v",
			*got.Spec.Replicas, got.Spec.MinReadySeconds, *got.Spec.RevisionHistoryLimit, *got.Spec.ProgressDeadlineSeconds, got.Spec.Strategy.RollingUpdate)
	}

	// Nothing to do: no write.
	_, changed, err = workload.EnsurePrimary(ctx, env.Client, ro, tgt, tgt.Spec.Template, 2, workload.PrimaryConfigs{})
	if err != nil || changed {
		t.Fatalf("second EnsurePrimary: changed=%v err=%v, want no change", changed, err)
	}
	var again appsv1.Deployment
	get(t, ns, "web-primary", &again)
	if again.ResourceVersion != got.ResourceVersion {
		t.Errorf("resourceVersion %s -> %s after an EnsurePrimary that changed nothing", got.ResourceVersion, again.ResourceVersion)
	}

	// A template built in code lacks the server's defaults: the update is a
	// no-op on the server and reported as no change.
	_, changed, err = workload.EnsurePrimary(ctx, env.Client, ro, tgt, target(ns).Spec.Template, 2, workload.PrimaryConfigs{})
	if err != nil || changed {
		t.Errorf("EnsurePrimary with an undefaulted template: changed=%v err=%v, want no change", changed, err)
	}
	get(t, ns, "web-primary", &again)
	if again.ResourceVersion != got.ResourceVersion || again.Annotations[workload.TemplateHashAnnotation] != workload.Revision(tgt) {
		t.Errorf("after an EnsurePrimary with an undefaulted template: resourceVersion %s -> %s, annotation %s (want %s)",
			got.ResourceVersion, again.ResourceVersion, again.Annotations[workload.TemplateHashAnnotation], workload.Revision(tgt))
	}

	// A new version in the target.
	tgt.Spec.Template.Spec.Containers[0].Image = "web:v2"
	if err := env.Client.Update(ctx, tgt); err != nil {
		t.Fatal(err)
	}
	if workload.Revision(tgt) == workload.Revision(&got) {
		t.Fatal("the target's new template hashes like the primary's")
	}
	_, changed, err = workload.EnsurePrimary(ctx, env.Client, ro, tgt, tgt.Spec.Template, 2, workload.PrimaryConfigs{})
	if err != nil || !changed {
		t.Fatalf("EnsurePrimary with a new template: changed=%v err=%v, want an update", changed, err)
	}
	get(t, ns, "web-primary", &got)
	if img := got.Spec.Template.Spec.Containers[0].Image; img != "web:v2" {
		t.Errorf("primary image %s, want web:v2", img)
	}
	if workload.Revision(&got) != workload.Revision(tgt) || got.Annotations[workload.TemplateHashAnnotation] != workload.Revision(tgt) {
		t.Errorf("after the update: Revision(primary)=%s annotation=%s, want %s",
			workload.Revision(&got), got.Annotations[workload.TemplateHashAnnotation], workload.Revision(tgt))
	}

	// Replicas alone.
	_, changed, err = workload.EnsurePrimary(ctx, env.Client, ro, tgt, got.Spec.Template, 4, workload.PrimaryConfigs{})
	if err != nil || !changed {
		t.Fatalf("EnsurePrimary with new replicas: changed=%v err=%v, want an update", changed, err)
	}
	get(t, ns, "web-primary", &got)
	if *got.Spec.Replicas != 4 || workload.Revision(&got) != workload.Revision(tgt) {
		t.Errorf("replicas %d revision %s, want 4 and %s", *got.Spec.Replicas, workload.Revision(&got), workload.Revision(tgt))
	}
}

func TestEnsurePrimaryFromUndefaultedTemplate(t *testing.T) {
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	create(t, ro, tgt)
	p, changed, err := workload.EnsurePrimary(context.Background(), env.Client, ro, tgt, target(ns).Spec.Template, 1, workload.PrimaryConfigs{})
	if err != nil || !changed {
		t.Fatalf("EnsurePrimary: changed=%v err=%v, want a creation", changed, err)
	}
	if h := p.Annotations[workload.TemplateHashAnnotation]; h != workload.Revision(tgt) || h != workload.Revision(p) {
		t.Errorf("hash annotation %s, want the stored template's %s (primary %s)", h, workload.Revision(tgt), workload.Revision(p))
	}
}

func TestEnsurePrimaryRefusesForeignDeployment(t *testing.T) {
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	foreign := target(ns)
	foreign.Name = "web-primary"
	foreign.Spec.Selector.MatchLabels["app"] = "web-primary"
	foreign.Spec.Template.Labels["app"] = "web-primary"
	foreign.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "someone", UID: "1234", Controller: ptr.To(true)}}
	create(t, ro, tgt, foreign)
	_, _, err := workload.EnsurePrimary(context.Background(), env.Client, ro, tgt, tgt.Spec.Template, 1, workload.PrimaryConfigs{})
	if err == nil || !strings.Contains(err.Error(), "belongs to ConfigMap") {
		t.Errorf("error %v, want one saying the Deployment belongs to someone else", err)
	}
}

func TestEnsureServices(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		edit func(*backstopv1.Rollout)
		want corev1.ServicePort
	}{
		{"defaults", func(*backstopv1.Rollout) {},
			corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080, TargetPort: intstr.FromInt32(8080)}},
		{"named target port and port name", func(ro *backstopv1.Rollout) {
			ro.Spec.Service.Port = 80
			ro.Spec.Service.TargetPort = ptr.To(intstr.FromString("web"))
			ro.Spec.Service.PortName = "web"
		}, corev1.ServicePort{Name: "web", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("web")}},
		{"only GRPCRoutes, with appProtocol", func(ro *backstopv1.Rollout) {
			ro.Spec.Routes[0].Kind = backstopv1.GRPCRouteKind
			ro.Spec.Service.AppProtocol = ptr.To("kubernetes.io/h2c")
		}, corev1.ServicePort{Name: "grpc", Protocol: corev1.ProtocolTCP, Port: 8080, TargetPort: intstr.FromInt32(8080), AppProtocol: ptr.To("kubernetes.io/h2c")}},
		{"service name", func(ro *backstopv1.Rollout) { ro.Spec.Service.Name = "front" },
			corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080, TargetPort: intstr.FromInt32(8080)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			ro, tgt := rollout(ns, tc.edit), target(ns)
			create(t, ro, tgt)
			names := workload.NamesFor(ro)

			changed, err := workload.EnsureServices(ctx, env.Client, nil, ro, tgt)
			if err != nil || !changed {
				t.Fatalf("first EnsureServices: changed=%v err=%v, want creations", changed, err)
			}
			rvs := map[string]string{}
			for _, s := range []struct {
				name     string
				selector map[string]string
			}{
				{names.PrimaryService, map[string]string{"app": "web-primary"}},
				{names.CanaryService, map[string]string{"app": "web"}},
			} {
				var svc corev1.Service
				get(t, ns, s.name, &svc)
				rvs[s.name] = svc.ResourceVersion
				if !equalMaps(svc.Spec.Selector, s.selector) {
					t.Errorf("%s selector %v, want %v", s.name, svc.Spec.Selector, s.selector)
				}
				if len(svc.Spec.Ports) != 1 || !portEqual(svc.Spec.Ports[0], tc.want) {
					t.Errorf("%s ports %+v, want [%+v]", s.name, svc.Spec.Ports, tc.want)
				}
				if svc.Spec.ClusterIP == "" {
					t.Errorf("%s has no clusterIP", s.name)
				}
				assertControlledBy(t, &svc, ro)
			}

			changed, err = workload.EnsureServices(ctx, env.Client, nil, ro, tgt)
			if err != nil || changed {
				t.Fatalf("second EnsureServices: changed=%v err=%v, want no change", changed, err)
			}
			for name, rv := range rvs {
				var svc corev1.Service
				get(t, ns, name, &svc)
				if svc.ResourceVersion != rv {
					t.Errorf("%s resourceVersion %s -> %s after an EnsureServices that changed nothing", name, rv, svc.ResourceVersion)
				}
			}
		})
	}
}

// TestEnsureServicesWithTheManagersCache: the manager's cache holds only
// the Services that carry Backstop's labels. A Service an older manager
// made without them, which that cache cannot see, gets them (and nothing
// else changes); the namespace's other Services are never cached.
func TestEnsureServicesWithTheManagersCache(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	create(t, ro, tgt)
	port := corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080, TargetPort: intstr.FromInt32(8080)}
	old := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-canary"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{port}}}
	if err := controllerutil.SetControllerReference(ro, old, env.Scheme); err != nil {
		t.Fatal(err)
	}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{{Port: 5432}}}}
	create(t, old, other)
	get(t, ns, "web-canary", old)

	managers, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, DefaultNamespaces: map[string]cache.Config{ns: {}},
		ByObject: map[client.Object]cache.ByObject{&corev1.Service{}: {Label: workload.ServiceCacheSelector()}}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = managers.Start(ctx) }()
	if !managers.WaitForCacheSync(ctx) {
		t.Fatal("the cache did not start")
	}
	cached, err := client.New(env.Config, client.Options{Scheme: env.Scheme, Cache: &client.CacheOptions{Reader: managers}})
	if err != nil {
		t.Fatal(err)
	}

	if changed, err := workload.EnsureServices(ctx, cached, env.Client, ro, tgt); err != nil || !changed {
		t.Fatalf("EnsureServices: changed=%v err=%v; want writes", changed, err)
	}
	for _, name := range []string{"web-primary", "web-canary"} {
		var svc corev1.Service
		get(t, ns, name, &svc)
		if !equalMaps(svc.Labels, workload.ServiceLabels(ro)) {
			t.Errorf("%s labels %v; want %v", name, svc.Labels, workload.ServiceLabels(ro))
		}
		assertControlledBy(t, &svc, ro)
	}
	var relabelled corev1.Service
	get(t, ns, "web-canary", &relabelled)
	if relabelled.UID != old.UID || relabelled.Spec.ClusterIP != old.Spec.ClusterIP {
		t.Errorf("web-canary was made again (uid %s → %s, clusterIP %s → %s); want it kept", old.UID, relabelled.UID, old.Spec.ClusterIP, relabelled.Spec.ClusterIP)
	}

	testenv.Eventually(t, "the cache holds Backstop's two Services and nothing else", func() bool {
		var list corev1.ServiceList
		if err := cached.List(ctx, &list, client.InNamespace(ns)); err != nil || len(list.Items) != 2 {
			return false
		}
		for _, svc := range list.Items {
			if svc.Name == "db" {
				t.Fatalf("the cache holds Service db")
			}
		}
		return true
	})
	if changed, err := workload.EnsureServices(ctx, cached, env.Client, ro, tgt); err != nil || changed {
		t.Errorf("EnsureServices again: changed=%v err=%v; want no change", changed, err)
	}
}

func portEqual(a, b corev1.ServicePort) bool {
	return a.Name == b.Name && a.Protocol == b.Protocol && a.Port == b.Port && a.TargetPort == b.TargetPort &&
		ptr.Deref(a.AppProtocol, "") == ptr.Deref(b.AppProtocol, "")
}

func TestEnsureServicesUpdates(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	create(t, ro, tgt)
	if _, err := workload.EnsureServices(ctx, env.Client, nil, ro, tgt); err != nil {
		t.Fatal(err)
	}
	var before corev1.Service
	get(t, ns, "web-canary", &before)

	ro.Spec.Service.Port = 9090
	changed, err := workload.EnsureServices(ctx, env.Client, nil, ro, tgt)
	if err != nil || !changed {
		t.Fatalf("EnsureServices with a new port: changed=%v err=%v, want an update", changed, err)
	}
	var after corev1.Service
	get(t, ns, "web-canary", &after)
	if after.Spec.Ports[0].Port != 9090 || after.Spec.Ports[0].TargetPort != intstr.FromInt32(9090) {
		t.Errorf("port %+v, want 9090 -> 9090", after.Spec.Ports[0])
	}
	if after.Spec.ClusterIP != before.Spec.ClusterIP {
		t.Errorf("clusterIP %s -> %s: the server's value must be kept", before.Spec.ClusterIP, after.Spec.ClusterIP)
	}
}

func TestScale(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	tgt := target(ns)
	create(t, tgt)
	key := client.ObjectKeyFromObject(tgt)
	for _, step := range []struct {
		replicas    int32
		wantChanged bool
	}{{0, true}, {0, false}, {5, true}, {5, false}} {
		changed, err := workload.Scale(ctx, env.Client, key, step.replicas)
		if err != nil || changed != step.wantChanged {
			t.Fatalf("Scale to %d: changed=%v err=%v, want changed=%v", step.replicas, changed, err, step.wantChanged)
		}
		var d appsv1.Deployment
		get(t, ns, "web", &d)
		if *d.Spec.Replicas != step.replicas {
			t.Errorf("replicas %d, want %d", *d.Spec.Replicas, step.replicas)
		}
	}
	if _, err := workload.Scale(ctx, env.Client, types.NamespacedName{Namespace: ns, Name: "missing"}, 1); !apierrors.IsNotFound(err) {
		t.Errorf("Scale of a missing Deployment: %v, want NotFound", err)
	}
}

func TestCanaryReplicas(t *testing.T) {
	for _, tc := range []struct {
		primary int32
		pct     *int32
		want    int32
	}{
		{4, nil, 4},
		{4, ptr.To[int32](100), 4},
		{4, ptr.To[int32](50), 2},
		{5, ptr.To[int32](50), 3},
		{10, ptr.To[int32](1), 1},
		{3, ptr.To[int32](34), 2},
		{0, nil, 1},
		{1, ptr.To[int32](10), 1},
	} {
		if got := workload.CanaryReplicas(tc.primary, tc.pct); got != tc.want {
			t.Errorf("CanaryReplicas(%d, %v) = %d, want %d", tc.primary, ptr.Deref(tc.pct, -1), got, tc.want)
		}
	}
}

func TestReady(t *testing.T) {
	deployment := func(gen, observed int64, replicas int32, st appsv1.DeploymentStatus) *appsv1.Deployment {
		st.ObservedGeneration = observed
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
			Status:     st,
		}
	}
	all := func(n int32) appsv1.DeploymentStatus {
		return appsv1.DeploymentStatus{Replicas: n, UpdatedReplicas: n, AvailableReplicas: n, ReadyReplicas: n}
	}
	deadline := all(3)
	deadline.UpdatedReplicas = 1
	deadline.Conditions = []appsv1.DeploymentCondition{{
		Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
		Message: `ReplicaSet "web-5d4f" has timed out progressing.`,
	}}
	for _, tc := range []struct {
		name         string
		d            *appsv1.Deployment
		want         bool
		wantReason   string
		wantDeadline bool
	}{
		{"ready", deployment(2, 2, 3, all(3)), true, "3 of 3 replicas ready", false},
		{"scaled to zero", deployment(1, 1, 0, all(0)), true, "0 of 0 replicas ready", false},
		{"stale observedGeneration", deployment(3, 2, 3, all(3)), false, "generation 3 not yet observed by the Deployment controller (observed 2)", false},
		{"partially updated", deployment(2, 2, 3, appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 2, AvailableReplicas: 3, ReadyReplicas: 3}),
			false, "2 of 3 replicas updated", false},
		{"old replicas present", deployment(2, 2, 3, appsv1.DeploymentStatus{Replicas: 4, UpdatedReplicas: 3, AvailableReplicas: 4, ReadyReplicas: 4}),
			false, "1 old replicas pending termination", false},
		{"unavailable", deployment(2, 2, 3, appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 1, ReadyReplicas: 3}),
			false, "1 of 3 replicas available", false},
		{"not ready", deployment(2, 2, 3, appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 3, ReadyReplicas: 2}),
			false, "2 of 3 replicas ready", false},
		{"deadline exceeded", deployment(2, 2, 3, deadline), false, `progress deadline exceeded: ReplicaSet "web-5d4f" has timed out progressing.`, true},
		{"deadline of an older generation", deployment(3, 2, 3, deadline), false, "generation 3 not yet observed by the Deployment controller (observed 2)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := workload.Ready(tc.d)
			if got != tc.want || reason != tc.wantReason {
				t.Errorf("Ready = %v, %q; want %v, %q", got, reason, tc.want, tc.wantReason)
			}
			if d := workload.ProgressDeadlineExceeded(tc.d); d != tc.wantDeadline {
				t.Errorf("ProgressDeadlineExceeded = %v, want %v", d, tc.wantDeadline)
			}
		})
	}
}

func hpa(ns, name, target string, maxReplicas int32) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: target},
			MinReplicas:    ptr.To[int32](2),
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

func TestMirrorHPA(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro := rollout(ns)
	user, other := hpa(ns, "web", "web", 5), hpa(ns, "other", "other", 5)
	create(t, ro, user, other)
	names := workload.NamesFor(ro)

	mirror := func(wantChanged bool) {
		t.Helper()
		changed, _, err := workload.MirrorHPA(ctx, env.Client, ro, names)
		if err != nil || changed != wantChanged {
			t.Fatalf("MirrorHPA: changed=%v err=%v, want changed=%v", changed, err, wantChanged)
		}
	}
	checkTwin := func(wantMax int32) *autoscalingv2.HorizontalPodAutoscaler {
		t.Helper()
		var twin autoscalingv2.HorizontalPodAutoscaler
		get(t, ns, "web-primary", &twin)
		ref := twin.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != "web-primary" || ref.APIVersion != "apps/v1" {
			t.Errorf("twin scaleTargetRef %+v, want the Deployment web-primary", ref)
		}
		if twin.Spec.MaxReplicas != wantMax || *twin.Spec.MinReplicas != 2 || len(twin.Spec.Metrics) != 1 ||
			*twin.Spec.Metrics[0].Resource.Target.AverageUtilization != 70 {
			t.Errorf("twin spec %+v, want the user's with maxReplicas %d", twin.Spec, wantMax)
		}
		assertControlledBy(t, &twin, ro)
		return &twin
	}

	mirror(true)
	twin := checkTwin(5)
	var list autoscalingv2.HorizontalPodAutoscalerList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 3 {
		t.Errorf("%d HorizontalPodAutoscalers, want 3 (web, other, web-primary)", len(list.Items))
	}

	mirror(false)
	if again := checkTwin(5); again.ResourceVersion != twin.ResourceVersion {
		t.Errorf("twin resourceVersion %s -> %s after a MirrorHPA that changed nothing", twin.ResourceVersion, again.ResourceVersion)
	}

	get(t, ns, "web", user)
	user.Spec.MaxReplicas = 8
	if err := env.Client.Update(ctx, user); err != nil {
		t.Fatal(err)
	}
	mirror(true)
	checkTwin(8)

	if err := env.Client.Delete(ctx, user); err != nil {
		t.Fatal(err)
	}
	mirror(true)
	var gone autoscalingv2.HorizontalPodAutoscaler
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-primary"}, &gone); !apierrors.IsNotFound(err) {
		t.Errorf("twin after the user's HorizontalPodAutoscaler was deleted: %v, want NotFound", err)
	}
	get(t, ns, "other", &autoscalingv2.HorizontalPodAutoscaler{})
	mirror(false)
}

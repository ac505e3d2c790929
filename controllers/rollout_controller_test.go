package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/testenv"
)

// fixture is an object a test case needs in its namespace before the Rollout.
type fixture func(ns string) client.Object

func deployment(name string) fixture {
	return func(ns string) client.Object {
		labels := map[string]string{"app": name}
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:v1"}}},
				},
			},
		}
	}
}

func gateway(name string) fixture {
	return func(ns string) client.Object {
		return &gwapiv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: gwapiv1.GatewaySpec{
				GatewayClassName: "test",
				Listeners:        []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType}},
			},
		}
	}
}

func httpRoute(name string) fixture {
	return func(ns string) client.Object {
		return &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	}
}

func secret(name string) fixture {
	return func(ns string) client.Object {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{"token": "s3cr3t"}}
	}
}

func sloTemplate(name string, args ...backstopv1.TemplateArg) fixture {
	return func(ns string) client.Object {
		return &backstopv1.SLOTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: backstopv1.SLOTemplateSpec{
				Args: args,
				CheckSpec: backstopv1.CheckSpec{
					Query: `sum(rate(http_requests_total{namespace="{{.Namespace}}",code=~"{{.Args.codes}}"}[{{.Window}}]))`,
					Max:   ptr.To(backstopv1.Decimal("0.01")),
				},
			},
		}
	}
}

// validRollout is a Rollout whose references are all satisfied by
// validFixtures: each case breaks one thing.
func validRollout(ns string) *backstopv1.Rollout {
	return &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: "app"},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes: []backstopv1.Route{{
				Name:       "app",
				ParentRefs: []gwapiv1.ParentReference{{Name: "public"}},
			}},
			Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{
				Steps: []backstopv1.CanaryStep{
					{SetWeight: ptr.To[int32](10)},
					{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: time.Minute}}},
				},
			}},
			Analysis: &backstopv1.AnalysisSpec{
				Prometheus: &backstopv1.PrometheusSource{
					Address:   "http://prometheus.monitoring:9090",
					SecretRef: &backstopv1.LocalObjectReference{Name: "prom-auth"},
				},
				Checks: []backstopv1.Check{{
					Name: "error-rate",
					CheckSpec: backstopv1.CheckSpec{
						Query: `sum(rate(http_requests_total{namespace="{{.Namespace}}",code=~"5.."}[{{.Window}}]))`,
						Max:   ptr.To(backstopv1.Decimal("0.01")),
					},
				}},
			},
		},
	}
}

func validFixtures() []fixture {
	return []fixture{deployment("app"), gateway("public"), secret("prom-auth")}
}

func without(fs []fixture, skip int) []fixture {
	out := append([]fixture{}, fs[:skip]...)
	return append(out, fs[skip+1:]...)
}

// TestRolloutConditions specifies the condition the reconciler reports for
// each kind of problem, and for a valid Rollout.
func TestRolloutConditions(t *testing.T) {
	tests := []struct {
		name        string
		fixtures    []fixture
		mutate      func(*backstopv1.Rollout)
		wantReady   metav1.ConditionStatus
		wantReason  string
		wantMessage string
		wantStalled bool
	}{
		{
			// Valid: the release machinery takes over and sets up the
			// primary (which never becomes ready here: envtest runs no
			// Deployment controller).
			name:        "valid",
			fixtures:    validFixtures(),
			wantReady:   metav1.ConditionFalse,
			wantReason:  string(backstopv1.PhaseInitializing),
			wantMessage: "Setting up the primary Deployment, Services and routes",
		},
		{
			name:        "target Deployment missing",
			fixtures:    without(validFixtures(), 0),
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonTargetNotFound,
			wantMessage: `Deployment "app" named by spec.targetRef was not found in namespace`,
		},
		{
			name:        "parent Gateway of a generated route missing",
			fixtures:    without(validFixtures(), 1),
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonParentNotFound,
			wantMessage: `spec.routes[app]: parent Gateway "public" was not found`,
		},
		{
			name:     "existing route missing",
			fixtures: validFixtures(),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Routes = []backstopv1.Route{{Name: "user-route", Existing: true}}
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonRouteNotFound,
			wantMessage: `spec.routes[user-route]: HTTPRoute "user-route" was not found`,
		},
		{
			name:        "generated route name taken by a route the Rollout does not own",
			fixtures:    append(validFixtures(), httpRoute("app")),
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonInvalidSpec,
			wantMessage: `HTTPRoute "app" already exists and is not owned by this Rollout; set existing: true`,
			wantStalled: true,
		},
		{
			name:        "Prometheus Secret missing",
			fixtures:    without(validFixtures(), 2),
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonSecretNotFound,
			wantMessage: `spec.analysis.prometheus.secretRef: Secret "prom-auth" was not found`,
		},
		{
			name:     "revert credentials Secret missing",
			fixtures: validFixtures(),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Revert = &backstopv1.RevertSpec{Source: &backstopv1.GitSource{
					URL: "https://git.example/app.git", SecretRef: &backstopv1.LocalObjectReference{Name: "git-auth"},
				}}
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonSecretNotFound,
			wantMessage: `spec.revert.source.secretRef: Secret "git-auth" was not found`,
		},
		{
			name:     "query is not a valid template",
			fixtures: validFixtures(),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Analysis.Checks[0].Query = `sum(rate(x{namespace="{{.Namespace"}[1m]))`
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonInvalidSpec,
			wantMessage: "spec.analysis.checks[error-rate].query: TemplateError: ",
			wantStalled: true,
		},
		{
			name:     "query is not valid PromQL",
			fixtures: validFixtures(),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Analysis.Checks[0].Query = `sum(rate(http_requests_total{namespace="{{.Namespace}}"}[{{.Window}}])`
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonInvalidSpec,
			wantMessage: "spec.analysis.checks[error-rate].query: SyntaxError: ",
			wantStalled: true,
		},
		{
			name: "template arg that would change the query's shape",
			fixtures: append(validFixtures(), func(ns string) client.Object {
				return &backstopv1.SLOTemplate{
					ObjectMeta: metav1.ObjectMeta{Name: "by-metric", Namespace: ns},
					Spec: backstopv1.SLOTemplateSpec{
						Args:      []backstopv1.TemplateArg{{Name: "metric"}},
						CheckSpec: backstopv1.CheckSpec{Query: `sum(rate({{.Args.metric}}[{{.Window}}]))`, Max: ptr.To(backstopv1.Decimal("1"))},
					},
				}
			}),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Analysis.Checks[0] = backstopv1.Check{Name: "errors", TemplateRef: &backstopv1.TemplateReference{
					Kind: backstopv1.SLOTemplateKindName, Name: "by-metric"}, Args: map[string]string{"metric": `up[1m])) or vector(1) or sum(rate(up`}}
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonInvalidSpec,
			wantMessage: `spec.analysis.checks[errors] (SLOTemplate "by-metric") spec.query: UnsafeValue: `,
			wantStalled: true,
		},
		{
			name:     "no Prometheus in the Rollout and none in the manager",
			fixtures: validFixtures(),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Analysis.Prometheus = nil
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonInvalidSpec,
			wantMessage: "spec.analysis.checks[error-rate] has no Prometheus",
			wantStalled: true,
		},
		{
			name:     "SLOTemplate missing",
			fixtures: validFixtures(),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Analysis.Checks[0] = backstopv1.Check{Name: "errors", TemplateRef: &backstopv1.TemplateReference{
					Kind: backstopv1.SLOTemplateKindName, Name: "error-rate"}}
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonTemplateNotFound,
			wantMessage: `spec.analysis.checks[errors]: SLOTemplate "error-rate" was not found`,
		},
		{
			name:     "ClusterSLOTemplate missing",
			fixtures: validFixtures(),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Analysis.Checks[0] = backstopv1.Check{Name: "errors", TemplateRef: &backstopv1.TemplateReference{
					Kind: backstopv1.ClusterSLOTemplateKindName, Name: "backstop-test-absent"}}
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonTemplateNotFound,
			wantMessage: `spec.analysis.checks[errors]: ClusterSLOTemplate "backstop-test-absent" was not found`,
		},
		{
			name:     "template arg without a default not given",
			fixtures: append(validFixtures(), sloTemplate("error-rate", backstopv1.TemplateArg{Name: "codes"})),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Analysis.Checks[0] = backstopv1.Check{Name: "errors", TemplateRef: &backstopv1.TemplateReference{
					Kind: backstopv1.SLOTemplateKindName, Name: "error-rate"}}
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonInvalidSpec,
			wantMessage: `spec.analysis.checks[errors]: SLOTemplate "error-rate" needs args codes`,
			wantStalled: true,
		},
		{
			name:     "template arg the template does not declare",
			fixtures: append(validFixtures(), sloTemplate("error-rate", backstopv1.TemplateArg{Name: "codes", Default: ptr.To("5..")})),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Analysis.Checks[0] = backstopv1.Check{Name: "errors", TemplateRef: &backstopv1.TemplateReference{
					Kind: backstopv1.SLOTemplateKindName, Name: "error-rate"}, Args: map[string]string{"code": "5.."}}
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonInvalidSpec,
			wantMessage: `SLOTemplate "error-rate" declares no args code`,
			wantStalled: true,
		},
		{
			name:     "template with its default args",
			fixtures: append(validFixtures(), sloTemplate("error-rate", backstopv1.TemplateArg{Name: "codes", Default: ptr.To("5..")})),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Analysis.Checks[0] = backstopv1.Check{Name: "errors", TemplateRef: &backstopv1.TemplateReference{
					Kind: backstopv1.SLOTemplateKindName, Name: "error-rate"}}
			},
			wantReady:  metav1.ConditionFalse,
			wantReason: string(backstopv1.PhaseInitializing),
		},
		{
			name:     "template check with its own Prometheus, and none in the Rollout or the manager",
			fixtures: append(validFixtures(), sloTemplate("error-rate", backstopv1.TemplateArg{Name: "codes", Default: ptr.To("5..")})),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Analysis.Prometheus = nil
				ro.Spec.Analysis.Checks[0] = backstopv1.Check{Name: "errors", TemplateRef: &backstopv1.TemplateReference{
					Kind: backstopv1.SLOTemplateKindName, Name: "error-rate"},
					CheckSpec: backstopv1.CheckSpec{Prometheus: &backstopv1.PrometheusSource{Address: "http://thanos:9090"}}}
			},
			wantReady:  metav1.ConditionFalse,
			wantReason: string(backstopv1.PhaseInitializing),
		},
		{
			name:     "cookie match with only GRPCRoutes",
			fixtures: validFixtures(),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Routes[0].Kind = backstopv1.GRPCRouteKind
				ro.Spec.Strategy.Canary.Match = &backstopv1.TrafficMatch{Cookies: []backstopv1.CookieMatch{{Name: "canary", Value: "always"}}}
			},
			wantReady:   metav1.ConditionFalse,
			wantReason:  backstopv1.ReasonInvalidSpec,
			wantMessage: "spec.strategy.canary.match.cookies: cookies apply to HTTPRoutes",
			wantStalled: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			ns := env.Namespace(t)
			for _, f := range tt.fixtures {
				mustCreate(t, f(ns))
			}
			ro := validRollout(ns)
			if tt.mutate != nil {
				tt.mutate(ro)
			}
			mustCreate(t, ro)

			got := waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == tt.wantReason })
			if got.Status != tt.wantReady {
				t.Errorf("Ready status = %s, want %s", got.Status, tt.wantReady)
			}
			if !strings.Contains(got.Message, tt.wantMessage) {
				t.Errorf("Ready message = %q, want it to contain %q", got.Message, tt.wantMessage)
			}
			if got.ObservedGeneration != ro.Generation {
				t.Errorf("Ready observedGeneration = %d, want %d", got.ObservedGeneration, ro.Generation)
			}

			latest := get(t, ro)
			stalled := meta.IsStatusConditionTrue(latest.Status.Conditions, backstopv1.StalledCondition)
			if stalled != tt.wantStalled {
				t.Errorf("Stalled = %v, want %v (conditions %+v)", stalled, tt.wantStalled, latest.Status.Conditions)
			}
			reconciling := meta.IsStatusConditionTrue(latest.Status.Conditions, backstopv1.ReconcilingCondition)
			if wantReconciling := tt.wantReady == metav1.ConditionFalse && !tt.wantStalled; reconciling != wantReconciling {
				t.Errorf("Reconciling = %v, want %v (conditions %+v)", reconciling, wantReconciling, latest.Status.Conditions)
			}
			if got, want := kstatusOf(t, latest), wantKstatus(tt.wantReady, tt.wantStalled); got != want {
				t.Errorf("kstatus = %s, want %s", got, want)
			}
			if latest.Status.Phase != backstopv1.PhaseInitializing {
				t.Errorf("phase = %q, want %q", latest.Status.Phase, backstopv1.PhaseInitializing)
			}
			if latest.Status.ObservedGeneration != latest.Generation {
				t.Errorf("status.observedGeneration = %d, want %d", latest.Status.ObservedGeneration, latest.Generation)
			}

			if tt.wantReason != string(backstopv1.PhaseInitializing) {
				waitForEvent(t, ctx, ro, "Warning", tt.wantReason)
			}
		})
	}
}

// TestRolloutRecoversWhenTargetAppears: a Rollout applied before its
// Deployment (as a GitOps tool may do) starts setting up as soon as the
// Deployment exists, through the watch on Deployments rather than a
// periodic resync, and says the problem is fixed.
func TestRolloutRecoversWhenTargetAppears(t *testing.T) {
	ns := env.Namespace(t)
	for _, f := range without(validFixtures(), 0) {
		mustCreate(t, f(ns))
	}
	ro := validRollout(ns)
	mustCreate(t, ro)
	waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == backstopv1.ReasonTargetNotFound })

	mustCreate(t, deployment("app")(ns))
	waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == string(backstopv1.PhaseInitializing) })
	waitForEvent(t, context.Background(), ro, "Normal", backstopv1.ReasonSpecValid)
}

// TestRolloutFollowsSpecChanges: fixing an invalid spec clears Stalled and
// the conditions carry the new generation.
func TestRolloutFollowsSpecChanges(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	for _, f := range validFixtures() {
		mustCreate(t, f(ns))
	}
	ro := validRollout(ns)
	ro.Spec.Analysis.Checks[0].Query = `rate(x[{{.Window]))`
	mustCreate(t, ro)
	waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == backstopv1.ReasonInvalidSpec })
	if !meta.IsStatusConditionTrue(get(t, ro).Status.Conditions, backstopv1.StalledCondition) {
		t.Fatalf("Stalled is not True for an invalid spec")
	}

	latest := get(t, ro)
	patch := client.MergeFrom(latest.DeepCopy())
	latest.Spec.Analysis.Checks[0].Query = `rate(x[{{.Window}}])`
	if err := env.Client.Patch(ctx, latest, patch); err != nil {
		t.Fatalf("updating the Rollout: %v", err)
	}
	got := waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == string(backstopv1.PhaseInitializing) })
	waitForEvent(t, ctx, ro, "Normal", backstopv1.ReasonSpecValid)
	if got.ObservedGeneration != latest.Generation {
		t.Errorf("Ready observedGeneration = %d, want %d", got.ObservedGeneration, latest.Generation)
	}
	if c := meta.FindStatusCondition(get(t, ro).Status.Conditions, backstopv1.StalledCondition); c != nil {
		t.Errorf("Stalled condition left behind after the fix: %+v", c)
	}
}

// TestRolloutEventsAreNotRepeated: a problem that does not change is
// reported by one Event, however often the Rollout is reconciled.
func TestRolloutEventsAreNotRepeated(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro := validRollout(ns)
	mustCreate(t, ro)
	waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == backstopv1.ReasonTargetNotFound })

	// Unrelated objects appearing and label changes (no new generation)
	// trigger reconciles; none of them may add an Event.
	for i := 0; i < 3; i++ {
		latest := get(t, ro)
		patch := client.MergeFrom(latest.DeepCopy())
		latest.Labels = map[string]string{"touch": strings.Repeat("x", i+1)}
		if err := env.Client.Patch(ctx, latest, patch); err != nil {
			t.Fatalf("touching the Rollout: %v", err)
		}
	}
	mustCreate(t, gateway("public")(ns))
	mustCreate(t, secret("prom-auth")(ns))
	time.Sleep(2 * time.Second)

	if n := countEvents(t, ctx, ro, backstopv1.ReasonTargetNotFound); n != 1 {
		t.Errorf("found %d TargetNotFound Events, want exactly 1", n)
	}
}

// wantKstatus is how kstatus must read a Rollout: a valid one is Current,
// one that waits for an object InProgress, an invalid one Failed.
func wantKstatus(ready metav1.ConditionStatus, stalled bool) kstatus.Status {
	switch {
	case stalled:
		return kstatus.FailedStatus
	case ready == metav1.ConditionTrue:
		return kstatus.CurrentStatus
	default:
		return kstatus.InProgressStatus
	}
}

func kstatusOf(t *testing.T, ro *backstopv1.Rollout) kstatus.Status {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ro)
	if err != nil {
		t.Fatal(err)
	}
	res, err := kstatus.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		t.Fatalf("kstatus: %v", err)
	}
	return res.Status
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func get(t *testing.T, ro *backstopv1.Rollout) *backstopv1.Rollout {
	t.Helper()
	latest := &backstopv1.Rollout{}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(ro), latest); err != nil {
		t.Fatalf("getting the Rollout: %v", err)
	}
	return latest
}

// waitForReady waits until the Rollout's Ready condition satisfies match and
// returns it.
func waitForReady(t *testing.T, ro *backstopv1.Rollout, match func(*metav1.Condition) bool) *metav1.Condition {
	t.Helper()
	deadline := time.Now().Add(testenv.Timeout)
	var last *metav1.Condition
	for time.Now().Before(deadline) {
		latest := &backstopv1.Rollout{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(ro), latest); err == nil {
			last = meta.FindStatusCondition(latest.Status.Conditions, backstopv1.ReadyCondition)
			if last != nil && match(last) {
				return last
			}
		}
		time.Sleep(testenv.Poll)
	}
	t.Fatalf("Ready condition did not match within %s; last: %+v", testenv.Timeout, last)
	return nil
}

// waitForEvent waits for an Event of the Rollout and returns its message.
func waitForEvent(t *testing.T, ctx context.Context, ro *backstopv1.Rollout, typ, reason string) string {
	t.Helper()
	deadline := time.Now().Add(testenv.Timeout)
	for time.Now().Before(deadline) {
		for _, e := range events(t, ctx, ro) {
			if e.Reason == reason && e.Type == typ {
				return e.Note
			}
		}
		time.Sleep(testenv.Poll)
	}
	t.Fatalf("no %s Event with reason %s for the Rollout within %s; have %+v", typ, reason, testenv.Timeout, events(t, ctx, ro))
	return ""
}

func countEvents(t *testing.T, ctx context.Context, ro *backstopv1.Rollout, reason string) int {
	n := 0
	for _, e := range events(t, ctx, ro) {
		if e.Reason == reason {
			n++
			if e.Series != nil {
				n += int(e.Series.Count) - 1
			}
		}
	}
	return n
}

func events(t *testing.T, ctx context.Context, ro *backstopv1.Rollout) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(ctx, &list, client.InNamespace(ro.Namespace)); err != nil {
		t.Fatalf("listing Events: %v", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == backstopv1.RolloutKind && e.Regarding.Name == ro.Name {
			out = append(out, e)
		}
	}
	return out
}

// Package hostile_test proves that hostile Rollouts, and hostile objects
// around them, are stopped with a clear message and never crash the
// manager: the real manager binary runs against a real kube-apiserver, as a
// user bound to the ClusterRole of config/rbac, with a real Prometheus; each
// case is stopped either by the apiserver, naming the offending field, or
// by the manager, with a condition that says what is wrong, and nothing of
// it is applied. A healthy Rollout released beside them is promoted, and the
// apiserver's audit log shows that the manager read Secrets only in the
// namespace of a Rollout that names them.
package hostile_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/promtest"
	"backstop.dev/backstop/test/testenv"
)

var (
	env *testenv.Env
	// auditLog is the apiserver's audit log: one JSON event per line, for
	// every request on Secrets.
	auditLog string
)

// managerUser is the user the manager authenticates as.
const managerUser = "backstop-manager"

// auditPolicy records who read or listed which Secret, and nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets"]
- level: None
`

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "backstop-hostile-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	policy := filepath.Join(dir, "audit-policy.yaml")
	auditLog = filepath.Join(dir, "audit.log")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	env, err = testenv.StartWith(testenv.Options{APIServerArgs: map[string]string{
		"audit-policy-file": policy,
		"audit-log-path":    auditLog,
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
	code := m.Run()
	env.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// How a case was stopped.
const (
	byAPIServer = "apiserver"
	byCondition = "condition"
	accepted    = "accepted"
)

// hostileCase is one hostile Rollout, in a namespace of its own beside a
// Deployment "app" (2 replicas) and a Gateway "public".
type hostileCase struct {
	name string
	// around creates objects the case needs before its Rollout: in ns, or
	// in other namespaces it makes.
	around func(t *testing.T, ns string)
	// mutate changes the base Rollout; raw then edits it as JSON, for
	// values the Go types cannot carry.
	mutate func(ro *backstopv1.Rollout)
	raw    func(obj map[string]any)

	// Exactly one of the three outcomes:
	// rejected is "<field>: <substring>" of the apiserver's error;
	rejected string
	// reason and message are those of the Ready condition the manager
	// sets (message: each substring, with NS for the namespace);
	reason  string
	message []string
	// valid says the manager takes the Rollout as valid (the release
	// machinery sets it up); proof checks more of it.
	valid bool
	proof func(t *testing.T, ro *backstopv1.Rollout)
}

func (c hostileCase) outcome() string {
	switch {
	case c.rejected != "":
		return byAPIServer
	case c.reason != "":
		return byCondition
	default:
		return accepted
	}
}

// baseRollout is a valid canary of Deployment app behind Gateway public,
// judged by one check against the manager's Prometheus.
func baseRollout(ns string) *backstopv1.Rollout {
	return &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: "app"},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes:    []backstopv1.Route{{Name: "app", ParentRefs: []gwapiv1.ParentReference{{Name: "public"}}}},
			Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
				{SetWeight: ptr.To[int32](50)},
				{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: 3 * time.Second}}},
			}}},
			Analysis: &backstopv1.AnalysisSpec{
				Interval: &metav1.Duration{Duration: time.Second},
				Checks: []backstopv1.Check{{Name: "errors", CheckSpec: backstopv1.CheckSpec{
					Query: `max(hostile_error_ratio{job="test"})`,
					Max:   ptr.To(backstopv1.Decimal("0.5")),
				}}},
			},
		},
	}
}

func deployment(ns, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:v1"}}},
			},
		},
	}
}

func gateway(ns, name string, listeners ...gwapiv1.Listener) *gwapiv1.Gateway {
	if len(listeners) == 0 {
		listeners = []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType}}
	}
	return &gwapiv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       gwapiv1.GatewaySpec{GatewayClassName: "test", Listeners: listeners},
	}
}

func secret(ns, name string, data map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
}

func mustCreate(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, obj := range objs {
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
		}
	}
}

// set returns a raw edit that sets the field at path (dot-separated, list
// indices as numbers) to value.
func set(path string, value any) func(map[string]any) {
	return func(obj map[string]any) {
		parts := strings.Split(path, ".")
		var cur any = obj
		for _, p := range parts[:len(parts)-1] {
			switch c := cur.(type) {
			case map[string]any:
				if c[p] == nil {
					c[p] = map[string]any{}
				}
				cur = c[p]
			case []any:
				var i int
				fmt.Sscan(p, &i)
				cur = c[i]
			}
		}
		cur.(map[string]any)[parts[len(parts)-1]] = value
	}
}

// inVault puts a Secret of the given name, with every key Backstop reads,
// in a namespace of its own: the Rollout names it, but not in its
// namespace, so the manager must neither find nor read it.
func inVault(name string) func(t *testing.T, ns string) {
	return func(t *testing.T, ns string) {
		vault := env.Namespace(t)
		mustCreate(t, secret(vault, name, map[string]string{
			"token": "vault-token", "username": "u", "password": "p", "url": "http://127.0.0.1:1/", "git.asc": "k", "identity": "k",
		}))
	}
}

// steps returns n setWeight steps.
func steps(n int) []backstopv1.CanaryStep {
	out := make([]backstopv1.CanaryStep, n)
	for i := range out {
		out[i] = backstopv1.CanaryStep{SetWeight: ptr.To(int32(1 + i%100))}
	}
	return out
}

// byJobTemplate is an SLOTemplate whose args fill in a label value, a range
// and a metric name: the three places a value could break out of.
func byJobTemplate(ns string) *backstopv1.SLOTemplate {
	return &backstopv1.SLOTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "by-job", Namespace: ns},
		Spec: backstopv1.SLOTemplateSpec{
			Args: []backstopv1.TemplateArg{
				{Name: "job", Default: ptr.To("test")},
				{Name: "range", Default: ptr.To("1m")},
				{Name: "metric", Default: ptr.To("hostile_error_ratio")},
			},
			CheckSpec: backstopv1.CheckSpec{
				Query: `max(max_over_time({{.Args.metric}}{job="{{.Args.job}}"}[{{.Args.range}}]))`,
				Max:   ptr.To(backstopv1.Decimal("0.5")),
			},
		},
	}
}

// withTemplate makes the Rollout's check the by-job template with args.
func withTemplate(args map[string]string) func(ro *backstopv1.Rollout) {
	return func(ro *backstopv1.Rollout) {
		ro.Spec.Analysis.Checks = []backstopv1.Check{{Name: "errors", Args: args,
			TemplateRef: &backstopv1.TemplateReference{Kind: backstopv1.SLOTemplateKindName, Name: "by-job"}}}
	}
}

// stayedALabelValue proves that the job arg, rendered as the manager
// renders it, is one label value of one selector: the query Prometheus
// gets still has a single vector selector whose job matcher equals the arg
// byte for byte, and no "or".
func stayedALabelValue(job string) func(t *testing.T, ro *backstopv1.Rollout) {
	return func(t *testing.T, ro *backstopv1.Rollout) {
		tmpl := byJobTemplate(ro.Namespace)
		args := map[string]string{"job": job, "range": "1m", "metric": "hostile_error_ratio"}
		q, err := analysis.RenderQuery(tmpl.Spec.Query, analysis.VarsFor(ro, args))
		if err != nil {
			t.Fatalf("rendering: %v", err)
		}
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
		if err != nil {
			t.Fatalf("the rendered query %q does not parse: %v", q, err)
		}
		var selectors []*parser.VectorSelector
		binary := false
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			switch v := n.(type) {
			case *parser.VectorSelector:
				selectors = append(selectors, v)
			case *parser.BinaryExpr:
				binary = true
			}
			return nil
		})
		if len(selectors) != 1 || binary {
			t.Fatalf("the rendered query %q has %d selectors and a binary operator %v; want one selector and none", q, len(selectors), binary)
		}
		var got *labels.Matcher
		for _, m := range selectors[0].LabelMatchers {
			if m.Name == "job" {
				got = m
			}
		}
		if got == nil || got.Type != labels.MatchEqual || got.Value != job {
			t.Fatalf("the job matcher of %q is %v; want job=%q exactly", q, got, job)
		}
	}
}

// hostileCases are the cases, in the order they run.
func hostileCases() []hostileCase {
	var cases []hostileCase
	add := func(c ...hostileCase) { cases = append(cases, c...) }

	// Step lists.
	add(hostileCase{
		name: "the largest step list the CRD admits: 64 analysis steps naming 32 checks each",
		mutate: func(ro *backstopv1.Rollout) {
			var names []string
			ro.Spec.Analysis.Checks = nil
			for i := range 32 {
				name := fmt.Sprintf("check-%02d", i)
				names = append(names, name)
				ro.Spec.Analysis.Checks = append(ro.Spec.Analysis.Checks, backstopv1.Check{Name: name, CheckSpec: backstopv1.CheckSpec{
					Query: fmt.Sprintf(`max(hostile_error_ratio{job="test",check="%s"})`, name), Max: ptr.To(backstopv1.Decimal("0.5"))}})
			}
			ro.Spec.Strategy.Canary.Steps = nil
			for range 64 {
				ro.Spec.Strategy.Canary.Steps = append(ro.Spec.Strategy.Canary.Steps, backstopv1.CanaryStep{
					Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: time.Minute}, Checks: names}})
			}
		},
		valid: true,
	}, hostileCase{
		name:     "one step more than the CRD admits",
		mutate:   func(ro *backstopv1.Rollout) { ro.Spec.Strategy.Canary.Steps = steps(65) },
		rejected: "spec.strategy.canary.steps: Too many: 65: must have at most 64 items",
	}, hostileCase{
		name:   "a short form of 100 steps of 1%",
		mutate: shortForm(1, 100, "1s"),
		valid:  true,
	})

	// Weights.
	add(hostileCase{
		name:     "setWeight -1",
		raw:      set("spec.strategy.canary.steps.0.setWeight", -1),
		rejected: "spec.strategy.canary.steps[0].setWeight: should be greater than or equal to 0",
	}, hostileCase{
		name:     "setWeight 101",
		raw:      set("spec.strategy.canary.steps.0.setWeight", 101),
		rejected: "spec.strategy.canary.steps[0].setWeight: should be less than or equal to 100",
	}, hostileCase{
		name:     "stepWeight above maxWeight",
		mutate:   shortForm(60, 50, "1m"),
		rejected: "spec.strategy.canary: stepWeight must not exceed maxWeight",
	}, hostileCase{
		name:     "stepWeight 0",
		mutate:   shortForm(1, 50, "1m"),
		raw:      set("spec.strategy.canary.stepWeight", 0),
		rejected: "spec.strategy.canary.stepWeight: should be greater than or equal to 1",
	})

	// Durations.
	add(hostileCase{
		name: `pause "-1s"`,
		mutate: func(ro *backstopv1.Rollout) {
			ro.Spec.Strategy.Canary.Steps[0] = backstopv1.CanaryStep{Pause: &backstopv1.PauseStep{}}
		},
		raw:      set("spec.strategy.canary.steps.0.pause.duration", "-1s"),
		rejected: "spec.strategy.canary.steps[0].pause.duration: should match",
	}, hostileCase{
		name: `pause "100000h"`,
		mutate: func(ro *backstopv1.Rollout) {
			ro.Spec.Strategy.Canary.Steps[0] = backstopv1.CanaryStep{Pause: &backstopv1.PauseStep{}}
		},
		raw:      set("spec.strategy.canary.steps.0.pause.duration", "100000h"),
		rejected: "spec.strategy.canary.steps[0].pause.duration: a duration is at most 8760h (365 days)",
	}, hostileCase{
		// Past what Go's time.Duration holds: stored, it could not be
		// decoded, and the manager's list of every Rollout would fail.
		name:     `analysis interval "3000000h"`,
		raw:      set("spec.analysis.interval", "3000000h"),
		rejected: "spec.analysis.interval: a duration is at most 8760h (365 days)",
	}, hostileCase{
		name:     `window "5m] or vector(1) #"`,
		raw:      set("spec.strategy.canary.steps.1.analysis.window", "5m] or vector(1) #"),
		rejected: "spec.strategy.canary.steps[1].analysis.window: should match",
	}, hostileCase{
		name:     `progressDeadlineSeconds 1e9`,
		raw:      set("spec.progressDeadlineSeconds", 1000000000),
		rejected: "spec.progressDeadlineSeconds: should be less than or equal to 86400",
	})

	// Gateways and routes in other namespaces.
	add(hostileCase{
		name: "a parent Gateway in another namespace whose listeners admit only their own namespace",
		around: func(t *testing.T, ns string) {
			infra := env.Namespace(t)
			mustCreate(t, gateway(infra, "shared"))
			sharedNS = infra
		},
		mutate: func(ro *backstopv1.Rollout) {
			ro.Spec.Routes[0].ParentRefs = []gwapiv1.ParentReference{{Name: "shared", Namespace: ptr.To(gwapiv1.Namespace(sharedNS))}}
		},
		reason:  backstopv1.ReasonRouteNotAllowed,
		message: []string{`spec.routes[app]: no listener of Gateway SHARED/shared admits HTTPRoutes from namespace "NS"`, "listener http admits namespaces from Same", "nothing was written", "allowedRoutes"},
	}, hostileCase{
		name: "a parent Gateway in another namespace whose listener admits only GRPCRoutes",
		around: func(t *testing.T, ns string) {
			infra := env.Namespace(t)
			mustCreate(t, gateway(infra, "shared", gwapiv1.Listener{Name: "grpc", Port: 80, Protocol: gwapiv1.HTTPProtocolType,
				AllowedRoutes: &gwapiv1.AllowedRoutes{
					Namespaces: &gwapiv1.RouteNamespaces{From: ptr.To(gwapiv1.NamespacesFromAll)},
					Kinds:      []gwapiv1.RouteGroupKind{{Kind: "GRPCRoute"}},
				}}))
			sharedNS = infra
		},
		mutate: func(ro *backstopv1.Rollout) {
			ro.Spec.Routes[0].ParentRefs = []gwapiv1.ParentReference{{Name: "shared", Namespace: ptr.To(gwapiv1.Namespace(sharedNS))}}
		},
		reason:  backstopv1.ReasonRouteNotAllowed,
		message: []string{"listener grpc admits other kinds"},
	}, hostileCase{
		name: "a parent Gateway in another namespace that admits routes from all namespaces",
		around: func(t *testing.T, ns string) {
			infra := env.Namespace(t)
			mustCreate(t, gateway(infra, "shared", gwapiv1.Listener{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType,
				AllowedRoutes: &gwapiv1.AllowedRoutes{Namespaces: &gwapiv1.RouteNamespaces{From: ptr.To(gwapiv1.NamespacesFromAll)}}}))
			sharedNS = infra
		},
		mutate: func(ro *backstopv1.Rollout) {
			ro.Spec.Routes[0].ParentRefs = []gwapiv1.ParentReference{{Name: "shared", Namespace: ptr.To(gwapiv1.Namespace(sharedNS))}}
		},
		valid: true,
	}, hostileCase{
		name: "a parent Gateway in a namespace that does not exist",
		mutate: func(ro *backstopv1.Rollout) {
			ro.Spec.Routes[0].ParentRefs = []gwapiv1.ParentReference{{Name: "public", Namespace: ptr.To(gwapiv1.Namespace("no-such-namespace"))}}
		},
		reason:  backstopv1.ReasonParentNotFound,
		message: []string{`spec.routes[app]: parent Gateway "public" was not found in namespace "no-such-namespace"`},
	}, hostileCase{
		name:     "a route name with a slash",
		raw:      set("spec.routes.0.name", "other-ns/app"),
		rejected: "spec.routes[0].name: should match",
	})

	// Secrets: every secretRef field, pointed at a Secret that does not
	// exist, that exists only in another namespace, or across namespaces
	// by its name.
	secretFields := []struct {
		name   string
		field  string // in conditions
		path   string // JSON path of the name
		errAt  string // in apiserver errors
		mutate func(ro *backstopv1.Rollout, name string)
	}{{
		name: "spec.analysis.prometheus.secretRef", field: "spec.analysis.prometheus.secretRef",
		path: "spec.analysis.prometheus.secretRef.name", errAt: "spec.analysis.prometheus.secretRef.name",
		mutate: func(ro *backstopv1.Rollout, name string) {
			ro.Spec.Analysis.Prometheus = &backstopv1.PrometheusSource{Address: promURL,
				SecretRef: &backstopv1.LocalObjectReference{Name: name}}
		},
	}, {
		name: "spec.analysis.checks[].prometheus.secretRef", field: "spec.analysis.checks[errors].prometheus.secretRef",
		path: "spec.analysis.checks.0.prometheus.secretRef.name", errAt: "spec.analysis.checks[0].prometheus.secretRef.name",
		mutate: func(ro *backstopv1.Rollout, name string) {
			ro.Spec.Analysis.Checks[0].Prometheus = &backstopv1.PrometheusSource{Address: promURL,
				SecretRef: &backstopv1.LocalObjectReference{Name: name}}
		},
	}, {
		name: "spec.revert.source.secretRef", field: "spec.revert.source.secretRef",
		path: "spec.revert.source.secretRef.name", errAt: "spec.revert.source.secretRef.name",
		mutate: func(ro *backstopv1.Rollout, name string) {
			ro.Spec.Revert = &backstopv1.RevertSpec{Source: &backstopv1.GitSource{URL: "https://git.invalid/org/apps.git",
				SecretRef: &backstopv1.LocalObjectReference{Name: name}}}
		},
	}, {
		name: "spec.revert.signing.secretRef", field: "spec.revert.signing.secretRef",
		path: "spec.revert.signing.secretRef.name", errAt: "spec.revert.signing.secretRef.name",
		mutate: func(ro *backstopv1.Rollout, name string) {
			ro.Spec.Revert = &backstopv1.RevertSpec{Source: &backstopv1.GitSource{URL: "https://git.invalid/org/apps.git"},
				Signing: &backstopv1.SigningSpec{SecretRef: backstopv1.LocalObjectReference{Name: name}}}
		},
	}}
	for _, f := range secretFields {
		add(hostileCase{
			name:    f.name + " names a Secret that does not exist",
			mutate:  func(ro *backstopv1.Rollout) { f.mutate(ro, "nowhere") },
			reason:  backstopv1.ReasonSecretNotFound,
			message: []string{f.field + `: Secret "nowhere" was not found in namespace "NS"`},
		}, hostileCase{
			name:    f.name + " names a Secret that exists only in another namespace",
			around:  inVault("vaulted"),
			mutate:  func(ro *backstopv1.Rollout) { f.mutate(ro, "vaulted") },
			reason:  backstopv1.ReasonSecretNotFound,
			message: []string{f.field + `: Secret "vaulted" was not found in namespace "NS"`},
		}, hostileCase{
			name:     f.name + ` names "vault/vaulted"`,
			around:   inVault("vaulted"),
			mutate:   func(ro *backstopv1.Rollout) { f.mutate(ro, "x") },
			raw:      set(f.path, "vault/vaulted"),
			rejected: f.errAt + ": should match",
		}, hostileCase{
			name:     f.name + ` names "../vaulted"`,
			mutate:   func(ro *backstopv1.Rollout) { f.mutate(ro, "x") },
			raw:      set(f.path, "../vaulted"),
			rejected: f.errAt + ": should match",
		})
	}
	// The Secrets of hooks and notifications are read when a call is
	// made, and a missing one never holds a release by itself (see
	// docs/hooks.md and docs/notifications.md); their names and keys are
	// refused at the apiserver when they could leave the namespace.
	add(hostileCase{
		name: `spec.hooks[].urlSecretRef names "vault/hook"`,
		mutate: func(ro *backstopv1.Rollout) {
			ro.Spec.Hooks = []backstopv1.Hook{{Name: "gate", Type: backstopv1.HookPrePromotion,
				URLSecretRef: &backstopv1.SecretKeyReference{Name: "x", Key: "url"}}}
		},
		raw:      set("spec.hooks.0.urlSecretRef.name", "vault/hook"),
		rejected: "spec.hooks[0].urlSecretRef.name: should match",
	}, hostileCase{
		name: `spec.hooks[].urlSecretRef key "../url"`,
		mutate: func(ro *backstopv1.Rollout) {
			ro.Spec.Hooks = []backstopv1.Hook{{Name: "gate", Type: backstopv1.HookPrePromotion,
				URLSecretRef: &backstopv1.SecretKeyReference{Name: "hook", Key: "x"}}}
		},
		raw:      set("spec.hooks.0.urlSecretRef.key", "../url"),
		rejected: "spec.hooks[0].urlSecretRef.key: should match",
	}, hostileCase{
		name: `spec.notifications.targets[].urlSecretRef names "vault/chat"`,
		mutate: func(ro *backstopv1.Rollout) {
			ro.Spec.Notifications = &backstopv1.NotificationSpec{Targets: []backstopv1.NotificationTarget{{Name: "chat",
				URLSecretRef: backstopv1.SecretKeyReference{Name: "x", Key: "address"}}}}
		},
		raw:      set("spec.notifications.targets.0.urlSecretRef.name", "vault/chat"),
		rejected: "spec.notifications.targets[0].urlSecretRef.name: should match",
	}, hostileCase{
		name:     `a templateRef named "other-ns/by-job"`,
		mutate:   withTemplate(nil),
		raw:      set("spec.analysis.checks.0.templateRef.name", "other-ns/by-job"),
		rejected: "spec.analysis.checks[0].templateRef.name: should match",
	})

	// Template args and names that try to break out of a label value.
	for _, job := range []string{`"} or vector(1) #`, `\"} or vector(1) #`, `\`, "a\"}\nor vector(1)", "\u202e\"} or vector(1) \u2028#", `{{.Namespace}}`} {
		add(hostileCase{
			name:   fmt.Sprintf("a label-value arg %q", job),
			around: func(t *testing.T, ns string) { mustCreate(t, byJobTemplate(ns)) },
			mutate: withTemplate(map[string]string{"job": job}),
			valid:  true,
			proof:  stayedALabelValue(job),
		})
	}
	add(hostileCase{
		name:    `a range arg "1m]) or vector(1) #"`,
		around:  func(t *testing.T, ns string) { mustCreate(t, byJobTemplate(ns)) },
		mutate:  withTemplate(map[string]string{"range": "1m]) or vector(1) #"}),
		reason:  backstopv1.ReasonInvalidSpec,
		message: []string{`spec.analysis.checks[errors] (SLOTemplate "by-job") spec.query: UnsafeValue: `, "range"},
	}, hostileCase{
		name:    `a metric-name arg "up) or vector(1"`,
		around:  func(t *testing.T, ns string) { mustCreate(t, byJobTemplate(ns)) },
		mutate:  withTemplate(map[string]string{"metric": "up) or vector(1"}),
		reason:  backstopv1.ReasonInvalidSpec,
		message: []string{`spec.analysis.checks[errors] (SLOTemplate "by-job") spec.query: UnsafeValue: `, "metric"},
	}, hostileCase{
		name:     `a target name "app\"} or vector(1) #"`,
		raw:      set("spec.targetRef.name", `app"} or vector(1) #`),
		rejected: "spec.targetRef.name: should match",
	}, hostileCase{
		name:     `a service name "app\\\"}"`,
		raw:      set("spec.service.name", `app\"}`),
		rejected: "spec.service.name: should match",
	})

	// Hook URLs.
	for _, u := range []string{"file:///etc/passwd", "gopher://127.0.0.1:70/", "unix:///var/run/docker.sock", "http://", "http://a\nHost: evil"} {
		add(hostileCase{
			name: fmt.Sprintf("a hook URL %q", u),
			mutate: func(ro *backstopv1.Rollout) {
				ro.Spec.Hooks = []backstopv1.Hook{{Name: "load", Type: backstopv1.HookStep, URL: "http://x"}}
			},
			raw:      set("spec.hooks.0.url", u),
			rejected: "spec.hooks[0].url: should match",
		})
	}

	// Targets.
	add(hostileCase{
		name:     "a target that is a StatefulSet",
		raw:      set("spec.targetRef.kind", "StatefulSet"),
		rejected: `spec.targetRef.kind: Unsupported value: "StatefulSet"`,
	}, hostileCase{
		name:     "a target of apiVersion apps/v1beta1",
		raw:      set("spec.targetRef.apiVersion", "apps/v1beta1"),
		rejected: `spec.targetRef.apiVersion: Unsupported value: "apps/v1beta1"`,
	}, hostileCase{
		name: "a target named like a Service, not a Deployment",
		around: func(t *testing.T, ns string) {
			mustCreate(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}})
		},
		mutate:  func(ro *backstopv1.Rollout) { ro.Spec.TargetRef.Name = "web" },
		reason:  backstopv1.ReasonTargetNotFound,
		message: []string{`Deployment "web" named by spec.targetRef was not found in namespace "NS"`},
	}, hostileCase{
		name: "a target another, older Rollout releases",
		around: func(t *testing.T, ns string) {
			first := baseRollout(ns)
			first.Name = "a-first"
			first.Spec.Service.Name = "first"
			first.Spec.Routes[0].Name = "first"
			mustCreate(t, first)
			waitReady(t, client.ObjectKeyFromObject(first), string(backstopv1.PhaseInitializing))
		},
		mutate:  func(ro *backstopv1.Rollout) { ro.Name = "b-second" },
		reason:  backstopv1.ReasonInvalidSpec,
		message: []string{`spec.targetRef: Deployment "app" is already released by Rollout "a-first"`},
	}, hostileCase{
		name: "a target that is another Rollout's primary",
		around: func(t *testing.T, ns string) {
			first := baseRollout(ns)
			first.Name = "a-first"
			first.Spec.Service.Name = "first"
			first.Spec.Routes[0].Name = "first"
			mustCreate(t, first)
			testenv.Eventually(t, "the first Rollout's primary", func() bool {
				return env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "app-primary"}, &appsv1.Deployment{}) == nil
			})
		},
		mutate: func(ro *backstopv1.Rollout) {
			ro.Name = "b-second"
			ro.Spec.TargetRef.Name = "app-primary"
			ro.Spec.Service.Name = "second"
		},
		reason:  backstopv1.ReasonInvalidSpec,
		message: []string{`spec.targetRef: Deployment "app-primary" is the primary of Rollout "a-first" and is kept by Backstop`},
	})
	return cases
}

// sharedNS and promURL are set while the cases are made and run.
var sharedNS, promURL string

func shortForm(step, maxWeight int32, interval string) func(ro *backstopv1.Rollout) {
	return func(ro *backstopv1.Rollout) {
		d, _ := time.ParseDuration(interval)
		ro.Spec.Strategy.Canary = &backstopv1.CanaryStrategy{StepWeight: ptr.To(step), MaxWeight: ptr.To(maxWeight),
			Interval: &metav1.Duration{Duration: d}}
	}
}

func toUnstructured(t *testing.T, ro *backstopv1.Rollout) *unstructured.Unstructured {
	t.Helper()
	b, err := json.Marshal(ro)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(b, &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetAPIVersion(backstopv1.GroupVersion.String())
	u.SetKind(backstopv1.RolloutKind)
	return u
}

// readyOf is the Rollout's Ready condition, or nil.
func readyOf(t *testing.T, key client.ObjectKey) (*backstopv1.Rollout, *metav1.Condition) {
	t.Helper()
	var ro backstopv1.Rollout
	if err := env.Client.Get(context.Background(), key, &ro); err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(ro.Status.Conditions, backstopv1.ReadyCondition)
	if c == nil || c.ObservedGeneration != ro.Generation {
		return &ro, nil
	}
	return &ro, c
}

// waitReady waits until the Ready condition has reason and returns it.
func waitReady(t *testing.T, key client.ObjectKey, reason string) *metav1.Condition {
	t.Helper()
	var last *metav1.Condition
	testenv.Eventually(t, fmt.Sprintf("Rollout %s to be Ready=…, reason %s", key, reason), func() bool {
		_, last = readyOf(t, key)
		return last != nil && last.Reason == reason
	})
	return last
}

// nothingApplied checks that the Rollout wrote nothing: no object in its
// namespace is controlled by it, and the target keeps its replicas.
func nothingApplied(t *testing.T, ro *backstopv1.Rollout) {
	t.Helper()
	ctx := context.Background()
	owned := func(obj client.Object) bool {
		ref := metav1.GetControllerOf(obj)
		return ref != nil && ref.UID == ro.UID
	}
	var routes gwapiv1.HTTPRouteList
	var deps appsv1.DeploymentList
	var svcs corev1.ServiceList
	for _, l := range []client.ObjectList{&routes, &deps, &svcs} {
		if err := env.Client.List(ctx, l, client.InNamespace(ro.Namespace)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range routes.Items {
		if owned(&routes.Items[i]) {
			t.Errorf("HTTPRoute %s was written for the stopped Rollout", routes.Items[i].Name)
		}
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		if owned(d) {
			t.Errorf("Deployment %s was created for the stopped Rollout", d.Name)
		}
		if d.Name == "app" && (d.Spec.Replicas == nil || *d.Spec.Replicas != 2) {
			t.Errorf("the target was scaled to %v; want it left at 2", d.Spec.Replicas)
		}
	}
	for i := range svcs.Items {
		if owned(&svcs.Items[i]) {
			t.Errorf("Service %s was created for the stopped Rollout", svcs.Items[i].Name)
		}
	}
}

// TestHostileRollouts runs every hostile case against one manager process,
// then releases a healthy Rollout beside them, and proves: each case was
// stopped by the apiserver (naming the field) or by a condition (saying
// what is wrong and what to do) with nothing applied, or, for the few that
// are valid, taken as valid with the hostile value made harmless; the
// manager never exited, never panicked and still promotes a healthy
// release; and every Secret it read was in the namespace of a Rollout that
// names it, or named by its own flags.
func TestHostileRollouts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	managerNS := env.Namespace(t)

	// A real Prometheus scraping one gauge the checks read.
	target := promtest.NewTarget(t)
	errorRatio := prometheus.NewGauge(prometheus.GaugeOpts{Name: "hostile_error_ratio", Help: "The share of failed requests."})
	target.Registry.MustRegister(errorRatio)
	prom := promtest.Start(t, promtest.Config{Targets: []string{target.Addr()}})
	prom.WaitForScrape(t, `hostile_error_ratio`)
	promURL = prom.URL()

	// Hooks and notifications post here.
	var posts atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posts.Add(1) }))
	defer receiver.Close()
	mustCreate(t, secret(managerNS, "default-target", map[string]string{"address": receiver.URL, "type": "Webhook"}))

	// The manager runs as its own user with the ClusterRole of config/rbac.
	kubeconfig := managerKubeconfig(t)
	mgrEnv := *env
	mgrEnv.Kubeconfig = kubeconfig
	mgr := mgrEnv.StartManager(t, t.TempDir(), "manager",
		"--prometheus-address="+promURL,
		"--notification-secret="+managerNS+"/default-target")
	pid := mgr.Pid()
	start := time.Now()

	counts := map[string]int{}
	var stoppedBy []string
	for _, c := range hostileCases() {
		t.Run(c.name, func(t *testing.T) {
			ns := env.Namespace(t)
			mustCreate(t, deployment(ns, "app", 2), gateway(ns, "public"))
			if c.around != nil {
				c.around(t, ns)
			}
			ro := baseRollout(ns)
			if c.mutate != nil {
				c.mutate(ro)
			}
			obj := toUnstructured(t, ro)
			if c.raw != nil {
				c.raw(obj.Object)
			}
			err := env.Client.Create(ctx, obj)
			switch c.outcome() {
			case byAPIServer:
				requireRejected(t, err, c.rejected)
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), &backstopv1.Rollout{}); !apierrors.IsNotFound(err) {
					t.Errorf("the rejected Rollout is stored: %v", err)
				}
			case byCondition:
				if err != nil {
					t.Fatalf("want the apiserver to accept the Rollout for the manager to judge; it said: %v", err)
				}
				cond := waitReady(t, client.ObjectKeyFromObject(obj), c.reason)
				for _, want := range c.message {
					want = strings.ReplaceAll(strings.ReplaceAll(want, "NS", ns), "SHARED", sharedNS)
					if !strings.Contains(cond.Message, want) {
						t.Errorf("Ready message %q; want it to contain %q", cond.Message, want)
					}
				}
				if cond.Status != metav1.ConditionFalse {
					t.Errorf("Ready is %s; want False", cond.Status)
				}
				stored, _ := readyOf(t, client.ObjectKeyFromObject(obj))
				nothingApplied(t, stored)
				t.Logf("stopped by the manager: %s: %s", cond.Reason, cond.Message)
			case accepted:
				if err != nil {
					t.Fatalf("want the Rollout accepted; the apiserver said: %v", err)
				}
				waitReady(t, client.ObjectKeyFromObject(obj), string(backstopv1.PhaseInitializing))
				stored, _ := readyOf(t, client.ObjectKeyFromObject(obj))
				if c.proof != nil {
					c.proof(t, stored)
				}
			}
			counts[c.outcome()]++
			stoppedBy = append(stoppedBy, fmt.Sprintf("%-9s  %s", c.outcome(), c.name))
		})
	}
	t.Logf("%d hostile cases: %d stopped by the apiserver, %d by a condition, %d valid and made harmless:\n  %s",
		len(stoppedBy), counts[byAPIServer], counts[byCondition], counts[accepted], strings.Join(stoppedBy, "\n  "))

	t.Run("a healthy Rollout beside them is promoted", func(t *testing.T) {
		healthyRelease(t, ctx, receiver.URL, &posts)
	})

	t.Run("the manager survived", func(t *testing.T) {
		if err := mgr.Running(); err != nil {
			t.Fatal(err)
		}
		if mgr.Pid() != pid {
			t.Errorf("the manager's pid changed from %d to %d", pid, mgr.Pid())
		}
		log, err := os.ReadFile(mgr.Log())
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"panic", "Observed a panic", "failed to list", "Failed to watch"} {
			if strings.Contains(strings.ToLower(string(log)), strings.ToLower(bad)) {
				t.Errorf("the manager's log %s has %q", mgr.Log(), bad)
			}
		}
		t.Logf("the manager (pid %d) ran %s through every case without exiting; its log has %d lines and no panic",
			pid, time.Since(start).Round(time.Second), strings.Count(string(log), "\n"))
	})

	t.Run("Secrets were read only in the namespace of a Rollout that names them", func(t *testing.T) {
		secretReads(t, managerNS)
	})
}

// requireRejected fails unless err is an Invalid error with a cause at the
// field of want ("<field>: <substring>") whose message holds the substring.
func requireRejected(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want the apiserver to reject the Rollout with %q; it accepted it", want)
	}
	field, msg, _ := strings.Cut(want, ": ")
	if st, ok := err.(apierrors.APIStatus); ok && apierrors.IsInvalid(err) && st.Status().Details != nil {
		for _, c := range st.Status().Details.Causes {
			if c.Field == field && strings.Contains(c.Message, msg) {
				t.Logf("stopped by the apiserver: %s: %s", c.Field, c.Message)
				return
			}
		}
	}
	t.Fatalf("want an error at %s containing %q; got:\n%v", field, msg, err)
}

// managerKubeconfig provisions the manager's user, binds it to the
// ClusterRole of config/rbac/role.yaml, and returns its kubeconfig.
func managerKubeconfig(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(raw, &role); err != nil {
		t.Fatal(err)
	}
	role.Name = "hostile-" + role.Name
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: managerUser}},
	}
	mustCreate(t, &role, binding)
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), binding)
		_ = env.Client.Delete(context.Background(), &role)
	})
	return env.UserKubeconfig(t, managerUser)
}

// healthyRelease releases a Rollout that names a Secret in every field
// that takes one and reads it (Prometheus credentials, a hook URL, a
// notification URL), and waits until its release is promoted.
func healthyRelease(t *testing.T, ctx context.Context, receiverURL string, posts *atomic.Int64) {
	ns := env.Namespace(t)
	env.RunDeploymentController(ctx, ns)
	env.RunGateway(ctx, ns)
	mustCreate(t, deployment(ns, "app", 2), gateway(ns, "public"),
		secret(ns, "prom-auth", map[string]string{"token": "prometheus-token"}),
		secret(ns, "hook-url", map[string]string{"url": receiverURL + "/hook"}),
		secret(ns, "chat-url", map[string]string{"address": receiverURL + "/chat"}))
	ro := baseRollout(ns)
	ro.Spec.Analysis.Prometheus = &backstopv1.PrometheusSource{Address: promURL, SecretRef: &backstopv1.LocalObjectReference{Name: "prom-auth"}}
	ro.Spec.Hooks = []backstopv1.Hook{{Name: "pre", Type: backstopv1.HookPreRelease,
		URLSecretRef: &backstopv1.SecretKeyReference{Name: "hook-url", Key: "url"}}}
	ro.Spec.Notifications = &backstopv1.NotificationSpec{Targets: []backstopv1.NotificationTarget{{Name: "chat",
		URLSecretRef: backstopv1.SecretKeyReference{Name: "chat-url", Key: "address"}}}}
	mustCreate(t, ro)
	key := client.ObjectKeyFromObject(ro)
	waitReady(t, key, string(backstopv1.PhaseIdle))

	var d appsv1.Deployment
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &d); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.Containers[0].Image = "app:v2"
	if err := env.Client.Patch(ctx, &d, patch); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	deadline := time.Now().Add(3 * testenv.Timeout)
	for {
		got, _ := readyOf(t, key)
		if got.Status.Phase == backstopv1.PhaseSucceeded {
			break
		}
		if got.Status.Phase == backstopv1.PhaseRolledBack || time.Now().After(deadline) {
			t.Fatalf("the healthy release did not succeed: phase %s, conditions %+v", got.Status.Phase, got.Status.Conditions)
		}
		time.Sleep(testenv.Poll)
	}
	var primary appsv1.Deployment
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-primary"}, &primary); err != nil {
		t.Fatal(err)
	}
	if img := primary.Spec.Template.Spec.Containers[0].Image; img != "app:v2" {
		t.Errorf("the primary runs %s; want app:v2", img)
	}
	if posts.Load() == 0 {
		t.Errorf("the hook and the notification targets got no call")
	}
	healthyNS = ns
	t.Logf("the healthy release was promoted in %s; the hook and notification receivers got %d posts",
		time.Since(began).Round(time.Second), posts.Load())
}

// healthyNS is the namespace of the healthy Rollout.
var healthyNS string

// auditEvent is the part of an audit event the test reads.
type auditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// secretReads reads the audit log and checks each request the manager's
// user made on Secrets: it must be a get, of a Secret named by a Rollout
// in the Secret's namespace, or the Secret of --notification-secret.
func secretReads(t *testing.T, managerNS string) {
	ctx := context.Background()
	// Every Secret a stored Rollout names, as namespace/name.
	named := map[string]bool{}
	var list backstopv1.RolloutList
	if err := env.Client.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		for _, name := range secretNames(&list.Items[i]) {
			named[list.Items[i].Namespace+"/"+name] = true
		}
	}
	flagSecret := managerNS + "/default-target"

	f, err := os.Open(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reads := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("an audit event does not decode: %v", err)
		}
		if ev.Stage != "ResponseComplete" || ev.User.Username != managerUser || ev.ObjectRef == nil || ev.ObjectRef.Resource != "secrets" {
			continue
		}
		key := ev.ObjectRef.Namespace + "/" + ev.ObjectRef.Name
		code := 0
		if ev.ResponseStatus != nil {
			code = ev.ResponseStatus.Code
		}
		reads[fmt.Sprintf("%s %s (%d)", ev.Verb, key, code)]++
		switch {
		case ev.Verb != "get":
			t.Errorf("the manager made a %s on Secrets (%s); want only gets", ev.Verb, key)
		case key == flagSecret:
		case !named[key]:
			t.Errorf("the manager read Secret %s, which no Rollout in namespace %s names", key, ev.ObjectRef.Namespace)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for r, n := range reads {
		lines = append(lines, fmt.Sprintf("%s x%d", r, n))
	}
	sort.Strings(lines)
	t.Logf("the manager's %d distinct Secret requests (verb namespace/name (HTTP status) x count):\n  %s", len(lines), strings.Join(lines, "\n  "))
	for _, want := range []string{"prom-auth", "hook-url", "chat-url"} {
		if reads[fmt.Sprintf("get %s/%s (200)", healthyNS, want)] == 0 {
			t.Errorf("no read of Secret %s/%s in the audit log; want the healthy Rollout's Secrets read where it lives", healthyNS, want)
		}
	}
}

// secretNames lists the Secrets a Rollout names, in every field that takes
// one.
func secretNames(ro *backstopv1.Rollout) []string {
	var names []string
	if a := ro.Spec.Analysis; a != nil {
		if a.Prometheus != nil && a.Prometheus.SecretRef != nil {
			names = append(names, a.Prometheus.SecretRef.Name)
		}
		for _, c := range a.Checks {
			if c.Prometheus != nil && c.Prometheus.SecretRef != nil {
				names = append(names, c.Prometheus.SecretRef.Name)
			}
		}
	}
	if rv := ro.Spec.Revert; rv != nil {
		if rv.Source != nil && rv.Source.SecretRef != nil {
			names = append(names, rv.Source.SecretRef.Name)
		}
		if rv.Signing != nil {
			names = append(names, rv.Signing.SecretRef.Name)
		}
	}
	for _, h := range ro.Spec.Hooks {
		if h.URLSecretRef != nil {
			names = append(names, h.URLSecretRef.Name)
		}
	}
	if n := ro.Spec.Notifications; n != nil {
		for _, tg := range n.Targets {
			names = append(names, tg.URLSecretRef.Name)
		}
	}
	return names
}

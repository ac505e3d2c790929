package v1alpha1_test

// These tests prove the validation of the CRDs in config/crd/bases (the
// markers and CEL rules of this package) against a real kube-apiserver, in
// the manner of Gateway API's tests/cel: each case starts from one valid
// object, changes one thing, and says which errors the apiserver must return,
// or that it must accept the object.

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/testenv"
)

// env is the control plane of this package's tests.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func ptr[T any](v T) *T { return &v }

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func dec(s string) *v1alpha1.Decimal { d := v1alpha1.Decimal(s); return &d }

// validRollout is the base of every Rollout case: a canary with each kind of
// step, one check of each kind, alerts and a Git revert source. The apiserver
// must accept it as it is.
func validRollout() *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		Spec: v1alpha1.RolloutSpec{
			TargetRef: v1alpha1.TargetReference{Name: "app"},
			Service:   v1alpha1.ServiceSpec{Port: 8080},
			Routes: []v1alpha1.Route{{
				Name:       "app",
				ParentRefs: []gwapiv1.ParentReference{{Name: "gateway"}},
				Hostnames:  []gwapiv1.Hostname{"app.example.com"},
			}},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{
				Steps: []v1alpha1.CanaryStep{
					{SetWeight: ptr[int32](10)},
					{Pause: &v1alpha1.PauseStep{Duration: dur(30 * time.Second)}},
					{Analysis: &v1alpha1.AnalysisStep{Window: metav1.Duration{Duration: time.Minute}, Checks: []string{"error-rate"}}},
					{SetWeight: ptr[int32](50)},
					{Pause: &v1alpha1.PauseStep{}},
				},
			}},
			Analysis: &v1alpha1.AnalysisSpec{
				Interval:   dur(time.Minute),
				WarmUp:     dur(30 * time.Second),
				Prometheus: &v1alpha1.PrometheusSource{Address: "http://prometheus.monitoring:9090", Timeout: dur(5 * time.Second)},
				Checks: []v1alpha1.Check{
					{Name: "error-rate", FailureLimit: 1, CheckSpec: v1alpha1.CheckSpec{
						Query: `sum(rate(http_requests_total{service="{{.CanaryService}}",code=~"5.."}[{{.Window}}])) / sum(rate(http_requests_total{service="{{.CanaryService}}"}[{{.Window}}]))`,
						Max:   dec("0.01"),
					}},
					{Name: "latency", CheckSpec: v1alpha1.CheckSpec{
						Query:   `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="{{.CanaryService}}"}[{{.Window}}])))`,
						Compare: &v1alpha1.CompareRule{Tolerance: "0.1"},
					}},
					{Name: "availability", CheckSpec: v1alpha1.CheckSpec{Objective: &v1alpha1.ObjectiveRule{
						Target:          "99.9",
						ErrorRatioQuery: `sum(rate(http_requests_total{code=~"5.."}[{{.Window}}])) / sum(rate(http_requests_total[{{.Window}}]))`,
						ShortWindow:     dur(5 * time.Minute),
						LongWindow:      dur(time.Hour),
					}}},
					{Name: "shared", TemplateRef: &v1alpha1.TemplateReference{Name: "http-errors"}, Args: map[string]string{"threshold": "0.05"}},
				},
				Alerts: &v1alpha1.AlertGuard{Sources: []string{"Prometheus"}, BakeTime: dur(10 * time.Minute)},
			},
			Revert: &v1alpha1.RevertSpec{
				Source: &v1alpha1.GitSource{URL: "https://git.example.com/org/apps.git", Branch: "main", Path: "apps/app"},
				Author: &v1alpha1.GitAuthor{Name: "Backstop", Email: "backstop@example.com"},
			},
		},
	}
}

// rolloutCase is one Rollout the apiserver must accept (no wantErrs) or
// reject with every error of wantErrs.
type rolloutCase struct {
	name string
	// mutate changes the valid base.
	mutate func(*v1alpha1.Rollout)
	// raw changes the object as JSON after mutate, for input the Go types
	// cannot carry: a duration that does not parse, an empty list that
	// omitempty drops, a required field left out.
	raw func(obj map[string]any)
	// wantErrs are "<field>: <message substring>": each must match one
	// cause of the Invalid error, by its exact field path.
	wantErrs []string
	// check looks at the stored object of an accepted case.
	check func(t *testing.T, got *v1alpha1.Rollout)
}

// runRolloutCases creates each case's Rollout in a namespace of the test.
func runRolloutCases(t *testing.T, cases []rolloutCase) {
	t.Helper()
	ns := env.Namespace(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ro := validRollout()
			ro.Namespace, ro.Name = ns, fmt.Sprintf("ro-%d", i)
			if tc.mutate != nil {
				tc.mutate(ro)
			}
			obj := toUnstructured(t, ro, v1alpha1.RolloutKind)
			if tc.raw != nil {
				tc.raw(obj.Object)
			}
			err := env.Client.Create(context.Background(), obj)
			requireValidation(t, err, tc.wantErrs)
			if err != nil {
				return
			}
			// The stored object must decode into the Go type: a value the
			// schema lets through but the controller cannot read is a hole.
			var got v1alpha1.Rollout
			if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), &got); err != nil {
				t.Fatalf("reading back the accepted Rollout: %v", err)
			}
			if tc.check != nil {
				tc.check(t, &got)
			}
		})
	}
}

// toUnstructured encodes obj as the client would send it.
func toUnstructured(t *testing.T, obj client.Object, kind string) *unstructured.Unstructured {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(b, &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind(kind)
	return u
}

// requireValidation fails the test unless err is nil when wantErrs is
// empty, or an Invalid error with a cause for each of wantErrs.
func requireValidation(t *testing.T, err error, wantErrs []string) {
	t.Helper()
	if len(wantErrs) == 0 {
		if err != nil {
			t.Fatalf("want the object accepted; the apiserver said:\n%v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want the object rejected with %q; the apiserver accepted it", wantErrs)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want an Invalid error with %q; got:\n%v", wantErrs, err)
	}
	var causes []metav1.StatusCause
	if st, ok := err.(apierrors.APIStatus); ok && st.Status().Details != nil {
		causes = st.Status().Details.Causes
	}
	for _, want := range wantErrs {
		field, msg, ok := strings.Cut(want, ": ")
		if !ok {
			t.Fatalf("bad wantErr %q: want \"<field>: <message>\"", want)
		}
		found := false
		for _, c := range causes {
			if c.Field == field && strings.Contains(c.Message, msg) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("want an error at %s containing %q; got:\n%v", field, msg, err)
		}
	}
}

// set returns a raw edit that sets the field at path (dot-separated, list
// indices as numbers) to value, creating missing objects on the way.
func set(path string, value any) func(map[string]any) {
	return func(obj map[string]any) {
		parent, key := walk(obj, path)
		parent[key] = value
	}
}

// unset returns a raw edit that removes the field at path.
func unset(path string) func(map[string]any) {
	return func(obj map[string]any) {
		parent, key := walk(obj, path)
		delete(parent, key)
	}
}

func walk(obj map[string]any, path string) (map[string]any, string) {
	keys := strings.Split(path, ".")
	var cur any = obj
	for _, k := range keys[:len(keys)-1] {
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[k]
			if !ok {
				next = map[string]any{}
				c[k] = next
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(c) {
				panic(fmt.Sprintf("path %s: no element %s", path, k))
			}
			cur = c[i]
		default:
			panic(fmt.Sprintf("path %s: %s is not an object or a list", path, k))
		}
	}
	m, ok := cur.(map[string]any)
	if !ok {
		panic(fmt.Sprintf("path %s does not end in an object", path))
	}
	return m, keys[len(keys)-1]
}

// shortForm replaces the canary steps with the short form.
func shortForm(c *v1alpha1.CanaryStrategy) {
	c.Steps = nil
	c.StepWeight = ptr[int32](10)
	c.MaxWeight = ptr[int32](50)
	c.Interval = dur(time.Minute)
}

func blueGreen(ro *v1alpha1.Rollout) {
	ro.Spec.Strategy = v1alpha1.Strategy{BlueGreen: &v1alpha1.BlueGreenStrategy{
		Preview:  &v1alpha1.TrafficMatch{Headers: []gwapiv1.HTTPHeaderMatch{{Name: "X-Preview", Value: "true"}}},
		Analysis: &v1alpha1.AnalysisStep{Window: metav1.Duration{Duration: 5 * time.Minute}, Checks: []string{"error-rate"}},
	}}
}

func steps(n int) []v1alpha1.CanaryStep {
	s := make([]v1alpha1.CanaryStep, n)
	for i := range s {
		s[i].SetWeight = ptr(int32(i * 100 / n))
	}
	return s
}

func TestRolloutStrategy(t *testing.T) {
	runRolloutCases(t, []rolloutCase{{
		name: "valid base accepted",
	}, {
		name:   "blue-green accepted",
		mutate: blueGreen,
	}, {
		name: "empty blue-green accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy = v1alpha1.Strategy{BlueGreen: &v1alpha1.BlueGreenStrategy{}}
		},
	}, {
		name: "canary and blue-green",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.BlueGreen = &v1alpha1.BlueGreenStrategy{}
		},
		wantErrs: []string{"spec.strategy: exactly one of strategy.canary or strategy.blueGreen must be set"},
	}, {
		name:     "neither canary nor blue-green",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy = v1alpha1.Strategy{} },
		wantErrs: []string{"spec.strategy: exactly one of strategy.canary or strategy.blueGreen must be set"},
	}, {
		name:     "strategy missing",
		raw:      unset("spec.strategy"),
		wantErrs: []string{"spec.strategy: Required value"},
	}, {
		name: "blue-green analysis names an undefined check",
		mutate: func(ro *v1alpha1.Rollout) {
			blueGreen(ro)
			ro.Spec.Strategy.BlueGreen.Analysis.Checks = []string{"error-rate", "nope"}
		},
		wantErrs: []string{"spec: every check named in strategy.blueGreen.analysis must be defined in spec.analysis.checks"},
	}, {
		name: "blue-green analysis names a check without spec.analysis",
		mutate: func(ro *v1alpha1.Rollout) {
			blueGreen(ro)
			ro.Spec.Analysis = nil
		},
		wantErrs: []string{"spec: every check named in strategy.blueGreen.analysis must be defined in spec.analysis.checks"},
	}, {
		name: "blue-green analysis without check names and without spec.analysis accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			blueGreen(ro)
			ro.Spec.Strategy.BlueGreen.Analysis.Checks = nil
			ro.Spec.Analysis = nil
		},
	}, {
		name: "blue-green preview without header or cookie",
		mutate: func(ro *v1alpha1.Rollout) {
			blueGreen(ro)
			ro.Spec.Strategy.BlueGreen.Preview = &v1alpha1.TrafficMatch{}
		},
		wantErrs: []string{"spec.strategy.blueGreen.preview: a match needs at least one header or cookie"},
	}, {
		name: "blue-green preview hostnames accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			blueGreen(ro)
			ro.Spec.Strategy.BlueGreen.PreviewHostnames = []gwapiv1.Hostname{"preview.example.com", "*.preview.example.com"}
		},
	}, {
		name: "blue-green preview hostnames without a preview match accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			blueGreen(ro)
			ro.Spec.Strategy.BlueGreen.Preview = nil
			ro.Spec.Strategy.BlueGreen.PreviewHostnames = []gwapiv1.Hostname{"preview.example.com"}
		},
	}, {
		name: "blue-green 17 preview hostnames",
		mutate: func(ro *v1alpha1.Rollout) {
			blueGreen(ro)
			for i := 0; i < 17; i++ {
				ro.Spec.Strategy.BlueGreen.PreviewHostnames = append(ro.Spec.Strategy.BlueGreen.PreviewHostnames,
					gwapiv1.Hostname(fmt.Sprintf("p%d.example.com", i)))
			}
		},
		wantErrs: []string{"spec.strategy.blueGreen.previewHostnames: Too many: 17: must have at most 16 items"},
	}, {
		name: "blue-green preview hostname that is not a hostname",
		mutate: func(ro *v1alpha1.Rollout) {
			blueGreen(ro)
			ro.Spec.Strategy.BlueGreen.PreviewHostnames = []gwapiv1.Hostname{"Preview_Host"}
		},
		wantErrs: []string{"spec.strategy.blueGreen.previewHostnames[0]: Invalid value"},
	}, {
		name: "canary match by five cookies",
		mutate: func(ro *v1alpha1.Rollout) {
			var cookies []v1alpha1.CookieMatch
			for i := 0; i < 5; i++ {
				cookies = append(cookies, v1alpha1.CookieMatch{Name: fmt.Sprintf("c%d", i), Value: "1"})
			}
			ro.Spec.Strategy.Canary.Match = &v1alpha1.TrafficMatch{Cookies: cookies}
		},
		wantErrs: []string{"spec.strategy.canary.match.cookies: Too many: 5: must have at most 4 items"},
	}, {
		name: "canary match by cookie accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.Match = &v1alpha1.TrafficMatch{Cookies: []v1alpha1.CookieMatch{{Name: "canary", Value: "always"}}}
		},
	}, {
		name:     "canary match without header or cookie",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Match = &v1alpha1.TrafficMatch{} },
		wantErrs: []string{"spec.strategy.canary.match: a match needs at least one header or cookie"},
	}, {
		name: "cookie value with a space",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.Match = &v1alpha1.TrafficMatch{Cookies: []v1alpha1.CookieMatch{{Name: "canary", Value: "a b"}}}
		},
		wantErrs: []string{"spec.strategy.canary.match.cookies[0].value: should match"},
	}, {
		name:     "mirror percent above 100",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Mirror = &v1alpha1.MirrorSpec{Percent: 101} },
		wantErrs: []string{"spec.strategy.canary.mirror.percent: should be less than or equal to 100"},
	}, {
		name:     "replica percent 0",
		raw:      set("spec.strategy.canary.replicaPercent", 0),
		wantErrs: []string{"spec.strategy.canary.replicaPercent: should be greater than or equal to 1"},
	}})
}

func TestRolloutCanarySteps(t *testing.T) {
	undefinedCheck := "spec: every check named in an analysis step must be defined in spec.analysis.checks"
	runRolloutCases(t, []rolloutCase{{
		name:   "short form accepted",
		mutate: func(ro *v1alpha1.Rollout) { shortForm(ro.Spec.Strategy.Canary) },
	}, {
		name: "short form without maxWeight accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			shortForm(ro.Spec.Strategy.Canary)
			ro.Spec.Strategy.Canary.MaxWeight = nil
		},
	}, {
		name: "short form with stepWeight equal to maxWeight accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			shortForm(ro.Spec.Strategy.Canary)
			ro.Spec.Strategy.Canary.StepWeight = ptr[int32](50)
		},
	}, {
		name: "steps and short form",
		mutate: func(ro *v1alpha1.Rollout) {
			c := ro.Spec.Strategy.Canary
			c.StepWeight, c.Interval = ptr[int32](10), dur(time.Minute)
		},
		wantErrs: []string{"spec.strategy.canary: set either steps or the short form"},
	}, {
		name:     "neither steps nor short form",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Steps = nil },
		wantErrs: []string{"spec.strategy.canary: set either steps or the short form"},
	}, {
		name: "stepWeight without interval",
		mutate: func(ro *v1alpha1.Rollout) {
			shortForm(ro.Spec.Strategy.Canary)
			ro.Spec.Strategy.Canary.Interval = nil
		},
		wantErrs: []string{"spec.strategy.canary: stepWeight and interval go together"},
	}, {
		name:     "interval with steps",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Interval = dur(time.Minute) },
		wantErrs: []string{"spec.strategy.canary: stepWeight and interval go together"},
	}, {
		name:     "maxWeight with steps",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.MaxWeight = ptr[int32](50) },
		wantErrs: []string{"spec.strategy.canary: maxWeight needs stepWeight"},
	}, {
		name: "stepWeight above maxWeight",
		mutate: func(ro *v1alpha1.Rollout) {
			shortForm(ro.Spec.Strategy.Canary)
			ro.Spec.Strategy.Canary.StepWeight = ptr[int32](60)
		},
		wantErrs: []string{"spec.strategy.canary: stepWeight must not exceed maxWeight"},
	}, {
		name: "stepWeight 0",
		mutate: func(ro *v1alpha1.Rollout) {
			shortForm(ro.Spec.Strategy.Canary)
			ro.Spec.Strategy.Canary.StepWeight = ptr[int32](0)
		},
		wantErrs: []string{"spec.strategy.canary.stepWeight: should be greater than or equal to 1"},
	}, {
		name: "maxWeight above 100",
		mutate: func(ro *v1alpha1.Rollout) {
			shortForm(ro.Spec.Strategy.Canary)
			ro.Spec.Strategy.Canary.MaxWeight = ptr[int32](101)
		},
		wantErrs: []string{"spec.strategy.canary.maxWeight: should be less than or equal to 100"},
	}, {
		name:     "empty steps",
		raw:      set("spec.strategy.canary.steps", []any{}),
		wantErrs: []string{"spec.strategy.canary.steps: should have at least 1 items"},
	}, {
		name:   "64 steps accepted",
		mutate: func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Steps = steps(64) },
	}, {
		name:     "65 steps",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Steps = steps(65) },
		wantErrs: []string{"spec.strategy.canary.steps: must have at most 64 items"},
	}, {
		name:     "empty step",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Steps[0] = v1alpha1.CanaryStep{} },
		wantErrs: []string{"spec.strategy.canary.steps[0]: a step has exactly one of setWeight, pause or analysis"},
	}, {
		name:     "step with setWeight and pause",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Steps[0].Pause = &v1alpha1.PauseStep{} },
		wantErrs: []string{"spec.strategy.canary.steps[0]: a step has exactly one of setWeight, pause or analysis"},
	}, {
		name: "step with pause and analysis",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.Steps[1].Analysis = &v1alpha1.AnalysisStep{Window: metav1.Duration{Duration: time.Minute}}
		},
		wantErrs: []string{"spec.strategy.canary.steps[1]: a step has exactly one of setWeight, pause or analysis"},
	}, {
		name: "step with setWeight, pause and analysis",
		mutate: func(ro *v1alpha1.Rollout) {
			s := &ro.Spec.Strategy.Canary.Steps[2]
			s.SetWeight, s.Pause = ptr[int32](20), &v1alpha1.PauseStep{}
		},
		wantErrs: []string{"spec.strategy.canary.steps[2]: a step has exactly one of setWeight, pause or analysis"},
	}, {
		name:   "setWeight 0 accepted",
		mutate: func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Steps[0].SetWeight = ptr[int32](0) },
		check: func(t *testing.T, got *v1alpha1.Rollout) {
			if w := got.Spec.Strategy.Canary.Steps[0].SetWeight; w == nil || *w != 0 {
				t.Errorf("steps[0].setWeight = %v, want 0 kept", w)
			}
		},
	}, {
		name:   "setWeight 100 accepted",
		mutate: func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Steps[0].SetWeight = ptr[int32](100) },
	}, {
		name:     "setWeight -1",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Steps[0].SetWeight = ptr[int32](-1) },
		wantErrs: []string{"spec.strategy.canary.steps[0].setWeight: should be greater than or equal to 0"},
	}, {
		name:     "setWeight 101",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Steps[0].SetWeight = ptr[int32](101) },
		wantErrs: []string{"spec.strategy.canary.steps[0].setWeight: should be less than or equal to 100"},
	}, {
		name:     "analysis step without window",
		raw:      unset("spec.strategy.canary.steps.2.analysis.window"),
		wantErrs: []string{"spec.strategy.canary.steps[2].analysis.window: Required value"},
	}, {
		name: "analysis step naming a check twice",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.Steps[2].Analysis.Checks = []string{"error-rate", "error-rate"}
		},
		wantErrs: []string{"spec.strategy.canary.steps[2].analysis.checks[1]: Duplicate value"},
	}, {
		name: "analysis step naming every kind of check accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.Steps[2].Analysis.Checks = []string{"error-rate", "latency", "availability", "shared"}
		},
	}, {
		name:   "analysis step without check names runs all, accepted",
		mutate: func(ro *v1alpha1.Rollout) { ro.Spec.Strategy.Canary.Steps[2].Analysis.Checks = nil },
	}, {
		name: "analysis step naming an undefined check",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.Steps[2].Analysis.Checks = []string{"error-rate", "typo"}
		},
		wantErrs: []string{undefinedCheck},
	}, {
		name:     "analysis step naming a check without spec.analysis",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Analysis = nil },
		wantErrs: []string{undefinedCheck},
	}, {
		name:     "analysis step naming a check when spec.analysis has no checks",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Analysis.Checks = nil },
		wantErrs: []string{undefinedCheck},
	}, {
		name: "analysis step without check names and without spec.analysis accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.Steps[2].Analysis.Checks = nil
			ro.Spec.Analysis = nil
		},
	}})
}

// TestRolloutDurations sets each duration field to strings that
// time.ParseDuration rejects, and to ones it accepts, which must come back
// as the same duration.
func TestRolloutDurations(t *testing.T) {
	fields := []struct {
		path   string // JSON path for the raw edit
		field  string // field path in the apiserver's errors
		mutate func(*v1alpha1.Rollout)
		get    func(*v1alpha1.Rollout) *metav1.Duration
		min    time.Duration // the shortest accepted, when more than zero
	}{{
		path:  "spec.strategy.canary.steps.1.pause.duration",
		field: "spec.strategy.canary.steps[1].pause.duration",
		get:   func(ro *v1alpha1.Rollout) *metav1.Duration { return ro.Spec.Strategy.Canary.Steps[1].Pause.Duration },
	}, {
		path:  "spec.strategy.canary.steps.2.analysis.window",
		field: "spec.strategy.canary.steps[2].analysis.window",
		get:   func(ro *v1alpha1.Rollout) *metav1.Duration { return &ro.Spec.Strategy.Canary.Steps[2].Analysis.Window },
	}, {
		path:   "spec.strategy.canary.interval",
		field:  "spec.strategy.canary.interval",
		mutate: func(ro *v1alpha1.Rollout) { shortForm(ro.Spec.Strategy.Canary) },
		get:    func(ro *v1alpha1.Rollout) *metav1.Duration { return ro.Spec.Strategy.Canary.Interval },
	}, {
		path:   "spec.strategy.blueGreen.scaleDownDelay",
		field:  "spec.strategy.blueGreen.scaleDownDelay",
		mutate: blueGreen,
		get:    func(ro *v1alpha1.Rollout) *metav1.Duration { return ro.Spec.Strategy.BlueGreen.ScaleDownDelay },
	}, {
		path:  "spec.analysis.interval",
		field: "spec.analysis.interval",
		get:   func(ro *v1alpha1.Rollout) *metav1.Duration { return ro.Spec.Analysis.Interval },
		min:   time.Second,
	}, {
		path:  "spec.analysis.warmUp",
		field: "spec.analysis.warmUp",
		get:   func(ro *v1alpha1.Rollout) *metav1.Duration { return ro.Spec.Analysis.WarmUp },
	}, {
		path:  "spec.analysis.prometheus.timeout",
		field: "spec.analysis.prometheus.timeout",
		get:   func(ro *v1alpha1.Rollout) *metav1.Duration { return ro.Spec.Analysis.Prometheus.Timeout },
	}, {
		path:  "spec.analysis.checks.2.objective.shortWindow",
		field: "spec.analysis.checks[2].objective.shortWindow",
		get:   func(ro *v1alpha1.Rollout) *metav1.Duration { return ro.Spec.Analysis.Checks[2].Objective.ShortWindow },
	}, {
		path:  "spec.analysis.checks.2.objective.longWindow",
		field: "spec.analysis.checks[2].objective.longWindow",
		get:   func(ro *v1alpha1.Rollout) *metav1.Duration { return ro.Spec.Analysis.Checks[2].Objective.LongWindow },
	}, {
		path:  "spec.analysis.alerts.bakeTime",
		field: "spec.analysis.alerts.bakeTime",
		get:   func(ro *v1alpha1.Rollout) *metav1.Duration { return ro.Spec.Analysis.Alerts.BakeTime },
	}}
	bad := []string{"5 minutes", "1d", "-1s", "", "5", "1.5", "m", "1 h", "1w", "1e3s", "P1D", "30S"}
	// Past a year, and past what Go's time.Duration holds (about 2,562,047h),
	// which the manager could not decode: every Rollout it lists would fail.
	tooLong := []string{"8761h", "100000h", "3000000h", "2000000h2000000h", "9999999999999999999ms"}
	good := []string{"30s", "1m30s", "1.5h", "500ms", "0s", "2h45m", "1h0m0s", "90m", "0.25s", "8760h", "525600m"}

	var cases []rolloutCase
	for _, f := range fields {
		for _, v := range bad {
			cases = append(cases, rolloutCase{
				name:     fmt.Sprintf("%s %q", f.path, v),
				mutate:   f.mutate,
				raw:      set(f.path, v),
				wantErrs: []string{f.field + ": should match"},
			})
		}
		for _, v := range tooLong {
			cases = append(cases, rolloutCase{
				name:     fmt.Sprintf("%s %q", f.path, v),
				mutate:   f.mutate,
				raw:      set(f.path, v),
				wantErrs: []string{f.field + ": a duration is at most 8760h (365 days)"},
			})
		}
		cases = append(cases, rolloutCase{
			name:     fmt.Sprintf("%s longer than 32 characters", f.path),
			mutate:   f.mutate,
			raw:      set(f.path, strings.Repeat("1s", 17)),
			wantErrs: []string{f.field + ": Too long"},
		})
		for _, v := range good {
			want, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("bad good duration %q: %v", v, err)
			}
			if want < f.min {
				cases = append(cases, rolloutCase{
					name:     fmt.Sprintf("%s %q", f.path, v),
					mutate:   f.mutate,
					raw:      set(f.path, v),
					wantErrs: []string{f.field + ": an interval is at least 1s"},
				})
				continue
			}
			get := f.get
			cases = append(cases, rolloutCase{
				name:   fmt.Sprintf("%s %q accepted", f.path, v),
				mutate: f.mutate,
				raw:    set(f.path, v),
				check: func(t *testing.T, got *v1alpha1.Rollout) {
					if d := get(got); d == nil || d.Duration != want {
						t.Errorf("stored duration = %v, want %v", d, want)
					}
				},
			})
		}
	}
	runRolloutCases(t, cases)
}

func TestRolloutRoutes(t *testing.T) {
	existingParentRefs := "spec.routes[0]: a generated route needs parentRefs; a route with existing=true takes no parentRefs, hostnames, http or grpc"
	route := func(ro *v1alpha1.Rollout) *v1alpha1.Route { return &ro.Spec.Routes[0] }
	runRolloutCases(t, []rolloutCase{{
		name: "generated HTTPRoute with an http template accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			route(ro).Kind = v1alpha1.HTTPRouteKind
			route(ro).HTTP = &v1alpha1.HTTPRouteTemplate{Matches: []gwapiv1.HTTPRouteMatch{{
				Path: &gwapiv1.HTTPPathMatch{Type: ptr(gwapiv1.PathMatchPathPrefix), Value: ptr("/api")},
			}}}
		},
	}, {
		name: "generated GRPCRoute with a grpc template accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			route(ro).Kind = v1alpha1.GRPCRouteKind
			route(ro).GRPC = &v1alpha1.GRPCRouteTemplate{Matches: []gwapiv1.GRPCRouteMatch{{
				Method: &gwapiv1.GRPCMethodMatch{Service: ptr("echo.v1.Echo")},
			}}}
		},
	}, {
		name: "existing route accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Routes[0] = v1alpha1.Route{Name: "app", Existing: true}
		},
	}, {
		name: "existing GRPCRoute beside a generated HTTPRoute accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Routes = append(ro.Spec.Routes, v1alpha1.Route{Name: "app-grpc", Kind: v1alpha1.GRPCRouteKind, Existing: true})
		},
	}, {
		name:     "existing route with parentRefs",
		mutate:   func(ro *v1alpha1.Rollout) { route(ro).Existing = true; route(ro).Hostnames = nil },
		wantErrs: []string{existingParentRefs},
	}, {
		name:     "existing route with hostnames",
		mutate:   func(ro *v1alpha1.Rollout) { route(ro).Existing = true; route(ro).ParentRefs = nil },
		wantErrs: []string{existingParentRefs},
	}, {
		name: "existing route with an http template",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Routes[0] = v1alpha1.Route{Name: "app", Existing: true, HTTP: &v1alpha1.HTTPRouteTemplate{}}
		},
		wantErrs: []string{existingParentRefs},
	}, {
		name: "existing GRPCRoute with a grpc template",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Routes[0] = v1alpha1.Route{Name: "app", Kind: v1alpha1.GRPCRouteKind, Existing: true, GRPC: &v1alpha1.GRPCRouteTemplate{}}
		},
		wantErrs: []string{existingParentRefs},
	}, {
		name:     "generated route without parentRefs",
		mutate:   func(ro *v1alpha1.Rollout) { route(ro).ParentRefs = nil },
		wantErrs: []string{existingParentRefs},
	}, {
		name:     "generated route with empty parentRefs",
		raw:      set("spec.routes.0.parentRefs", []any{}),
		wantErrs: []string{"spec.routes[0].parentRefs: should have at least 1 items"},
	}, {
		name: "http template on a GRPCRoute",
		mutate: func(ro *v1alpha1.Rollout) {
			route(ro).Kind = v1alpha1.GRPCRouteKind
			route(ro).HTTP = &v1alpha1.HTTPRouteTemplate{}
		},
		wantErrs: []string{"spec.routes[0]: http applies only to kind HTTPRoute"},
	}, {
		name:     "grpc template on a route of the default kind",
		mutate:   func(ro *v1alpha1.Rollout) { route(ro).GRPC = &v1alpha1.GRPCRouteTemplate{} },
		wantErrs: []string{"spec.routes[0]: grpc applies only to kind GRPCRoute"},
	}, {
		name:     "route kind TCPRoute",
		mutate:   func(ro *v1alpha1.Rollout) { route(ro).Kind = "TCPRoute" },
		wantErrs: []string{`spec.routes[0].kind: Unsupported value: "TCPRoute"`},
	}, {
		name:     "routes missing",
		raw:      unset("spec.routes"),
		wantErrs: []string{"spec.routes: Required value"},
	}, {
		name:     "routes empty",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Routes = []v1alpha1.Route{} },
		wantErrs: []string{"spec.routes: should have at least 1 items"},
	}, {
		name: "nine routes",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Routes = nil
			for i := range 9 {
				ro.Spec.Routes = append(ro.Spec.Routes, v1alpha1.Route{Name: fmt.Sprintf("r%d", i), Existing: true})
			}
		},
		wantErrs: []string{"spec.routes: must have at most 8 items"},
	}, {
		name: "two routes with one name",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Routes = append(ro.Spec.Routes, v1alpha1.Route{Name: "app", Existing: true})
		},
		wantErrs: []string{"spec.routes[1]: Duplicate value"},
	}, {
		name:     "route name that is not a DNS subdomain",
		mutate:   func(ro *v1alpha1.Rollout) { route(ro).Name = "App_Route" },
		wantErrs: []string{"spec.routes[0].name: should match"},
	}, {
		name:   "route kind defaults to HTTPRoute",
		mutate: func(ro *v1alpha1.Rollout) { route(ro).Kind = "" },
		check: func(t *testing.T, got *v1alpha1.Rollout) {
			if k := got.Spec.Routes[0].Kind; k != v1alpha1.HTTPRouteKind {
				t.Errorf("routes[0].kind = %q, want the default HTTPRoute", k)
			}
		},
	}})
}

func TestRolloutTargetAndService(t *testing.T) {
	runRolloutCases(t, []rolloutCase{{
		name: "explicit apps/v1 Deployment accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.TargetRef.APIVersion, ro.Spec.TargetRef.Kind = "apps/v1", "Deployment"
		},
	}, {
		name:     "target kind StatefulSet",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.TargetRef.Kind = "StatefulSet" },
		wantErrs: []string{`spec.targetRef.kind: Unsupported value: "StatefulSet"`},
	}, {
		name:     "target apiVersion apps/v1beta1",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.TargetRef.APIVersion = "apps/v1beta1" },
		wantErrs: []string{`spec.targetRef.apiVersion: Unsupported value: "apps/v1beta1"`},
	}, {
		name:     "target name missing",
		raw:      unset("spec.targetRef.name"),
		wantErrs: []string{"spec.targetRef.name: Required value"},
	}, {
		name:     "target name empty",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.TargetRef.Name = "" },
		wantErrs: []string{"spec.targetRef.name: should be at least 1 chars long"},
	}, {
		name:     "target name with capitals",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.TargetRef.Name = "My_App" },
		wantErrs: []string{"spec.targetRef.name: should match"},
	}, {
		name:     "dotted target name without service name",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.TargetRef.Name = "app.v2" },
		wantErrs: []string{"spec: service.name is needed when targetRef.name is not a valid base for Service names"},
	}, {
		name:     "target name longer than 55 without service name",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.TargetRef.Name = strings.Repeat("a", 56) },
		wantErrs: []string{"spec: service.name is needed when targetRef.name is not a valid base for Service names"},
	}, {
		name:     "target name starting with a digit without service name",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.TargetRef.Name = "1app" },
		wantErrs: []string{"spec: service.name is needed when targetRef.name is not a valid base for Service names"},
	}, {
		name: "dotted target name with service name accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.TargetRef.Name, ro.Spec.Service.Name = "app.v2", "app-v2"
		},
	}, {
		name:   "target name of 55 accepted",
		mutate: func(ro *v1alpha1.Rollout) { ro.Spec.TargetRef.Name = strings.Repeat("a", 55) },
	}, {
		name:     "service port missing",
		raw:      unset("spec.service.port"),
		wantErrs: []string{"spec.service.port: Required value"},
	}, {
		name:     "service port 0",
		raw:      set("spec.service.port", 0),
		wantErrs: []string{"spec.service.port: should be greater than or equal to 1"},
	}, {
		name:     "service port 65536",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Service.Port = 65536 },
		wantErrs: []string{"spec.service.port: should be less than or equal to 65535"},
	}, {
		name:     "service name starting with a digit",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Service.Name = "1app" },
		wantErrs: []string{"spec.service.name: should match"},
	}, {
		name:     "service name longer than 55",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Service.Name = strings.Repeat("a", 56) },
		wantErrs: []string{"spec.service.name: Too long"},
	}, {
		name:     "service port name that is not a DNS label",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Service.PortName = "HTTP port" },
		wantErrs: []string{"spec.service.portName: should match"},
	}, {
		name:     "service port name longer than 15",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Service.PortName = strings.Repeat("p", 16) },
		wantErrs: []string{"spec.service.portName: Too long"},
	}, {
		name:   "service port name http-alt accepted",
		mutate: func(ro *v1alpha1.Rollout) { ro.Spec.Service.PortName = "http-alt" },
	}, {
		name:     "progress deadline 0",
		raw:      set("spec.progressDeadlineSeconds", 0),
		wantErrs: []string{"spec.progressDeadlineSeconds: should be greater than or equal to 1"},
	}, {
		name:     "progress deadline above a day",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.ProgressDeadlineSeconds = ptr[int32](86401) },
		wantErrs: []string{"spec.progressDeadlineSeconds: should be less than or equal to 86400"},
	}})
}

// TestRolloutDefaults checks the defaults the schema fills in on the
// smallest valid Rollout.
func TestRolloutDefaults(t *testing.T) {
	runRolloutCases(t, []rolloutCase{{
		name: "canary",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Analysis = &v1alpha1.AnalysisSpec{
				Prometheus: &v1alpha1.PrometheusSource{Address: "http://prometheus:9090"},
				Checks: []v1alpha1.Check{
					{Name: "error-rate", CheckSpec: v1alpha1.CheckSpec{Query: "q", Compare: &v1alpha1.CompareRule{}}},
					{Name: "availability", CheckSpec: v1alpha1.CheckSpec{Objective: &v1alpha1.ObjectiveRule{Target: "99", ErrorRatioQuery: "q"}}},
				},
			}
			ro.Spec.Strategy.Canary.Mirror = &v1alpha1.MirrorSpec{}
			ro.Spec.Revert = &v1alpha1.RevertSpec{Source: &v1alpha1.GitSource{URL: "git@example.com:org/apps.git"}}
		},
		check: func(t *testing.T, got *v1alpha1.Rollout) {
			s := got.Spec
			a := s.Analysis
			c := a.Checks[0].Compare
			o := a.Checks[1].Objective
			for _, d := range []struct {
				field     string
				got, want any
			}{
				{"targetRef.apiVersion", s.TargetRef.APIVersion, "apps/v1"},
				{"targetRef.kind", s.TargetRef.Kind, "Deployment"},
				{"routes[0].kind", s.Routes[0].Kind, v1alpha1.HTTPRouteKind},
				{"progressDeadlineSeconds", s.ProgressDeadlineSeconds, ptr[int32](600)},
				{"strategy.canary.mirror.percent", s.Strategy.Canary.Mirror.Percent, int32(100)},
				{"analysis.interval", a.Interval, dur(time.Minute)},
				{"analysis.inconclusiveLimit", a.InconclusiveLimit, ptr[int32](3)},
				{"analysis.onInconclusive", a.OnInconclusive, v1alpha1.InconclusivePause},
				{"analysis.prometheus.timeout", a.Prometheus.Timeout, dur(10 * time.Second)},
				{"checks[0].compare.direction", c.Direction, "LowerIsBetter"},
				{"checks[0].compare.tolerance", c.Tolerance, v1alpha1.Decimal("0")},
				{"checks[0].compare.toleranceType", c.ToleranceType, "Relative"},
				{"checks[1].objective.shortWindow", o.ShortWindow, dur(5 * time.Minute)},
				{"checks[1].objective.longWindow", o.LongWindow, dur(time.Hour)},
				{"checks[1].objective.burnRateThreshold", o.BurnRateThreshold, v1alpha1.Decimal("14.4")},
				{"revert.mode", s.Revert.Mode, v1alpha1.RevertPush},
				{"revert.source.branch", s.Revert.Source.Branch, "main"},
			} {
				if g, w := fmt.Sprint(deref(d.got)), fmt.Sprint(deref(d.want)); g != w {
					t.Errorf("%s = %s, want the default %s", d.field, g, w)
				}
			}
		},
	}, {
		name: "blue-green",
		mutate: func(ro *v1alpha1.Rollout) {
			blueGreen(ro)
			ro.Spec.Revert.Signing = &v1alpha1.SigningSpec{SecretRef: v1alpha1.LocalObjectReference{Name: "key"}}
		},
		check: func(t *testing.T, got *v1alpha1.Rollout) {
			bg := got.Spec.Strategy.BlueGreen
			if bg.AutoPromote == nil || !*bg.AutoPromote {
				t.Errorf("strategy.blueGreen.autoPromote = %v, want the default true", bg.AutoPromote)
			}
			if bg.ScaleDownDelay == nil || bg.ScaleDownDelay.Duration != 30*time.Second {
				t.Errorf("strategy.blueGreen.scaleDownDelay = %v, want the default 30s", bg.ScaleDownDelay)
			}
			if f := got.Spec.Revert.Signing.Format; f != "OpenPGP" {
				t.Errorf("revert.signing.format = %q, want the default OpenPGP", f)
			}
		},
	}})
}

// deref turns the pointers of TestRolloutDefaults into printable values.
func deref(v any) any {
	switch p := v.(type) {
	case *int32:
		if p != nil {
			return *p
		}
	case *metav1.Duration:
		if p != nil {
			return p.Duration
		}
	default:
		return v
	}
	return "<nil>"
}

func TestRolloutChecks(t *testing.T) {
	check := func(ro *v1alpha1.Rollout, i int) *v1alpha1.Check { return &ro.Spec.Analysis.Checks[i] }
	either := "spec.analysis.checks[0]: a check has either templateRef or an inline query, objective or sequential"
	objectiveOnly := "spec.analysis.checks[2]: an objective check takes its queries in objective; query, min, max, compare and sequential do not apply"
	needsBound := "spec.analysis.checks[0]: a query check needs min, max or compare"
	minMax := "spec.analysis.checks[0]: min must not exceed max"
	target := "spec.analysis.checks[2].objective: target is a percentage greater than 0 and less than 100"
	queries := "spec.analysis.checks[2].objective: give either errorRatioQuery, or goodQuery and totalQuery"
	cases := []rolloutCase{{
		name: "templateRef to a ClusterSLOTemplate without args accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			c := check(ro, 3)
			c.TemplateRef.Kind, c.Args = v1alpha1.ClusterSLOTemplateKindName, nil
		},
	}, {
		name:     "templateRef of another kind",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 3).TemplateRef.Kind = "AnalysisTemplate" },
		wantErrs: []string{`spec.analysis.checks[3].templateRef.kind: Unsupported value: "AnalysisTemplate"`},
	}, {
		name:     "templateRef without name",
		raw:      unset("spec.analysis.checks.3.templateRef.name"),
		wantErrs: []string{"spec.analysis.checks[3].templateRef.name: Required value"},
	}, {
		name:     "templateRef and query",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 0).TemplateRef = &v1alpha1.TemplateReference{Name: "t"} },
		wantErrs: []string{either},
	}, {
		name: "templateRef and objective",
		mutate: func(ro *v1alpha1.Rollout) {
			check(ro, 3).Objective = &v1alpha1.ObjectiveRule{Target: "99", ErrorRatioQuery: "q"}
		},
		wantErrs: []string{"spec.analysis.checks[3]: a check has either templateRef or an inline query, objective or sequential"},
	}, {
		name: "neither templateRef nor query nor objective",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Analysis.Checks[0] = v1alpha1.Check{Name: "error-rate", CheckSpec: v1alpha1.CheckSpec{Max: dec("1")}}
		},
		wantErrs: []string{either},
	}, {
		name:     "args without templateRef",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 0).Args = map[string]string{"a": "b"} },
		wantErrs: []string{"spec.analysis.checks[0]: args are only for checks with a templateRef"},
	}, {
		name:     "objective and query",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 2).Query = "q" },
		wantErrs: []string{objectiveOnly},
	}, {
		name:     "objective and min",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 2).Min = dec("0") },
		wantErrs: []string{objectiveOnly},
	}, {
		name:     "objective and max",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 2).Max = dec("1") },
		wantErrs: []string{objectiveOnly},
	}, {
		name:     "objective and compare",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 2).Compare = &v1alpha1.CompareRule{} },
		wantErrs: []string{objectiveOnly},
	}, {
		name:     "query without min, max or compare",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 0).Max = nil },
		wantErrs: []string{needsBound},
	}, {
		name:   "query with min only accepted",
		mutate: func(ro *v1alpha1.Rollout) { check(ro, 0).Min, check(ro, 0).Max = dec("0.5"), nil },
	}, {
		name:   "query with min equal to max accepted",
		mutate: func(ro *v1alpha1.Rollout) { check(ro, 0).Min, check(ro, 0).Max = dec("1"), dec("1.0") },
	}, {
		name:     "min above max",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 0).Min, check(ro, 0).Max = dec("0.2"), dec("0.1") },
		wantErrs: []string{minMax},
	}, {
		// "10" < "9" as strings: the rule must compare numbers.
		name:     "min above max by number, not by text",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 0).Min, check(ro, 0).Max = dec("10"), dec("9") },
		wantErrs: []string{minMax},
	}, {
		name:     "negative min above negative max",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 0).Min, check(ro, 0).Max = dec("-5"), dec("-10") },
		wantErrs: []string{minMax},
	}, {
		// "1e-3" > "0.01" as strings.
		name:   "min below max in exponent form accepted",
		mutate: func(ro *v1alpha1.Rollout) { check(ro, 0).Min, check(ro, 0).Max = dec("1e-3"), dec("0.01") },
	}, {
		name: "compare higher-is-better with absolute tolerance accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			check(ro, 1).Compare = &v1alpha1.CompareRule{Direction: "HigherIsBetter", Tolerance: "5", ToleranceType: "Absolute"}
		},
	}, {
		name:     "compare direction Sideways",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 1).Compare.Direction = "Sideways" },
		wantErrs: []string{`spec.analysis.checks[1].compare.direction: Unsupported value: "Sideways"`},
	}, {
		name:     "compare tolerance type Percent",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 1).Compare.ToleranceType = "Percent" },
		wantErrs: []string{`spec.analysis.checks[1].compare.toleranceType: Unsupported value: "Percent"`},
	}, {
		name:     "compare tolerance that is not a number",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 1).Compare.Tolerance = "10%" },
		wantErrs: []string{"spec.analysis.checks[1].compare.tolerance: should match"},
	}, {
		name: "objective with goodQuery and totalQuery accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			o := check(ro, 2).Objective
			o.ErrorRatioQuery, o.GoodQuery, o.TotalQuery = "", "good", "total"
		},
	}, {
		name: "objective with errorRatioQuery and goodQuery",
		mutate: func(ro *v1alpha1.Rollout) {
			check(ro, 2).Objective.GoodQuery = "good"
		},
		wantErrs: []string{queries},
	}, {
		name: "objective with errorRatioQuery, goodQuery and totalQuery",
		mutate: func(ro *v1alpha1.Rollout) {
			o := check(ro, 2).Objective
			o.GoodQuery, o.TotalQuery = "good", "total"
		},
		wantErrs: []string{queries},
	}, {
		name: "objective without a query",
		mutate: func(ro *v1alpha1.Rollout) {
			check(ro, 2).Objective.ErrorRatioQuery = ""
		},
		wantErrs: []string{queries},
	}, {
		name: "objective with goodQuery only",
		mutate: func(ro *v1alpha1.Rollout) {
			o := check(ro, 2).Objective
			o.ErrorRatioQuery, o.GoodQuery = "", "good"
		},
		wantErrs: []string{"spec.analysis.checks[2].objective: goodQuery and totalQuery go together"},
	}, {
		name: "objective with totalQuery only",
		mutate: func(ro *v1alpha1.Rollout) {
			o := check(ro, 2).Objective
			o.ErrorRatioQuery, o.TotalQuery = "", "total"
		},
		wantErrs: []string{"spec.analysis.checks[2].objective: goodQuery and totalQuery go together"},
	}, {
		name:     "objective without target",
		raw:      unset("spec.analysis.checks.2.objective.target"),
		wantErrs: []string{"spec.analysis.checks[2].objective.target: Required value"},
	}, {
		name:     "objective burn rate that is not a number",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 2).Objective.BurnRateThreshold = "fast" },
		wantErrs: []string{"spec.analysis.checks[2].objective.burnRateThreshold: should match"},
	}, {
		name: "sequential check accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Analysis.Checks = append(ro.Spec.Analysis.Checks, v1alpha1.Check{Name: "seq", CheckSpec: v1alpha1.CheckSpec{
				Sequential: &v1alpha1.SequentialRule{ErrorsQuery: "errors", TotalQuery: "total", Alpha: "0.01"}}})
		},
	}, {
		name: "sequential and query",
		mutate: func(ro *v1alpha1.Rollout) {
			check(ro, 0).Sequential = &v1alpha1.SequentialRule{ErrorsQuery: "errors", TotalQuery: "total"}
		},
		wantErrs: []string{"spec.analysis.checks[0]: a sequential check takes its queries in sequential; query, min, max and compare do not apply"},
	}, {
		name: "sequential and objective",
		mutate: func(ro *v1alpha1.Rollout) {
			check(ro, 2).Sequential = &v1alpha1.SequentialRule{ErrorsQuery: "errors", TotalQuery: "total"}
		},
		wantErrs: []string{objectiveOnly},
	}, {
		name: "sequential and templateRef",
		mutate: func(ro *v1alpha1.Rollout) {
			check(ro, 3).Sequential = &v1alpha1.SequentialRule{ErrorsQuery: "errors", TotalQuery: "total"}
		},
		wantErrs: []string{"spec.analysis.checks[3]: a check has either templateRef or an inline query, objective or sequential"},
	}, {
		name: "sequential without totalQuery",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Analysis.Checks = append(ro.Spec.Analysis.Checks, v1alpha1.Check{Name: "seq", CheckSpec: v1alpha1.CheckSpec{
				Sequential: &v1alpha1.SequentialRule{ErrorsQuery: "errors"}}})
		},
		wantErrs: []string{"spec.analysis.checks[4].sequential.totalQuery: Invalid value: \"\": spec.analysis.checks[4].sequential.totalQuery in body should be at least 1 chars long"},
	}, {
		name: "sequential alpha of one half",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Analysis.Checks = append(ro.Spec.Analysis.Checks, v1alpha1.Check{Name: "seq", CheckSpec: v1alpha1.CheckSpec{
				Sequential: &v1alpha1.SequentialRule{ErrorsQuery: "errors", TotalQuery: "total", Alpha: "0.5"}}})
		},
		wantErrs: []string{"spec.analysis.checks[4].sequential: alpha is a probability greater than 0 and less than 0.5"},
	}, {
		name:     "a check named alerts",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 1).Name = "alerts" },
		wantErrs: []string{"spec.analysis.checks: Invalid value: the check name alerts is taken by spec.analysis.alerts"},
	}, {
		name: "check names not unique",
		mutate: func(ro *v1alpha1.Rollout) {
			check(ro, 1).Name = "error-rate"
		},
		wantErrs: []string{`spec.analysis.checks[1]: Duplicate value: {"name":"error-rate"}`},
	}, {
		name:     "check name with capitals",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 1).Name = "Latency" },
		wantErrs: []string{"spec.analysis.checks[1].name: should match"},
	}, {
		name: "33 checks",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Analysis.Checks = nil
			ro.Spec.Strategy.Canary.Steps[2].Analysis.Checks = nil
			for i := range 33 {
				ro.Spec.Analysis.Checks = append(ro.Spec.Analysis.Checks, v1alpha1.Check{
					Name: fmt.Sprintf("c%d", i), CheckSpec: v1alpha1.CheckSpec{Query: "q", Max: dec("1")},
				})
			}
		},
		wantErrs: []string{"spec.analysis.checks: must have at most 32 items"},
	}, {
		name:     "failure limit above 100",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 0).FailureLimit = 101 },
		wantErrs: []string{"spec.analysis.checks[0].failureLimit: should be less than or equal to 100"},
	}, {
		name:     "failure limit -1",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 0).FailureLimit = -1 },
		wantErrs: []string{"spec.analysis.checks[0].failureLimit: should be greater than or equal to 0"},
	}, {
		name:     "inconclusive limit 0",
		raw:      set("spec.analysis.inconclusiveLimit", 0),
		wantErrs: []string{"spec.analysis.inconclusiveLimit: should be greater than or equal to 1"},
	}, {
		name:     "on inconclusive Ignore",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Analysis.OnInconclusive = "Ignore" },
		wantErrs: []string{`spec.analysis.onInconclusive: Unsupported value: "Ignore"`},
	}, {
		name:   "on inconclusive RollBack accepted",
		mutate: func(ro *v1alpha1.Rollout) { ro.Spec.Analysis.OnInconclusive = v1alpha1.InconclusiveRollBack },
	}, {
		name:     "prometheus address without scheme",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Analysis.Prometheus.Address = "prometheus:9090" },
		wantErrs: []string{"spec.analysis.prometheus.address: should match"},
	}, {
		name:     "check prometheus address missing",
		mutate:   func(ro *v1alpha1.Rollout) { check(ro, 0).Prometheus = &v1alpha1.PrometheusSource{} },
		raw:      unset("spec.analysis.checks.0.prometheus.address"),
		wantErrs: []string{"spec.analysis.checks[0].prometheus.address: Required value"},
	}, {
		name:     "alert source Loki",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Analysis.Alerts.Sources = []string{"Loki"} },
		wantErrs: []string{`spec.analysis.alerts.sources[0]: Unsupported value: "Loki"`},
	}, {
		name:     "alert source twice",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Analysis.Alerts.Sources = []string{"Prometheus", "Prometheus"} },
		wantErrs: []string{"spec.analysis.alerts.sources[1]: Duplicate value"},
	}, {
		name:   "both alert sources accepted",
		mutate: func(ro *v1alpha1.Rollout) { ro.Spec.Analysis.Alerts.Sources = []string{"Prometheus", "Alertmanager"} },
	}}
	for _, v := range []string{"99.9", "0.001", "99.999", "50", "1e1"} {
		cases = append(cases, rolloutCase{
			name:   fmt.Sprintf("objective target %s accepted", v),
			mutate: func(ro *v1alpha1.Rollout) { check(ro, 2).Objective.Target = v1alpha1.Decimal(v) },
		})
	}
	for _, v := range []string{"0", "0.0", "100", "100.0", "1e2", "-1", "150"} {
		cases = append(cases, rolloutCase{
			name:     fmt.Sprintf("objective target %s", v),
			mutate:   func(ro *v1alpha1.Rollout) { check(ro, 2).Objective.Target = v1alpha1.Decimal(v) },
			wantErrs: []string{target},
		})
	}
	runRolloutCases(t, cases)
}

// TestRolloutDecimals holds the Decimal pattern to the numbers the CEL
// rules can read: every accepted form goes through min <= max.
func TestRolloutDecimals(t *testing.T) {
	var cases []rolloutCase
	for _, v := range []string{"0", "0.99", "-3", "1e-3", "1E+6", "2.5e-2", ".5", "1.", "-0.25", "100"} {
		cases = append(cases, rolloutCase{
			name: fmt.Sprintf("%q accepted", v),
			mutate: func(ro *v1alpha1.Rollout) {
				c := &ro.Spec.Analysis.Checks[0]
				c.Min, c.Max = dec(v), dec("1e9")
			},
			check: func(t *testing.T, got *v1alpha1.Rollout) {
				if m := got.Spec.Analysis.Checks[0].Min; m == nil || string(*m) != v {
					t.Errorf("stored min = %v, want %q unchanged", m, v)
				}
			},
		})
	}
	for _, v := range []string{"", "abc", "1,5", "0x10", "NaN", "Inf", "+1", "1.2.3", "1e", "e3", " 1", "1 ", "1_000", "--1", "."} {
		cases = append(cases, rolloutCase{
			name:     fmt.Sprintf("%q", v),
			mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Analysis.Checks[0].Max = dec(v) },
			wantErrs: []string{"spec.analysis.checks[0].max: should match"},
		})
	}
	cases = append(cases, rolloutCase{
		name:     "longer than 32",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Analysis.Checks[0].Max = dec("0." + strings.Repeat("1", 31)) },
		wantErrs: []string{"spec.analysis.checks[0].max: Too long"},
	})
	runRolloutCases(t, cases)
}

func TestRolloutRevert(t *testing.T) {
	source := func(ro *v1alpha1.Rollout) *v1alpha1.GitSource { return ro.Spec.Revert.Source }
	badBranch := "spec.revert.source.branch: branch is not a valid Git branch name"
	badPath := "spec.revert.source.path: path is relative to the repository root and must not contain '..'"
	var cases []rolloutCase
	for _, u := range []string{
		"https://github.com/org/apps.git", "http://git.local:3000/org/apps", "ssh://git@github.com/org/apps.git",
		"git@github.com:org/apps.git", "deploy_bot@git.example.com:apps",
	} {
		cases = append(cases, rolloutCase{
			name:   fmt.Sprintf("url %s accepted", u),
			mutate: func(ro *v1alpha1.Rollout) { source(ro).URL = u },
		})
	}
	for _, u := range []string{
		"", "github.com/org/apps", "file:///srv/git/apps.git", "git://github.com/org/apps.git", "ftp://host/apps",
		"https://github.com/org/my apps.git", "https://", "git@github.com", "/srv/git/apps.git",
	} {
		cases = append(cases, rolloutCase{
			name:     fmt.Sprintf("url %q", u),
			mutate:   func(ro *v1alpha1.Rollout) { source(ro).URL = u },
			wantErrs: []string{"spec.revert.source.url: should match"},
		})
	}
	for _, b := range []string{"main", "release/1.2", "feature/foo-bar", "v1.0", "user/jane/fix_1", "a.lockb"} {
		cases = append(cases, rolloutCase{
			name:   fmt.Sprintf("branch %s accepted", b),
			mutate: func(ro *v1alpha1.Rollout) { source(ro).Branch = b },
		})
	}
	for _, b := range []string{"-main", ".hidden", "feat ure", "main~1", "a:b", "a^b", "a@{1}", "refs/heads/*"} {
		cases = append(cases, rolloutCase{
			name:     fmt.Sprintf("branch %q", b),
			mutate:   func(ro *v1alpha1.Rollout) { source(ro).Branch = b },
			wantErrs: []string{"spec.revert.source.branch: should match"},
		})
	}
	for _, b := range []string{"release..1", "release/", "main.lock", "a.lock/b", "a//b", "a/.b", "main.", "a/b."} {
		cases = append(cases, rolloutCase{
			name:     fmt.Sprintf("branch %q", b),
			mutate:   func(ro *v1alpha1.Rollout) { source(ro).Branch = b },
			wantErrs: []string{badBranch},
		})
	}
	for _, p := range []string{"apps/app", "./apps", "apps/app/", "a..b/c", "..apps", "apps/..x", "."} {
		cases = append(cases, rolloutCase{
			name:   fmt.Sprintf("path %s accepted", p),
			mutate: func(ro *v1alpha1.Rollout) { source(ro).Path = p },
		})
	}
	for _, p := range []string{"/apps", "..", "../apps", "apps/../../etc", "apps/..", "apps/../app"} {
		cases = append(cases, rolloutCase{
			name:     fmt.Sprintf("path %q", p),
			mutate:   func(ro *v1alpha1.Rollout) { source(ro).Path = p },
			wantErrs: []string{badPath},
		})
	}
	cases = append(cases, []rolloutCase{{
		name:     "url missing",
		raw:      unset("spec.revert.source.url"),
		wantErrs: []string{"spec.revert.source.url: Required value"},
	}, {
		name:   "disabled without a source accepted",
		mutate: func(ro *v1alpha1.Rollout) { ro.Spec.Revert = &v1alpha1.RevertSpec{Mode: v1alpha1.RevertDisabled} },
	}, {
		name: "branch mode with credentials and signing accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Revert.Mode = v1alpha1.RevertBranch
			source(ro).SecretRef = &v1alpha1.LocalObjectReference{Name: "git"}
			ro.Spec.Revert.Signing = &v1alpha1.SigningSpec{Format: "SSH", SecretRef: v1alpha1.LocalObjectReference{Name: "ssh-key"}}
		},
	}, {
		name:     "mode Merge",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Revert.Mode = "Merge" },
		wantErrs: []string{`spec.revert.mode: Unsupported value: "Merge"`},
	}, {
		name:     "author email without @",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Revert.Author.Email = "backstop" },
		wantErrs: []string{"spec.revert.author.email: should match"},
	}, {
		name:     "author without name",
		raw:      unset("spec.revert.author.name"),
		wantErrs: []string{"spec.revert.author.name: Required value"},
	}, {
		name: "signing format X509",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Revert.Signing = &v1alpha1.SigningSpec{Format: "X509", SecretRef: v1alpha1.LocalObjectReference{Name: "key"}}
		},
		wantErrs: []string{`spec.revert.signing.format: Unsupported value: "X509"`},
	}, {
		name: "signing without secret",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Revert.Signing = &v1alpha1.SigningSpec{}
		},
		raw:      unset("spec.revert.signing.secretRef"),
		wantErrs: []string{"spec.revert.signing.secretRef: Required value"},
	}, {
		name: "credentials secret with an empty name",
		mutate: func(ro *v1alpha1.Rollout) {
			source(ro).SecretRef = &v1alpha1.LocalObjectReference{}
		},
		wantErrs: []string{"spec.revert.source.secretRef.name: should be at least 1 chars long"},
	}}...)
	runRolloutCases(t, cases)
}

// templateSpec is the base of the template cases: a query check with args.
func templateSpec() v1alpha1.SLOTemplateSpec {
	return v1alpha1.SLOTemplateSpec{
		Description: "Share of 5xx responses of the canary.",
		Args:        []v1alpha1.TemplateArg{{Name: "threshold", Default: ptr("0.01")}, {Name: "route"}},
		CheckSpec: v1alpha1.CheckSpec{
			Query: `sum(rate(http_requests_total{route="{{.Args.route}}",code=~"5.."}[{{.Window}}]))`,
			Max:   dec("0.01"),
		},
	}
}

type templateCase struct {
	name     string
	mutate   func(*v1alpha1.SLOTemplateSpec)
	raw      func(obj map[string]any)
	wantErrs []string
}

func templateCases() []templateCase {
	objective := "spec: an objective check takes its queries in objective; query, min, max, compare and sequential do not apply"
	return []templateCase{{
		name: "query template accepted",
	}, {
		name: "objective template accepted",
		mutate: func(s *v1alpha1.SLOTemplateSpec) {
			s.CheckSpec = v1alpha1.CheckSpec{Objective: &v1alpha1.ObjectiveRule{Target: "99.5", GoodQuery: "good", TotalQuery: "total"}}
		},
	}, {
		name: "compare template accepted",
		mutate: func(s *v1alpha1.SLOTemplateSpec) {
			s.Max, s.Compare = nil, &v1alpha1.CompareRule{Direction: "HigherIsBetter"}
		},
	}, {
		name:     "neither query nor objective",
		mutate:   func(s *v1alpha1.SLOTemplateSpec) { s.CheckSpec = v1alpha1.CheckSpec{} },
		wantErrs: []string{"spec: a template has a query, an objective or a sequential test"},
	}, {
		name: "query and objective",
		mutate: func(s *v1alpha1.SLOTemplateSpec) {
			s.Max, s.Objective = nil, &v1alpha1.ObjectiveRule{Target: "99", ErrorRatioQuery: "q"}
		},
		wantErrs: []string{objective},
	}, {
		name: "objective and min",
		mutate: func(s *v1alpha1.SLOTemplateSpec) {
			s.CheckSpec = v1alpha1.CheckSpec{Min: dec("0"), Objective: &v1alpha1.ObjectiveRule{Target: "99", ErrorRatioQuery: "q"}}
		},
		wantErrs: []string{objective},
	}, {
		name:     "query without min, max or compare",
		mutate:   func(s *v1alpha1.SLOTemplateSpec) { s.Max = nil },
		wantErrs: []string{"spec: a query check needs min, max or compare"},
	}, {
		name:     "min above max",
		mutate:   func(s *v1alpha1.SLOTemplateSpec) { s.Min, s.Max = dec("2"), dec("1.5") },
		wantErrs: []string{"spec: min must not exceed max"},
	}, {
		name:     "max that is not a number",
		mutate:   func(s *v1alpha1.SLOTemplateSpec) { s.Max = dec("one") },
		wantErrs: []string{"spec.max: should match"},
	}, {
		name: "objective target 100",
		mutate: func(s *v1alpha1.SLOTemplateSpec) {
			s.CheckSpec = v1alpha1.CheckSpec{Objective: &v1alpha1.ObjectiveRule{Target: "100", ErrorRatioQuery: "q"}}
		},
		wantErrs: []string{"spec.objective: target is a percentage greater than 0 and less than 100"},
	}, {
		name: "objective with goodQuery only",
		mutate: func(s *v1alpha1.SLOTemplateSpec) {
			s.CheckSpec = v1alpha1.CheckSpec{Objective: &v1alpha1.ObjectiveRule{Target: "99", GoodQuery: "good"}}
		},
		wantErrs: []string{"spec.objective: goodQuery and totalQuery go together"},
	}, {
		name:     "arg names not unique",
		mutate:   func(s *v1alpha1.SLOTemplateSpec) { s.Args[1].Name = "threshold" },
		wantErrs: []string{"spec.args[1]: Duplicate value"},
	}, {
		name:     "arg name that is not a template identifier",
		mutate:   func(s *v1alpha1.SLOTemplateSpec) { s.Args[1].Name = "route-name" },
		wantErrs: []string{"spec.args[1].name: should match"},
	}, {
		name:     "spec missing",
		raw:      unset("spec"),
		wantErrs: []string{"spec: Required value"},
	}}
}

func TestSLOTemplate(t *testing.T) {
	ns := env.Namespace(t)
	namespaced, err := env.Client.IsObjectNamespaced(&v1alpha1.SLOTemplate{})
	if err != nil || !namespaced {
		t.Fatalf("SLOTemplate namespaced = %v (%v), want namespaced", namespaced, err)
	}
	for i, tc := range templateCases() {
		t.Run(tc.name, func(t *testing.T) {
			tpl := &v1alpha1.SLOTemplate{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("slot-%d", i)},
				Spec:       templateSpec(),
			}
			if tc.mutate != nil {
				tc.mutate(&tpl.Spec)
			}
			obj := toUnstructured(t, tpl, "SLOTemplate")
			if tc.raw != nil {
				tc.raw(obj.Object)
			}
			err := env.Client.Create(context.Background(), obj)
			requireValidation(t, err, tc.wantErrs)
			if err == nil {
				var got v1alpha1.SLOTemplate
				if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), &got); err != nil {
					t.Fatalf("reading back the accepted SLOTemplate: %v", err)
				}
			}
		})
	}
}

func TestClusterSLOTemplate(t *testing.T) {
	namespaced, err := env.Client.IsObjectNamespaced(&v1alpha1.ClusterSLOTemplate{})
	if err != nil || namespaced {
		t.Fatalf("ClusterSLOTemplate namespaced = %v (%v), want cluster-scoped", namespaced, err)
	}
	// Cluster-scoped names are shared by the whole control plane; a
	// namespace of the test makes them unique.
	prefix := env.Namespace(t)
	for i, tc := range templateCases() {
		t.Run(tc.name, func(t *testing.T) {
			tpl := &v1alpha1.ClusterSLOTemplate{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i)},
				Spec:       templateSpec(),
			}
			if tc.mutate != nil {
				tc.mutate(&tpl.Spec)
			}
			obj := toUnstructured(t, tpl, "ClusterSLOTemplate")
			if tc.raw != nil {
				tc.raw(obj.Object)
			}
			err := env.Client.Create(context.Background(), obj)
			requireValidation(t, err, tc.wantErrs)
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
			var got v1alpha1.ClusterSLOTemplate
			if err := env.Client.Get(context.Background(), types.NamespacedName{Name: obj.GetName()}, &got); err != nil {
				t.Fatalf("reading back the accepted ClusterSLOTemplate by name alone: %v", err)
			}
			if got.Namespace != "" {
				t.Errorf("stored ClusterSLOTemplate has namespace %q, want none", got.Namespace)
			}
		})
	}
}

func TestRolloutHooksAndNotifications(t *testing.T) {
	hook := func(typ v1alpha1.HookType) v1alpha1.Hook {
		return v1alpha1.Hook{Name: "load", Type: typ, URL: "http://loadtester.test/start"}
	}
	target := v1alpha1.NotificationTarget{Name: "chat", Type: v1alpha1.NotifySlack,
		URLSecretRef: v1alpha1.SecretKeyReference{Name: "slack", Key: "address"}}
	runRolloutCases(t, []rolloutCase{{
		name: "a hook of each type accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			for i, typ := range []v1alpha1.HookType{v1alpha1.HookPreRelease, v1alpha1.HookStep, v1alpha1.HookPrePromotion, v1alpha1.HookPostPromotion, v1alpha1.HookPostRollback} {
				h := hook(typ)
				h.Name = fmt.Sprintf("h%d", i)
				ro.Spec.Hooks = append(ro.Spec.Hooks, h)
			}
			ro.Spec.Hooks[1].Steps = []int32{1, 3}
			ro.Spec.Hooks[2].URL, ro.Spec.Hooks[2].URLSecretRef = "", &v1alpha1.SecretKeyReference{Name: "gate", Key: "url"}
		},
	}, {
		name: "a hook without a URL",
		mutate: func(ro *v1alpha1.Rollout) {
			h := hook(v1alpha1.HookStep)
			h.URL = ""
			ro.Spec.Hooks = append(ro.Spec.Hooks, h)
		},
		wantErrs: []string{"spec.hooks[0]: a hook needs exactly one of url or urlSecretRef"},
	}, {
		name: "a hook with both url and urlSecretRef",
		mutate: func(ro *v1alpha1.Rollout) {
			h := hook(v1alpha1.HookStep)
			h.URLSecretRef = &v1alpha1.SecretKeyReference{Name: "s", Key: "k"}
			ro.Spec.Hooks = append(ro.Spec.Hooks, h)
		},
		wantErrs: []string{"spec.hooks[0]: a hook needs exactly one of url or urlSecretRef"},
	}, {
		name: "a hook URL that is not http",
		mutate: func(ro *v1alpha1.Rollout) {
			h := hook(v1alpha1.HookStep)
			h.URL = "file:///etc/passwd"
			ro.Spec.Hooks = append(ro.Spec.Hooks, h)
		},
		wantErrs: []string{"spec.hooks[0].url: Invalid value"},
	}, {
		name: "steps on a PreRelease hook",
		mutate: func(ro *v1alpha1.Rollout) {
			h := hook(v1alpha1.HookPreRelease)
			h.Steps = []int32{1}
			ro.Spec.Hooks = append(ro.Spec.Hooks, h)
		},
		wantErrs: []string{"spec.hooks[0]: steps apply only to hooks of type Step"},
	}, {
		name: "step 0",
		mutate: func(ro *v1alpha1.Rollout) {
			h := hook(v1alpha1.HookStep)
			h.Steps = []int32{0}
			ro.Spec.Hooks = append(ro.Spec.Hooks, h)
		},
		wantErrs: []string{"spec.hooks[0].steps[0]: Invalid value"},
	}, {
		name:     "an unknown hook type",
		mutate:   func(ro *v1alpha1.Rollout) { ro.Spec.Hooks = append(ro.Spec.Hooks, hook("Sometimes")) },
		wantErrs: []string{`spec.hooks[0].type: Unsupported value: "Sometimes"`},
	}, {
		name: "two hooks of one name",
		mutate: func(ro *v1alpha1.Rollout) {
			ro.Spec.Hooks = append(ro.Spec.Hooks, hook(v1alpha1.HookStep), hook(v1alpha1.HookPreRelease))
		},
		wantErrs: []string{"spec.hooks[1]: Duplicate value"},
	}, {
		name: "attempts 0",
		mutate: func(ro *v1alpha1.Rollout) {
			h := hook(v1alpha1.HookStep)
			h.Attempts = ptr[int32](0)
			ro.Spec.Hooks = append(ro.Spec.Hooks, h)
		},
		wantErrs: []string{"spec.hooks[0].attempts: Invalid value"},
	}, {
		name: "notification targets accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			teams := target
			teams.Name, teams.Type, teams.Phases = "teams", v1alpha1.NotifyTeams, []v1alpha1.RolloutPhase{v1alpha1.PhaseRolledBack}
			ro.Spec.Notifications = &v1alpha1.NotificationSpec{Targets: []v1alpha1.NotificationTarget{target, teams}}
		},
	}, {
		name: "a notification type the manager cannot post",
		mutate: func(ro *v1alpha1.Rollout) {
			t := target
			t.Type = "Email"
			ro.Spec.Notifications = &v1alpha1.NotificationSpec{Targets: []v1alpha1.NotificationTarget{t}}
		},
		wantErrs: []string{`spec.notifications.targets[0].type: Unsupported value: "Email"`},
	}, {
		name: "a notification target without a Secret key",
		mutate: func(ro *v1alpha1.Rollout) {
			t := target
			t.URLSecretRef.Key = ""
			ro.Spec.Notifications = &v1alpha1.NotificationSpec{Targets: []v1alpha1.NotificationTarget{t}}
		},
		wantErrs: []string{"spec.notifications.targets[0].urlSecretRef.key: Invalid value"},
	}})
}

// TestRolloutReferencesStayInTheNamespace proves that every name a Rollout
// gives to a Secret or an SLOTemplate is a plain Kubernetes object name, so
// none can reach another namespace ("other-ns/name") or turn a request path
// ("..", "a/b"), and that a Secret key is a key Kubernetes allows: the
// apiserver refuses each such Rollout, naming the field.
func TestRolloutReferencesStayInTheNamespace(t *testing.T) {
	withHook := func(ro *v1alpha1.Rollout) {
		ro.Spec.Hooks = []v1alpha1.Hook{{Name: "gate", Type: v1alpha1.HookPrePromotion,
			URLSecretRef: &v1alpha1.SecretKeyReference{Name: "hook", Key: "url"}}}
	}
	withTarget := func(ro *v1alpha1.Rollout) {
		ro.Spec.Notifications = &v1alpha1.NotificationSpec{Targets: []v1alpha1.NotificationTarget{{
			Name: "chat", URLSecretRef: v1alpha1.SecretKeyReference{Name: "chat", Key: "address"}}}}
	}
	withSecrets := func(ro *v1alpha1.Rollout) {
		ro.Spec.Analysis.Prometheus.SecretRef = &v1alpha1.LocalObjectReference{Name: "prometheus"}
		ro.Spec.Analysis.Checks[0].Prometheus = &v1alpha1.PrometheusSource{Address: "http://thanos:9090",
			SecretRef: &v1alpha1.LocalObjectReference{Name: "thanos"}}
		ro.Spec.Revert.Source.SecretRef = &v1alpha1.LocalObjectReference{Name: "git"}
		ro.Spec.Revert.Signing = &v1alpha1.SigningSpec{SecretRef: v1alpha1.LocalObjectReference{Name: "signing"}}
		withHook(ro)
		withTarget(ro)
	}
	names := []struct{ path, field string }{
		{"spec.analysis.prometheus.secretRef.name", "spec.analysis.prometheus.secretRef.name"},
		{"spec.analysis.checks.0.prometheus.secretRef.name", "spec.analysis.checks[0].prometheus.secretRef.name"},
		{"spec.revert.source.secretRef.name", "spec.revert.source.secretRef.name"},
		{"spec.revert.signing.secretRef.name", "spec.revert.signing.secretRef.name"},
		{"spec.hooks.0.urlSecretRef.name", "spec.hooks[0].urlSecretRef.name"},
		{"spec.notifications.targets.0.urlSecretRef.name", "spec.notifications.targets[0].urlSecretRef.name"},
		{"spec.analysis.checks.3.templateRef.name", "spec.analysis.checks[3].templateRef.name"},
	}
	var cases []rolloutCase
	for _, n := range names {
		for _, v := range []string{"other-ns/name", "../name", "..", "name/..", "Name", "a b", "name\n", "%2e%2e", `name"}`} {
			cases = append(cases, rolloutCase{
				name:     fmt.Sprintf("%s %q", n.path, v),
				mutate:   withSecrets,
				raw:      set(n.path, v),
				wantErrs: []string{n.field + ": should match"},
			})
		}
		cases = append(cases, rolloutCase{
			name:   fmt.Sprintf("%s with dots accepted", n.path),
			mutate: withSecrets,
			raw:    set(n.path, "team.credentials-1"),
		})
	}
	for _, key := range []struct{ path, field string }{
		{"spec.hooks.0.urlSecretRef.key", "spec.hooks[0].urlSecretRef.key"},
		{"spec.notifications.targets.0.urlSecretRef.key", "spec.notifications.targets[0].urlSecretRef.key"},
	} {
		for _, v := range []string{"a/b", "../url", "url key", "url\n"} {
			cases = append(cases, rolloutCase{
				name:     fmt.Sprintf("%s %q", key.path, v),
				mutate:   withSecrets,
				raw:      set(key.path, v),
				wantErrs: []string{key.field + ": should match"},
			})
		}
		cases = append(cases, rolloutCase{name: fmt.Sprintf("%s tls.crt accepted", key.path), mutate: withSecrets, raw: set(key.path, "tls.crt")})
	}
	runRolloutCases(t, cases)
}

// TestHookURLsAndDurations proves that a hook's url is an http or https URL
// with something after the scheme and no white space, that its durations
// are capped like every other duration, and that a gate is asked again at
// most each second.
func TestHookURLsAndDurations(t *testing.T) {
	hook := func(ro *v1alpha1.Rollout) {
		ro.Spec.Hooks = []v1alpha1.Hook{{Name: "gate", Type: v1alpha1.HookPrePromotion, URL: "http://gate.test/ok"}}
	}
	var cases []rolloutCase
	for _, u := range []string{"file:///etc/passwd", "gopher://x", "ftp://x", "HTTP://x", "javascript:alert(1)", "http://", "https://a b", "http://a\nb", "//host/path", "unix:///var/run/docker.sock"} {
		cases = append(cases, rolloutCase{
			name:     fmt.Sprintf("url %q", u),
			mutate:   hook,
			raw:      set("spec.hooks.0.url", u),
			wantErrs: []string{"spec.hooks[0].url: Invalid value"},
		})
	}
	for _, u := range []string{"http://gate.test", "https://gate.test:8443/ok?token=x#frag", "http://10.0.0.1/ok"} {
		cases = append(cases, rolloutCase{name: fmt.Sprintf("url %s accepted", u), mutate: hook, raw: set("spec.hooks.0.url", u)})
	}
	for _, f := range []struct{ path, field string }{
		{"spec.hooks.0.timeout", "spec.hooks[0].timeout"},
		{"spec.hooks.0.retryInterval", "spec.hooks[0].retryInterval"},
	} {
		cases = append(cases, rolloutCase{
			name: fmt.Sprintf("%s -1s", f.path), mutate: hook, raw: set(f.path, "-1s"),
			wantErrs: []string{f.field + ": should match"},
		}, rolloutCase{
			name: fmt.Sprintf("%s 100000h", f.path), mutate: hook, raw: set(f.path, "100000h"),
			wantErrs: []string{f.field + ": a duration is at most 8760h (365 days)"},
		})
	}
	// A gate asked again more often than each second would only load it.
	for _, v := range []string{"0s", "500ms", "999ms"} {
		cases = append(cases, rolloutCase{
			name: fmt.Sprintf("spec.hooks.0.retryInterval %s", v), mutate: hook, raw: set("spec.hooks.0.retryInterval", v),
			wantErrs: []string{"spec.hooks[0].retryInterval: an interval is at least 1s"},
		})
	}
	cases = append(cases, rolloutCase{name: "spec.hooks.0.retryInterval 1s accepted", mutate: hook, raw: set("spec.hooks.0.retryInterval", "1s")})
	runRolloutCases(t, cases)
}

func TestRolloutSessionAffinity(t *testing.T) {
	needsHTTPRoute := "spec: strategy.canary.sessionAffinity needs a generated HTTPRoute in spec.routes"
	cookieConflict := "spec: strategy.canary.sessionAffinity matches the Cookie header, so no http.matches of a route may match it too"
	affinity := func(ro *v1alpha1.Rollout) *v1alpha1.SessionAffinity {
		if ro.Spec.Strategy.Canary.SessionAffinity == nil {
			ro.Spec.Strategy.Canary.SessionAffinity = &v1alpha1.SessionAffinity{}
		}
		return ro.Spec.Strategy.Canary.SessionAffinity
	}
	on := func(ro *v1alpha1.Rollout) { affinity(ro) }
	cookieTemplate := func(name string) func(*v1alpha1.Rollout) {
		return func(ro *v1alpha1.Rollout) {
			ro.Spec.Routes[0].HTTP = &v1alpha1.HTTPRouteTemplate{Matches: []gwapiv1.HTTPRouteMatch{
				{Path: &gwapiv1.HTTPPathMatch{Type: ptr(gwapiv1.PathMatchPathPrefix), Value: ptr("/api")}},
				{Headers: []gwapiv1.HTTPHeaderMatch{{Name: "X-Env", Value: "prod"}, {Name: gwapiv1.HTTPHeaderName(name), Value: "beta=1"}}},
			}}
		}
	}
	cases := []rolloutCase{{
		name:   "defaults",
		mutate: on,
		check: func(t *testing.T, got *v1alpha1.Rollout) {
			a := got.Spec.Strategy.Canary.SessionAffinity
			if a.CookieName != v1alpha1.DefaultSessionCookieName {
				t.Errorf("cookieName = %q, want the default %q", a.CookieName, v1alpha1.DefaultSessionCookieName)
			}
			if a.MaxAge == nil || a.MaxAge.Duration != v1alpha1.DefaultSessionMaxAge {
				t.Errorf("maxAge = %v, want the default %v", a.MaxAge, v1alpha1.DefaultSessionMaxAge)
			}
		},
	}, {
		name: "with a match, a mirror and the short form accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			shortForm(ro.Spec.Strategy.Canary)
			ro.Spec.Strategy.Canary.Match = &v1alpha1.TrafficMatch{Cookies: []v1alpha1.CookieMatch{{Name: "beta", Value: "yes"}}}
			ro.Spec.Strategy.Canary.Mirror = &v1alpha1.MirrorSpec{Percent: 10}
			*affinity(ro) = v1alpha1.SessionAffinity{CookieName: "shop.canary_v2", MaxAge: dur(90 * time.Minute)}
		},
	}, {
		name: "a GRPCRoute and an existing route beside a generated HTTPRoute accepted",
		mutate: func(ro *v1alpha1.Rollout) {
			on(ro)
			ro.Spec.Routes = append(ro.Spec.Routes,
				v1alpha1.Route{Name: "app-grpc", Kind: v1alpha1.GRPCRouteKind, ParentRefs: []gwapiv1.ParentReference{{Name: "gateway"}}},
				v1alpha1.Route{Name: "legacy", Existing: true})
		},
	}, {
		name:     "existing routes only",
		mutate:   func(ro *v1alpha1.Rollout) { on(ro); ro.Spec.Routes[0] = v1alpha1.Route{Name: "app", Existing: true} },
		wantErrs: []string{needsHTTPRoute},
	}, {
		name: "GRPCRoutes only",
		mutate: func(ro *v1alpha1.Rollout) {
			on(ro)
			ro.Spec.Routes[0].Kind = v1alpha1.GRPCRouteKind
		},
		wantErrs: []string{needsHTTPRoute},
	}, {
		name:   "a template without a Cookie match accepted",
		mutate: func(ro *v1alpha1.Rollout) { on(ro); cookieTemplate("X-Beta")(ro) },
	}, {
		name:     "a template matching the Cookie header",
		mutate:   func(ro *v1alpha1.Rollout) { on(ro); cookieTemplate("COOKIE")(ro) },
		wantErrs: []string{cookieConflict},
	}, {
		name: "a template matching the Cookie header on another route",
		mutate: func(ro *v1alpha1.Rollout) {
			on(ro)
			ro.Spec.Routes = append(ro.Spec.Routes, v1alpha1.Route{Name: "other", ParentRefs: []gwapiv1.ParentReference{{Name: "gateway"}}})
			cookieTemplate("Cookie")(ro)
			ro.Spec.Routes[0], ro.Spec.Routes[1] = ro.Spec.Routes[1], ro.Spec.Routes[0]
		},
		wantErrs: []string{cookieConflict},
	}, {
		name:   "a template matching the Cookie header without session affinity accepted",
		mutate: cookieTemplate("Cookie"),
	}, {
		name:     "cookie name with a space",
		mutate:   func(ro *v1alpha1.Rollout) { affinity(ro).CookieName = "backstop canary" },
		wantErrs: []string{"spec.strategy.canary.sessionAffinity.cookieName: should match"},
	}, {
		name:     "cookie name with a '='",
		mutate:   func(ro *v1alpha1.Rollout) { affinity(ro).CookieName = "a=b" },
		wantErrs: []string{"spec.strategy.canary.sessionAffinity.cookieName: should match"},
	}, {
		name:     "cookie name with a prefix of the Secure attribute",
		mutate:   func(ro *v1alpha1.Rollout) { affinity(ro).CookieName = "__Host-canary" },
		wantErrs: []string{"spec.strategy.canary.sessionAffinity.cookieName: a cookie name must not start with __"},
	}, {
		name:     "cookie name of 65 characters",
		mutate:   func(ro *v1alpha1.Rollout) { affinity(ro).CookieName = strings.Repeat("c", 65) },
		wantErrs: []string{"spec.strategy.canary.sessionAffinity.cookieName: Too long"},
	}, {
		name:     "empty cookie name",
		mutate:   on,
		raw:      set("spec.strategy.canary.sessionAffinity.cookieName", ""),
		wantErrs: []string{"spec.strategy.canary.sessionAffinity.cookieName: should be at least 1 chars long"},
	}}
	for _, v := range []string{"1s", "90m", "720h", "1.5h"} {
		want, _ := time.ParseDuration(v)
		cases = append(cases, rolloutCase{
			name:   fmt.Sprintf("maxAge %q accepted", v),
			mutate: on,
			raw:    set("spec.strategy.canary.sessionAffinity.maxAge", v),
			check: func(t *testing.T, got *v1alpha1.Rollout) {
				if d := got.Spec.Strategy.Canary.SessionAffinity.MaxAge; d == nil || d.Duration != want {
					t.Errorf("maxAge = %v, want %v", d, want)
				}
			},
		})
	}
	field := "spec.strategy.canary.sessionAffinity.maxAge: "
	for v, msg := range map[string]string{
		"721h":     "maxAge is at most 720h (30 days)",
		"8760h":    "maxAge is at most 720h (30 days)",
		"3000000h": "maxAge is at most 720h (30 days)",
		"0s":       "maxAge is at least 1s",
		"999ms":    "maxAge is at least 1s",
		"1d":       "should match",
		"-1h":      "should match",
	} {
		cases = append(cases, rolloutCase{
			name:     fmt.Sprintf("maxAge %q", v),
			mutate:   on,
			raw:      set("spec.strategy.canary.sessionAffinity.maxAge", v),
			wantErrs: []string{field + msg},
		})
	}
	runRolloutCases(t, cases)
}

package analysis_test

import (
	"context"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/promtest"
	"backstop.dev/backstop/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	// A fuzz worker runs only the fuzz target, which needs no apiserver;
	// starting one per worker would also keep the run from ending.
	for _, arg := range os.Args[1:] {
		if strings.HasPrefix(arg, "-test.fuzzworker") {
			os.Exit(m.Run())
		}
	}
	testenv.Main(m, &env)
}

// The queries of the shop's checks. The canary and the primary differ only
// in {{.Canary}}, which a compare check swaps for the primary.
const (
	errorRatio = `sum(rate(http_requests_total{namespace="{{.Namespace}}",deployment="{{.Canary}}",code="500"}[{{.Window}}]))` +
		` / sum(rate(http_requests_total{namespace="{{.Namespace}}",deployment="{{.Canary}}"}[{{.Window}}]))`
	goodCount = `sum(increase(http_requests_total{namespace="{{.Namespace}}",deployment="{{.Canary}}",code="200"}[{{.Window}}]))`
	allCount  = `sum(increase(http_requests_total{namespace="{{.Namespace}}",deployment="{{.Canary}}"}[{{.Window}}]))`
	errCount  = `sum(increase(http_requests_total{namespace="{{.Namespace}}",deployment="{{.Canary}}",code="500"}[{{.Window}}]))`
	latency   = `max(latency_seconds{namespace="{{.Namespace}}",deployment="{{.Canary}}"})`
)

// shop is a Rollout "shop/app" in the middle of a canary release whose step
// started long enough ago that the checks are due.
func shop(prom string, checks ...backstopv1.Check) *backstopv1.Rollout {
	start := metav1.NewTime(historyEnd.Add(-time.Hour))
	return &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "app"},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: "app"},
			Service:   backstopv1.ServiceSpec{Port: 80},
			Strategy:  backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](20)}}}},
			Analysis: &backstopv1.AnalysisSpec{
				Interval:   &metav1.Duration{Duration: time.Minute},
				Prometheus: &backstopv1.PrometheusSource{Address: prom},
				Checks:     checks,
			},
		},
		Status: backstopv1.RolloutStatus{Phase: backstopv1.PhaseProgressing, CanaryRevision: "v2", StableRevision: "v1", StepStartTime: &start},
	}
}

func dec(s string) *backstopv1.Decimal { d := backstopv1.Decimal(s); return &d }

func analyzer() *analysis.Analyzer {
	return &analysis.Analyzer{Client: env.Client, Secrets: env.Client}
}

// startHistory starts a Prometheus holding the shop's history.
func startHistory(t *testing.T) string {
	t.Helper()
	return promtest.Start(t, promtest.Config{OpenMetrics: history()}).URL()
}

// tokenProxy is a proxy in front of a Prometheus that demands a bearer
// token, as a Prometheus behind an authenticating gateway does.
func tokenProxy(t *testing.T, target, token string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCheckVerdicts evaluates each kind of check on the shop's history, at
// its end, where the canary fails 20% of its requests and the primary 0.1%.
func TestCheckVerdicts(t *testing.T) {
	prom := startHistory(t)
	cases := []struct {
		name        string
		check       backstopv1.CheckSpec
		wantVerdict backstopv1.Verdict
		wantValue   string
		wantBound   string
		wantMessage string
	}{{
		name:        "threshold above max fails",
		check:       backstopv1.CheckSpec{Query: errorRatio, Max: dec("0.01")},
		wantVerdict: backstopv1.VerdictFail, wantValue: "0.2", wantBound: "<= 0.01",
		wantMessage: "above the maximum",
	}, {
		name:        "threshold within min and max passes",
		check:       backstopv1.CheckSpec{Query: errorRatio, Min: dec("0.1"), Max: dec("0.3")},
		wantVerdict: backstopv1.VerdictPass, wantValue: "0.2", wantBound: "0.1 .. 0.3",
	}, {
		name:        "threshold below min fails",
		check:       backstopv1.CheckSpec{Query: `1 - (` + errorRatio + `)`, Min: dec("0.99")},
		wantVerdict: backstopv1.VerdictFail, wantValue: "0.8", wantBound: ">= 0.99",
	}, {
		name:        "compare: the canary's error ratio is far worse than the primary's",
		check:       backstopv1.CheckSpec{Query: errorRatio, Compare: &backstopv1.CompareRule{Direction: "LowerIsBetter", Tolerance: "0.5", ToleranceType: "Relative"}},
		wantVerdict: backstopv1.VerdictFail, wantValue: "0.2 (primary 0.001)", wantBound: "<= 0.0015 (primary's + 50%)",
	}, {
		name:        "compare: latency 5% worse within a 10% tolerance passes",
		check:       backstopv1.CheckSpec{Query: latency, Compare: &backstopv1.CompareRule{Direction: "LowerIsBetter", Tolerance: "0.1", ToleranceType: "Relative"}},
		wantVerdict: backstopv1.VerdictPass, wantValue: "0.105 (primary 0.1)", wantBound: "<= 0.11 (primary's + 10%)",
	}, {
		name:        "compare: latency 5% worse beyond an absolute tolerance of 0.001 fails",
		check:       backstopv1.CheckSpec{Query: latency, Compare: &backstopv1.CompareRule{Direction: "LowerIsBetter", Tolerance: "0.001", ToleranceType: "Absolute"}},
		wantVerdict: backstopv1.VerdictFail, wantValue: "0.105 (primary 0.1)", wantBound: "<= 0.101 (primary's + 0.001)",
	}, {
		name:        "compare higher-is-better: the canary's success ratio is lower",
		check:       backstopv1.CheckSpec{Query: `1 - (` + errorRatio + `)`, Compare: &backstopv1.CompareRule{Direction: "HigherIsBetter", Tolerance: "0.01", ToleranceType: "Absolute"}},
		wantVerdict: backstopv1.VerdictFail, wantValue: "0.8 (primary 0.999)", wantBound: ">= 0.989 (primary's - 0.01)",
	}, {
		// Short window (5m): 0.2 / 0.01 = 20. Long window (1h): 10 of 60
		// minutes at 0.2 = 0.0333 / 0.01 = 3.333. Only the short one
		// exceeds 14.4, so the check passes: a brief spike does not fail it.
		name: "objective: the short window alone burns too fast",
		check: backstopv1.CheckSpec{Objective: &backstopv1.ObjectiveRule{
			Target: "99", ErrorRatioQuery: errorRatio, BurnRateThreshold: "14.4",
			ShortWindow: &metav1.Duration{Duration: 5 * time.Minute}, LongWindow: &metav1.Duration{Duration: time.Hour}}},
		wantVerdict: backstopv1.VerdictPass, wantValue: "burn rate 20 over 5m, burn rate 3.333 over 1h",
	}, {
		name: "objective: both windows burn faster than 3",
		check: backstopv1.CheckSpec{Objective: &backstopv1.ObjectiveRule{
			Target: "99", ErrorRatioQuery: errorRatio, BurnRateThreshold: "3",
			ShortWindow: &metav1.Duration{Duration: 5 * time.Minute}, LongWindow: &metav1.Duration{Duration: time.Hour}}},
		wantVerdict: backstopv1.VerdictFail, wantValue: "burn rate 20 over 5m, burn rate 3.333 over 1h",
		wantBound:   "burn rate <= 3 in at least one window",
		wantMessage: "burns faster than 3 times",
	}, {
		// Good and total over 10m: 4800 good of 6000; 1200 errors = 0.2,
		// and over 2h: 1200 of 72000 = 0.01667; a 99.9% budget is 0.001.
		name: "objective from good and total counts",
		check: backstopv1.CheckSpec{Objective: &backstopv1.ObjectiveRule{
			Target: "99.9", GoodQuery: goodCount, TotalQuery: allCount, BurnRateThreshold: "14.4",
			ShortWindow: &metav1.Duration{Duration: 10 * time.Minute}, LongWindow: &metav1.Duration{Duration: 2 * time.Hour}}},
		wantVerdict: backstopv1.VerdictFail, wantValue: "burn rate 200 over 10m, burn rate 16.67 over 2h",
	}, {
		name:        "empty result is inconclusive",
		check:       backstopv1.CheckSpec{Query: `sum(rate(http_requests_total{deployment="nope"}[1m]))`, Max: dec("1")},
		wantVerdict: backstopv1.VerdictInconclusive, wantMessage: "the query returned no data",
	}, {
		name:        "several series where one is expected is inconclusive",
		check:       backstopv1.CheckSpec{Query: `rate(http_requests_total{deployment="{{.Canary}}"}[1m])`, Max: dec("1")},
		wantVerdict: backstopv1.VerdictInconclusive, wantMessage: "the query returned 2 series where one is expected",
	}, {
		name:        "NaN is inconclusive",
		check:       backstopv1.CheckSpec{Query: `sum(rate(idle_total[1m])) / sum(rate(idle_total[1m]))`, Max: dec("1")},
		wantVerdict: backstopv1.VerdictInconclusive, wantMessage: "the query returned NaN",
	}, {
		name:        "+Inf is inconclusive",
		check:       backstopv1.CheckSpec{Query: `sum(rate(http_requests_total{deployment="app"}[1m])) / sum(rate(idle_total[1m]))`, Max: dec("1")},
		wantVerdict: backstopv1.VerdictInconclusive, wantMessage: "the query returned +Inf",
	}, {
		name:        "a Prometheus error is inconclusive",
		check:       backstopv1.CheckSpec{Query: `sum(label_replace(http_requests_total, "a", "$1", "b", "("))`, Max: dec("1")},
		wantVerdict: backstopv1.VerdictInconclusive, wantMessage: "prometheus answered",
	}, {
		name:        "a template error is inconclusive and names the problem",
		check:       backstopv1.CheckSpec{Query: `sum(rate(x{a="{{.Nope}}"}[1m]))`, Max: dec("1")},
		wantVerdict: backstopv1.VerdictInconclusive, wantMessage: "Nope",
	}, {
		name:        "a PromQL syntax error is inconclusive and names the problem",
		check:       backstopv1.CheckSpec{Query: `sum(rate(x[1m])`, Max: dec("1")},
		wantVerdict: backstopv1.VerdictInconclusive, wantMessage: "query: ",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ro := shop(prom, backstopv1.Check{Name: "c", CheckSpec: tc.check})
			if _, err := analyzer().Analyze(context.Background(), ro, historyEnd); err != nil {
				t.Fatal(err)
			}
			res := checkResult(t, ro, "c")
			if res.Verdict != tc.wantVerdict {
				t.Errorf("verdict %s (value %q, message %q); want %s", res.Verdict, res.Value, res.Message, tc.wantVerdict)
			}
			if tc.wantValue != "" && res.Value != tc.wantValue {
				t.Errorf("value %q; want %q", res.Value, tc.wantValue)
			}
			if tc.wantBound != "" && res.Bound != tc.wantBound {
				t.Errorf("bound %q; want %q", res.Bound, tc.wantBound)
			}
			if !strings.Contains(res.Message, tc.wantMessage) {
				t.Errorf("message %q; want it to contain %q", res.Message, tc.wantMessage)
			}
			if len(res.Measurements) != 1 || res.Measurements[0].Verdict != res.Verdict || !res.Measurements[0].Time.Time.Equal(historyEnd) {
				t.Errorf("measurements %+v; want one %s at %s", res.Measurements, res.Verdict, historyEnd)
			}
		})
	}
}

func checkResult(t *testing.T, ro *backstopv1.Rollout, name string) backstopv1.CheckResult {
	t.Helper()
	if ro.Status.Analysis == nil {
		t.Fatalf("status.analysis is empty")
	}
	for _, r := range ro.Status.Analysis.Checks {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("status.analysis has no check %q: %+v", name, ro.Status.Analysis.Checks)
	return backstopv1.CheckResult{}
}

// TestFailureLimit: a check fails the release on the failed evaluation after
// its failureLimit, and the outcome names the check, value and bound.
func TestFailureLimit(t *testing.T) {
	prom := startHistory(t)
	ro := shop(prom, backstopv1.Check{Name: "errors", FailureLimit: 2, CheckSpec: backstopv1.CheckSpec{Query: errorRatio, Max: dec("0.01")}})
	a := analyzer()
	for i, want := range []backstopv1.Verdict{"", "", backstopv1.VerdictFail} {
		now := historyEnd.Add(time.Duration(i-2) * time.Minute)
		o, err := a.Analyze(context.Background(), ro, now)
		if err != nil {
			t.Fatal(err)
		}
		if o.Result != want {
			t.Fatalf("evaluation %d: result %q; want %q", i+1, o.Result, want)
		}
	}
	o, _ := a.Analyze(context.Background(), ro, historyEnd)
	if o.Check != "errors" || !strings.Contains(o.Message, "value 0.2, bound <= 0.01") {
		t.Errorf("outcome %+v; want check errors with value 0.2 and bound <= 0.01", o)
	}
	if got := checkResult(t, ro, "errors"); got.Failures != 3 || len(got.Measurements) != 3 {
		t.Errorf("failures %d, measurements %d; want 3 and 3", got.Failures, len(got.Measurements))
	}
}

// TestInconclusiveLimit: inconclusive evaluations in a row reach the limit;
// a pass in between starts the count again.
func TestInconclusiveLimit(t *testing.T) {
	prom := startHistory(t)
	ro := shop(prom, backstopv1.Check{Name: "nan", CheckSpec: backstopv1.CheckSpec{Query: `sum(rate(idle_total[1m])) / sum(rate(idle_total[1m]))`, Max: dec("1")}})
	ro.Spec.Analysis.InconclusiveLimit = ptr.To[int32](2)
	a := analyzer()
	o, _ := a.Analyze(context.Background(), ro, historyEnd.Add(-time.Minute))
	if o.Result != "" {
		t.Fatalf("first inconclusive evaluation: result %q; want none yet", o.Result)
	}
	o, _ = a.Analyze(context.Background(), ro, historyEnd)
	if o.Result != backstopv1.VerdictInconclusive || o.Check != "nan" || !strings.Contains(o.Message, "NaN") {
		t.Errorf("second inconclusive evaluation: %+v; want Inconclusive naming check nan and NaN", o)
	}
}

// TestWarmUp: no check runs until the warm-up after the step's start has
// passed, and the outcome says when one is due.
func TestWarmUp(t *testing.T) {
	prom := startHistory(t)
	ro := shop(prom, backstopv1.Check{Name: "errors", CheckSpec: backstopv1.CheckSpec{Query: errorRatio, Max: dec("0.5")}})
	ro.Spec.Analysis.WarmUp = &metav1.Duration{Duration: 30 * time.Second}
	start := historyEnd.Add(-20 * time.Second)
	ro.Status.StepStartTime = &metav1.Time{Time: start}
	a := analyzer()
	o, _ := a.Analyze(context.Background(), ro, historyEnd)
	if o.Result != "" || !o.Next.Equal(start.Add(30*time.Second)) {
		t.Errorf("during the warm-up: %+v; want no result and the next evaluation at the warm-up's end", o)
	}
	if res := checkResult(t, ro, "errors"); res.LastEvaluationTime != nil {
		t.Errorf("a check ran during the warm-up: %+v", res)
	}
	o, _ = a.Analyze(context.Background(), ro, start.Add(30*time.Second))
	if o.Result != backstopv1.VerdictPass {
		t.Errorf("after the warm-up: %+v; want Pass", o)
	}
}

// TestTemplateArgsAreEscaped: an SLOTemplate arg holding `a"}b` selects the
// series whose label is exactly that, and not the series `a` that an
// unescaped value would reach.
func TestTemplateArgsAreEscaped(t *testing.T) {
	prom := startHistory(t)
	ns := env.Namespace(t)
	tmpl := &backstopv1.SLOTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "route-latency"},
		Spec: backstopv1.SLOTemplateSpec{
			Args:      []backstopv1.TemplateArg{{Name: "route"}},
			CheckSpec: backstopv1.CheckSpec{Query: `max(route_latency_seconds{route="{{.Args.route}}"})`, Max: dec("1")},
		},
	}
	if err := env.Client.Create(context.Background(), tmpl); err != nil {
		t.Fatal(err)
	}
	ro := shop(prom, backstopv1.Check{Name: "latency", TemplateRef: &backstopv1.TemplateReference{Kind: backstopv1.SLOTemplateKindName, Name: "route-latency"},
		Args: map[string]string{"route": `a"}b`}})
	ro.Namespace = ns
	testenv.Eventually(t, "the template is readable", func() bool {
		return env.Client.Get(context.Background(), client.ObjectKeyFromObject(tmpl), &backstopv1.SLOTemplate{}) == nil
	})
	if _, err := analyzer().Analyze(context.Background(), ro, historyEnd); err != nil {
		t.Fatal(err)
	}
	if res := checkResult(t, ro, "latency"); res.Verdict != backstopv1.VerdictPass || res.Value != "0.25" {
		t.Errorf("result %+v; want Pass with the value 0.25 of the route a\"}b", res)
	}
}

// TestUnreachablePrometheus: a Prometheus stopped mid-analysis makes the
// checks inconclusive (never a pass), and the limit then holds the release.
func TestUnreachablePrometheus(t *testing.T) {
	srv := promtest.Start(t, promtest.Config{OpenMetrics: history()})
	ro := shop(srv.URL(), backstopv1.Check{Name: "errors", CheckSpec: backstopv1.CheckSpec{Query: errorRatio, Max: dec("0.5")}})
	ro.Spec.Analysis.InconclusiveLimit = ptr.To[int32](2)
	a := analyzer()
	if o, _ := a.Analyze(context.Background(), ro, historyEnd.Add(-2*time.Minute)); o.Result != backstopv1.VerdictPass {
		t.Fatalf("before the stop: %+v; want Pass", o)
	}
	srv.Stop()
	a.Analyze(context.Background(), ro, historyEnd.Add(-time.Minute))
	o, _ := a.Analyze(context.Background(), ro, historyEnd)
	if o.Result != backstopv1.VerdictInconclusive || !strings.Contains(o.Message, "unreachable") {
		t.Errorf("after the stop: %+v; want Inconclusive saying Prometheus is unreachable", o)
	}
}

// TestTimeout: a Prometheus that accepts connections but never answers is
// inconclusive after the source's timeout.
func TestTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ro := shop("http://"+ln.Addr().String(), backstopv1.Check{Name: "errors", CheckSpec: backstopv1.CheckSpec{Query: errorRatio, Max: dec("0.5")}})
	ro.Spec.Analysis.Prometheus.Timeout = &metav1.Duration{Duration: 300 * time.Millisecond}
	analyzer().Analyze(context.Background(), ro, historyEnd)
	if res := checkResult(t, ro, "errors"); res.Verdict != backstopv1.VerdictInconclusive || !strings.Contains(res.Message, "did not answer within 300ms") {
		t.Errorf("result %+v; want Inconclusive after the 300ms timeout", res)
	}
}

// TestSequential: the sequential check on the canary's and the primary's
// error counts passes while the canary errs no more than the primary, and
// fails within minutes once it errs at 20%.
func TestSequential(t *testing.T) {
	prom := startHistory(t)
	check := backstopv1.Check{Name: "seq", CheckSpec: backstopv1.CheckSpec{Sequential: &backstopv1.SequentialRule{ErrorsQuery: errCount, TotalQuery: allCount, Alpha: "0.05"}}}
	ro := shop(prom, check)
	a := analyzer()
	// Healthy stretch: 30 minutes before the canary turns bad.
	for m := 40; m > 10; m-- {
		o, err := a.Analyze(context.Background(), ro, historyEnd.Add(-time.Duration(m)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if o.Result == backstopv1.VerdictFail {
			t.Fatalf("healthy canary failed the sequential test at -%dm: %+v", m, checkResult(t, ro, "seq"))
		}
	}
	healthy := checkResult(t, ro, "seq")
	t.Logf("healthy: %s", healthy.Value)
	failedAt := -1
	for m := 9; m >= 0; m-- {
		o, _ := a.Analyze(context.Background(), ro, historyEnd.Add(-time.Duration(m)*time.Minute))
		if o.Result == backstopv1.VerdictFail {
			failedAt = 10 - m
			break
		}
	}
	res := checkResult(t, ro, "seq")
	if failedAt < 0 || failedAt > 3 {
		t.Errorf("the faulty canary failed after %d minutes (-1: never); want within 3: %s", failedAt, res.Value)
	}
	if res.Evidence == "" || !strings.HasPrefix(res.Bound, "e-value < 20") {
		t.Errorf("evidence %q, bound %q; want evidence kept and the bound e-value < 20", res.Evidence, res.Bound)
	}
	e, err := analysis.ParseEvidence(res.Evidence)
	if err != nil || e.EValue() < 20 || math.IsInf(e.EValue(), 0) {
		t.Errorf("evidence %q parses to %v, %v; want an e-value of at least 20", res.Evidence, e.EValue(), err)
	}
}

// TestPrometheusCredentials: the Secret's bearer token reaches Prometheus
// (behind a proxy that demands it), and a wrong one is refused.
func TestPrometheusCredentials(t *testing.T) {
	prom := startHistory(t)
	proxy := tokenProxy(t, prom, "s3cret-token")
	ns := env.Namespace(t)
	for _, tc := range []struct {
		token string
		want  backstopv1.Verdict
	}{{"s3cret-token", backstopv1.VerdictPass}, {"wrong", backstopv1.VerdictInconclusive}} {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "prom-"}, Data: map[string][]byte{"token": []byte(tc.token)}}
		if err := env.Client.Create(context.Background(), secret); err != nil {
			t.Fatal(err)
		}
		// The namespace is the test's, not the history's "shop".
		ro := shop(proxy, backstopv1.Check{Name: "errors", CheckSpec: backstopv1.CheckSpec{Query: `max(latency_seconds{deployment="{{.Canary}}"})`, Max: dec("0.5")}})
		ro.Namespace = ns
		ro.Spec.Analysis.Prometheus.SecretRef = &backstopv1.LocalObjectReference{Name: secret.Name}
		a := &analysis.Analyzer{Client: env.Client, Secrets: env.Client}
		a.Analyze(context.Background(), ro, historyEnd)
		res := checkResult(t, ro, "errors")
		if res.Verdict != tc.want {
			t.Errorf("token %q: %+v; want %s", tc.token, res, tc.want)
		}
		if strings.Contains(res.Message, tc.token) {
			t.Errorf("the message shows the token: %q", res.Message)
		}
	}
}

// TestAlertsFromPrometheus: a firing alert in Prometheus's ALERTS series that
// carries the Rollout's namespace and name fails the release at once, with
// no failure limit; one for another Rollout does not.
func TestAlertsFromPrometheus(t *testing.T) {
	srv := promtest.Start(t, promtest.Config{Rules: `
groups:
- name: shop
  rules:
  - alert: ShopErrors
    expr: vector(1)
    labels: {namespace: shop, rollout: app, severity: page}
`})
	srv.WaitForScrape(t, `ALERTS{alertstate="firing",alertname="ShopErrors"}`)
	for _, tc := range []struct {
		name     string
		selector *metav1.LabelSelector
		want     backstopv1.Verdict
	}{
		{"the default selector matches namespace and rollout", nil, backstopv1.VerdictFail},
		{"a selector on severity matches", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "severity", Operator: metav1.LabelSelectorOpIn, Values: []string{"page", "ticket"}}}}, backstopv1.VerdictFail},
		{"a selector for another rollout does not", &metav1.LabelSelector{MatchLabels: map[string]string{"rollout": "other"}}, backstopv1.VerdictPass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := shop(srv.URL())
			ro.Spec.Analysis.Alerts = &backstopv1.AlertGuard{Selector: tc.selector, Sources: []string{analysis.SourcePrometheus}}
			o, err := analyzer().Analyze(context.Background(), ro, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			res := checkResult(t, ro, backstopv1.AlertsCheckName)
			if res.Verdict != tc.want {
				t.Errorf("alerts result %+v; want %s", res, tc.want)
			}
			if tc.want == backstopv1.VerdictFail && (o.Result != backstopv1.VerdictFail || o.Check != "alerts" || !strings.Contains(o.Message, "ShopErrors (Prometheus)")) {
				t.Errorf("outcome %+v; want Fail by alerts naming ShopErrors", o)
			}
		})
	}
}

// TestAlertsFromAlertmanager: an alert Alertmanager sent to the receiver
// fails the release on the next look, without Prometheus; once resolved it
// no longer does.
func TestAlertsFromAlertmanager(t *testing.T) {
	store := analysis.NewAlertStore(0)
	recv := httptest.NewServer(&analysis.AlertReceiver{Store: store, Token: func(context.Context) ([]byte, error) { return []byte("t0ken"), nil }})
	defer recv.Close()
	post := func(status string) {
		t.Helper()
		body := `{"version":"4","status":"` + status + `","receiver":"backstop","groupKey":"{}:{}","alerts":[{"status":"` + status +
			`","labels":{"alertname":"CheckoutLatency","namespace":"shop","rollout":"app"},"startsAt":"` + time.Now().Add(-time.Minute).Format(time.RFC3339) + `"}]}`
		req, _ := http.NewRequest(http.MethodPost, recv.URL, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer t0ken")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("posting a %s alert: %s", status, resp.Status)
		}
	}
	a := &analysis.Analyzer{Client: env.Client, Secrets: env.Client, Alerts: store}
	ro := shop("http://127.0.0.1:1")
	ro.Spec.Analysis.Alerts = &backstopv1.AlertGuard{Sources: []string{analysis.SourceAlertmanager}}

	post("firing")
	if o, _ := a.Analyze(context.Background(), ro, time.Now()); o.Result != backstopv1.VerdictFail || !strings.Contains(o.Message, "CheckoutLatency (Alertmanager)") {
		t.Errorf("with the alert firing: %+v; want Fail naming CheckoutLatency", o)
	}
	post("resolved")
	if o, _ := a.Analyze(context.Background(), ro, time.Now().Add(time.Minute)); o.Result != backstopv1.VerdictPass {
		t.Errorf("with the alert resolved: %+v; want Pass", o)
	}
}

// TestIdenticalQueriesAreSentOnce: two Rollouts whose checks render to the
// same query within one interval cost Prometheus one query.
func TestIdenticalQueriesAreSentOnce(t *testing.T) {
	prom := startHistory(t)
	a := analyzer()
	sent, deduplicated := queryCounters(t)
	for _, name := range []string{"app", "app"} {
		ro := shop(prom, backstopv1.Check{Name: "latency", CheckSpec: backstopv1.CheckSpec{Query: latency, Max: dec("1")}})
		ro.Name = name
		if o, err := a.Analyze(context.Background(), ro, historyEnd); err != nil || o.Result != backstopv1.VerdictPass {
			t.Fatalf("outcome %+v, %v; want Pass", o, err)
		}
	}
	sentAfter, dedupAfter := queryCounters(t)
	if sentAfter-sent != 1 || dedupAfter-deduplicated != 1 {
		t.Errorf("sent %v and deduplicated %v queries; want 1 and 1", sentAfter-sent, dedupAfter-deduplicated)
	}
}

// TestChecksAreDueAWholeIntervalApart: status keeps evaluation times to the
// second, yet a check is evaluated a whole interval after its last
// evaluation, never earlier, and each evaluation sends its query rather than
// reusing the last answer. A restarted manager, which knows only status,
// evaluates less than a second late.
func TestChecksAreDueAWholeIntervalApart(t *testing.T) {
	prom := startHistory(t)
	const interval = 2 * time.Second
	ro := shop(prom, backstopv1.Check{Name: "latency", CheckSpec: backstopv1.CheckSpec{Query: latency, Max: dec("1")}})
	ro.UID = "0d6f2c1e-5b7a-4c1e-9f57-1c2a3b4c5d6e"
	ro.Spec.Analysis.Interval = &metav1.Duration{Duration: interval}
	t0 := historyEnd.Add(-10*time.Second + 700*time.Millisecond)

	a := analyzer()
	steps := []struct {
		name      string
		analyzer  *analysis.Analyzer
		at        time.Time
		evaluated bool
	}{
		{"first evaluation", a, t0, true},
		{"a millisecond before the interval ends", a, t0.Add(interval - time.Millisecond), false},
		{"when the interval ends", a, t0.Add(interval), true},
		{"restarted, a millisecond before the interval ends", analyzer(), t0.Add(2*interval - time.Millisecond), false},
		{"restarted, within a second after it", analyzer(), t0.Add(2*interval + 300*time.Millisecond), true},
	}
	measured := 0
	for _, step := range steps {
		// What the manager reads back is what status holds.
		ro = roundTrip(t, ro)
		sent, deduplicated := queryCounters(t)
		o, err := step.analyzer.Analyze(context.Background(), ro, step.at)
		if err != nil || o.Result != backstopv1.VerdictPass {
			t.Fatalf("%s: outcome %+v, %v; want Pass", step.name, o, err)
		}
		sentAfter, dedupAfter := queryCounters(t)
		if step.evaluated {
			measured++
		}
		if got := len(checkResult(t, ro, "latency").Measurements); got != measured {
			t.Errorf("%s: %d measurements; want %d", step.name, got, measured)
		}
		var want float64
		if step.evaluated {
			want = 1
		}
		if sentAfter-sent != want || dedupAfter != deduplicated {
			t.Errorf("%s: sent %v and deduplicated %v queries; want %v and 0", step.name, sentAfter-sent, dedupAfter-deduplicated, want)
		}
		if !o.Next.After(step.at) {
			t.Errorf("%s: next evaluation at t0%+v; want after t0%+v", step.name, o.Next.Sub(t0), step.at.Sub(t0))
		}
	}
}

// roundTrip returns ro as the apiserver would store and return it.
func roundTrip(t *testing.T, ro *backstopv1.Rollout) *backstopv1.Rollout {
	t.Helper()
	b, err := json.Marshal(ro)
	if err != nil {
		t.Fatal(err)
	}
	var out backstopv1.Rollout
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// queryCounters reads the manager's query metrics.
func queryCounters(t *testing.T) (sent, deduplicated float64) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "backstop_prometheus_queries_total":
				sent += m.GetCounter().GetValue()
			case "backstop_prometheus_queries_deduplicated_total":
				deduplicated += m.GetCounter().GetValue()
			}
		}
	}
	return sent, deduplicated
}

// TestMeasurementsAreBounded: status keeps the last ten evaluations of a
// check, oldest first.
func TestMeasurementsAreBounded(t *testing.T) {
	prom := startHistory(t)
	ro := shop(prom, backstopv1.Check{Name: "latency", CheckSpec: backstopv1.CheckSpec{Query: latency, Max: dec("1")}})
	a := analyzer()
	for m := 12; m > 0; m-- {
		a.Analyze(context.Background(), ro, historyEnd.Add(-time.Duration(m)*time.Minute))
	}
	res := checkResult(t, ro, "latency")
	if len(res.Measurements) != backstopv1.MaxMeasurements || !res.Measurements[0].Time.Time.Equal(historyEnd.Add(-10*time.Minute)) {
		t.Errorf("%d measurements from %v; want %d from the tenth-last evaluation", len(res.Measurements), res.Measurements[0].Time, backstopv1.MaxMeasurements)
	}
}

// TestRemovedChecksLeaveStatus: a check removed from the spec mid-release
// no longer shows in status.
func TestRemovedChecksLeaveStatus(t *testing.T) {
	prom := startHistory(t)
	latencyCheck := backstopv1.Check{Name: "latency", CheckSpec: backstopv1.CheckSpec{Query: latency, Max: dec("1")}}
	ro := shop(prom, latencyCheck, backstopv1.Check{Name: "old", CheckSpec: backstopv1.CheckSpec{Query: latency, Max: dec("1")}})
	a := analyzer()
	a.Analyze(context.Background(), ro, historyEnd.Add(-time.Minute))
	ro.Spec.Analysis.Checks = []backstopv1.Check{latencyCheck}
	a.Analyze(context.Background(), ro, historyEnd)
	if n := len(ro.Status.Analysis.Checks); n != 1 || ro.Status.Analysis.Checks[0].Name != "latency" {
		t.Errorf("status.analysis.checks after removing a check: %+v; want only latency", ro.Status.Analysis.Checks)
	}
}

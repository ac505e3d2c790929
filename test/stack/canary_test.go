//go:build e2e

package stack_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/loadgen"
	"backstop.dev/backstop/test/stack"
)

// errorRate is the share of the canary's requests that failed over the
// last 10 seconds: the canary's pods carry the target's label app, the
// primary's the same with -primary.
const errorRate = `sum(rate(http_requests_total{namespace="{{.Namespace}}",app="{{.Canary}}",code=~"5.."}[10s])) / sum(rate(http_requests_total{namespace="{{.Namespace}}",app="{{.Canary}}"}[10s]))`

// TestCanaryOfAFaultyVersionRollsBack: a release of v3 (30% 5xx) through
// traefik under steady load is judged by the error-rate check against the
// real Prometheus and rolled back; the 5xx seen by the load generator stop
// within seconds of the decision, traffic is back on v1, and the manager's
// /metrics shows the rollback.
func TestCanaryOfAFaultyVersionRollsBack(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "canary")
	c := s.Env.Client
	d := stack.Deployment(ns, "demo", "v1", 2)
	if err := c.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	ro := canaryRollout(ns, "demo", "canary.demo", 60*time.Second)
	ro.Spec.Revert = &backstopv1.RevertSpec{Mode: backstopv1.RevertDisabled}
	if err := c.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ro, backstopv1.PhaseIdle, 90*time.Second)

	gen, err := loadgen.New(loadgen.Config{URL: "http://" + s.Gateway + "/", Host: "canary.demo", Rate: 50, Duration: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go gen.Run(loadCtx)
	waitForVersions(t, "http://"+s.Gateway+"/", "canary.demo", map[string]bool{"v1": true})

	released := time.Now()
	before := d.DeepCopy()
	d.Spec.Template.Spec.Containers[0].Image = stack.DemoImage + ":v3"
	if err := c.Patch(ctx, d, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, 2*time.Minute)
	decided := time.Now() // within the 100 ms poll of the decision
	stopAt := decided.Add(5 * time.Second)
	for time.Now().Before(stopAt) {
		time.Sleep(100 * time.Millisecond)
	}
	stopLoad()

	if _, ok := gen.FirstSeen("v3"); !ok {
		t.Errorf("the load generator never reached v3: the canary got no traffic")
	}
	last, ok := gen.Last5xx()
	if !ok {
		t.Fatalf("the load generator saw no 5xx from v3")
	}
	after := gen.Between(decided.Add(2*time.Second), stopAt)
	t.Logf("release of v3 at %s; rolled back %s later; last 5xx %s after the decision; %d requests in the 3 s after, %+v",
		released.Format(time.TimeOnly), decided.Sub(released).Round(100*time.Millisecond), last.Sub(decided).Round(time.Millisecond), after.Requests, after.ByVersion)
	if last.After(decided.Add(2 * time.Second)) {
		t.Errorf("a 5xx was sent %s after the rollback was decided; want none after 2 s", last.Sub(decided))
	}
	if after.Requests == 0 || after.ByVersion["v1"] != after.Requests {
		t.Errorf("after the rollback the gateway answered %+v; want only v1", after.ByVersion)
	}
	var failed *backstopv1.CheckResult
	if a := rolled.Status.Analysis; a != nil {
		for i := range a.Checks {
			if a.Checks[i].Name == "error-rate" {
				failed = &a.Checks[i]
			}
		}
	}
	if failed == nil || failed.Verdict != backstopv1.VerdictFail {
		t.Fatalf("status.analysis: %+v; want error-rate failed", rolled.Status.Analysis)
	}
	t.Logf("error-rate failed with value %s (bound %s)", failed.Value, failed.Bound)
	failedValue, err := strconv.ParseFloat(failed.Value, 64)
	if err != nil {
		t.Fatalf("status.analysis: error-rate value %q: %v", failed.Value, err)
	}

	// The manager's /metrics tells the same story, for the dashboard and
	// the alerts in config/monitoring. The reverts counter says Skipped:
	// this Rollout's spec.revert.mode is Disabled.
	inf := math.Inf(1)
	expectMetrics(t, []metricWant{
		{"backstop_rollout_phase", map[string]string{"namespace": ns, "rollout": "demo", "phase": "RolledBack"}, 1, 1},
		{"backstop_rollout_canary_weight", map[string]string{"namespace": ns, "rollout": "demo"}, 0, 0},
		{"backstop_check_value", map[string]string{"namespace": ns, "rollout": "demo", "check": "error-rate"}, failedValue, failedValue},
		{"backstop_rollbacks_total", map[string]string{"reason": "AnalysisFailed"}, 1, inf},
		{"backstop_reverts_total", map[string]string{"state": string(backstopv1.RevertSkipped)}, 1, inf},
		{"backstop_step_duration_seconds_count", map[string]string{"strategy": "canary"}, 1, inf},
		{"backstop_release_duration_seconds_count", map[string]string{"strategy": "canary", "outcome": "RolledBack"}, 1, inf},
		{"backstop_prometheus_queries_total", map[string]string{"result": "ok"}, 1, inf},
		{"backstop_prometheus_queries_deduplicated_total", nil, 0, inf},
		{"backstop_analysis_evaluations_total", map[string]string{"verdict": string(backstopv1.VerdictFail)}, 1, inf},
		// The controller name the reconcile-error alert selects.
		{"controller_runtime_reconcile_total", map[string]string{"controller": "rollout"}, 1, inf},
	})
}

// metricWant is a sum of samples of the manager's metrics that must lie
// between min and max.
type metricWant struct {
	name     string
	labels   map[string]string
	min, max float64
}

// expectMetrics scrapes the manager once and checks every want against it.
func expectMetrics(t *testing.T, wants []metricWant) {
	t.Helper()
	m, err := s.ScrapeManager(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range wants {
		v, ok := m.Value(w.name, w.labels)
		switch {
		case !ok:
			t.Errorf("/metrics has no %s", series(w.name, w.labels))
		case v < w.min || v > w.max:
			t.Errorf("/metrics: %s = %g; want between %g and %g", series(w.name, w.labels), v, w.min, w.max)
		default:
			t.Logf("/metrics: %s = %g", series(w.name, w.labels), v)
		}
	}
}

// series writes a metric name and labels as PromQL does.
func series(name string, labels map[string]string) string {
	var pairs []string
	for k, v := range labels {
		pairs = append(pairs, fmt.Sprintf("%s=%q", k, v))
	}
	slices.Sort(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// canaryRollout is a Rollout of the Deployment name behind the Gateway on
// host: 50% of the traffic, judged by errorRate for window.
func canaryRollout(ns, name, host string, window time.Duration) *backstopv1.Rollout {
	gwNS := gwapiv1.Namespace(stack.GatewayNamespace)
	max := backstopv1.Decimal("0.05")
	return &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: backstopv1.RolloutSpec{
		TargetRef: backstopv1.TargetReference{Name: name},
		Service:   backstopv1.ServiceSpec{Port: 80, TargetPort: ptr.To(intstr.FromInt(stack.AppPort))},
		Routes: []backstopv1.Route{{Name: name, Hostnames: []gwapiv1.Hostname{gwapiv1.Hostname(host)},
			ParentRefs: []gwapiv1.ParentReference{{Namespace: &gwNS, Name: stack.GatewayName}}}},
		Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
			{SetWeight: ptr.To[int32](50)},
			{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: window}}},
		}}},
		Analysis: &backstopv1.AnalysisSpec{
			Interval: &metav1.Duration{Duration: 2 * time.Second},
			Checks:   []backstopv1.Check{{Name: "error-rate", CheckSpec: backstopv1.CheckSpec{Query: errorRate, Max: &max}}},
		},
	}}
}

func waitForPhase(t *testing.T, ro *backstopv1.Rollout, phase backstopv1.RolloutPhase, timeout time.Duration) *backstopv1.Rollout {
	t.Helper()
	var got backstopv1.Rollout
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if err := s.Env.Client.Get(context.Background(), client.ObjectKeyFromObject(ro), &got); err == nil && got.Status.Phase == phase {
			return &got
		}
	}
	t.Fatalf("the Rollout is not %s after %s: %+v (logs in %s)", phase, timeout, got.Status, s.Dir)
	return nil
}

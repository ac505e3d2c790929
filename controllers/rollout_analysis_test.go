package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/promtest"
)

// TestFailingCheckRollsBack: a release judged by the real analysis against
// a real Prometheus that scrapes the canary's error ratio. While the ratio is
// low the release holds at its step; when it rises past the check's max the
// release is rolled back, and status shows the value and the bound that
// failed it.
func TestFailingCheckRollsBack(t *testing.T) {
	ns := releaseEnv(t)
	target := promtest.NewTarget(t)
	ratio := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "app_error_ratio"}, []string{"namespace", "deployment"})
	target.Registry.MustRegister(ratio)
	ratio.WithLabelValues(ns, "app").Set(0.001)
	prom := promtest.Start(t, promtest.Config{Targets: []string{target.Addr()}})
	prom.WaitForScrape(t, `app_error_ratio`)

	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](20)},
		{Pause: &backstopv1.PauseStep{}},
	}}})
	ro.Spec.Analysis = &backstopv1.AnalysisSpec{
		Interval:   &metav1.Duration{Duration: time.Second},
		Prometheus: &backstopv1.PrometheusSource{Address: prom.URL()},
		Checks: []backstopv1.Check{{Name: "error-rate", CheckSpec: backstopv1.CheckSpec{
			Query: `max(app_error_ratio{namespace="{{.Namespace}}",deployment="{{.Canary}}"})`,
			Max:   ptr.To(backstopv1.Decimal("0.01")),
		}}},
	}
	verdicts.judgeForReal(ro, &analysis.Analyzer{Client: env.Client, Secrets: env.Client})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

	setImage(t, ns, "app:v2")
	held := waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	if held.Status.CanaryWeight != 20 {
		t.Fatalf("held at weight %d; want 20", held.Status.CanaryWeight)
	}

	ratio.WithLabelValues(ns, "app").Set(0.25)
	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	if rolled.Status.CanaryWeight != 0 {
		t.Errorf("weight after the rollback: %d; want 0", rolled.Status.CanaryWeight)
	}
	if rolled.Status.Analysis == nil || len(rolled.Status.Analysis.Checks) != 1 {
		t.Fatalf("status.analysis after the rollback: %+v", rolled.Status.Analysis)
	}
	res := rolled.Status.Analysis.Checks[0]
	if res.Name != "error-rate" || res.Verdict != backstopv1.VerdictFail || res.Value != "0.25" || res.Bound != "<= 0.01" || res.Failures != 1 {
		t.Errorf("the failed check in status: %+v; want error-rate failing with 0.25 against <= 0.01", res)
	}
	passed := 0
	for _, m := range res.Measurements {
		if m.Verdict == backstopv1.VerdictPass && m.Value == "0.001" {
			passed++
		}
	}
	if passed == 0 || res.Measurements[len(res.Measurements)-1].Value != "0.25" {
		t.Errorf("measurements %+v; want passes at 0.001 before the failure at 0.25", res.Measurements)
	}
	ev := waitForEvent(t, context.Background(), ro, "Warning", "AnalysisFailed")
	if !strings.Contains(ev, "error-rate") || !strings.Contains(ev, "0.25") {
		t.Errorf("the AnalysisFailed event %q does not name the check and its value", ev)
	}
}

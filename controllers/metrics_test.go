package controllers_test

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestReleaseMetrics: after a promoted release, the manager's metrics show
// the Rollout's phase and weight, the release's and its steps' durations;
// a deleted Rollout's series go.
func TestReleaseMetrics(t *testing.T) {
	ns := releaseEnv(t)
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](50)},
		{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: time.Second}}},
	}}})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	releasesBefore := histogramCount(t, "backstop_release_duration_seconds", map[string]string{"strategy": "canary", "outcome": "Succeeded"})
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)

	mine := map[string]string{"namespace": ns, "rollout": ro.Name}
	if v := gauge(t, "backstop_rollout_phase", with(mine, "phase", "Succeeded")); v != 1 {
		t.Errorf("backstop_rollout_phase{phase=Succeeded} = %v; want 1", v)
	}
	if s := series(t, "backstop_rollout_phase", mine); len(s) != 1 {
		t.Errorf("backstop_rollout_phase has %d series for the Rollout; want only the phase it is in", len(s))
	}
	if v := gauge(t, "backstop_rollout_canary_weight", mine); v != 0 {
		t.Errorf("backstop_rollout_canary_weight = %v; want 0 after the promotion", v)
	}
	if n := histogramCount(t, "backstop_release_duration_seconds", map[string]string{"strategy": "canary", "outcome": "Succeeded"}); n != releasesBefore+1 {
		t.Errorf("backstop_release_duration_seconds{canary,Succeeded} counts %d releases; want %d", n, releasesBefore+1)
	}
	if n := histogramCount(t, "backstop_step_duration_seconds", map[string]string{"strategy": "canary"}); n < 2 {
		t.Errorf("backstop_step_duration_seconds{canary} counts %d steps; want at least 2", n)
	}

	if err := env.Client.Delete(t.Context(), ro); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); len(series(t, "backstop_rollout_phase", mine)) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the deleted Rollout still has backstop_rollout_phase series")
		}
	}
}

func with(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range labels {
		out[a] = b
	}
	return out
}

// series returns the metrics of family name whose labels include labels.
func series(t *testing.T, name string, labels map[string]string) []*dto.Metric {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []*dto.Metric
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			match := true
			for k, v := range labels {
				match = match && have[k] == v
			}
			if match {
				out = append(out, m)
			}
		}
	}
	return out
}

func gauge(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	s := series(t, name, labels)
	if len(s) != 1 {
		t.Fatalf("%s%v: %d series; want 1", name, labels, len(s))
	}
	return s[0].GetGauge().GetValue()
}

func histogramCount(t *testing.T, name string, labels map[string]string) uint64 {
	t.Helper()
	var n uint64
	for _, m := range series(t, name, labels) {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

package main

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

func TestReleasedPicksEvenlySpreadTargets(t *testing.T) {
	for _, tc := range []struct{ size, releases int }{{100, 10}, {1000, 100}, {10, 10}, {7, 3}, {5, 1}} {
		var picked []int
		for i := range tc.size {
			if released(i, tc.size, tc.releases) {
				picked = append(picked, i)
			}
		}
		if len(picked) != tc.releases {
			t.Errorf("size %d, releases %d: picked %d targets (%v)", tc.size, tc.releases, len(picked), picked)
		}
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Second)
	}
	for _, tc := range []struct {
		q    float64
		want float64
	}{{0.5, 50}, {0.99, 99}, {1, 100}} {
		if got := quantile(ds, tc.q); got != tc.want {
			t.Errorf("quantile(1..100s, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile(nil, 0.99); got != 0 {
		t.Errorf("quantile of nothing = %v, want 0", got)
	}
}

// TestWatcherMeasuresTheLagOfTimedSteps feeds the watcher a release's
// statuses: only the end of each pause counts, from the stored start.
func TestWatcherMeasuresTheLagOfTimedSteps(t *testing.T) {
	pause := 30 * time.Second
	w := &watcher{durations: []time.Duration{0, pause, 0, pause}, states: map[client.ObjectKey]rolloutState{},
		phases: map[backstopv1.RolloutPhase]int{}, changed: make(chan struct{}, 1)}
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	status := func(phase backstopv1.RolloutPhase, step int32, at time.Time) *backstopv1.Rollout {
		ro := &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app"}}
		ro.Status = backstopv1.RolloutStatus{Phase: phase, CurrentStep: step, CanaryRevision: "v2", StepStartTime: &metav1.Time{Time: at}}
		return ro
	}
	w.observe(status(backstopv1.PhaseProgressing, 0, start), start)
	w.observe(status(backstopv1.PhaseProgressing, 1, start), start.Add(100*time.Millisecond))
	w.observe(status(backstopv1.PhaseProgressing, 2, start.Add(31*time.Second)), start.Add(pause+1500*time.Millisecond))
	w.observe(status(backstopv1.PhaseProgressing, 3, start.Add(32*time.Second)), start.Add(32*time.Second))
	w.observe(status(backstopv1.PhasePromoting, 4, start.Add(62*time.Second)), start.Add(62*time.Second+250*time.Millisecond))
	w.observe(status(backstopv1.PhaseSucceeded, 4, start.Add(62*time.Second)), start.Add(63*time.Second))
	got := w.takeLags()
	want := []time.Duration{1500 * time.Millisecond, 250 * time.Millisecond}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("lags = %v, want %v", got, want)
	}
	if n := w.count(backstopv1.PhaseSucceeded); n != 1 {
		t.Errorf("Succeeded = %d, want 1", n)
	}
}

func TestFamiliesSumByLabels(t *testing.T) {
	text := `# TYPE apiserver_request_total counter
apiserver_request_total{verb="PUT",resource="httproutes",subresource="",dry_run="All",code="200"} 5
apiserver_request_total{verb="PUT",resource="httproutes",subresource="",dry_run="",code="200"} 2
apiserver_request_total{verb="PATCH",resource="rollouts",subresource="status",dry_run="",code="200"} 3
apiserver_request_total{verb="PATCH",resource="rollouts",subresource="status",dry_run="",code="409"} 1
`
	f, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	got := f.by("apiserver_request_total", "verb", "resource", "subresource", "dry_run")
	want := map[string]float64{"PUT httproutes All": 5, "PUT httproutes": 2, "PATCH rollouts status": 4}
	if len(got) != len(want) {
		t.Fatalf("by = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("by[%q] = %v, want %v", k, got[k], v)
		}
	}
	if s := f.sum("apiserver_request_total", map[string]string{"code": "409"}); s != 1 {
		t.Errorf("sum of code 409 = %v, want 1", s)
	}
}

package main

import (
	"encoding/json"
	"math"
	"testing"

	"backstop.dev/backstop/test/release"
)

func TestNearestRank(t *testing.T) {
	twenty := make([]float64, 20)
	for i := range twenty {
		twenty[i] = float64(i + 1)
	}
	for _, tc := range []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"one value", []float64{7}, 0.99, 7},
		{"p50 of 20", twenty, 0.50, 10},
		{"p99 of 20 is the largest", twenty, 0.99, 20},
		{"p0 is the smallest", twenty, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nearestRank(tc.sorted, tc.p); got != tc.want {
				t.Errorf("nearestRank(%v) = %v; want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestOrderedKeepsTheOrder(t *testing.T) {
	var o ordered
	o.add("zeta", []float64{1.5})
	o.add("alpha", 2)
	b, err := json.Marshal(struct {
		O ordered `json:"o"`
	}{o})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"o":{"zeta":[1.5],"alpha":2}}`; string(b) != want {
		t.Errorf("got %s; want %s", b, want)
	}
}

func TestBreaches(t *testing.T) {
	bounds, err := checkBounds(release.Rollout())
	if err != nil {
		t.Fatal(err)
	}
	errorRate := `sum(rate(http_requests_total{namespace="demo",app="demo",code=~"5.."}[10s])) / sum(rate(http_requests_total{namespace="demo",app="demo"}[10s]))`
	latency := `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="demo",app="demo"}[10s])))`
	for _, tc := range []struct {
		name  string
		query string
		value float64
		want  bool
	}{
		{"error rate above", errorRate, 0.3, true},
		{"error rate at the bound", errorRate, 0.05, false},
		{"latency above", latency, 0.25, true},
		{"latency below", latency, 0.01, false},
		{"no data", errorRate, math.NaN(), false},
		{"another query", "up", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := breaches(bounds, promAnswer{query: tc.query, value: tc.value}); got != tc.want {
				t.Errorf("breaches = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestSample(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string
		want   float64
	}{
		{"one sample", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1712.5,"0.3"]}]}}`, 0.3},
		{"no sample", `{"status":"success","data":{"resultType":"vector","result":[]}}`, math.NaN()},
		{"not JSON", `oops`, math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sample([]byte(tc.answer))
			if got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
				t.Errorf("sample = %v; want %v", got, tc.want)
			}
		})
	}
}

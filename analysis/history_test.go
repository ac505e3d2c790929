package analysis_test

import (
	"fmt"
	"strings"
	"time"
)

// The history the analysis tests query: two hours of a shop's traffic,
// backfilled into a real Prometheus, ending at historyEnd. Every rate is
// constant over stretches of whole minutes, so the values the checks see can
// be computed by hand:
//
//   - the primary (app-primary) serves 10 requests/s, 0.01/s of them 500s:
//     an error ratio of 0.001 throughout;
//   - the canary (app) serves 10 requests/s; for the last 10 minutes
//     2/s of them are 500s (error ratio 0.2), before that none;
//   - latency_seconds is 0.105 for the canary and 0.1 for the primary;
//   - route_latency_seconds is 0.25 for the route `a"}b` and 9 for the
//     route `a` (a value that an unescaped `a"}b` would select);
//   - idle_total never moves, so rates of it are 0.
const (
	historyStep  = 10 * time.Second
	historySpan  = 2 * time.Hour
	badStretch   = 10 * time.Minute
	canaryRate   = 10.0
	canaryErrors = 2.0
	primaryRate  = 10.0
	primaryError = 0.01
)

// historyEnd is the time the checks are evaluated at: a few hours ago, so
// the backfilled blocks are well out of the running head block.
var historyEnd = time.Now().Add(-4 * time.Hour).Truncate(time.Hour)

// history writes the OpenMetrics text of the history.
func history() string {
	var b strings.Builder
	start := historyEnd.Add(-historySpan)
	type series struct {
		labels string
		rate   func(t time.Time) float64
	}
	bad := func(t time.Time) bool { return t.After(historyEnd.Add(-badStretch)) }
	counters := []series{
		{`namespace="shop",deployment="app-primary",code="200"`, func(time.Time) float64 { return primaryRate - primaryError }},
		{`namespace="shop",deployment="app-primary",code="500"`, func(time.Time) float64 { return primaryError }},
		{`namespace="shop",deployment="app",code="200"`, func(t time.Time) float64 {
			if bad(t) {
				return canaryRate - canaryErrors
			}
			return canaryRate
		}},
		{`namespace="shop",deployment="app",code="500"`, func(t time.Time) float64 {
			if bad(t) {
				return canaryErrors
			}
			return 0
		}},
	}
	b.WriteString("# TYPE http_requests counter\n")
	for _, s := range counters {
		total := 0.0
		for t := start; !t.After(historyEnd); t = t.Add(historyStep) {
			if t.After(start) {
				total += s.rate(t) * historyStep.Seconds()
			}
			fmt.Fprintf(&b, "http_requests_total{%s} %g %d\n", s.labels, total, t.Unix())
		}
	}
	b.WriteString("# TYPE idle counter\n")
	for t := start; !t.After(historyEnd); t = t.Add(historyStep) {
		fmt.Fprintf(&b, "idle_total{namespace=\"shop\",deployment=\"app\"} 0 %d\n", t.Unix())
	}
	gauges := []struct{ name, labels, value string }{
		{"latency_seconds", `namespace="shop",deployment="app"`, "0.105"},
		{"latency_seconds", `namespace="shop",deployment="app-primary"`, "0.1"},
		{"route_latency_seconds", `route="a\"}b"`, "0.25"},
		{"route_latency_seconds", `route="a"`, "9"},
	}
	for i, g := range gauges {
		if i == 0 || gauges[i-1].name != g.name {
			fmt.Fprintf(&b, "# TYPE %s gauge\n", g.name)
		}
		for t := start; !t.After(historyEnd); t = t.Add(historyStep) {
			fmt.Fprintf(&b, "%s{%s} %s %d\n", g.name, g.labels, g.value, t.Unix())
		}
	}
	b.WriteString("# EOF\n")
	return b.String()
}

package analysis

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The analysis metrics, served with the manager's own at /metrics. Their
// rate gives the queries per second the manager sends to Prometheus.
var (
	queriesSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "backstop_prometheus_queries_total",
		Help: "Queries sent to Prometheus-compatible APIs, by result (ok or error).",
	}, []string{"result"})

	queriesDeduplicated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "backstop_prometheus_queries_deduplicated_total",
		Help: "Queries answered from the result of an identical query within half its interval instead of being sent.",
	})

	evaluations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "backstop_analysis_evaluations_total",
		Help: "Evaluations of checks, by kind of check and verdict.",
	}, []string{"kind", "verdict"})
)

func init() {
	metrics.Registry.MustRegister(queriesSent, queriesDeduplicated, evaluations)
}

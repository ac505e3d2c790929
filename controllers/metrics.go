package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The reconciler's metrics, served with the manager's own at /metrics.
var revertsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "backstop_reverts_total",
	Help: "Git reverts of rolled-back releases that came to an end, by state (Pushed, Conflict, Failed or Skipped).",
}, []string{"state"})

func init() {
	metrics.Registry.MustRegister(revertsFinished)
}

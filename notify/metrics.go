package notify

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The notification metrics, served with the manager's own at /metrics.
// Labels are bounded: the type (Webhook, Slack, Teams, or Unknown for a
// cluster default whose Secret could not be read) and the result.
var (
	notificationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "backstop_notifications_total",
		Help: "Notifications of phase changes by type and result: sent (the receiver answered 2xx), failed (every attempt failed, or one that is not retried) or dropped (the queue was full).",
	}, []string{"type", "result"})

	deliverySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "backstop_notification_delivery_seconds",
		Help:    "Time from a phase change being queued to its notification being accepted by the receiver, retries included, by type.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	}, []string{"type"})
)

// Results of backstop_notifications_total.
const (
	resultSent    = "sent"
	resultFailed  = "failed"
	resultDropped = "dropped"
)

// unknownType labels a cluster default whose type is not known yet.
const unknownType = "Unknown"

func init() {
	metrics.Registry.MustRegister(notificationsTotal, deliverySeconds)
}

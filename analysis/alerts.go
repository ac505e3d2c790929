package analysis

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/labels"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/internal/text"
)

// Alert sources, as named in spec.analysis.alerts.sources.
const (
	SourcePrometheus   = "Prometheus"
	SourceAlertmanager = "Alertmanager"
)

// alerts looks for firing alerts that match the Rollout's selector: in the
// Alertmanager receiver's store at every call, and in Prometheus's ALERTS
// series once per interval. A matching alert fails the release at once,
// whatever the failure limits. It returns nil when the release may go on.
func (r *run) alerts(ctx context.Context, res *backstopv1.CheckResult) *Outcome {
	guard := r.ro.Spec.Analysis.Alerts
	sel, err := AlertSelector(guard.Selector, r.ro.Namespace, r.ro.Name)
	if err != nil {
		// The apiserver validated the selector; this cannot happen.
		return &Outcome{Result: backstopv1.VerdictInconclusive, Check: backstopv1.AlertsCheckName, Message: err.Error()}
	}
	res.Bound = "no firing alert matching " + selectorText(sel)
	sources := map[string]bool{SourcePrometheus: true, SourceAlertmanager: true}
	if len(guard.Sources) > 0 {
		sources = map[string]bool{}
		for _, s := range guard.Sources {
			sources[s] = true
		}
	}

	var firing []Alert
	if sources[SourceAlertmanager] && r.a.Alerts != nil {
		firing = append(firing, r.a.Alerts.Firing(sel, r.now)...)
	}
	due := !r.now.Before(r.due(res, r.now))
	if sources[SourcePrometheus] && (due || len(firing) > 0) {
		found, reason := r.prometheusAlerts(ctx, sel)
		if reason != "" && len(firing) == 0 {
			e := evaluation{run: r}
			r.record(res, e.inconclusive(reason))
			if res.Inconclusive >= inconclusiveLimit(r.ro.Spec.Analysis) {
				return &Outcome{Result: backstopv1.VerdictInconclusive, Check: backstopv1.AlertsCheckName,
					Message: fmt.Sprintf("%s (%d evaluations in a row)", reason, res.Inconclusive)}
			}
			return nil
		}
		firing = append(firing, found...)
	}
	if len(firing) > 0 {
		e := evaluation{run: r}
		value := alertsText(firing)
		r.record(res, e.measured(backstopv1.VerdictFail, value, "a matching alert is firing"))
		return &Outcome{Result: backstopv1.VerdictFail, Check: backstopv1.AlertsCheckName, Message: value}
	}
	if due {
		e := evaluation{run: r}
		r.record(res, e.measured(backstopv1.VerdictPass, "none firing", ""))
	}
	return nil
}

// prometheusAlerts queries the firing alerts of Prometheus's ALERTS series
// that match sel. The query narrows by the selector's equalities; the
// selector itself decides.
func (r *run) prometheusAlerts(ctx context.Context, sel labels.Selector) ([]Alert, string) {
	pc, err := r.client(ctx, nil)
	if err != nil {
		return nil, "alerts: " + err.Error()
	}
	matchers := []string{`alertstate="firing"`}
	reqs, _ := sel.Requirements()
	for _, req := range reqs {
		if v, ok := req.Values().PopAny(); ok && req.Values().Len() == 1 && (req.Operator() == "=" || req.Operator() == "==" || req.Operator() == "in") {
			if model.LabelName(req.Key()).IsValid() {
				matchers = append(matchers, req.Key()+"="+strconv.Quote(v))
			}
		}
	}
	q := "ALERTS{" + strings.Join(matchers, ",") + "}"
	v, err := r.a.cache.query(ctx, pc, q, r.now, reuseWithin(r.interval))
	if err != nil {
		return nil, "alerts: " + err.Error()
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, "alerts: ALERTS returned a " + v.Type().String()
	}
	var out []Alert
	for _, s := range vec {
		set := labels.Set{}
		for k, val := range s.Metric {
			if k != model.MetricNameLabel && k != "alertstate" {
				set[string(k)] = string(val)
			}
		}
		if sel.Matches(set) {
			out = append(out, Alert{Labels: set, StartsAt: s.Timestamp.Time(), Source: SourcePrometheus})
		}
	}
	return out, ""
}

func inconclusiveLimit(spec *backstopv1.AnalysisSpec) int32 {
	if spec.InconclusiveLimit != nil {
		return *spec.InconclusiveLimit
	}
	return DefaultInconclusiveLimit
}

// alertsText names firing alerts for people: alertname and source.
func alertsText(alerts []Alert) string {
	seen := map[string]bool{}
	var names []string
	for _, a := range alerts {
		n := a.Labels["alertname"]
		if n == "" {
			n = labels.Set(a.Labels).String()
		}
		n += " (" + a.Source + ")"
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return text.Truncate(fmt.Sprintf("%d firing: %s", len(alerts), strings.Join(names, ", ")), 256)
}

func selectorText(sel labels.Selector) string {
	if sel.Empty() {
		return "any labels"
	}
	return sel.String()
}

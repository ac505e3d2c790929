package stack

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics are the metric families of one scrape of the manager, by name.
type Metrics map[string]*dto.MetricFamily

// ScrapeManager gets the manager's /metrics once and parses the text
// format.
func (s *Stack) ScrapeManager(ctx context.Context) (Metrics, error) {
	url := "http://" + s.Metrics + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	return families, nil
}

// Value is the sum of the samples of name whose labels include labels, and
// whether there was any. name may end in _count or _sum to read those of a
// histogram or summary.
func (m Metrics) Value(name string, labels map[string]string) (float64, bool) {
	family, part := m[name], ""
	if family == nil {
		for _, suffix := range []string{"_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				family, part = m[base], suffix
			}
		}
	}
	if family == nil {
		return 0, false
	}
	sum, found := 0.0, false
	for _, metric := range family.GetMetric() {
		if !hasLabels(metric, labels) {
			continue
		}
		v, ok := sampleValue(family.GetType(), metric, part)
		if !ok {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// sampleValue is a metric's value, or with part _count or _sum that of its
// histogram or summary.
func sampleValue(t dto.MetricType, metric *dto.Metric, part string) (float64, bool) {
	switch {
	case part == "" && t == dto.MetricType_COUNTER:
		return metric.GetCounter().GetValue(), true
	case part == "" && t == dto.MetricType_GAUGE:
		return metric.GetGauge().GetValue(), true
	case part == "" && t == dto.MetricType_UNTYPED:
		return metric.GetUntyped().GetValue(), true
	case part == "_count" && t == dto.MetricType_HISTOGRAM:
		return float64(metric.GetHistogram().GetSampleCount()), true
	case part == "_sum" && t == dto.MetricType_HISTOGRAM:
		return metric.GetHistogram().GetSampleSum(), true
	case part == "_count" && t == dto.MetricType_SUMMARY:
		return float64(metric.GetSummary().GetSampleCount()), true
	case part == "_sum" && t == dto.MetricType_SUMMARY:
		return metric.GetSummary().GetSampleSum(), true
	}
	return 0, false
}

func hasLabels(metric *dto.Metric, labels map[string]string) bool {
	matched := 0
	for _, l := range metric.GetLabel() {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			matched++
		}
	}
	return matched == len(labels)
}

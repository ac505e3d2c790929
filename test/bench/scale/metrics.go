package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
)

// families are the metric families of one scrape, by name.
type families map[string]*dto.MetricFamily

func parseMetrics(r io.Reader) (families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// scrapeManager reads the manager's /metrics.
func scrapeManager(ctx context.Context, addr string) (families, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
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
		return nil, fmt.Errorf("the manager's /metrics answered %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// scrapeAPIServer reads the apiserver's /metrics as the admin.
func scrapeAPIServer(ctx context.Context, kube kubernetes.Interface) (families, error) {
	raw, err := kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the apiserver's /metrics: %w", err)
	}
	return parseMetrics(bytes.NewReader(raw))
}

// sum is the sum of the counter, gauge or untyped samples of name whose
// labels include match.
func (f families) sum(name string, match map[string]string) float64 {
	fam := f[name]
	if fam == nil {
		return 0
	}
	total := 0.0
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, match) {
			continue
		}
		switch fam.GetType() {
		case dto.MetricType_COUNTER:
			total += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			total += m.GetGauge().GetValue()
		case dto.MetricType_UNTYPED:
			total += m.GetUntyped().GetValue()
		case dto.MetricType_HISTOGRAM:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// histogramSum is the sum of the observations of histogram name whose
// labels include match.
func (f families) histogramSum(name string, match map[string]string) float64 {
	fam := f[name]
	if fam == nil {
		return 0
	}
	total := 0.0
	for _, m := range fam.GetMetric() {
		if hasLabels(m, match) {
			total += m.GetHistogram().GetSampleSum()
		}
	}
	return total
}

// by sums the samples of counter name by the values of the labels keys,
// joined with a space ("" values left out).
func (f families) by(name string, keys ...string) map[string]float64 {
	out := map[string]float64{}
	fam := f[name]
	if fam == nil {
		return out
	}
	for _, m := range fam.GetMetric() {
		out[labelKey(m, keys)] += m.GetCounter().GetValue()
	}
	return out
}

// labelKey joins the values of m's labels keys with a space, leaving out
// empty ones.
func labelKey(m *dto.Metric, keys []string) string {
	var parts []string
	for _, k := range keys {
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() != "" {
				parts = append(parts, l.GetValue())
			}
		}
	}
	return strings.Join(parts, " ")
}

// histogramBy sums the counts and sums of histogram name by the values of
// the labels keys, as by does.
func (f families) histogramBy(name string, keys ...string) map[string][2]float64 {
	out := map[string][2]float64{}
	fam := f[name]
	if fam == nil {
		return out
	}
	for _, m := range fam.GetMetric() {
		key := labelKey(m, keys)
		v := out[key]
		v[0] += float64(m.GetHistogram().GetSampleCount())
		v[1] += m.GetHistogram().GetSampleSum()
		out[key] = v
	}
	return out
}

func hasLabels(m *dto.Metric, match map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := match[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(match)
}

// snapshot is what the benchmark reads at the start and end of a phase.
type snapshot struct {
	at      time.Time
	proc    procSample
	manager families
	api     families
	// byProcess is the CPU seconds of this program and its children, and
	// busy the machine's busy CPU seconds.
	byProcess map[string]float64
	busy      float64
}

// takeSnapshot reads the manager's process and metrics and the apiserver's
// metrics.
func takeSnapshot(ctx context.Context, c *cluster, s *procSampler) (snapshot, error) {
	snap := snapshot{at: time.Now(), proc: s.now(), byProcess: cpuByProcess(s.tick)}
	snap.busy, _ = machineCPU(s.tick)
	var err error
	if snap.manager, err = scrapeManager(ctx, c.metrics); err != nil {
		return snap, err
	}
	snap.api, err = scrapeAPIServer(ctx, c.kube)
	return snap, err
}

// rate is a named rate per second.
type rate struct {
	Name   string  `json:"name"`
	PerSec float64 `json:"perSec"`
	// MeanMs is the mean time the apiserver took per request, where known.
	MeanMs float64 `json:"meanMs,omitempty"`
}

// phaseFigures are the measurements of one phase, from two snapshots.
type phaseFigures struct {
	Seconds         float64 `json:"seconds"`
	CPUSeconds      float64 `json:"cpuSeconds"`
	Cores           float64 `json:"cores"`
	RSSPeakMiB      float64 `json:"rssPeakMiB"`
	APIRequestsPS   float64 `json:"apiRequestsPerSec"`
	APIWritesPS     float64 `json:"apiWritesPerSec"`
	APITop          []rate  `json:"apiTop"`
	ManagerReqPS    float64 `json:"managerRequestsPerSec"`
	ManagerByMethod []rate  `json:"managerRequestsByMethod"`
	Reconciles      float64 `json:"reconciles"`
	ReconcilesPS    float64 `json:"reconcilesPerSec"`
	QueueWaitMs     float64 `json:"queueWaitMeanMs"`
	ReconcileMs     float64 `json:"reconcileMeanMs"`
	// MachineCores is the machine's busy cores; ProcessCores those of each
	// program of the benchmark.
	MachineCores  float64 `json:"machineCores"`
	ProcessCores  []rate  `json:"processCores"`
	PromQueriesPS float64 `json:"promQueriesPerSec"`
	PromDeduped   float64 `json:"promDeduplicated"`
	PromSent      float64 `json:"promSent"`
	DedupRatio    float64 `json:"dedupRatio"`
}

// apiTopN is how many verb/resource pairs a phase lists.
const apiTopN = 8

// figures compares two snapshots.
func figures(a, b snapshot, s *procSampler) phaseFigures {
	secs := b.at.Sub(a.at).Seconds()
	f := phaseFigures{Seconds: secs, CPUSeconds: b.proc.cpu - a.proc.cpu}
	f.Cores = f.CPUSeconds / secs
	f.RSSPeakMiB = mib(s.peak(a.at, b.at))
	f.MachineCores = (b.busy - a.busy) / secs
	for name, v := range b.byProcess {
		if d := v - a.byProcess[name]; d > 0 {
			f.ProcessCores = append(f.ProcessCores, rate{Name: name, PerSec: d / secs})
		}
	}
	sort.Slice(f.ProcessCores, func(i, j int) bool { return f.ProcessCores[i].PerSec > f.ProcessCores[j].PerSec })

	// Dry runs (dry_run="All") are counted apart: the manager's route
	// comparison makes them.
	keys := []string{"verb", "resource", "subresource", "dry_run"}
	before, after := a.api.by("apiserver_request_total", keys...), b.api.by("apiserver_request_total", keys...)
	durBefore, durAfter := a.api.histogramBy("apiserver_request_duration_seconds", keys...), b.api.histogramBy("apiserver_request_duration_seconds", keys...)
	var total, writes float64
	var top []rate
	for k, v := range after {
		d := v - before[k]
		if d <= 0 {
			continue
		}
		total += d
		verb, _, _ := strings.Cut(k, " ")
		switch verb {
		case "POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE":
			writes += d
		}
		r := rate{Name: strings.Replace(k, " All", " dryrun", 1), PerSec: d / secs}
		if n := durAfter[k][0] - durBefore[k][0]; n > 0 {
			r.MeanMs = 1000 * (durAfter[k][1] - durBefore[k][1]) / n
		}
		top = append(top, r)
	}
	sort.Slice(top, func(i, j int) bool { return top[i].PerSec > top[j].PerSec })
	if len(top) > apiTopN {
		top = top[:apiTopN]
	}
	f.APIRequestsPS, f.APIWritesPS, f.APITop = total/secs, writes/secs, top

	mb, ma := a.manager.by("rest_client_requests_total", "method"), b.manager.by("rest_client_requests_total", "method")
	var mtotal float64
	for k, v := range ma {
		if d := v - mb[k]; d > 0 {
			mtotal += d
			f.ManagerByMethod = append(f.ManagerByMethod, rate{Name: k, PerSec: d / secs})
		}
	}
	sort.Slice(f.ManagerByMethod, func(i, j int) bool { return f.ManagerByMethod[i].PerSec > f.ManagerByMethod[j].PerSec })
	f.ManagerReqPS = mtotal / secs

	ctrl := map[string]string{"controller": "rollout"}
	f.Reconciles = b.manager.sum("controller_runtime_reconcile_total", ctrl) - a.manager.sum("controller_runtime_reconcile_total", ctrl)
	f.ReconcilesPS = f.Reconciles / secs
	queue := map[string]string{"name": "rollout"}
	f.QueueWaitMs = meanMs(a.manager, b.manager, "workqueue_queue_duration_seconds", queue)
	f.ReconcileMs = meanMs(a.manager, b.manager, "workqueue_work_duration_seconds", queue)

	f.PromSent = b.manager.sum("backstop_prometheus_queries_total", nil) - a.manager.sum("backstop_prometheus_queries_total", nil)
	f.PromDeduped = b.manager.sum("backstop_prometheus_queries_deduplicated_total", nil) - a.manager.sum("backstop_prometheus_queries_deduplicated_total", nil)
	f.PromQueriesPS = f.PromSent / secs
	if asked := f.PromSent + f.PromDeduped; asked > 0 {
		f.DedupRatio = f.PromDeduped / asked
	}
	return f
}

// meanMs is the mean observation of histogram name between two scrapes,
// in milliseconds.
func meanMs(a, b families, name string, match map[string]string) float64 {
	n := b.sum(name, match) - a.sum(name, match)
	if n <= 0 {
		return 0
	}
	return 1000 * (b.histogramSum(name, match) - a.histogramSum(name, match)) / n
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// profile saves a profile of the manager from its pprof endpoint into
// path; query is the profile's path and parameters, such as
// "heap?gc=1" or "profile?seconds=30".
func profile(ctx context.Context, addr, query, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/"+query, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s answered %s", query, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pprofTop is the top n lines of `go tool pprof -top` for a profile, with
// sampleIndex ("" for the profile's default).
func pprofTop(path, sampleIndex string, n int) string {
	args := []string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", n)}
	if sampleIndex != "" {
		args = append(args, "-sample_index="+sampleIndex)
	}
	cmd := exec.Command("go", append(args, path)...)
	cmd.Dir = filepath.Dir(path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// watches counts the open watches at the apiserver by resource
// (apiserver_longrunning_requests), every client's.
func (f families) watches() map[string]float64 {
	out := map[string]float64{}
	fam := f["apiserver_longrunning_requests"]
	if fam == nil {
		return out
	}
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, map[string]string{"verb": "WATCH"}) {
			continue
		}
		for _, l := range m.GetLabel() {
			if l.GetName() == "resource" {
				out[l.GetValue()] += m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// newWatches lists the resources with more open watches in b than in a.
func newWatches(a, b families) []string {
	before := a.watches()
	var out []string
	for res, n := range b.watches() {
		if n > before[res] {
			out = append(out, res)
		}
	}
	sort.Strings(out)
	return out
}

// Package analysis judges releases: it evaluates a Rollout's SLO checks
// against a Prometheus-compatible HTTP API and watches for firing alerts,
// and turns what it sees into a verdict: pass, fail or inconclusive. It keeps
// its memory in the Rollout's status (status.analysis), so a restarted
// manager goes on where it stopped.
//
// An evaluation is inconclusive, never a pass, when the query returns no
// data, several series where one is expected, NaN or ±Inf, or when
// Prometheus errs, cannot be reached or does not answer in time.
package analysis

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/internal/text"
)

// DefaultInterval applies when spec.analysis.interval is unset.
const DefaultInterval = time.Minute

// parallelEvaluations bounds the checks of one Rollout evaluated at once.
const parallelEvaluations = 4

// DefaultInconclusiveLimit applies when spec.analysis.inconclusiveLimit is
// unset.
const DefaultInconclusiveLimit = 3

// Outcome is the aggregate judgement of a release at one moment.
type Outcome struct {
	// Result is Pass, Fail or Inconclusive, or empty while the checks have
	// not yet decided (warm-up, a check below its limits).
	Result backstopv1.Verdict
	// Check names the check that decided a Fail or Inconclusive result.
	Check string
	// Message says what the check saw.
	Message string
	// Next is when a check is due again; zero when none is.
	Next time.Time
}

// Analyzer evaluates the checks of Rollouts. It is safe for concurrent use
// by several reconciles.
type Analyzer struct {
	// Client reads SLOTemplates and ClusterSLOTemplates (the manager's
	// cache).
	Client client.Reader
	// Secrets reads the Secrets a Rollout names for Prometheus credentials,
	// by name, without a cache.
	Secrets client.Reader
	// DefaultPrometheus is the address for checks whose Rollout names none.
	DefaultPrometheus string
	// Alerts holds the alerts the Alertmanager receiver was sent; nil when
	// the manager runs no receiver.
	Alerts *AlertStore

	clients clients
	cache   queryCache
	evals   evaluationTimes
}

// Analyze evaluates the checks of ro that are due at now and records the
// results in ro.Status.Analysis. During the bake time after a promotion
// (phase Succeeded) only the alerts are looked at.
func (a *Analyzer) Analyze(ctx context.Context, ro *backstopv1.Rollout, now time.Time) (Outcome, error) {
	spec := ro.Spec.Analysis
	if ro.Spec.SkipAnalysis || spec == nil || (len(spec.Checks) == 0 && spec.Alerts == nil) {
		return Outcome{Result: backstopv1.VerdictPass}, nil
	}
	st := ro.Status.Analysis
	if st == nil || st.Revision != ro.Status.CanaryRevision {
		st = &backstopv1.AnalysisStatus{Revision: ro.Status.CanaryRevision}
		ro.Status.Analysis = st
	}
	interval := intervalOf(spec)
	r := &run{a: a, ro: ro, now: now, interval: interval, sources: map[string]*promClient{}}

	if spec.Alerts != nil {
		if o := r.alerts(ctx, result(st, backstopv1.AlertsCheckName)); o != nil {
			return *o, nil
		}
	}
	if ro.Status.Phase == backstopv1.PhaseSucceeded {
		return Outcome{Result: backstopv1.VerdictPass, Next: now.Add(interval)}, nil
	}

	// Checks wait for the warm-up after each step starts, so a weight
	// change shows in the metrics before they are judged.
	start := now
	if ro.Status.StepStartTime != nil {
		start = ro.Status.StepStartTime.Time
	}
	if spec.WarmUp != nil {
		start = start.Add(spec.WarmUp.Duration)
	}
	// Every entry exists before any is evaluated: the evaluations run in
	// parallel, so one slow Prometheus delays the verdict by one timeout,
	// not one per check.
	for _, c := range spec.Checks {
		result(st, c.Name)
	}
	var (
		next time.Time
		wg   sync.WaitGroup
		sem  = make(chan struct{}, parallelEvaluations)
	)
	for _, c := range spec.Checks {
		res := result(st, c.Name)
		due := r.due(res, start)
		if now.Before(due) {
			next = earliest(next, due)
			continue
		}
		next = earliest(next, now.Add(interval))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			m, kind := r.evaluate(ctx, c, res)
			r.record(res, m)
			evaluations.WithLabelValues(kind, string(m.Verdict)).Inc()
		}()
	}
	wg.Wait()
	pruneResults(st, spec)
	sortResults(st)

	o := judge(spec, st, stepChecks(ro))
	o.Next = next
	return o, nil
}

// judge aggregates the results of the checks: a failure past its limit
// fails the release, an inconclusive streak at the limit makes it
// inconclusive, and it passes when every check of the running step passed
// at its last evaluation.
func judge(spec *backstopv1.AnalysisSpec, st *backstopv1.AnalysisStatus, step map[string]bool) Outcome {
	limit := inconclusiveLimit(spec)
	for _, c := range spec.Checks {
		res := result(st, c.Name)
		if res.Failures > c.FailureLimit {
			return Outcome{Result: backstopv1.VerdictFail, Check: c.Name, Message: failMessage(res)}
		}
	}
	for _, c := range spec.Checks {
		res := result(st, c.Name)
		if res.Inconclusive >= limit {
			return Outcome{Result: backstopv1.VerdictInconclusive, Check: c.Name,
				Message: fmt.Sprintf("%s (%d evaluations in a row)", res.Message, res.Inconclusive)}
		}
	}
	for _, c := range spec.Checks {
		if step != nil && !step[c.Name] {
			continue
		}
		if res := result(st, c.Name); res.Verdict != backstopv1.VerdictPass {
			return Outcome{}
		}
	}
	return Outcome{Result: backstopv1.VerdictPass}
}

func failMessage(res *backstopv1.CheckResult) string {
	msg := "value " + res.Value
	if res.Bound != "" {
		msg += ", bound " + res.Bound
	}
	if res.Message != "" {
		msg += ": " + res.Message
	}
	if res.Failures > 1 {
		msg += fmt.Sprintf(" (%d failed evaluations)", res.Failures)
	}
	return msg
}

// stepChecks names the checks the running analysis step waits for; nil
// means every check.
func stepChecks(ro *backstopv1.Rollout) map[string]bool {
	var names []string
	if c := ro.Spec.Strategy.Canary; c != nil && int(ro.Status.CurrentStep) < len(c.Steps) {
		if s := c.Steps[ro.Status.CurrentStep].Analysis; s != nil {
			names = s.Checks
		}
	}
	if bg := ro.Spec.Strategy.BlueGreen; bg != nil && bg.Analysis != nil {
		names = bg.Analysis.Checks
	}
	if len(names) == 0 {
		return nil
	}
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	return set
}

// run is one Analyze call.
type run struct {
	a        *Analyzer
	ro       *backstopv1.Rollout
	now      time.Time
	interval time.Duration
	// sources caches the clients of this call by the fields that choose
	// them, so a Secret is read once per call.
	mu      sync.Mutex
	sources map[string]*promClient
}

// evaluate runs one check and returns its measurement and kind.
func (r *run) evaluate(ctx context.Context, c backstopv1.Check, res *backstopv1.CheckResult) (backstopv1.Measurement, string) {
	spec, args, err := r.resolve(ctx, c)
	if err != nil {
		return inconclusive(err.Error()), "unknown"
	}
	// The check's own Prometheus, then its template's, then the Rollout's.
	src := c.Prometheus
	if src == nil {
		src = spec.Prometheus
	}
	pc, err := r.client(ctx, src)
	if err != nil {
		return inconclusive(err.Error()), kindOf(spec)
	}
	e := evaluation{run: r, pc: pc, vars: r.vars(args), check: c.Name}
	switch {
	case spec.Objective != nil:
		return e.objective(ctx, spec.Objective, res), "objective"
	case spec.Sequential != nil:
		return e.sequential(ctx, spec.Sequential, res), "sequential"
	default:
		return e.query(ctx, spec, res), kindOf(spec)
	}
}

func kindOf(spec backstopv1.CheckSpec) string {
	switch {
	case spec.Objective != nil:
		return "objective"
	case spec.Sequential != nil:
		return "sequential"
	case spec.Compare != nil:
		return "compare"
	}
	return "threshold"
}

// resolve returns the rule of a check: inline, or its template's with the
// check's overrides, and the template arguments with their defaults.
func (r *run) resolve(ctx context.Context, c backstopv1.Check) (backstopv1.CheckSpec, map[string]string, error) {
	if c.TemplateRef == nil {
		return c.CheckSpec, nil, nil
	}
	var tmpl backstopv1.SLOTemplateSpec
	key := types.NamespacedName{Name: c.TemplateRef.Name}
	if c.TemplateRef.Kind == backstopv1.ClusterSLOTemplateKindName {
		var t backstopv1.ClusterSLOTemplate
		if err := r.a.Client.Get(ctx, key, &t); err != nil {
			return backstopv1.CheckSpec{}, nil, fmt.Errorf("reading ClusterSLOTemplate %q: %w", key.Name, err)
		}
		tmpl = t.Spec
	} else {
		var t backstopv1.SLOTemplate
		key.Namespace = r.ro.Namespace
		if err := r.a.Client.Get(ctx, key, &t); err != nil {
			return backstopv1.CheckSpec{}, nil, fmt.Errorf("reading SLOTemplate %q: %w", key.Name, err)
		}
		tmpl = t.Spec
	}
	spec := tmpl.CheckSpec
	if c.Min != nil {
		spec.Min = c.Min
	}
	if c.Max != nil {
		spec.Max = c.Max
	}
	if c.Compare != nil {
		spec.Compare = c.Compare
	}
	args := map[string]string{}
	for _, arg := range tmpl.Args {
		if v, ok := c.Args[arg.Name]; ok {
			args[arg.Name] = v
		} else if arg.Default != nil {
			args[arg.Name] = *arg.Default
		} else {
			return spec, nil, fmt.Errorf("%s %q needs the arg %s", c.TemplateRef.Kind, c.TemplateRef.Name, arg.Name)
		}
	}
	return spec, args, nil
}

// client returns the client of a Prometheus source; nil src means the
// Rollout's, then the manager's default.
func (r *run) client(ctx context.Context, src *backstopv1.PrometheusSource) (*promClient, error) {
	if src == nil && r.ro.Spec.Analysis != nil {
		src = r.ro.Spec.Analysis.Prometheus
	}
	if src == nil {
		if r.a.DefaultPrometheus == "" {
			return nil, fmt.Errorf("no Prometheus: set spec.analysis.prometheus.address, or start the manager with --prometheus-address")
		}
		src = &backstopv1.PrometheusSource{Address: r.a.DefaultPrometheus}
	}
	memo := src.Address
	if src.SecretRef != nil {
		memo += "\x00" + src.SecretRef.Name
	}
	if src.Timeout != nil {
		memo += "\x00" + src.Timeout.Duration.String()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if pc, ok := r.sources[memo]; ok {
		return pc, nil
	}
	s := Source{Address: src.Address}
	if src.Timeout != nil {
		s.Timeout = src.Timeout.Duration
	}
	if src.SecretRef != nil {
		var secret corev1.Secret
		key := types.NamespacedName{Namespace: r.ro.Namespace, Name: src.SecretRef.Name}
		if err := r.a.Secrets.Get(ctx, key, &secret); err != nil {
			return nil, fmt.Errorf("reading the Prometheus credentials in Secret %q: %v", src.SecretRef.Name, err)
		}
		s.Secret = &secret
	}
	pc, err := r.a.clients.get(s)
	if err != nil {
		return nil, err
	}
	r.sources[memo] = pc
	return pc, nil
}

// vars are the template values of the Rollout.
func (r *run) vars(args map[string]string) QueryVars { return VarsFor(r.ro, args) }

// record adds a measurement to a check's result and updates its counters.
func record(res *backstopv1.CheckResult, m backstopv1.Measurement) {
	res.Verdict, res.Value, res.Message = m.Verdict, m.Value, m.Message
	t := m.Time
	res.LastEvaluationTime = &t
	switch m.Verdict {
	case backstopv1.VerdictFail:
		res.Failures++
		res.Inconclusive = 0
	case backstopv1.VerdictInconclusive:
		res.Inconclusive++
	default:
		res.Inconclusive = 0
	}
	res.Measurements = append(res.Measurements, m)
	if n := len(res.Measurements); n > backstopv1.MaxMeasurements {
		res.Measurements = append([]backstopv1.Measurement(nil), res.Measurements[n-backstopv1.MaxMeasurements:]...)
	}
}

// result returns the status entry of a check, adding it if needed.
func result(st *backstopv1.AnalysisStatus, name string) *backstopv1.CheckResult {
	for i := range st.Checks {
		if st.Checks[i].Name == name {
			return &st.Checks[i]
		}
	}
	st.Checks = append(st.Checks, backstopv1.CheckResult{Name: name})
	return &st.Checks[len(st.Checks)-1]
}

// pruneResults drops the entries of checks the spec no longer has.
func pruneResults(st *backstopv1.AnalysisStatus, spec *backstopv1.AnalysisSpec) {
	keep := map[string]bool{}
	for _, c := range spec.Checks {
		keep[c.Name] = true
	}
	if spec.Alerts != nil {
		keep[backstopv1.AlertsCheckName] = true
	}
	st.Checks = slices.DeleteFunc(st.Checks, func(r backstopv1.CheckResult) bool { return !keep[r.Name] })
}

func sortResults(st *backstopv1.AnalysisStatus) {
	sort.SliceStable(st.Checks, func(i, j int) bool { return st.Checks[i].Name < st.Checks[j].Name })
}

func intervalOf(spec *backstopv1.AnalysisSpec) time.Duration {
	if spec.Interval != nil && spec.Interval.Duration > 0 {
		return spec.Interval.Duration
	}
	return DefaultInterval
}

func inconclusive(msg string) backstopv1.Measurement {
	return backstopv1.Measurement{Verdict: backstopv1.VerdictInconclusive, Message: text.Truncate(msg, 512)}
}

// format writes a value with four significant digits.
func format(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

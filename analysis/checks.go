package analysis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/internal/text"
)

// evaluation is one evaluation of one check.
type evaluation struct {
	*run
	pc    *promClient
	vars  QueryVars
	check string
}

// value renders a query with vars, sends it (or reuses the answer to an
// identical one, see reuseWithin) and reads its single number. reason is empty when the
// value is usable, and says why it is not otherwise (a query that cannot
// be rendered included).
func (e evaluation) value(ctx context.Context, what, query string, vars QueryVars) (v float64, reason string) {
	q, err := RenderQuery(query, vars)
	if err != nil {
		return 0, fmt.Sprintf("%s: %v", what, err)
	}
	res, err := e.a.cache.query(ctx, e.pc, q, e.now, reuseWithin(e.interval))
	if err != nil {
		return 0, fmt.Sprintf("%s: %v", what, err)
	}
	v, reason = single(res)
	if reason != "" {
		return 0, what + ": " + reason
	}
	return v, ""
}

func (e evaluation) measured(v backstopv1.Verdict, value, message string) backstopv1.Measurement {
	return backstopv1.Measurement{Time: metav1.NewTime(e.now), Verdict: v, Value: text.Truncate(value, 256), Message: text.Truncate(message, 512)}
}

func (e evaluation) inconclusive(msg string) backstopv1.Measurement {
	m := inconclusive(msg)
	m.Time = metav1.NewTime(e.now)
	return m
}

// swapped are the vars with the canary's and the primary's names swapped:
// the primary's side of a comparison.
func swapped(v QueryVars) QueryVars {
	v.Canary, v.Primary = v.Primary, v.Canary
	v.CanaryService, v.PrimaryService = v.PrimaryService, v.CanaryService
	return v
}

// query evaluates a threshold check (min, max), a compare check, or both.
func (e evaluation) query(ctx context.Context, spec backstopv1.CheckSpec, res *backstopv1.CheckResult) backstopv1.Measurement {
	bounds, err := newBounds(spec.Min, spec.Max)
	if err != nil {
		return e.inconclusive(err.Error())
	}
	canary, reason := e.value(ctx, "query", spec.Query, e.vars)
	if reason != "" {
		res.Bound = bounds.String()
		return e.inconclusive(reason)
	}
	value := format(canary)
	var failed []string
	if why := bounds.outside(canary); why != "" {
		failed = append(failed, why)
	}
	res.Bound = bounds.String()
	if c := spec.Compare; c != nil {
		primary, reason := e.value(ctx, "primary's query", spec.Query, swapped(e.vars))
		if reason != "" {
			return e.inconclusive(reason)
		}
		limit, bound, err := compareLimit(c, primary)
		if err != nil {
			return e.inconclusive(err.Error())
		}
		res.Bound = joinBounds(res.Bound, bound)
		value += " (primary " + format(primary) + ")"
		worse := canary > limit
		if c.Direction == "HigherIsBetter" {
			worse = canary < limit
		}
		if worse {
			failed = append(failed, "worse than the primary's beyond the tolerance")
		}
	}
	if len(failed) > 0 {
		return e.measured(backstopv1.VerdictFail, value, strings.Join(failed, "; "))
	}
	return e.measured(backstopv1.VerdictPass, value, "")
}

// compareLimit is the worst value the canary may have, given the primary's.
func compareLimit(c *backstopv1.CompareRule, primary float64) (limit float64, bound string, err error) {
	tol := 0.0
	if c.Tolerance != "" {
		if tol, err = strconv.ParseFloat(string(c.Tolerance), 64); err != nil {
			return 0, "", fmt.Errorf("compare.tolerance %q is not a number", c.Tolerance)
		}
	}
	higher := c.Direction == "HigherIsBetter"
	var delta float64
	if c.ToleranceType == "Absolute" {
		delta = tol
	} else {
		delta = tol * abs(primary)
	}
	if higher {
		limit = primary - delta
		return limit, ">= " + format(limit) + " (primary's " + tolText(c, tol, "-") + ")", nil
	}
	limit = primary + delta
	return limit, "<= " + format(limit) + " (primary's " + tolText(c, tol, "+") + ")", nil
}

func tolText(c *backstopv1.CompareRule, tol float64, sign string) string {
	if c.ToleranceType == "Absolute" {
		return sign + " " + format(tol)
	}
	return sign + " " + format(tol*100) + "%"
}

func joinBounds(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// bounds are a threshold check's min and max; either may be unset.
type bounds struct {
	min, max       float64
	hasMin, hasMax bool
}

func newBounds(minD, maxD *backstopv1.Decimal) (bounds, error) {
	var b bounds
	var err error
	if minD != nil {
		if b.min, err = strconv.ParseFloat(string(*minD), 64); err != nil {
			return b, fmt.Errorf("min %q is not a number", *minD)
		}
		b.hasMin = true
	}
	if maxD != nil {
		if b.max, err = strconv.ParseFloat(string(*maxD), 64); err != nil {
			return b, fmt.Errorf("max %q is not a number", *maxD)
		}
		b.hasMax = true
	}
	return b, nil
}

// outside says how v breaks the bounds; empty when it is within them.
func (b bounds) outside(v float64) string {
	switch {
	case b.hasMin && v < b.min:
		return "below the minimum"
	case b.hasMax && v > b.max:
		return "above the maximum"
	}
	return ""
}

func (b bounds) String() string {
	switch {
	case b.hasMin && b.hasMax:
		return format(b.min) + " .. " + format(b.max)
	case b.hasMin:
		return ">= " + format(b.min)
	case b.hasMax:
		return "<= " + format(b.max)
	}
	return ""
}

// Default settings of an objective, as in the CRD.
const (
	defaultShortWindow       = 5 * time.Minute
	defaultLongWindow        = time.Hour
	defaultBurnRateThreshold = 14.4
)

// objective evaluates the error-budget burn rate over a short and a long
// window: the error ratio divided by the budget (1 - target). The check fails
// when the burn rate exceeds the threshold in both windows.
func (e evaluation) objective(ctx context.Context, o *backstopv1.ObjectiveRule, res *backstopv1.CheckResult) backstopv1.Measurement {
	target, err := strconv.ParseFloat(string(o.Target), 64)
	if err != nil || target <= 0 || target >= 100 {
		return e.inconclusive(fmt.Sprintf("objective.target %q is not a percentage between 0 and 100", o.Target))
	}
	threshold := defaultBurnRateThreshold
	if o.BurnRateThreshold != "" {
		if threshold, err = strconv.ParseFloat(string(o.BurnRateThreshold), 64); err != nil {
			return e.inconclusive(fmt.Sprintf("objective.burnRateThreshold %q is not a number", o.BurnRateThreshold))
		}
	}
	res.Bound = fmt.Sprintf("burn rate <= %s in at least one window", format(threshold))
	budget := 1 - target/100
	windows := []time.Duration{defaultShortWindow, defaultLongWindow}
	if o.ShortWindow != nil && o.ShortWindow.Duration > 0 {
		windows[0] = o.ShortWindow.Duration
	}
	if o.LongWindow != nil && o.LongWindow.Duration > 0 {
		windows[1] = o.LongWindow.Duration
	}
	var rates [2]float64
	var parts []string
	for i, w := range windows {
		ratio, reason := e.errorRatio(ctx, o, w)
		if reason != "" {
			return e.inconclusive(reason)
		}
		rates[i] = ratio / budget
		parts = append(parts, fmt.Sprintf("burn rate %s over %s", format(rates[i]), durationText(w)))
	}
	value := strings.Join(parts, ", ")
	if rates[0] > threshold && rates[1] > threshold {
		return e.measured(backstopv1.VerdictFail, value,
			fmt.Sprintf("the error budget of %s%% burns faster than %s times the sustainable rate in both windows", o.Target, format(threshold)))
	}
	return e.measured(backstopv1.VerdictPass, value, "")
}

// errorRatio is the share of bad events over a window, from the error ratio
// query, or from the good and total queries.
func (e evaluation) errorRatio(ctx context.Context, o *backstopv1.ObjectiveRule, w time.Duration) (float64, string) {
	vars := e.vars
	vars.Window = w
	if o.ErrorRatioQuery != "" {
		ratio, reason := e.value(ctx, "errorRatioQuery over "+durationText(w), o.ErrorRatioQuery, vars)
		if reason != "" {
			return 0, reason
		}
		if ratio < 0 || ratio > 1 {
			return 0, fmt.Sprintf("errorRatioQuery over %s returned %s, outside 0..1", durationText(w), format(ratio))
		}
		return ratio, ""
	}
	total, reason := e.value(ctx, "totalQuery over "+durationText(w), o.TotalQuery, vars)
	if reason != "" {
		return 0, reason
	}
	if total <= 0 {
		return 0, fmt.Sprintf("totalQuery over %s counted no events", durationText(w))
	}
	good, reason := e.value(ctx, "goodQuery over "+durationText(w), o.GoodQuery, vars)
	if reason != "" {
		return 0, reason
	}
	// Counters scraped at slightly different moments can make good exceed
	// total by a little; that is no error.
	return min(max(1-good/total, 0), 1), ""
}

// sequential feeds the error counts since the previous evaluation to the
// sequential test and fails once its evidence reaches 1/alpha.
func (e evaluation) sequential(ctx context.Context, s *backstopv1.SequentialRule, res *backstopv1.CheckResult) backstopv1.Measurement {
	alpha := 0.05
	if s.Alpha != "" {
		a, err := strconv.ParseFloat(string(s.Alpha), 64)
		if err != nil || a <= 0 || a >= 1 {
			return e.inconclusive(fmt.Sprintf("sequential.alpha %q is not a probability", s.Alpha))
		}
		alpha = a
	}
	res.Bound = fmt.Sprintf("e-value < %s (alpha %s)", format(1/alpha), format(alpha))
	evidence, err := ParseEvidence(res.Evidence)
	if err != nil {
		// Only evidence written by another version of the test is
		// unreadable; it starts afresh rather than blocking the release.
		evidence = Evidence{}
	}
	// The batch is what happened since the previous evaluation, so that a
	// manager that died before recording an evaluation counts its requests
	// in the next one rather than losing or doubling them.
	window := e.interval
	if res.LastEvaluationTime != nil {
		window = e.now.Sub(res.LastEvaluationTime.Time)
	}
	window = max(window.Truncate(time.Second), time.Second)
	vars := e.vars
	vars.Window = window
	primary := swapped(vars)
	var b SequentialBatch
	for _, q := range []struct {
		what  string
		query string
		vars  QueryVars
		into  *float64
	}{
		{"errorsQuery", s.ErrorsQuery, vars, &b.CanaryErrors},
		{"totalQuery", s.TotalQuery, vars, &b.CanaryTotal},
		{"primary's errorsQuery", s.ErrorsQuery, primary, &b.PrimaryErrors},
		{"primary's totalQuery", s.TotalQuery, primary, &b.PrimaryTotal},
	} {
		v, reason := e.value(ctx, q.what, q.query, q.vars)
		if reason != "" {
			return e.inconclusive(reason)
		}
		*q.into = v
	}
	// Errors and totals are extrapolated separately by increase(), so a
	// side that failed every request can count a hair more errors than
	// requests.
	b.CanaryErrors, b.PrimaryErrors = min(b.CanaryErrors, b.CanaryTotal), min(b.PrimaryErrors, b.PrimaryTotal)
	next, err := evidence.Update(b)
	if err != nil {
		return e.inconclusive(err.Error())
	}
	res.Evidence = next.String()
	value := fmt.Sprintf("e-value %s after %d batches (last: canary %s/%s, primary %s/%s errors)",
		format(next.EValue()), next.Batches(), format(b.CanaryErrors), format(b.CanaryTotal), format(b.PrimaryErrors), format(b.PrimaryTotal))
	if SequentialFails(next, alpha) {
		return e.measured(backstopv1.VerdictFail, value, "the canary fails a larger share of its requests than the primary")
	}
	return e.measured(backstopv1.VerdictPass, value, "")
}

// durationText writes a duration the way PromQL does: 5m, 1h30m.
func durationText(d time.Duration) string { return model.Duration(d).String() }

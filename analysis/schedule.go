package analysis

import (
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// evaluationTimes remembers when each check of each release was last
// evaluated, to the nanosecond. Status keeps the time only to the second
// (metav1.Time), and a check scheduled from that would be due up to a second
// early: with a short interval it would read the same data again and count
// one failure twice. A time status holds but the manager does not remember
// (after a restart, or from another replica) is taken as the end of its
// second, so the check is late by less than a second and never early.
type evaluationTimes struct {
	mu    sync.Mutex
	at    map[string]time.Time
	swept time.Time
}

// Remembered times older than forgetAfter are dropped, every sweepEvery;
// a check whose time was dropped falls back to its status, a second late at
// most.
const (
	forgetAfter = time.Hour
	sweepEvery  = 10 * time.Minute
)

// evaluationKey names a check of the release ro runs.
func evaluationKey(ro *backstopv1.Rollout, check string) string {
	return string(ro.UID) + "\x00" + ro.Status.CanaryRevision + "\x00" + check
}

// last is when the check key was last evaluated, given the time status
// recorded; zero when status records none.
func (e *evaluationTimes) last(key string, recorded *metav1.Time) time.Time {
	if recorded == nil {
		return time.Time{}
	}
	e.mu.Lock()
	t, ok := e.at[key]
	e.mu.Unlock()
	if ok && t.Unix() == recorded.Unix() {
		return t
	}
	return recorded.Truncate(time.Second).Add(time.Second - time.Nanosecond)
}

// remember records that the check key was evaluated at t.
func (e *evaluationTimes) remember(key string, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.at == nil {
		e.at = map[string]time.Time{}
	}
	e.at[key] = t
	if t.Sub(e.swept) < sweepEvery {
		return
	}
	e.swept = t
	for k, old := range e.at {
		if t.Sub(old) > forgetAfter {
			delete(e.at, k)
		}
	}
}

// due is when the check of res is next due: at start for its first
// evaluation, then an interval after the last.
func (r *run) due(res *backstopv1.CheckResult, start time.Time) time.Time {
	last := r.a.evals.last(evaluationKey(r.ro, res.Name), res.LastEvaluationTime)
	if last.IsZero() {
		return start
	}
	return later(start, last.Add(r.interval))
}

// record adds a measurement to a check's result, and remembers its time.
func (r *run) record(res *backstopv1.CheckResult, m backstopv1.Measurement) {
	record(res, m)
	r.a.evals.remember(evaluationKey(r.ro, res.Name), m.Time.Time)
}

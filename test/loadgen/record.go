package loadgen

import (
	"maps"
	"sync"
	"time"
)

// Counts are numbers of requests.
type Counts struct {
	// Requests is the number of requests recorded: answered or failed.
	Requests int
	// ByVersion counts the answered requests by X-App-Version; an answer
	// without the header counts under "".
	ByVersion map[string]int
	// ByStatus counts the answered requests by HTTP status.
	ByStatus map[int]int
	// Errors5xx is the number of answers with a status from 500 to 599.
	Errors5xx int
	// Failures is the number of requests that got no answer.
	Failures int
}

func (c *Counts) add(r Result) {
	if c.ByVersion == nil {
		c.ByVersion, c.ByStatus = map[string]int{}, map[int]int{}
	}
	c.Requests++
	if r.Status == 0 {
		c.Failures++
		return
	}
	c.ByVersion[r.Version]++
	c.ByStatus[r.Status]++
	if is5xx(r.Status) {
		c.Errors5xx++
	}
}

func (c Counts) clone() Counts {
	c.ByVersion, c.ByStatus = maps.Clone(c.ByVersion), maps.Clone(c.ByStatus)
	if c.ByVersion == nil {
		c.ByVersion, c.ByStatus = map[string]int{}, map[int]int{}
	}
	return c
}

// Totals are the counts of a whole run.
type Totals struct {
	Counts
	// Skipped is the number of requests not sent because Concurrency
	// requests were in flight when they were due.
	Skipped int
	// Started is when Run started; zero before.
	Started time.Time
	// Stopped is when Run returned; zero before.
	Stopped time.Time
}

// Second counts the requests sent during one wall-clock second.
type Second struct {
	// Start is the beginning of the second.
	Start time.Time
	Counts
}

func is5xx(status int) bool { return status >= 500 && status <= 599 }

// recorder holds what a Generator saw; every method is safe for concurrent
// use.
type recorder struct {
	mu       sync.Mutex
	all      []Result
	bySecond map[int64]*Counts // keyed by Unix second of Result.Sent
	total    Counts
	skipped  int
	first    map[string]time.Time
	last     time.Time // Sent of the last 5xx
	started  time.Time
	stopped  time.Time
}

func newRecorder() recorder {
	return recorder{bySecond: map[int64]*Counts{}, first: map[string]time.Time{}}
}

// begin records the start of the run and returns it.
func (rc *recorder) begin() time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.started = time.Now()
	return rc.started
}

func (rc *recorder) end() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.stopped = time.Now()
}

func (rc *recorder) running() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return !rc.started.IsZero() && rc.stopped.IsZero()
}

func (rc *recorder) skip() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.skipped++
}

func (rc *recorder) add(r Result) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.all = append(rc.all, r)
	rc.total.add(r)
	sec := r.Sent.Unix()
	c, ok := rc.bySecond[sec]
	if !ok {
		c = &Counts{}
		rc.bySecond[sec] = c
	}
	c.add(r)
	if r.Status == 0 {
		return
	}
	// Requests finish out of order: keep the earliest and the latest sent.
	if first, ok := rc.first[r.Version]; !ok || r.Sent.Before(first) {
		rc.first[r.Version] = r.Sent
	}
	if is5xx(r.Status) && r.Sent.After(rc.last) {
		rc.last = r.Sent
	}
}

func (rc *recorder) totals() Totals {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return Totals{Counts: rc.total.clone(), Skipped: rc.skipped, Started: rc.started, Stopped: rc.stopped}
}

func (rc *recorder) seconds() []Second {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bySecond) == 0 {
		return nil
	}
	lo, hi := int64(0), int64(0)
	for sec := range rc.bySecond {
		if lo == 0 || sec < lo {
			lo = sec
		}
		if sec > hi {
			hi = sec
		}
	}
	out := make([]Second, 0, hi-lo+1)
	for sec := lo; sec <= hi; sec++ {
		s := Second{Start: time.Unix(sec, 0)}
		if c, ok := rc.bySecond[sec]; ok {
			s.Counts = *c
		}
		s.Counts = s.Counts.clone()
		out = append(out, s)
	}
	return out
}

func (rc *recorder) results() []Result {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Result(nil), rc.all...)
}

func (rc *recorder) last5xx() (time.Time, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.last, !rc.last.IsZero()
}

func (rc *recorder) firstSeen(version string) (time.Time, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	t, ok := rc.first[version]
	return t, ok
}

func (rc *recorder) between(from, to time.Time) Counts {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var c Counts
	for _, r := range rc.all {
		if !r.Sent.Before(from) && r.Sent.Before(to) {
			c.add(r)
		}
	}
	return c.clone()
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"backstop.dev/backstop/test/loadgen"
)

// interval is one figure of the report: the time from one moment of a
// round to another.
type interval struct {
	key, label string
	from, to   func(*round) time.Time
}

func onsetOf(r *round) time.Time         { return r.onset }
func canaryScrapedOf(r *round) time.Time { return r.canaryScraped }
func visibleOf(r *round) time.Time       { return r.breachVisible }
func checkFailedOf(r *round) time.Time   { return r.checkFailed }
func decisionOf(r *round) time.Time      { return r.decision }
func routeWrittenOf(r *round) time.Time  { return r.routeWritten }
func lastCanaryOf(r *round) time.Time    { return r.lastCanary }
func pushedOf(r *round) time.Time        { return r.pushed }
func appliedOf(r *round) time.Time       { return r.applied }

// The report's groups of intervals: the chain from one moment to the
// next; the decision's Event; the totals from the breach onset.
var (
	steps = []interval{
		{"onset_to_visible", "breach onset → visible in Prometheus", onsetOf, visibleOf},
		{"visible_to_check", "visible → check failed", visibleOf, checkFailedOf},
		{"check_to_route", "check failed → HTTPRoute written", checkFailedOf, routeWrittenOf},
		{"route_to_zero", "HTTPRoute written → traefik 0% to canary", routeWrittenOf, lastCanaryOf},
		{"zero_to_pushed", "traefik 0% → revert pushed", lastCanaryOf, pushedOf},
		{"pushed_to_applied", "revert pushed → Flux applied", pushedOf, appliedOf},
	}
	decision = []interval{
		{"onset_to_decision", "breach onset → decision (Event)", onsetOf, decisionOf},
		{"decision_to_route", "decision (Event) → HTTPRoute written", decisionOf, routeWrittenOf},
		{"onset_to_scraped", "breach onset → canary's first sample", onsetOf, canaryScrapedOf},
	}
	totals = []interval{
		{"onset_to_route", "breach onset → HTTPRoute written", onsetOf, routeWrittenOf},
		{"onset_to_zero", "breach onset → traefik 0% to canary", onsetOf, lastCanaryOf},
		{"onset_to_pushed", "breach onset → revert pushed", onsetOf, pushedOf},
		{"onset_to_applied", "breach onset → Flux applied", onsetOf, appliedOf},
	}
)

// stats are the figures of one interval over the rounds.
type stats struct {
	P50    float64   `json:"p50"`
	P99    float64   `json:"p99"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"-"` // by round
}

func statsOf(iv interval, rounds []*round) stats {
	var st stats
	for _, r := range rounds {
		st.Values = append(st.Values, ms(iv.to(r).Sub(iv.from(r))))
	}
	sorted := slices.Sorted(slices.Values(st.Values))
	st.P50, st.P99 = nearestRank(sorted, 0.50), nearestRank(sorted, 0.99)
	st.Min, st.Max = sorted[0], sorted[len(sorted)-1]
	return st
}

// nearestRank is the p-quantile of sorted by the nearest-rank method: the
// smallest value with at least p of the values at or below it.
func nearestRank(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

// human prints a figure in milliseconds: under a second as such, above in
// seconds.
func human(v float64) string {
	if math.Abs(v) < 1000 {
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.3fs", v/1000)
}

// benchResult is the BENCH line.
type benchResult struct {
	Kind   string      `json:"kind"`
	Rounds int         `json:"rounds"`
	Rate   float64     `json:"ratePerSecond"`
	Config benchConfig `json:"config"`
	// IntervalsMs are the values of each interval by round, in the
	// table's order.
	IntervalsMs ordered            `json:"intervalsMs"`
	Stats       map[string]stats   `json:"statsMs"`
	QueryGaps   []float64          `json:"checkQueryGapsMs"`
	Manager     map[string]float64 `json:"manager,omitempty"`
	PerRound    []benchRound       `json:"perRound"`
	Load        benchLoad          `json:"load"`
}

type benchConfig struct {
	ScrapeInterval float64 `json:"scrapeIntervalMs"`
	CheckInterval  float64 `json:"checkIntervalMs"`
	Throttle       float64 `json:"gatewayThrottleMs"`
	Bound          float64 `json:"boundMs"`
}

// benchRound is one round's moments, in milliseconds from its breach
// onset, and the second-precision stamps of the API.
type benchRound struct {
	Round          int                `json:"round"`
	Commit         string             `json:"commit"`
	Revert         string             `json:"revert"`
	Reason         string             `json:"reason"`
	Message        string             `json:"message"`
	VisibleTo      string             `json:"visibleTo"`
	Events         []benchEvent       `json:"events"`
	Answers        []benchAnswer      `json:"checkAnswers"`
	FromOnset      map[string]float64 `json:"msFromOnset"`
	RouteStamp     time.Time          `json:"routeManagedFieldsTime"`
	RevertAttempt  time.Time          `json:"revertLastAttemptTime"`
	OnsetUnixMicro int64              `json:"onsetUnixMicro"`
}

// benchEvent is an Event of the Rollout during a round.
type benchEvent struct {
	Reason    string  `json:"reason"`
	FromOnset float64 `json:"msFromOnset"`
}

func eventsOf(r *round, from func(time.Time) float64) []benchEvent {
	var out []benchEvent
	for _, e := range r.events {
		out = append(out, benchEvent{Reason: e.reason, FromOnset: from(e.eventTime)})
	}
	return out
}

// benchAnswer is a check's answer to the manager before the route write.
type benchAnswer struct {
	Check     string  `json:"check"`
	Value     string  `json:"value"`
	FromOnset float64 `json:"msFromOnset"`
}

func answersOf(r *round, bounds []checkBound, from func(time.Time) float64) []benchAnswer {
	var out []benchAnswer
	for _, a := range r.answers {
		name := ""
		for _, b := range bounds {
			if strings.HasPrefix(a.query, b.prefix) {
				name = b.name
			}
		}
		out = append(out, benchAnswer{Check: name, Value: strconv.FormatFloat(a.value, 'g', 4, 64), FromOnset: from(a.answered)})
	}
	return out
}

type benchLoad struct {
	Requests  int `json:"requests"`
	Errors5xx int `json:"errors5xx"`
	Failures  int `json:"failures"`
	Skipped   int `json:"skipped"`
}

// report prints the table, the bound and the BENCH line.
func report(w io.Writer, cfg config, bounds []checkBound, rate float64, rounds []*round, load loadgen.Totals, manager map[string]float64) {
	bound := cfg.scrapeInterval + cfg.checkInterval + cfg.throttle
	res := benchResult{Kind: "reaction", Rounds: len(rounds), Rate: rate, Stats: map[string]stats{},
		Config: benchConfig{ScrapeInterval: ms(cfg.scrapeInterval), CheckInterval: ms(cfg.checkInterval),
			Throttle: ms(cfg.throttle), Bound: ms(bound)},
		Load: benchLoad{Requests: load.Requests, Errors5xx: load.Errors5xx, Failures: load.Failures, Skipped: load.Skipped}}

	fmt.Fprintf(w, "\nReaction to a faulty release: %d rounds, %g requests/s through traefik\n", len(rounds), rate)
	row := func(label, p50, p99, lo, hi string) {
		fmt.Fprintf(w, "  %-44s %10s %10s %10s %10s\n", label, p50, p99, lo, hi)
	}
	row("interval", "p50", "p99", "min", "max")
	for i, group := range [][]interval{steps, decision, totals} {
		if i > 0 {
			fmt.Fprintln(w)
		}
		for _, iv := range group {
			st := statsOf(iv, rounds)
			res.Stats[iv.key] = st
			res.IntervalsMs.add(iv.key, st.Values)
			row(iv.label, human(st.P50), human(st.P99), human(st.Min), human(st.Max))
		}
	}
	fmt.Fprintf(w, "  p50 and p99 are nearest-rank percentiles: with %d rounds p99 is the largest value", len(rounds))
	if len(rounds) >= 100 {
		fmt.Fprint(w, " but one in a hundred")
	}
	fmt.Fprintln(w, ".")
	if cfg.canaryWeight > 0 {
		fmt.Fprintf(w, "  traefik 0%% is the last request the canary answered: at %d%% of %g requests/s, one in every %s goes to the canary.\n",
			cfg.canaryWeight, rate, human(100*1000/(rate*float64(cfg.canaryWeight))))
	}
	fmt.Fprintln(w, "  The manager records the decision's Event after the route write, in the same reconcile: the operator's own delay is")
	fmt.Fprintln(w, "  check failed → HTTPRoute written. Backstop pushes the revert without waiting for the gateway, so traefik 0% → revert")
	fmt.Fprintln(w, "  pushed may be negative.")

	fmt.Fprintf(w, "\nBound set by the configuration: Prometheus scrape %s + check interval %s + traefik throttle %s = %s\n",
		human(ms(cfg.scrapeInterval)), human(ms(cfg.checkInterval)), human(ms(cfg.throttle)), human(ms(bound)))
	fmt.Fprintf(w, "  (the longest a breach waits on these cadences alone: a scrape to show it, a check to read it, the gateway to apply the route)\n")
	against := func(label, key string, limit time.Duration) {
		st := res.Stats[key]
		fmt.Fprintf(w, "  %-38s p50 %9s  p99 %9s  vs %-8s  p50 %9s  p99 %9s\n", label, human(st.P50), human(st.P99),
			human(ms(limit)), signed(st.P50-ms(limit)), signed(st.P99-ms(limit)))
	}
	against("breach onset → visible in Prometheus", "onset_to_visible", cfg.scrapeInterval)
	against("visible → check failed", "visible_to_check", cfg.checkInterval)
	against("HTTPRoute written → traefik 0%", "route_to_zero", cfg.throttle)
	against("breach onset → decision (Event)", "onset_to_decision", cfg.scrapeInterval+cfg.checkInterval)
	against("breach onset → traefik 0%", "onset_to_zero", bound)

	gaps := queryGaps(rounds, bounds)
	if len(gaps) > 0 {
		res.QueryGaps = gaps
		sorted := slices.Sorted(slices.Values(gaps))
		fmt.Fprintf(w, "  a check's queries reached Prometheus every: p50 %s, p99 %s, min %s, max %s (%d gaps; the interval is %s)\n",
			human(nearestRank(sorted, 0.5)), human(nearestRank(sorted, 0.99)), human(sorted[0]), human(sorted[len(sorted)-1]),
			len(sorted), human(ms(cfg.checkInterval)))
	}
	if manager != nil {
		res.Manager = manager
		fmt.Fprintf(w, "  the manager during the rounds: %.0f check evaluations, %.0f queries sent to Prometheus, %.0f answered from its query cache\n",
			manager["evaluations"], manager["queriesSent"], manager["queriesDeduplicated"])
	}

	for _, r := range rounds {
		from := func(t time.Time) float64 { return ms(t.Sub(r.onset)) }
		res.PerRound = append(res.PerRound, benchRound{Round: r.n, Commit: r.commit, Revert: r.revert, Reason: r.reason, Message: r.note,
			VisibleTo: r.visibleTo, Events: eventsOf(r, from), Answers: answersOf(r, bounds, from),
			FromOnset: map[string]float64{
				"committed":       from(r.committed),
				"canaryScraped":   from(r.canaryScraped),
				"breachVisible":   from(r.breachVisible),
				"checkFailed":     from(r.checkFailed),
				"lastCheckAnswer": from(r.lastAnswer),
				"decision":        from(r.decision),
				"eventSeen":       from(r.eventSeen),
				"routeWritten":    from(r.routeWritten),
				"rollingBackSeen": from(r.rollingBack),
				"lastCanary":      from(r.lastCanary),
				"revertPushed":    from(r.pushed),
				"fluxApplied":     from(r.applied),
				"idle":            from(r.idle),
			},
			RouteStamp: r.routeStamp, RevertAttempt: r.revertAttempt, OnsetUnixMicro: r.onset.UnixMicro()})
	}
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(w, "reaction: encoding the figures:", err)
		return
	}
	fmt.Fprintf(w, "\nBENCH %s\n", b)
}

// queryGaps are the times between two queries of the same check in a
// round, up to the route write.
func queryGaps(rounds []*round, bounds []checkBound) []float64 {
	var gaps []float64
	for _, r := range rounds {
		last := map[string]time.Time{}
		for _, a := range r.answers {
			for _, b := range bounds {
				if !strings.HasPrefix(a.query, b.prefix) {
					continue
				}
				if prev, ok := last[b.name]; ok {
					gaps = append(gaps, ms(a.sent.Sub(prev)))
				}
				last[b.name] = a.sent
			}
		}
	}
	return gaps
}

// ordered is a JSON object whose keys keep the order they were added in.
type ordered struct {
	keys   []string
	values map[string]any
}

func (o *ordered) add(key string, v any) {
	if o.values == nil {
		o.values = map[string]any{}
	}
	o.keys = append(o.keys, key)
	o.values[key] = v
}

// MarshalJSON implements json.Marshaler.
func (o ordered) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, k := range o.keys {
		if i > 0 {
			b = append(b, ',')
		}
		key, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(o.values[k])
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, key...), ':'), v...)
	}
	return append(b, '}'), nil
}

// signed prints a difference with its sign: above (+) or below (-).
func signed(v float64) string {
	if v >= 0 {
		return "+" + human(v)
	}
	return "-" + human(-v)
}

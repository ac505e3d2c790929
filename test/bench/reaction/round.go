package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/loadgen"
	"backstop.dev/backstop/test/release"
	"backstop.dev/backstop/test/stack"
)

// roundAnnotation carries the round's number on v3's pod template.
const roundAnnotation = "bench.backstop.dev/round"

// settleAfterCanary is how long after the last answer of a round's canary
// the next round starts: the checks' 10-second rate windows must no longer
// hold the last canary's samples, or the next round would be judged on
// them.
const settleAfterCanary = 12 * time.Second

// settleJitter bounds a random wait added between rounds, so that they do
// not start in step with Prometheus' 5-second cadence of taking in new
// targets, which would hold the canary's first scrape at the same delay
// every round.
const settleJitter = 5 * time.Second

// round is what one faulty release measured.
type round struct {
	n              int
	commit, revert string
	reason         string // of the rollback's Event
	note           string // its message

	committed     time.Time // the faulty commit was pushed
	onset         time.Time // the first v3 answer was sent
	canaryScraped time.Time // the canary's series first had a sample
	breachVisible time.Time // a check evaluated from then on would fail
	visibleTo     string    // that check
	checkFailed   time.Time // the first check answer past its bound
	lastAnswer    time.Time // the last check answer before the route write
	decision      time.Time // the rollback Event's eventTime
	eventSeen     time.Time // that Event came in on the watch
	routeWritten  time.Time // the route at weight 0 came in on the watch
	routeStamp    time.Time // its managedFields time (seconds)
	rollingBack   time.Time // status.phase RollingBack came in on the watch
	lastCanary    time.Time // the last v3 answer was sent
	pushed        time.Time // the revert moved the branch
	revertAttempt time.Time // status.revert.lastAttemptTime (seconds)
	applied       time.Time // Flux applied the revert
	idle          time.Time // the Rollout was Idle again
	events        []eventSeen
	answers       []promAnswer // the checks' answers up to the route write
}

// play releases v3 once and measures the reaction.
func play(ctx context.Context, s *stack.Stack, tl *timeline, prom *promRecorder, bounds []checkBound,
	gen *loadgen.Generator, stable *appsv1.Deployment, ro *backstopv1.Rollout, n int) (*round, error) {
	bad := stable.DeepCopy()
	release.SetVersion(bad, "v3")
	if bad.Spec.Template.Annotations == nil {
		bad.Spec.Template.Annotations = map[string]string{}
	}
	bad.Spec.Template.Annotations[roundAnnotation] = strconv.Itoa(n)
	start := time.Now()
	commit, err := release.Commit(s, bad, fmt.Sprintf("Deploy the demo app v3 (round %d)", n))
	if err != nil {
		return nil, err
	}
	r := &round{n: n, commit: commit, committed: time.Now()}

	var outcome rolloutSeen
	err = tl.wait(ctx, 3*time.Minute, "the release to end", func() bool {
		var ok bool
		outcome, ok = tl.firstPhase(start, backstopv1.PhaseRollingBack, backstopv1.PhaseRolledBack, backstopv1.PhasePromoting, backstopv1.PhaseSucceeded)
		return ok
	})
	if err != nil {
		return nil, err
	}
	if outcome.phase != backstopv1.PhaseRollingBack && outcome.phase != backstopv1.PhaseRolledBack {
		return nil, fmt.Errorf("v3 was not rolled back: the Rollout went %s", outcome.phase)
	}
	r.rollingBack = outcome.at
	rv, err := release.FollowRevert(ctx, s, ro, commit, nil)
	if err != nil {
		return nil, err
	}
	r.revert, r.pushed = rv.Commit, rv.Pushed
	err = tl.wait(ctx, time.Minute, "the watches to see Flux apply the revert and the Rollout Idle", func() bool {
		var ok bool
		if r.applied, ok = tl.appliedAt(rv.Commit); !ok {
			return false
		}
		// The Rollout may be Idle before Flux writes its status.
		idle, ok := tl.firstPhase(r.rollingBack, backstopv1.PhaseIdle)
		r.idle = idle.at
		return ok
	})
	if err != nil {
		return nil, err
	}
	// Answers of v3 still in flight (each takes 200ms) land meanwhile.
	if err := sleep(ctx, time.Second); err != nil {
		return nil, err
	}
	return r, r.measure(ctx, s.Prometheus, tl, prom, bounds, gen, start)
}

// measure takes the round's times from the load generator's requests, the
// timeline, the manager's Prometheus answers and Prometheus itself.
func (r *round) measure(ctx context.Context, base string, tl *timeline, prom *promRecorder, bounds []checkBound,
	gen *loadgen.Generator, start time.Time) error {
	if err := r.traffic(gen, start); err != nil {
		return err
	}
	answers := prom.since(start)
	if err := r.watched(tl, bounds, answers, start); err != nil {
		return err
	}
	return r.prometheusTimes(ctx, base, bounds, answers, start)
}

// traffic takes the first and the last request the canary answered.
func (r *round) traffic(gen *loadgen.Generator, start time.Time) error {
	for _, res := range gen.Results() {
		// A 5xx without a version is the gateway's, failing to reach a
		// (canary) pod.
		canary := res.Version == "v3" || (res.Version == "" && res.Status >= 500)
		if res.Sent.Before(start) || !canary {
			continue
		}
		if r.onset.IsZero() || res.Sent.Before(r.onset) {
			r.onset = res.Sent
		}
		if res.Sent.After(r.lastCanary) {
			r.lastCanary = res.Sent
		}
	}
	if r.onset.IsZero() {
		return errors.New("no request was answered by v3")
	}
	return nil
}

// watched takes the route write, the checks' answers before it, the
// rollback's Event and the revert's attempt time.
func (r *round) watched(tl *timeline, bounds []checkBound, answers []promAnswer, start time.Time) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	route, ok := tl.routeToZero(start)
	if !ok {
		return errors.New("the watch saw no route write taking the canary's weight to 0")
	}
	r.routeWritten, r.routeStamp = route.at, route.written
	for _, a := range answers {
		if a.answered.After(r.routeWritten) {
			break
		}
		r.answers = append(r.answers, a)
		r.lastAnswer = a.answered
		if r.checkFailed.IsZero() && breaches(bounds, a) {
			r.checkFailed = a.answered
		}
	}
	if r.checkFailed.IsZero() {
		return errors.New("no check answer past its bound came before the route write")
	}
	// The decision follows the analysis it was made on; an Event before
	// it (a pause on inconclusive checks) is not the rollback's.
	ev, ok := tl.rollbackEvent(r.lastAnswer)
	if !ok {
		return errors.New("the watch saw no Event of the rollback")
	}
	r.decision, r.eventSeen, r.reason, r.note = ev.eventTime, ev.at, ev.reason, ev.note
	r.events = tl.eventsBetween(start, r.idle)
	for _, ro := range tl.rollouts {
		// status.revert keeps the last round's until this round's starts.
		if !ro.at.Before(r.rollingBack) && !ro.revertAttempt.Before(start.Truncate(time.Second)) {
			r.revertAttempt = ro.revertAttempt
			break
		}
	}
	return nil
}

// prometheusTimes asks Prometheus, at a step of promStep, when the
// canary's series first had a sample and when the first check would have
// failed had it been evaluated then, with the queries the manager sent.
func (r *round) prometheusTimes(ctx context.Context, base string, bounds []checkBound, answers []promAnswer, start time.Time) error {
	present := fmt.Sprintf(`count(http_requests_total{namespace=%q,app=%q})`, release.Namespace, release.Name)
	at, ok, err := firstPresent(ctx, base, present, start, r.routeWritten, promStep)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("prometheus has no sample of the canary before the route write")
	}
	r.canaryScraped = at
	for _, b := range bounds {
		query := ""
		for _, a := range answers {
			if strings.HasPrefix(a.query, b.prefix) {
				query = a.query
			}
		}
		if query == "" {
			continue
		}
		at, ok, err := firstAbove(ctx, base, query, b.max, start, r.routeWritten, promStep)
		if err != nil {
			return err
		}
		if ok && (r.breachVisible.IsZero() || at.Before(r.breachVisible)) {
			r.breachVisible, r.visibleTo = at, b.name
		}
	}
	if r.breachVisible.IsZero() {
		return errors.New("prometheus shows no value past a check's bound before the route write")
	}
	return nil
}

// promStep is the resolution of the times asked of Prometheus.
const promStep = 50 * time.Millisecond

// line is the round's live line.
func (r *round) line() string {
	return fmt.Sprintf("onset→visible %s  →check %s  →route %s  →0%% %s  →pushed %s  →applied %s  | decision→route %s  (%s)",
		secs(r.breachVisible.Sub(r.onset)), secs(r.checkFailed.Sub(r.breachVisible)), millis(r.routeWritten.Sub(r.checkFailed)),
		millis(r.lastCanary.Sub(r.routeWritten)), secs(r.pushed.Sub(r.lastCanary)), secs(r.applied.Sub(r.pushed)),
		millis(r.routeWritten.Sub(r.decision)), r.reason)
}

func secs(d time.Duration) string   { return fmt.Sprintf("%.2fs", d.Seconds()) }
func millis(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

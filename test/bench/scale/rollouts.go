package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/proc"
	"backstop.dev/backstop/test/testenv"
)

// rolloutState is what the watch keeps of a Rollout's status.
type rolloutState struct {
	phase     backstopv1.RolloutPhase
	step      int32
	stepStart time.Time // status.stepStartTime, whole seconds as the API stores it
	canary    string
}

// releasing says the state is a running release.
func (s rolloutState) releasing() bool {
	return s.phase == backstopv1.PhaseProgressing || s.phase == backstopv1.PhasePaused
}

// watcher follows every Rollout's status through a watch: the phases, and
// for each step of a known duration, how late its end was seen.
type watcher struct {
	// durations are the steps' durations; 0 for a step without one.
	durations []time.Duration

	mu      sync.Mutex
	states  map[client.ObjectKey]rolloutState
	phases  map[backstopv1.RolloutPhase]int
	lags    []time.Duration
	changed chan struct{}
}

// watchRollouts starts the watch; it returns once it has synced.
func watchRollouts(p *testenv.Program, env *testenv.Env, stepDurations []time.Duration) *watcher {
	w := &watcher{durations: stepDurations, states: map[client.ObjectKey]rolloutState{},
		phases: map[backstopv1.RolloutPhase]int{}, changed: make(chan struct{}, 1)}
	c, err := crcache.New(env.Config, crcache.Options{Scheme: env.Scheme, DefaultTransform: crcache.TransformStripManagedFields()})
	if err != nil {
		p.Fatal(err)
	}
	inf, err := c.GetInformer(p.Context(), &backstopv1.Rollout{}, crcache.BlockUntilSynced(false))
	if err != nil {
		p.Fatal(err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { w.observe(o, time.Now()) },
		UpdateFunc: func(_, o any) { w.observe(o, time.Now()) },
	})
	if err != nil {
		p.Fatal(err)
	}
	go func() { _ = c.Start(p.Context()) }()
	if !c.WaitForCacheSync(p.Context()) {
		p.Fatal("the Rollout watch did not sync")
	}
	return w
}

// observe records a Rollout as the watch delivered it at now. When it
// left a step of known duration D that started at T (status.stepStartTime),
// for the next step or the promotion of the same release, the lag is now −
// (T + D): how long after the step was due its end became visible.
func (w *watcher) observe(o any, now time.Time) {
	ro, ok := o.(*backstopv1.Rollout)
	if !ok {
		return
	}
	next := rolloutState{phase: ro.Status.Phase, step: ro.Status.CurrentStep, canary: ro.Status.CanaryRevision}
	if ro.Status.StepStartTime != nil {
		next.stepStart = ro.Status.StepStartTime.Time
	}
	key := client.ObjectKeyFromObject(ro)
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, seen := w.states[key]
	w.states[key] = next
	if seen {
		w.phases[prev.phase]--
	}
	w.phases[next.phase]++
	advanced := (next.releasing() && next.step > prev.step) || next.phase == backstopv1.PhasePromoting
	if seen && advanced && prev.releasing() && !prev.stepStart.IsZero() && prev.canary == next.canary &&
		int(prev.step) < len(w.durations) {
		if d := w.durations[prev.step]; d > 0 {
			w.lags = append(w.lags, now.Sub(prev.stepStart.Add(d)))
		}
	}
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// count is the number of Rollouts in phase.
func (w *watcher) count(phase backstopv1.RolloutPhase) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.phases[phase]
}

// summary says how many Rollouts are in each phase.
func (w *watcher) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := ""
	for _, ph := range []backstopv1.RolloutPhase{"", backstopv1.PhaseInitializing, backstopv1.PhaseIdle, backstopv1.PhaseProgressing,
		backstopv1.PhasePaused, backstopv1.PhasePromoting, backstopv1.PhaseSucceeded, backstopv1.PhaseRollingBack, backstopv1.PhaseRolledBack} {
		if n := w.phases[ph]; n > 0 {
			name := string(ph)
			if name == "" {
				name = "(none)"
			}
			s += fmt.Sprintf(" %s=%d", name, n)
		}
	}
	return s
}

// takeLags returns the lags recorded so far and forgets them.
func (w *watcher) takeLags() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.lags
	w.lags = nil
	return l
}

// waitUntil waits until ok holds, logging the phases every 10 seconds, and
// fails after timeout or when the manager exits.
func (w *watcher) waitUntil(ctx context.Context, what string, timeout time.Duration, manager *proc.Process, ok func() bool, log func(string, ...any)) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	start := time.Now()
	for !ok() {
		if err := manager.Running(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("waiting for %s: not within %s; phases:%s", what, timeout, w.summary())
		case <-tick.C:
			log("  %4.0fs waiting for %s; phases:%s", time.Since(start).Seconds(), what, w.summary())
		case <-w.changed:
		}
	}
	return nil
}

package plan

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Common is what every strategy's plan reads from the Rollout's spec.
type Common struct {
	Paused           bool
	SkipAnalysis     bool
	ProgressDeadline time.Duration
	OnInconclusive   backstopv1.InconclusivePolicy
	// BakeTime is how long after a promotion a failed verdict (a matching
	// alert) still rolls the promoted revision back; zero has no bake time.
	BakeTime time.Duration
}

// Config is what the canary plan reads from the Rollout's spec.
type Config struct {
	Common
	Steps []backstopv1.CanaryStep
	// Match says the strategy has a match (canary.match) for the routes to
	// carry during a release.
	Match bool
	// Mirror says the strategy mirrors traffic (canary.mirror) while the
	// canary's weight is zero.
	Mirror bool
}

// DeadlinePassed says whether the canary has had its whole progress
// deadline in the current step: past it, a canary that is not ready rolls
// the release back.
func (c Common) DeadlinePassed(s State, now time.Time) bool {
	return now.Sub(s.StepStart) > c.ProgressDeadline
}

// DefaultProgressDeadline applies when the spec leaves it unset.
const DefaultProgressDeadline = 10 * time.Minute

// CommonConfig reads the settings every strategy shares from a Rollout's spec.
func CommonConfig(spec *backstopv1.RolloutSpec) Common {
	c := Common{
		Paused:           spec.Paused,
		SkipAnalysis:     spec.SkipAnalysis,
		ProgressDeadline: DefaultProgressDeadline,
		OnInconclusive:   backstopv1.InconclusivePause,
	}
	if spec.ProgressDeadlineSeconds != nil {
		c.ProgressDeadline = time.Duration(*spec.ProgressDeadlineSeconds) * time.Second
	}
	if spec.Analysis != nil && spec.Analysis.OnInconclusive != "" {
		c.OnInconclusive = spec.Analysis.OnInconclusive
	}
	// A release that is not judged (skipAnalysis) is not judged after its
	// promotion either.
	if a := spec.Analysis; a != nil && a.Alerts != nil && a.Alerts.BakeTime != nil && !spec.SkipAnalysis {
		c.BakeTime = max(a.Alerts.BakeTime.Duration, 0)
	}
	return c
}

// CanaryConfig reads the canary plan's configuration from a Rollout's spec.
func CanaryConfig(spec *backstopv1.RolloutSpec) Config {
	cfg := Config{Common: CommonConfig(spec), Steps: Steps(spec.Strategy.Canary)}
	if c := spec.Strategy.Canary; c != nil {
		cfg.Match, cfg.Mirror = c.Match != nil, c.Mirror != nil
	}
	return cfg
}

// Steps returns a canary strategy's steps, expanding the short form
// (stepWeight, maxWeight, interval) into a setWeight and an analysis step of
// interval for each weight from stepWeight up to maxWeight.
func Steps(c *backstopv1.CanaryStrategy) []backstopv1.CanaryStep {
	if c == nil {
		return nil
	}
	if len(c.Steps) > 0 || c.StepWeight == nil || *c.StepWeight <= 0 {
		return c.Steps
	}
	step, max := *c.StepWeight, int32(100)
	if c.MaxWeight != nil {
		max = *c.MaxWeight
	}
	var window metav1.Duration
	if c.Interval != nil {
		window = *c.Interval
	}
	var steps []backstopv1.CanaryStep
	for w := step; ; w += step {
		if w > max {
			w = max
		}
		steps = append(steps,
			backstopv1.CanaryStep{SetWeight: &w},
			backstopv1.CanaryStep{Analysis: &backstopv1.AnalysisStep{Window: window}},
		)
		if w == max {
			return steps
		}
	}
}

// Canary decides the next move of a canary release.
func Canary(cfg Config, s State, w World, now time.Time) Decision {
	return decide(cfg.Common, s, w, now, func() Decision { return progress(cfg, s, w, now) })
}

// decide dispatches on the phase: every strategy shares initialisation,
// idling, promotion, the bake time and rollback, and runs its release with
// progress.
func decide(c Common, s State, w World, now time.Time, progress func() Decision) Decision {
	switch s.Phase {
	case backstopv1.PhaseSucceeded:
		if s.Previous != "" {
			return bake(c, s, w, now)
		}
		return idle(s, w, now)
	case backstopv1.PhaseIdle, backstopv1.PhaseRolledBack:
		return idle(s, w, now)
	case backstopv1.PhaseProgressing, backstopv1.PhasePaused:
		return progress()
	case backstopv1.PhasePromoting:
		return promote(c, s, w, now)
	case backstopv1.PhaseRollingBack:
		return rollBack(s, w)
	default:
		return initialize(s, w)
	}
}

// wait records s and decides again after a while.
func wait(s State, after time.Duration) Decision {
	return Decision{Action: Action{Kind: ActNone}, Next: s, RequeueAfter: after}
}

// next records a transition and decides again at once.
func next(s State) Decision {
	return Decision{Action: Action{Kind: ActNone}, Next: s}
}

// settle records s and waits for a change in the cluster or the spec.
func settle(s State) Decision {
	return Decision{Action: Action{Kind: ActNone}, Next: s, Settled: true}
}

func act(s State, a Action) Decision {
	return Decision{Action: a, Next: s, RequeueAfter: Poll}
}

// initialize sets up the primary from the target, sends all traffic to it,
// and scales the target to zero.
func initialize(s State, w World) Decision {
	s.Phase = backstopv1.PhaseInitializing
	switch {
	case w.PrimaryRevision != w.TargetRevision:
		return act(s, Action{Kind: ActCopyToPrimary, Revision: w.TargetRevision})
	case !w.PrimaryReady:
		return wait(s, Poll)
	}
	if d, waiting := routesAt(s, w, Traffic{}); waiting {
		return d
	}
	if !w.CanaryDown {
		return act(s, Action{Kind: ActScaleCanaryDown})
	}
	s.Phase, s.Stable, s.Canary, s.Weight, s.Step, s.Previous = backstopv1.PhaseIdle, w.TargetRevision, "", 0, 0, ""
	d := next(s)
	d.Event = &Event{Reason: "Initialized", Message: fmt.Sprintf("Primary serves revision %s", w.TargetRevision)}
	return d
}

// routesAt makes the routes carry t and waits until the gateway has
// accepted them. It returns waiting=false once they have.
func routesAt(s State, w World, t Traffic) (Decision, bool) {
	if w.Routes.Carries == nil || !w.Routes.Carries(t) {
		s.Weight = t.Weight
		return act(s, Action{Kind: ActSetTraffic, Traffic: t}), true
	}
	if !w.Routes.Accepted {
		// A rejection holds the release here; the reconciler reports it.
		return wait(s, Poll), true
	}
	return Decision{}, false
}

// idle waits for a new revision of the target, keeping everything on the
// primary meanwhile: a route edited in the spec or by hand is put back, and
// a target scaled up by someone else is scaled down again.
func idle(s State, w World, now time.Time) Decision {
	if w.TargetRevision == s.Stable {
		if s.Phase == backstopv1.PhaseRolledBack {
			s.Phase = backstopv1.PhaseIdle
			d := next(s)
			d.Event = &Event{Reason: "RollbackComplete", Message: fmt.Sprintf("The target is back at revision %s", s.Stable)}
			return d
		}
		return keepOnPrimary(s, w)
	}
	if s.Phase == backstopv1.PhaseRolledBack && w.TargetRevision == s.Canary && w.Gate != GateRetry {
		// The failed revision is still in the target: wait for the revert
		// (or a fix) to change it, or for a retry.
		return keepOnPrimary(s, w)
	}
	retry := w.Gate == GateRetry
	s.Phase, s.Step, s.StepStart, s.Canary, s.Weight = backstopv1.PhaseProgressing, 0, now, w.TargetRevision, 0
	d := act(s, Action{Kind: ActScaleCanaryUp})
	d.GateDone = retry
	d.Event = &Event{Reason: "ReleaseStarted", Message: fmt.Sprintf("Releasing revision %s over %s", s.Canary, s.Stable)}
	if retry {
		d.Event.Reason, d.Event.Message = "ReleaseRetried", "Retrying revision "+s.Canary
	}
	return d
}

// guard handles what ends or holds a release of any strategy before its
// steps are looked at: a new revision, an abort, a failed verdict, and a
// canary that is not (yet) running. It returns handled=false when the
// release may go on.
func guard(c Common, s State, w World, now time.Time) (d Decision, handled bool) {
	if w.TargetRevision != s.Canary {
		return changedDuringRelease(s, w, now), true
	}
	if w.Gate == GateAbort {
		return startRollBack(s, "Aborted", "The release was aborted by hand", true), true
	}
	switch {
	case w.Verdict.Result == Fail && w.Verdict.Hook:
		return startRollBack(s, backstopv1.ReasonHookFailed, fmt.Sprintf("Hook %s failed: %s", strings.TrimPrefix(w.Verdict.Check, "hook/"), w.Verdict.Message), false), true
	case w.Verdict.Result == Fail:
		return startRollBack(s, "AnalysisFailed", fmt.Sprintf("Check %s failed: %s", w.Verdict.Check, w.Verdict.Message), false), true
	case w.Verdict.Result == Inconclusive && c.OnInconclusive == backstopv1.InconclusiveRollBack:
		return startRollBack(s, "AnalysisInconclusive", fmt.Sprintf("Check %s was inconclusive: %s", w.Verdict.Check, w.Verdict.Message), false), true
	}
	if !w.CanaryScaled {
		return act(s, Action{Kind: ActScaleCanaryUp}), true
	}
	if !w.CanaryReady {
		if c.DeadlinePassed(s, now) {
			return startRollBack(s, "ProgressDeadlineExceeded",
				fmt.Sprintf("The canary was not ready within %s: %s", c.ProgressDeadline, w.CanaryNotReady), false), true
		}
		return wait(s, Poll), true
	}
	return Decision{}, false
}

// keepOnPrimary holds an idle Rollout's routes and canary as they should be
// between releases, and settles once they are.
func keepOnPrimary(s State, w World) Decision {
	if d, waiting := routesAt(s, w, Traffic{}); waiting {
		return d
	}
	if !w.CanaryDown {
		return act(s, Action{Kind: ActScaleCanaryDown})
	}
	return settle(s)
}

// progress runs the steps of a canary release.
func progress(cfg Config, s State, w World, now time.Time) Decision {
	if d, handled := guard(cfg.Common, s, w, now); handled {
		return d
	}
	if w.Gate == GatePromoteFull {
		s.Phase = backstopv1.PhasePromoting
		d := next(s)
		d.GateDone = true
		d.Event = &Event{Reason: "PromotedByHand", Message: "Skipping the remaining steps to promote"}
		return d
	}
	// The weight comes from the steps, not from the recorded one: after a
	// restart between a route write and the status write, the routes
	// already carry it and nothing is written again.
	if cfg.Paused {
		// Nothing moves while paused, not even the traffic of the step.
		return pause(s, "Paused", "The release is paused (spec.paused)")
	}
	if w.Hooks.Holding {
		return holdForHooks(s, w)
	}
	if s.Step < 0 {
		return restartRelease(s, now)
	}
	weight := WeightAt(cfg.Steps, s.Step)
	if d, waiting := routesAt(s, w, releaseTraffic(cfg, weight)); waiting {
		return d
	}
	s.Weight = weight
	if w.Verdict.Result == Inconclusive {
		if w.Gate == GatePromote {
			return advance(cfg, s, w, now, true)
		}
		return pause(s, "AnalysisInconclusive", fmt.Sprintf("Check %s was inconclusive: %s; promote or abort", w.Verdict.Check, w.Verdict.Message))
	}
	if int(s.Step) >= len(cfg.Steps) {
		return advance(cfg, s, w, now, false)
	}
	if s.Phase == backstopv1.PhasePaused && !indefinitePause(cfg.Steps[s.Step]) {
		// Resumed: the step's clock starts again, so a long pause does not
		// count as analysis time.
		s.Phase, s.StepStart = backstopv1.PhaseProgressing, now
		d := next(s)
		d.Event = &Event{Reason: "Resumed", Message: fmt.Sprintf("Resumed at step %d", s.Step+1)}
		return d
	}
	return runStep(cfg, s, w, now)
}

// runStep runs the current step; the routes already carry s.Weight.
func runStep(cfg Config, s State, w World, now time.Time) Decision {
	step := cfg.Steps[s.Step]
	elapsed := now.Sub(s.StepStart)
	promote := w.Gate == GatePromote
	switch {
	case step.SetWeight != nil:
		if d, waiting := routesAt(s, w, releaseTraffic(cfg, *step.SetWeight)); waiting {
			return d
		}
		return advance(cfg, s, w, now, false)
	case step.Pause != nil && step.Pause.Duration == nil:
		if promote {
			return advance(cfg, s, w, now, true)
		}
		return pause(s, "WaitingForPromotion", fmt.Sprintf("Step %d waits to be promoted", s.Step+1))
	case step.Pause != nil:
		if promote || elapsed >= step.Pause.Duration.Duration {
			return advance(cfg, s, w, now, promote)
		}
		return until(s, step.Pause.Duration.Duration-elapsed)
	case step.Analysis != nil:
		if promote || cfg.SkipAnalysis {
			return advance(cfg, s, w, now, promote)
		}
		if elapsed < step.Analysis.Window.Duration {
			return until(s, step.Analysis.Window.Duration-elapsed)
		}
		if w.Verdict.Result == Pass {
			return advance(cfg, s, w, now, false)
		}
		return wait(s, Poll)
	}
	return advance(cfg, s, w, now, false)
}

// releaseTraffic is what the routes carry during a release at weight: the
// match throughout, the mirror while the canary gets no weighted traffic.
func releaseTraffic(cfg Config, weight int32) Traffic {
	return Traffic{Weight: weight, Match: cfg.Match, Mirror: cfg.Mirror && weight == 0}
}

// WeightAt is the canary weight during step i: that of the last setWeight
// step up to and including it.
func WeightAt(steps []backstopv1.CanaryStep, i int32) int32 {
	for j := min(int(i), len(steps)-1); j >= 0; j-- {
		if steps[j].SetWeight != nil {
			return *steps[j].SetWeight
		}
	}
	return 0
}

func indefinitePause(step backstopv1.CanaryStep) bool {
	return step.Pause != nil && step.Pause.Duration == nil
}

// holdForHooks keeps the canary without traffic until its PreRelease hooks
// have answered; one that could not be reached pauses the release for a
// person to promote past it or abort.
func holdForHooks(s State, w World) Decision {
	if w.Verdict.Result == Inconclusive {
		return pause(s, "AnalysisInconclusive", fmt.Sprintf("Check %s was inconclusive: %s; promote or abort", w.Verdict.Check, w.Verdict.Message))
	}
	return wait(s, Poll)
}

// pause holds the release, with one Event when it starts holding.
func pause(s State, reason, message string) Decision {
	why := &Event{Reason: reason, Message: message}
	if s.Phase == backstopv1.PhasePaused {
		d := settle(s)
		d.Hold = why
		return d
	}
	s.Phase = backstopv1.PhasePaused
	d := next(s)
	d.Event, d.Hold = why, why
	return d
}

// advance moves to the next step, or to promotion after the last.
func advance(cfg Config, s State, w World, now time.Time, byHand bool) Decision {
	if int(s.Step)+1 >= len(cfg.Steps) && w.Hooks.PromotionWaiting && !byHand {
		d := wait(s, Poll)
		d.AwaitsPromotionHooks = true
		return d
	}
	s.Phase, s.StepStart = backstopv1.PhaseProgressing, now
	s.Step++
	d := next(s)
	d.GateDone = byHand
	if int(s.Step) >= len(cfg.Steps) {
		s.Step = int32(len(cfg.Steps))
		d.Next = s
		d.Next.Phase = backstopv1.PhasePromoting
		d.Event = &Event{Reason: "Promoting", Message: fmt.Sprintf("All %d steps passed; promoting revision %s", len(cfg.Steps), s.Canary)}
		return d
	}
	d.Next = s
	d.Event = &Event{Reason: "StepStarted", Message: fmt.Sprintf("Step %d of %d: %s", s.Step+1, len(cfg.Steps), describe(cfg.Steps[s.Step]))}
	if byHand {
		d.Event.Message += " (promoted by hand)"
	}
	return d
}

func describe(step backstopv1.CanaryStep) string {
	switch {
	case step.SetWeight != nil:
		return fmt.Sprintf("setWeight %d", *step.SetWeight)
	case step.Pause != nil && step.Pause.Duration != nil:
		return "pause " + step.Pause.Duration.Duration.String()
	case step.Pause != nil:
		return "pause until promoted"
	case step.Analysis != nil:
		return "analysis " + step.Analysis.Window.Duration.String()
	}
	return "empty step"
}

// restartRelease starts a release again from its first step when the
// recorded step is not one of the strategy's: the strategy changed during
// the release (a canary step past the blue-green stages), or the status was
// written by hand. Which checks have run is not known, so none is taken as
// passed; the step's traffic is written by the next decision.
func restartRelease(s State, now time.Time) Decision {
	recorded := s.Step
	s.Phase, s.Step, s.StepStart = backstopv1.PhaseProgressing, 0, now
	d := next(s)
	d.Event = &Event{Warning: true, Reason: "StepOutsideStrategy",
		Message: fmt.Sprintf("status.currentStep %d is not a step of this strategy; starting again from step 1", recorded)}
	return d
}

// changedDuringRelease handles a target that moved during a release: back to
// the stable revision (the change was withdrawn, nothing to revert), or on to
// a newer one (the release starts again from the first step, with the new
// canary getting no traffic until that step gives it some).
func changedDuringRelease(s State, w World, now time.Time) Decision {
	if w.TargetRevision == s.Stable {
		s.Canary = s.Stable
		return startRollBack(s, "ReleaseWithdrawn", fmt.Sprintf("The target returned to the stable revision %s", s.Stable), false)
	}
	old := s.Canary
	s.Phase, s.Step, s.StepStart, s.Canary, s.Weight = backstopv1.PhaseProgressing, 0, now, w.TargetRevision, 0
	d := act(s, Action{Kind: ActSetTraffic})
	d.Event = &Event{Reason: "ReleaseRestarted", Message: fmt.Sprintf("Revision %s replaced %s during the release; starting again from step 1", s.Canary, old)}
	return d
}

// startRollBack sends all traffic to the primary in the same decision that
// records RollingBack: traffic never waits on anything else.
func startRollBack(s State, reason, message string, gate bool) Decision {
	s.Phase, s.Weight = backstopv1.PhaseRollingBack, 0
	d := act(s, Action{Kind: ActSetTraffic})
	d.GateDone = gate
	d.Event = &Event{Warning: reason != "ReleaseWithdrawn", Reason: reason, Message: message}
	return d
}

// promote copies the canary's template to the primary, waits until it has
// rolled out, moves all traffic to it, then scales the canary to zero. With
// a bake time, the Succeeded it records keeps the old stable revision as
// Previous and starts the bake's clock (see bake).
func promote(c Common, s State, w World, now time.Time) Decision {
	if w.PrimaryRevision != s.Canary {
		if w.TargetRevision != s.Canary {
			// A newer revision arrived before the copy: it has not been
			// checked, so it must not be promoted.
			return changedDuringRelease(s, w, now)
		}
		return act(s, Action{Kind: ActCopyToPrimary, Revision: s.Canary})
	}
	if !w.PrimaryReady {
		return wait(s, Poll)
	}
	if d, waiting := routesAt(s, w, Traffic{}); waiting {
		return d
	}
	if !w.CanaryDown {
		return act(s, Action{Kind: ActScaleCanaryDown})
	}
	old := s.Stable
	s.Phase, s.Stable, s.Weight = backstopv1.PhaseSucceeded, s.Canary, 0
	if c.BakeTime > 0 && old != "" && old != s.Stable {
		s.Previous, s.StepStart = old, now
		d := until(s, c.BakeTime)
		d.Event = &Event{Reason: "Promoted", Message: fmt.Sprintf("Revision %s is now stable; a matching alert within the bake time of %s restores revision %s",
			s.Stable, c.BakeTime, old)}
		return d
	}
	d := next(s)
	d.Event = &Event{Reason: "Promoted", Message: fmt.Sprintf("Revision %s is now stable", s.Stable)}
	return d
}

// rollBack finishes a rollback: traffic to the primary (already written when
// the rollback started; written again only if something changed it), the
// canary scaled to zero, then the revert.
func rollBack(s State, w World) Decision {
	if d, waiting := routesAt(s, w, Traffic{}); waiting {
		return d
	}
	if !w.CanaryDown {
		return act(s, Action{Kind: ActScaleCanaryDown})
	}
	if s.Canary == s.Stable {
		s.Phase, s.Canary, s.Step = backstopv1.PhaseIdle, "", 0
		d := next(s)
		d.Event = &Event{Reason: "WithdrawalComplete", Message: "Back on the stable revision; nothing to revert"}
		return d
	}
	s.Phase = backstopv1.PhaseRolledBack
	d := act(s, Action{Kind: ActRevert})
	d.RequeueAfter = 0
	d.Event = &Event{Warning: true, Reason: "RolledBack", Message: fmt.Sprintf("Revision %s was rolled back; reverting it in Git", s.Canary)}
	return d
}

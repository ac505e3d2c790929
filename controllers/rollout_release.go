package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/controllers/workload"
	"backstop.dev/backstop/router"
)

// GateAnnotation asks a Rollout for a manual step; see
// backstopv1.GateAnnotation.
const GateAnnotation = backstopv1.GateAnnotation

// gates maps the annotation's values to the plan's.
var gates = map[backstopv1.Gate]plan.Gate{
	backstopv1.GatePromote:     plan.GatePromote,
	backstopv1.GatePromoteFull: plan.GatePromoteFull,
	backstopv1.GateAbort:       plan.GateAbort,
	backstopv1.GateRetry:       plan.GateRetry,
}

// Analyzer judges a running release from its checks and alerts, recording
// what it measured in ro.Status.Analysis. The analysis package implements
// it against Prometheus.
type Analyzer interface {
	Analyze(ctx context.Context, ro *backstopv1.Rollout, now time.Time) (analysis.Outcome, error)
}

// Reverter starts the Git revert of a release that was rolled back. It must
// return quickly and be idempotent: the revert itself runs and retries on
// its own, and is recorded in status.revert.
type Reverter interface {
	Revert(ctx context.Context, ro *backstopv1.Rollout) error
}

// NoAnalysis is the Analyzer of a manager that has no SLO analysis: a
// release without checks passes; one with checks or alerts is
// inconclusive, so it holds (or rolls back, by its onInconclusive policy)
// rather than being promoted unjudged.
type NoAnalysis struct{}

// Analyze implements Analyzer.
func (NoAnalysis) Analyze(_ context.Context, ro *backstopv1.Rollout, _ time.Time) (analysis.Outcome, error) {
	a := ro.Spec.Analysis
	if ro.Spec.SkipAnalysis || a == nil || (len(a.Checks) == 0 && a.Alerts == nil) {
		return analysis.Outcome{Result: backstopv1.VerdictPass}, nil
	}
	return analysis.Outcome{Result: backstopv1.VerdictInconclusive, Check: "analysis", Message: "this manager has no SLO analysis configured"}, nil
}

// NoRevert is the Reverter of a manager that does not revert in Git: it
// records that the revert was skipped.
type NoRevert struct{}

// Revert implements Reverter.
func (NoRevert) Revert(_ context.Context, ro *backstopv1.Rollout) error {
	ro.Status.Revert = &backstopv1.RevertStatus{State: backstopv1.RevertSkipped, Message: "this manager does not revert in Git"}
	return nil
}

// release runs one decision of the state machine for a valid Rollout:
// observe, decide, perform the one side effect, then record the new state in
// ro.Status (the caller writes it). gateDone says the gate annotation was
// acted on and may be cleared once the status is written.
func (r *RolloutReconciler) release(ctx context.Context, ro *backstopv1.Rollout, decided *plan.Event) (_ ctrl.Result, gateDone bool, _ error) {
	names := workload.NamesFor(ro)
	var target appsv1.Deployment
	if err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: names.Target}, &target); err != nil {
		return ctrl.Result{}, false, err
	}
	if _, err := workload.EnsureServices(ctx, r.Client, r.APIReader, ro, &target); err != nil {
		return ctrl.Result{}, false, r.actionFailed(ctx, ro, fmt.Errorf("ensuring the Services: %w", err))
	}
	primary := &appsv1.Deployment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: names.Primary}, primary); apierrors.IsNotFound(err) {
		primary = nil
	} else if err != nil {
		return ctrl.Result{}, false, err
	}

	sc := r.syncScalers(ctx, ro, primary)
	tracked, err := r.configReader().Read(ctx, ro.Namespace, workload.ConfigRefs(target.Spec.Template))
	if err != nil {
		return ctrl.Result{}, false, fmt.Errorf("reading the ConfigMaps and Secrets the target reads: %w", err)
	}

	now := time.Now()
	from := ro.Status
	w, nextCheck, err := r.observe(ctx, ro, &target, tracked, primary, sc, now)
	if err != nil {
		return ctrl.Result{}, false, err
	}
	hookAgain := r.observeHooks(ctx, ro, &w, now)
	state := stateOf(ro.Status)
	var d plan.Decision
	if ro.Spec.Strategy.BlueGreen != nil {
		cfg := plan.BlueGreenConfigOf(&ro.Spec)
		// Only generated routes carry a preview.
		cfg.Preview = cfg.Preview && hasGeneratedRoute(ro)
		d = plan.BlueGreen(cfg, state, w, now)
	} else {
		cfg := plan.CanaryConfig(&ro.Spec)
		cfg.Match = cfg.Match && hasGeneratedRoute(ro)
		cfg.Mirror = cfg.Mirror && hasGeneratedRoute(ro)
		d = plan.Canary(cfg, state, w, now)
	}

	if d.AwaitsPromotionHooks {
		hookAgain = soonest(hookAgain, r.askPromotionHooks(ctx, ro, now))
	}
	if d.Action.Kind == plan.ActCopyToPrimary && state.Phase == backstopv1.PhasePromoting {
		// Keep the stable template before the promotion copies over it,
		// for the bake time.
		if err := r.savePrevious(ctx, ro, primary); err != nil {
			return ctrl.Result{}, false, r.actionFailed(ctx, ro, err)
		}
	}
	pause, tendScalers := scalerPause(d)
	pauseFirst := tendScalers && scalerPauseFirst(d)
	if pauseFirst {
		if err := r.pauseCanaryScalers(ctx, ro, pause); err != nil {
			if d.Action.Kind == plan.ActScaleCanaryUp {
				// KEDA would scale the canary back to the paused zero.
				return ctrl.Result{}, false, r.actionFailed(ctx, ro, fmt.Errorf("%s: %w", d.Action, err))
			}
			sc.failed = errors.Join(sc.failed, err)
		}
	}
	if err := r.perform(ctx, ro, &target, primary, sc, d.Action); err != nil {
		return ctrl.Result{}, false, r.actionFailed(ctx, ro, fmt.Errorf("%s: %w", d.Action, err))
	}
	if tendScalers && !pauseFirst {
		if err := r.pauseCanaryScalers(ctx, ro, pause); err != nil {
			sc.failed = errors.Join(sc.failed, err)
		}
	}
	var scalersAgain time.Duration
	if sc.failed != nil {
		scalersAgain = r.scalersFailed(ctx, ro, sc.failed)
	}
	if err := r.restartCanary(ctx, ro, &target, tracked, w, state, d.Next); err != nil {
		return ctrl.Result{}, false, r.actionFailed(ctx, ro, err)
	}
	if raw, ok := ro.Annotations[GateAnnotation]; ok && !d.GateDone {
		if _, known := gates[backstopv1.Gate(raw)]; !known || !backstopv1.GateApplies(state.Phase, backstopv1.Gate(raw), state.Previous != "") {
			d.GateDone = true
			r.eventf(ctx, ro, "Warning", backstopv1.ReasonGateIgnored, "Release",
				"Ignored %s=%q: it does not apply in phase %s", GateAnnotation, raw, state.Phase)
		}
	}
	if newRelease(state, d.Next) {
		// A release starts afresh: the results of the last one (kept so
		// people can see why it ended as it did) no longer apply.
		ro.Status.Analysis = nil
		ro.Status.Hooks = keepRunningPostHooks(ro.Status.Hooks)
	}
	if d.Event != nil && d.Event.Reason == "ReleaseStarted" && primary != nil {
		if changed := changedConfigs(names, primary, tracked); changed != "" {
			d.Event.Message += " (changed: " + changed + ")"
		}
	}
	r.recordSourceRevisions(ctx, ro, &target, state, d.Next)
	recordState(ro, d.Next)
	recordHistory(ro, from, d.Event, w.Verdict, now)
	if len(ro.Spec.Hooks) > 0 {
		r.postHooks(ctx, ro, now)
	}
	if setReleaseConditions(ro, d.Next, w, d.Hold) && w.Routes.Rejected != "" {
		r.eventf(ctx, ro, "Warning", backstopv1.ReasonRouteRejected, "Release", "%s", w.Routes.Rejected)
	}
	if d.Event != nil {
		*decided = *d.Event
		kind := "Normal"
		if d.Event.Warning {
			kind = "Warning"
		}
		log.FromContext(ctx).Info("Decided a transition", "reason", d.Event.Reason, "message", d.Event.Message, "phase", d.Next.Phase)
		r.eventf(ctx, ro, kind, d.Event.Reason, "Release", "%s", d.Event.Message)
	}
	after := d.RequeueAfter
	if !d.Settled && after == 0 {
		after = time.Millisecond // a transition: decide again at once
	}
	if releasing(d.Next.Phase) || baking(ro, now) {
		// The checks run throughout a release, pauses included, and the
		// alerts during the bake time, so a breach is seen within one
		// analysis interval.
		if every := analysisInterval(ro); after == 0 || after > every {
			after = every
		}
		// A check due sooner (at the end of a warm-up) is evaluated then.
		if !nextCheck.IsZero() && d.Next.Phase == state.Phase && d.Next.Step == state.Step {
			if until := max(nextCheck.Sub(now), time.Millisecond); until < after {
				after = until
			}
		}
	}
	after = soonest(after, hookAgain)
	after = soonest(after, scalersAgain)
	if tracked.HasSecret() {
		// Secrets are not watched: look at them again in a while.
		after = soonest(after, r.secretPoll())
	}
	// A revert is followed to its end even when the target returned to the
	// stable version first (the GitOps tool applied the revert before its
	// result was recorded) or a new release started.
	revertPending := ro.Status.Revert != nil && ro.Status.Revert.State == backstopv1.RevertPending
	if (d.Next.Phase == backstopv1.PhaseRolledBack || revertPending) && d.Action.Kind != plan.ActRevert {
		if again, err := r.followRevert(ctx, ro, d.Next.Phase, now); err != nil {
			return ctrl.Result{}, d.GateDone, err
		} else if again > 0 && (after == 0 || after > again) {
			after = again
		}
	}
	setRevertCondition(ro)
	linkRevertCommit(ro)
	// A release that is due to move on (a transition, the end of a
	// pause) goes before the routine looks of the analysis interval, so
	// a queue full of thousands of running releases does not hold it up.
	priority := priorityLook
	if (!d.Settled && d.RequeueAfter == 0) || (d.Due && after == d.RequeueAfter) {
		priority = priorityDue
	}
	return ctrl.Result{RequeueAfter: after, Priority: &priority}, d.GateDone, nil
}

// Priorities in the work queue, which serves the highest first among the
// Rollouts whose time has come. Changes seen by the watches come in at 0.
const (
	priorityLook = 0
	priorityDue  = 10
)

// followRevert hands a finished revert's result to the status, with an
// Event, starts a Pending one again after a restart, and tries a Failed one
// again r.RevertRetry after its last attempt, for as long as the Rollout is
// RolledBack: credentials fixed or a Git server back up need no person to
// ask for it. It returns when to look again; 0 for never.
func (r *RolloutReconciler) followRevert(ctx context.Context, ro *backstopv1.Rollout, phase backstopv1.RolloutPhase, now time.Time) (time.Duration, error) {
	st := ro.Status.Revert
	if st != nil && st.State == backstopv1.RevertPending && releaseID(ro) != st.Release {
		// Another release started: its revisions are not the reverted
		// one's, so the revert is not started again, only its result
		// taken when it ends.
		return r.collectRevert(ctx, ro)
	}
	if phase == backstopv1.PhaseRolledBack && st != nil && st.State == backstopv1.RevertFailed && st.Release != "" && st.LastAttemptTime != nil {
		if wait := st.LastAttemptTime.Add(r.revertRetry()).Sub(now); wait > 0 {
			return wait, nil
		}
		log.FromContext(ctx).Info("Trying the failed revert again", "release", st.Release)
		ro.Status.Revert = &backstopv1.RevertStatus{State: backstopv1.RevertPending, Release: st.Release,
			Message: "Trying again after: " + st.Message}
		st = ro.Status.Revert
	}
	if st == nil || st.State != backstopv1.RevertPending {
		return 0, nil
	}
	if err := r.reverter().Revert(ctx, ro); err != nil {
		return RevertPoll, err
	}
	return r.revertEnded(ctx, ro, phase == backstopv1.PhaseRolledBack)
}

// RevertCollector is a Reverter that can hand over the result of a revert
// it runs without starting one: Collect sets ro's status.revert and says
// so when the revert of status.revert.release has ended, and says whether
// it still runs.
type RevertCollector interface {
	Collect(ro *backstopv1.Rollout) (ended, running bool)
}

// collectRevert takes the result of the Pending revert of an earlier
// release. One that no longer runs (the manager restarted meanwhile) is
// recorded as Failed: it is not started for revisions that moved on.
func (r *RolloutReconciler) collectRevert(ctx context.Context, ro *backstopv1.Rollout) (time.Duration, error) {
	c, ok := r.reverter().(RevertCollector)
	ended, running := false, false
	if ok {
		ended, running = c.Collect(ro)
	}
	switch {
	case running:
		return RevertPoll, nil
	case !ended:
		st := ro.Status.Revert
		log.FromContext(ctx).Info("A revert was interrupted by a new release", "release", st.Release)
		ro.Status.Revert = &backstopv1.RevertStatus{State: backstopv1.RevertFailed, Release: st.Release,
			Message: "The revert of " + st.Release + " was interrupted (the manager restarted) after a new release started; check the repository and revert by hand if the change is still there"}
	}
	return r.revertEnded(ctx, ro, false)
}

// revertEnded records the Event of a revert's end, and says when to look
// again: for a Failed revert that is tried again (retry), RevertRetry.
func (r *RolloutReconciler) revertEnded(ctx context.Context, ro *backstopv1.Rollout, retry bool) (time.Duration, error) {
	got := ro.Status.Revert
	switch got.State {
	case backstopv1.RevertPending:
		return RevertPoll, nil
	case backstopv1.RevertPushed:
		r.eventf(ctx, ro, "Normal", "Reverted", "Revert", "%s", got.Message)
	case backstopv1.RevertConflict:
		r.eventf(ctx, ro, "Warning", "RevertConflict", "Revert", "%s", got.Message)
	case backstopv1.RevertFailed:
		if !retry {
			r.eventf(ctx, ro, "Warning", "RevertFailed", "Revert", "%s", got.Message)
			return 0, nil
		}
		r.eventf(ctx, ro, "Warning", "RevertFailed", "Revert", "%s; trying again in %s", got.Message, r.revertRetry())
		return r.revertRetry(), nil
	default:
		r.eventf(ctx, ro, "Warning", "RevertFailed", "Revert", "%s", got.Message)
	}
	return 0, nil
}

// newRelease says a decision starts a release, or starts it again for
// another revision.
func newRelease(from, to plan.State) bool {
	if !releasing(to.Phase) {
		return false
	}
	return !releasing(from.Phase) || from.Canary != to.Canary
}

func releasing(p backstopv1.RolloutPhase) bool {
	return p == backstopv1.PhaseProgressing || p == backstopv1.PhasePaused
}

// DefaultAnalysisInterval applies when spec.analysis.interval is unset.
const DefaultAnalysisInterval = time.Minute

func analysisInterval(ro *backstopv1.Rollout) time.Duration {
	if a := ro.Spec.Analysis; a != nil && a.Interval != nil && a.Interval.Duration > 0 {
		return a.Interval.Duration
	}
	return DefaultAnalysisInterval
}

// actionFailed reports a failed release action where the user looks
// (Ready=False and Reconciling=True, reason ActionFailed, and an Event when
// the message is new) and returns err, so the action is retried with
// backoff. A conflict is only retried: it says nothing to the user.
func (r *RolloutReconciler) actionFailed(ctx context.Context, ro *backstopv1.Rollout, err error) error {
	if apierrors.IsConflict(err) {
		return err
	}
	meta.RemoveStatusCondition(&ro.Status.Conditions, backstopv1.StalledCondition)
	setCondition(ro, backstopv1.ReconcilingCondition, metav1.ConditionTrue, backstopv1.ReasonActionFailed, err.Error())
	if setCondition(ro, backstopv1.ReadyCondition, metav1.ConditionFalse, backstopv1.ReasonActionFailed, err.Error()) {
		r.eventf(ctx, ro, "Warning", backstopv1.ReasonActionFailed, "Release", "%s", err.Error())
	}
	return err
}

// observe gathers what the plan decides on, and when a check is next due.
// A canary that an autoscaler sizes (sc.sized) counts as scaled once it
// runs at all: its count is the autoscaler's, not Backstop's.
func (r *RolloutReconciler) observe(ctx context.Context, ro *backstopv1.Rollout, target *appsv1.Deployment, tracked workload.Tracked,
	primary *appsv1.Deployment, sc scalers, now time.Time) (plan.World, time.Time, error) {
	w := plan.World{TargetRevision: r.targetRevision(target, tracked), Gate: gates[backstopv1.Gate(ro.Annotations[GateAnnotation])]}
	if primary != nil {
		w.PrimaryRevision = workload.Revision(primary)
		w.PrimaryReady, _ = workload.Ready(primary)
	}
	replicas := canaryReplicas(ro, target, primary)
	current := ptrValue(target.Spec.Replicas, 1)
	w.CanaryScaled = current == replicas || (sc.sized && current > 0)
	w.CanaryDown = current == 0
	if !w.CanaryDown {
		w.CanaryReady, w.CanaryNotReady = workload.Ready(target)
		if !w.CanaryReady && r.APIReader != nil && releasing(ro.Status.Phase) && ro.Status.StepStartTime != nil &&
			plan.CommonConfig(&ro.Spec).DeadlinePassed(stateOf(ro.Status), now) {
			// The release is about to be rolled back for it: say what the
			// pods say (a crash loop, an image that cannot be pulled, no
			// node to run on).
			if why, err := workload.PodTrouble(ctx, r.APIReader, target); err != nil {
				log.FromContext(ctx).Error(err, "Could not read why the canary's pods are not ready")
			} else if why != "" {
				w.CanaryNotReady += "; " + why
			}
		}
	}

	names := workload.NamesFor(ro)
	b := router.Backends{Primary: names.PrimaryService, Canary: names.CanaryService, Port: ro.Spec.Service.Port}
	rt := r.router()
	// An error answers "no": the plan then asks for the traffic to be
	// written, and that write reports the error.
	seen := map[plan.Traffic]bool{}
	w.Routes.Carries = func(t plan.Traffic) bool {
		if v, ok := seen[t]; ok {
			return v
		}
		ok, err := rt.Carries(ctx, ro, b, r.split(ro, t))
		seen[t] = ok && err == nil
		return seen[t]
	}
	acc, err := rt.Status(ctx, ro)
	if err != nil {
		return w, time.Time{}, err
	}
	w.Routes.Accepted = acc.Accepted
	if len(acc.Rejections) > 0 {
		w.Routes.Rejected = acc.Rejections[0].String()
	}

	w.Verdict = plan.Verdict{Result: plan.Pass}
	// Traffic first: a release that is being aborted, or whose target
	// changed, is decided without asking Prometheus.
	if w.Gate == plan.GateAbort || (w.TargetRevision != ro.Status.CanaryRevision && releasing(ro.Status.Phase)) {
		return w, time.Time{}, nil
	}
	if !releasing(ro.Status.Phase) && !baking(ro, now) {
		return w, time.Time{}, nil
	}
	o, err := r.analyzer().Analyze(ctx, ro, now)
	if err != nil {
		return w, time.Time{}, fmt.Errorf("analysing the release: %w", err)
	}
	w.Verdict = plan.Verdict{Result: plan.Result(o.Result), Check: o.Check, Message: o.Message}
	return w, o.Next, nil
}

// perform carries out one action of the plan. Every action is idempotent.
// A canary that an autoscaler sizes (sc.sized) is only started from zero:
// from then on its count is the autoscaler's.
func (r *RolloutReconciler) perform(ctx context.Context, ro *backstopv1.Rollout, target, primary *appsv1.Deployment, sc scalers, a plan.Action) error {
	names := workload.NamesFor(ro)
	key := types.NamespacedName{Namespace: ro.Namespace, Name: names.Target}
	switch a.Kind {
	case plan.ActCopyToPrimary:
		replicas := ptrValue(target.Spec.Replicas, 1)
		if primary != nil {
			replicas = ptrValue(primary.Spec.Replicas, 1)
		}
		if replicas == 0 {
			replicas = 1
		}
		// The primary's autoscaler twins follow at every reconcile once
		// it exists (see syncScalers).
		pc, err := r.copyConfigs(ctx, ro, target, a.Revision)
		if err != nil {
			return err
		}
		if _, _, err := workload.EnsurePrimary(ctx, r.Client, ro, target, target.Spec.Template, replicas, pc); err != nil {
			return err
		}
		if primary != nil {
			if err := r.pruneCopies(ctx, ro, workload.PrimaryConfigsOf(primary.Spec.Template).CopyRefs(), pc); err != nil {
				return err
			}
		}
		return nil
	case plan.ActScaleCanaryUp:
		if sc.sized {
			_, err := workload.ScaleFromZero(ctx, r.Client, key, canaryReplicas(ro, target, primary))
			return err
		}
		_, err := workload.Scale(ctx, r.Client, key, canaryReplicas(ro, target, primary))
		return err
	case plan.ActScaleCanaryDown:
		_, err := workload.Scale(ctx, r.Client, key, 0)
		return err
	case plan.ActSetTraffic:
		b := router.Backends{Primary: names.PrimaryService, Canary: names.CanaryService, Port: ro.Spec.Service.Port}
		_, err := r.router().Apply(ctx, ro, b, r.split(ro, a.Traffic))
		return err
	case plan.ActRestorePrevious:
		return r.restorePrevious(ctx, ro, target, a.Revision)
	case plan.ActRevert:
		return r.reverter().Revert(ctx, ro)
	}
	return nil
}

// split turns the plan's traffic into the router's, with the strategy's
// match, mirror and session affinity settings. Session affinity applies
// while the canary has weight, with the release id of the running release
// (its canary revision and start time) as the cookie's value.
func (r *RolloutReconciler) split(ro *backstopv1.Rollout, t plan.Traffic) router.Split {
	s := router.Split{CanaryWeight: t.Weight}
	if c := ro.Spec.Strategy.Canary; c != nil && c.SessionAffinity != nil && t.Weight > 0 && ro.Status.CanaryRevision != "" {
		var start time.Time
		if st := ro.Status.ReleaseStartTime; st != nil {
			start = st.Time
		}
		a := &router.Affinity{
			CookieName: c.SessionAffinity.CookieName,
			MaxAge:     backstopv1.DefaultSessionMaxAge,
			Value:      router.ReleaseID(ro.UID, ro.Status.CanaryRevision, start),
		}
		if a.CookieName == "" {
			a.CookieName = backstopv1.DefaultSessionCookieName
		}
		if d := c.SessionAffinity.MaxAge; d != nil {
			a.MaxAge = d.Duration
		}
		s.Affinity = a
	}
	if t.Match {
		if c := ro.Spec.Strategy.Canary; c != nil {
			s.Match = c.Match
		}
		if bg := ro.Spec.Strategy.BlueGreen; bg != nil {
			s.Match = bg.Preview
			s.PreviewHostnames = bg.PreviewHostnames
		}
	}
	if t.Mirror && ro.Spec.Strategy.Canary != nil && ro.Spec.Strategy.Canary.Mirror != nil {
		s.MirrorPercent = ro.Spec.Strategy.Canary.Mirror.Percent
	}
	return s
}

// canaryReplicas is the size of the target during a release: the primary's
// size for blue-green, a share of it for a canary. A target that an
// autoscaler sizes starts at it, and then runs what the autoscaler says.
func canaryReplicas(ro *backstopv1.Rollout, target, primary *appsv1.Deployment) int32 {
	size := int32(1)
	if primary != nil {
		size = max(ptrValue(primary.Spec.Replicas, 1), 1)
	}
	if c := ro.Spec.Strategy.Canary; c != nil {
		return workload.CanaryReplicas(size, c.ReplicaPercent)
	}
	return size
}

func hasGeneratedRoute(ro *backstopv1.Rollout) bool {
	for _, rt := range ro.Spec.Routes {
		if !rt.Existing {
			return true
		}
	}
	return false
}

func ptrValue(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// stateOf and recordState map the plan's state to and from the status.
func stateOf(st backstopv1.RolloutStatus) plan.State {
	s := plan.State{Phase: st.Phase, Step: st.CurrentStep, Weight: st.CanaryWeight, Stable: st.StableRevision, Canary: st.CanaryRevision,
		Previous: st.PreviousStableRevision}
	if st.StepStartTime != nil {
		s.StepStart = st.StepStartTime.Time
	}
	return s
}

func recordState(ro *backstopv1.Rollout, s plan.State) {
	st := &ro.Status
	st.Phase, st.CurrentStep, st.CanaryWeight, st.StableRevision, st.CanaryRevision = s.Phase, s.Step, s.Weight, s.Stable, s.Canary
	st.PreviousStableRevision = s.Previous
	if s.StepStart.IsZero() {
		st.StepStartTime = nil
	} else {
		t := metav1.NewTime(s.StepStart.Truncate(time.Second))
		st.StepStartTime = &t
	}
}

// clearGate removes the gate annotation once the state it led to is recorded.
func (r *RolloutReconciler) clearGate(ctx context.Context, ro *backstopv1.Rollout) error {
	if _, ok := ro.Annotations[GateAnnotation]; !ok {
		return nil
	}
	patch := []byte(`{"metadata":{"annotations":{"` + GateAnnotation + `":null}}}`)
	obj := &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: ro.Name}}
	if err := r.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("clearing the %s annotation: %w", GateAnnotation, err)
	}
	return nil
}

func (r *RolloutReconciler) router() *router.Router {
	return &router.Router{Client: r.Client, FieldOwner: ControllerName, Stored: &r.routesStored}
}

func (r *RolloutReconciler) analyzer() Analyzer {
	if r.Analyzer == nil {
		return NoAnalysis{}
	}
	return r.Analyzer
}

func (r *RolloutReconciler) revertRetry() time.Duration {
	if r.RevertRetry <= 0 {
		return DefaultRevertRetry
	}
	return r.RevertRetry
}

func (r *RolloutReconciler) reverter() Reverter {
	if r.Reverter == nil {
		return NoRevert{}
	}
	return r.Reverter
}

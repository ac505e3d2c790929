package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/hooks"
)

// maxHookStatuses bounds status.hooks (the API's MaxItems).
const maxHookStatuses = 128

// hookPoll is how soon a release with a hook call under way is looked at
// again if the call's end did not wake it.
const hookPoll = 5 * time.Second

// HookBody is the JSON body every hook call POSTs (docs/hooks.md).
type HookBody struct {
	// Name and Namespace of the Rollout.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Hook is the hook's name, Type its type.
	Hook string              `json:"hook"`
	Type backstopv1.HookType `json:"type"`
	// Phase of the Rollout when the call was made.
	Phase backstopv1.RolloutPhase `json:"phase"`
	// StableRevision and CanaryRevision are the pod template revisions of
	// the primary and of the release; the source revisions are the Git
	// revisions the GitOps tool applied them from, when known.
	StableRevision       string `json:"stableRevision,omitempty"`
	CanaryRevision       string `json:"canaryRevision"`
	StableSourceRevision string `json:"stableSourceRevision,omitempty"`
	CanarySourceRevision string `json:"canarySourceRevision,omitempty"`
	// Step is the canary step (from 1) a Step hook is called for.
	Step int32 `json:"step,omitempty"`
	// CanaryWeight is the share of traffic the canary has.
	CanaryWeight int32 `json:"canaryWeight"`
	// Metadata is the hook's spec.hooks[].metadata.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// hookCall is one call of a hook: the status entry that records it and the
// key the Runner knows it by.
type hookCall struct {
	hook  *backstopv1.Hook
	entry *backstopv1.HookStatus
}

// observeHooks brings status.hooks up to date for this reconcile and tells
// the plan where the hooks stand: it takes the answers of ended calls,
// starts the calls that are due (PreRelease once the canary is ready, Step
// when a step starts, PostPromotion and PostRollback after the outcome),
// starts again a call a restarted manager lost, and turns a failed or
// inconclusive answer into the release's verdict. It returns how soon to
// look again while a call is under way; zero for no need.
func (r *RolloutReconciler) observeHooks(ctx context.Context, ro *backstopv1.Rollout, w *plan.World, now time.Time) time.Duration {
	if len(ro.Spec.Hooks) == 0 {
		return 0
	}
	st := &ro.Status
	rev := st.CanaryRevision
	releasingNow := releasing(st.Phase) && w.TargetRevision == rev
	for i := range ro.Spec.Hooks {
		h := &ro.Spec.Hooks[i]
		switch h.Type {
		case backstopv1.HookPreRelease:
			if releasingNow && w.CanaryReady {
				r.due(ctx, ro, h, rev, 0, now)
			}
		case backstopv1.HookStep:
			if releasingNow && w.CanaryReady && preReleasePassed(ro) {
				if step, ok := stepHookDue(ro, h); ok {
					r.due(ctx, ro, h, rev, step, now)
				}
			}
		}
	}
	r.postHooks(ctx, ro, now)
	running := r.collectHooks(ctx, ro)

	// Where the hooks of the running release stand, for the plan.
	if !releasingNow {
		return pollIf(running)
	}
	for i := range ro.Spec.Hooks {
		h := &ro.Spec.Hooks[i]
		e := findHook(st.Hooks, h.Name, rev, 0)
		switch h.Type {
		case backstopv1.HookPreRelease:
			// An inconclusive answer holds the first step until a person
			// promotes past it.
			hold := e == nil || e.Result == backstopv1.HookRunning ||
				(e.Result == backstopv1.HookInconclusive && st.CurrentStep == 0 && w.Gate != plan.GatePromote)
			w.Hooks.Holding = w.Hooks.Holding || hold
		case backstopv1.HookPrePromotion:
			w.Hooks.PromotionWaiting = w.Hooks.PromotionWaiting || e == nil || e.Result != backstopv1.HookPass
		}
	}
	hookVerdict(ro, w)
	return pollIf(running)
}

// postHooks starts the PostPromotion hooks of a release that status.history
// records as promoted, and the PostRollback hooks of one it records as
// rolled back while the Rollout is still rolling back or rolled back. It is
// called before the decision (for a restarted manager) and after it, so a
// hook is called as soon as the outcome is recorded.
func (r *RolloutReconciler) postHooks(ctx context.Context, ro *backstopv1.Rollout, now time.Time) {
	st := &ro.Status
	last := lastRelease(st)
	if last == nil {
		return
	}
	for i := range ro.Spec.Hooks {
		h := &ro.Spec.Hooks[i]
		switch {
		case h.Type == backstopv1.HookPostPromotion && st.Phase == backstopv1.PhaseSucceeded &&
			last.Outcome == backstopv1.OutcomePromoted && last.ToRevision == st.StableRevision:
			r.due(ctx, ro, h, st.StableRevision, 0, now)
		case h.Type == backstopv1.HookPostRollback && (st.Phase == backstopv1.PhaseRollingBack || st.Phase == backstopv1.PhaseRolledBack) &&
			last.Outcome == backstopv1.OutcomeRolledBack && last.ToRevision == st.CanaryRevision:
			r.due(ctx, ro, h, st.CanaryRevision, 0, now)
		}
	}
}

// hookVerdict makes a failed PreRelease or Step hook of the running release
// its verdict, and an inconclusive one (every attempt timed out) its
// verdict while the release is still at the step it was called for, so
// that a person who promotes past it is not asked again.
func hookVerdict(ro *backstopv1.Rollout, w *plan.World) {
	st := &ro.Status
	for _, e := range st.Hooks {
		if e.Revision != st.CanaryRevision || e.Type == backstopv1.HookPostPromotion || e.Type == backstopv1.HookPostRollback {
			continue
		}
		v := plan.Verdict{Check: "hook/" + e.Name, Message: e.Message, Hook: true}
		switch {
		case e.Result == backstopv1.HookFail && e.Type != backstopv1.HookPrePromotion:
			v.Result = plan.Fail
			w.Verdict = v
			return
		case e.Result == backstopv1.HookInconclusive && hookStep(e) == st.CurrentStep && w.Verdict.Result != plan.Fail:
			v.Result = plan.Inconclusive
			w.Verdict = v
		}
	}
}

// hookStep is the release step (from 0) a hook's answer belongs to: the
// first for a PreRelease hook, its own for a Step hook, the current one
// for a PrePromotion gate (asked at the last step).
func hookStep(e backstopv1.HookStatus) int32 {
	switch e.Type {
	case backstopv1.HookStep:
		return e.Step - 1
	case backstopv1.HookPreRelease:
		return 0
	}
	return -1
}

// askPromotionHooks asks the PrePromotion gates of a release that waits on
// them: the first time, and again retryInterval after a gate said no or
// could not be reached. It returns how soon to look again.
func (r *RolloutReconciler) askPromotionHooks(ctx context.Context, ro *backstopv1.Rollout, now time.Time) time.Duration {
	st := &ro.Status
	next := time.Duration(0)
	for i := range ro.Spec.Hooks {
		h := &ro.Spec.Hooks[i]
		if h.Type != backstopv1.HookPrePromotion {
			continue
		}
		e := findHook(st.Hooks, h.Name, st.CanaryRevision, 0)
		switch {
		case e == nil:
			r.due(ctx, ro, h, st.CanaryRevision, 0, now)
			next = soonest(next, hookPoll)
		case e.Result == backstopv1.HookRunning:
			next = soonest(next, hookPoll)
		case e.Result != backstopv1.HookPass:
			again := retryInterval(h)
			if e.Time != nil && now.Sub(e.Time.Time) < again {
				next = soonest(next, e.Time.Add(again).Sub(now))
				continue
			}
			e.Result, e.Message = backstopv1.HookRunning, "Asking again after: "+e.Message
			r.start(ctx, ro, h, e)
			next = soonest(next, hookPoll)
		}
	}
	return next
}

// due records a call of h for revision rev (and step, for Step hooks) as
// running and starts it, unless one is already recorded.
func (r *RolloutReconciler) due(ctx context.Context, ro *backstopv1.Rollout, h *backstopv1.Hook, rev string, step int32, now time.Time) {
	if findHook(ro.Status.Hooks, h.Name, rev, step) != nil {
		return
	}
	ro.Status.Hooks = append(ro.Status.Hooks, backstopv1.HookStatus{Name: h.Name, Type: h.Type, Step: step, Revision: rev, Result: backstopv1.HookRunning})
	boundHooks(&ro.Status)
	e := &ro.Status.Hooks[len(ro.Status.Hooks)-1]
	r.start(ctx, ro, h, e)
}

// start hands the call that e records to the Runner; the Runner makes it
// once per key however often it is started.
func (r *RolloutReconciler) start(ctx context.Context, ro *backstopv1.Rollout, h *backstopv1.Hook, e *backstopv1.HookStatus) {
	url, err := r.hookURL(ctx, ro, h)
	if err != nil {
		t := metav1.NewTime(time.Now().Truncate(time.Second))
		e.Result, e.Message, e.Time = backstopv1.HookInconclusive, err.Error(), &t
		r.eventf(ctx, ro, "Warning", "HookInconclusive", "Hook", "Hook %s: %s", h.Name, err.Error())
		return
	}
	st := ro.Status
	body, _ := json.Marshal(HookBody{
		Name: ro.Name, Namespace: ro.Namespace, Hook: h.Name, Type: h.Type, Phase: st.Phase,
		StableRevision: st.StableRevision, CanaryRevision: e.Revision,
		StableSourceRevision: st.StableSourceRevision, CanarySourceRevision: st.CanarySourceRevision,
		Step: e.Step, CanaryWeight: st.CanaryWeight, Metadata: h.Metadata,
	})
	req := hooks.Request{URL: url, Body: body, Attempts: 3}
	if h.Timeout != nil {
		req.Timeout = h.Timeout.Duration
	}
	if h.Attempts != nil {
		req.Attempts = int(*h.Attempts)
	}
	r.hookRunner().Start(ctx, hookKey(ro, e), req)
}

// collectHooks takes the answers of the calls status.hooks records as
// running, starting again those the Runner does not know (the manager
// restarted), and says whether any is still under way.
func (r *RolloutReconciler) collectHooks(ctx context.Context, ro *backstopv1.Rollout) bool {
	running := false
	for i := range ro.Status.Hooks {
		e := &ro.Status.Hooks[i]
		if e.Result != backstopv1.HookRunning {
			continue
		}
		a, started, done := r.hookRunner().Answer(hookKey(ro, e))
		if !started {
			if h := specHook(ro, e.Name); h != nil {
				r.start(ctx, ro, h, e)
			}
			running = running || e.Result == backstopv1.HookRunning
			continue
		}
		if !done {
			running = true
			continue
		}
		t := metav1.NewTime(a.Time.Truncate(time.Second))
		e.Attempts, e.Message, e.Time = int32(a.Attempts), a.Message, &t
		switch {
		case a.Result == hooks.Pass:
			e.Result = backstopv1.HookPass
		case a.Result == hooks.Fail && e.Type == backstopv1.HookPrePromotion:
			e.Result = backstopv1.HookWaiting
			r.eventf(ctx, ro, "Normal", "WaitingForPromotionHook", "Hook", "Hook %s holds the promotion: %s", e.Name, a.Message)
		case a.Result == hooks.Fail:
			e.Result = backstopv1.HookFail
			r.eventf(ctx, ro, "Warning", backstopv1.ReasonHookFailed, "Hook", "Hook %s (%s) failed: %s", e.Name, e.Type, a.Message)
		default:
			e.Result = backstopv1.HookInconclusive
			r.eventf(ctx, ro, "Warning", "HookInconclusive", "Hook", "Hook %s (%s) was inconclusive: %s", e.Name, e.Type, a.Message)
		}
	}
	return running
}

// hookURL is the URL a hook posts to: its url, or the key of the Secret
// urlSecretRef names. Errors name the Secret and key, never the value.
func (r *RolloutReconciler) hookURL(ctx context.Context, ro *backstopv1.Rollout, h *backstopv1.Hook) (string, error) {
	ref := h.URLSecretRef
	if ref == nil {
		return h.URL, nil
	}
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	var s corev1.Secret
	if err := reader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}, &s); err != nil {
		return "", fmt.Errorf("reading the URL from Secret %s: %w", ref.Name, err)
	}
	v := strings.TrimSpace(string(s.Data[ref.Key]))
	if v == "" {
		return "", fmt.Errorf("secret %s has no key %s for the URL", ref.Name, ref.Key)
	}
	// Only http and https, as spec.hooks[].url: a file:, unix: or other
	// scheme in the Secret is refused before any call.
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("key %s of Secret %s is not an http or https URL", ref.Key, ref.Name)
	}
	return v, nil
}

// hookKey is the Runner's key of the call e records: one per Rollout,
// revision, hook, step and, for a gate asked again, the time of the answer
// it asks again after.
func hookKey(ro *backstopv1.Rollout, e *backstopv1.HookStatus) string {
	after := int64(0)
	if e.Type == backstopv1.HookPrePromotion && e.Time != nil {
		after = e.Time.Unix()
	}
	return ro.Namespace + "/" + ro.Name + "@" + e.Revision + "/" + e.Name + "/" + strconv.Itoa(int(e.Step)) + "/" + strconv.FormatInt(after, 10)
}

// hookRunner is the Runner of this reconciler, made on first use; the end
// of a call wakes its Rollout.
func (r *RolloutReconciler) hookRunner() *hooks.Runner {
	r.hookOnce.Do(func() {
		if r.Hooks == nil {
			r.Hooks = &hooks.Runner{}
		}
		if r.Hooks.Done == nil {
			r.Hooks.Done = r.wakeHookRollout
		}
	})
	return r.Hooks
}

// wakeHookRollout has the Rollout of a hook call that ended looked at now.
func (r *RolloutReconciler) wakeHookRollout(key string) {
	if r.wake == nil {
		return
	}
	ns, rest, _ := strings.Cut(key, "/")
	name, _, _ := strings.Cut(rest, "@")
	select {
	case r.wake <- event.GenericEvent{Object: &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}:
	default:
	}
}

// stepHookDue says a Step hook is due at the release's current step, and
// which step (from 1) that is.
func stepHookDue(ro *backstopv1.Rollout, h *backstopv1.Hook) (int32, bool) {
	st := ro.Status
	if ro.Spec.Strategy.BlueGreen != nil {
		// Blue-green calls Step hooks once, when its checks start.
		return 1, st.CurrentStep == plan.BlueGreenAnalysisStage
	}
	steps := plan.Steps(ro.Spec.Strategy.Canary)
	step := st.CurrentStep + 1
	if int(st.CurrentStep) >= len(steps) || st.CanaryWeight != plan.WeightAt(steps, st.CurrentStep) {
		// Called once the step's traffic is in place.
		return 0, false
	}
	return step, len(h.Steps) == 0 || slices.Contains(h.Steps, step)
}

// preReleasePassed says every PreRelease hook of the running release has
// answered (or was promoted past), so its steps may call their hooks.
func preReleasePassed(ro *backstopv1.Rollout) bool {
	for i := range ro.Spec.Hooks {
		h := &ro.Spec.Hooks[i]
		if h.Type != backstopv1.HookPreRelease {
			continue
		}
		if e := findHook(ro.Status.Hooks, h.Name, ro.Status.CanaryRevision, 0); e == nil || e.Result == backstopv1.HookRunning {
			return false
		}
	}
	return true
}

func findHook(list []backstopv1.HookStatus, name, rev string, step int32) *backstopv1.HookStatus {
	for i := range list {
		if e := &list[i]; e.Name == name && e.Revision == rev && e.Step == step {
			return e
		}
	}
	return nil
}

func specHook(ro *backstopv1.Rollout, name string) *backstopv1.Hook {
	for i := range ro.Spec.Hooks {
		if ro.Spec.Hooks[i].Name == name {
			return &ro.Spec.Hooks[i]
		}
	}
	return nil
}

func lastRelease(st *backstopv1.RolloutStatus) *backstopv1.ReleaseRecord {
	if len(st.History) == 0 {
		return nil
	}
	return &st.History[0]
}

// keepRunningPostHooks is what a new release keeps of status.hooks: the
// PostPromotion and PostRollback calls of the last release still under
// way.
func keepRunningPostHooks(list []backstopv1.HookStatus) []backstopv1.HookStatus {
	var out []backstopv1.HookStatus
	for _, e := range list {
		if e.Result == backstopv1.HookRunning && (e.Type == backstopv1.HookPostPromotion || e.Type == backstopv1.HookPostRollback) {
			out = append(out, e)
		}
	}
	return out
}

// boundHooks drops the oldest answered entries beyond maxHookStatuses.
func boundHooks(st *backstopv1.RolloutStatus) {
	for len(st.Hooks) > maxHookStatuses {
		i := slices.IndexFunc(st.Hooks, func(e backstopv1.HookStatus) bool { return e.Result != backstopv1.HookRunning })
		if i < 0 {
			i = 0
		}
		st.Hooks = slices.Delete(st.Hooks, i, i+1)
	}
}

// DefaultHookRetryInterval applies when a PrePromotion hook's
// retryInterval is unset.
const DefaultHookRetryInterval = 30 * time.Second

func retryInterval(h *backstopv1.Hook) time.Duration {
	if h.RetryInterval != nil && h.RetryInterval.Duration > 0 {
		return h.RetryInterval.Duration
	}
	return DefaultHookRetryInterval
}

func pollIf(running bool) time.Duration {
	if running {
		return hookPoll
	}
	return 0
}

// soonest is the earlier of two waits, zero meaning none.
func soonest(a, b time.Duration) time.Duration {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

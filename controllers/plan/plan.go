// Package plan decides a Rollout's next move. It is pure: given the state
// recorded in the Rollout's status, what the reconciler observed in the
// cluster and the time, it returns one side effect to perform and the state
// to record once that side effect has succeeded. It performs nothing itself,
// so every sequence of decisions can be replayed in tests (see the golden
// files under testdata/).
//
// The contract with the reconciler that makes a release restart-safe:
//
//  1. Observe the world (template revisions, readiness, routes, verdicts).
//  2. Call Canary (or another strategy's plan) with the recorded State.
//  3. Perform Decision.Action. Every action is idempotent: performing it
//     again when the world already matches writes nothing.
//  4. Only if the action succeeded, record Decision.Next in status.
//
// A manager killed between 3 and 4 re-observes the world on restart, gets the
// same decision, performs an action that is already done (no write), and
// records the state it failed to record before.
package plan

import (
	"fmt"
	"time"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// State is what the plan keeps between decisions; the reconciler stores it
// in the Rollout's status.
type State struct {
	Phase backstopv1.RolloutPhase
	// Step is the index of the running canary step.
	Step int32
	// StepStart is when the running step began (or the release, for step 0).
	StepStart time.Time
	// Weight is the canary weight last decided.
	Weight int32
	// Stable is the template revision the primary serves.
	Stable string
	// Canary is the template revision being released, or the last one that
	// failed once the release is RolledBack.
	Canary string
	// Previous is the revision the primary served before the last
	// promotion, kept in phase Succeeded while the bake time
	// (Common.BakeTime, counted from StepStart) runs: a matching alert in
	// that time restores it. Empty otherwise.
	Previous string
}

// World is what the reconciler observed in the cluster for this decision.
type World struct {
	// TargetRevision is the revision (template hash) of the target's pod
	// template: the candidate.
	TargetRevision string
	// PrimaryRevision is the revision of the primary's template; empty when
	// the primary does not exist.
	PrimaryRevision string
	// PrimaryReady and CanaryReady say whether those Deployments have
	// rolled out and are available (observedGeneration, updated and
	// available replicas). CanaryReady is read only during a release.
	PrimaryReady bool
	CanaryReady  bool
	// CanaryNotReady says why the canary is not ready, for messages.
	CanaryNotReady string
	// CanaryScaled says the target runs the canary's replica count, or,
	// when an autoscaler sizes the canary, runs at all: the count is then
	// the autoscaler's, and ActScaleCanaryUp only starts it from zero.
	CanaryScaled bool
	// CanaryDown says the target is scaled to zero.
	CanaryDown bool
	// Routes is what the routes carry.
	Routes Routes
	// Verdict is the analysis verdict for the running release, or, during
	// the bake time after a promotion, for the alerts alone.
	Verdict Verdict
	// Gate is a manual command waiting to be acted on.
	Gate Gate
	// Hooks is where the release's hooks (spec.hooks) stand.
	Hooks Hooks
}

// Hooks is where a release's hooks stand, as the reconciler found them.
type Hooks struct {
	// Holding says a PreRelease hook has not answered yet: no traffic may
	// move to the canary until it has.
	Holding bool
	// PromotionWaiting says a PrePromotion gate has not said yes: the
	// release may not be promoted, except by hand.
	PromotionWaiting bool
}

// Traffic is what the routes carry.
type Traffic struct {
	// Weight is the percentage of requests sent to the canary.
	Weight int32
	// Match sends the requests that match the strategy's match
	// (canary.match, or blueGreen.preview) to the canary.
	Match bool
	// Mirror copies stable traffic to the canary (canary.mirror).
	Mirror bool
}

func (t Traffic) String() string {
	out := fmt.Sprint(t.Weight)
	if t.Match {
		out += ",match"
	}
	if t.Mirror {
		out += ",mirror"
	}
	return out
}

// Routes is the observed state of the Rollout's routes.
type Routes struct {
	// Carries reports whether every route carries t already (so that
	// writing t would change nothing). It must not write.
	Carries func(t Traffic) bool
	// Accepted says every parent accepted every route at its current
	// generation.
	Accepted bool
	// Rejected quotes a parent that rejected a route; empty when none did.
	Rejected string
}

// Result is an analysis outcome.
type Result string

const (
	// Pending: no verdict yet (warm-up, or the window has not ended).
	Pending Result = ""
	// Pass: every check passed.
	Pass Result = "Pass"
	// Fail: a check reached its failure limit, or a matching alert fired.
	Fail Result = "Fail"
	// Inconclusive: a check reached its inconclusive limit.
	Inconclusive Result = "Inconclusive"
)

// Verdict is the aggregate outcome of the checks of a release.
type Verdict struct {
	Result Result
	// Check names the check that decided a Fail or Inconclusive result.
	Check string
	// Message says what the check saw, such as "0.052 > 0.01".
	Message string
	// Hook says Check names a hook (hook/<name>) rather than a check.
	Hook bool
}

// Gate is a manual command.
type Gate string

const (
	// NoGate: nothing asked.
	NoGate Gate = ""
	// GatePromote ends the running pause or analysis step now.
	GatePromote Gate = "Promote"
	// GatePromoteFull skips every remaining step and promotes.
	GatePromoteFull Gate = "PromoteFull"
	// GateAbort rolls the release back.
	GateAbort Gate = "Abort"
	// GateRetry releases again a revision that was rolled back.
	GateRetry Gate = "Retry"
)

// ActionKind is a side effect.
type ActionKind string

const (
	// ActNone: nothing to do; record Next and wait.
	ActNone ActionKind = "None"
	// ActCopyToPrimary: make the primary run the template of revision
	// Action.Revision (the target's template). Used at initialisation and
	// promotion.
	ActCopyToPrimary ActionKind = "CopyToPrimary"
	// ActScaleCanaryUp: scale the target to the canary's replica count.
	ActScaleCanaryUp ActionKind = "ScaleCanaryUp"
	// ActScaleCanaryDown: scale the target to zero.
	ActScaleCanaryDown ActionKind = "ScaleCanaryDown"
	// ActSetTraffic: make every route carry Action.Traffic.
	ActSetTraffic ActionKind = "SetTraffic"
	// ActRevert: start the Git revert of the failed release. The revert runs
	// and retries on its own; the plan does not wait for it.
	ActRevert ActionKind = "Revert"
	// ActRestorePrevious: make the primary run the template of revision
	// Action.Revision again: the stable revision before the last promotion,
	// which the reconciler saved before the promotion copied over it. Used
	// when an alert fires during the bake time.
	ActRestorePrevious ActionKind = "RestorePrevious"
)

// Action is one side effect.
type Action struct {
	Kind ActionKind
	// Traffic is for ActSetTraffic.
	Traffic
	// Revision is for ActCopyToPrimary and ActRestorePrevious.
	Revision string
}

func (a Action) String() string {
	switch a.Kind {
	case ActSetTraffic:
		return fmt.Sprintf("SetTraffic(%s)", a.Traffic)
	case ActCopyToPrimary, ActRestorePrevious:
		return fmt.Sprintf("%s(%s)", a.Kind, a.Revision)
	default:
		return string(a.Kind)
	}
}

// Event is something worth telling the user, as a Kubernetes Event.
type Event struct {
	Warning bool
	Reason  string
	Message string
}

// Decision is the plan's answer.
type Decision struct {
	// Action is the one side effect to perform now.
	Action Action
	// Next is the state to record after Action succeeded.
	Next State
	// RequeueAfter is when to decide again at the latest; zero (with
	// Settled false) means at once. The reconciler also decides again
	// whenever a watched object changes.
	RequeueAfter time.Duration
	// Settled says nothing will happen until a watched object, the spec or
	// a gate changes: no timer is running.
	Settled bool
	// Due says RequeueAfter is when a timer of the release ends (a pause,
	// an analysis window, the bake time, a delay): the moment it is due to
	// move on, rather than a poll.
	Due bool
	// Event, when set, is recorded after Next is.
	Event *Event
	// Hold, when set, says why a paused release holds (spec.paused, an
	// inconclusive check, a step waiting to be promoted), at every decision
	// while it does, so the conditions can say so after the Event.
	Hold *Event
	// GateDone says Next acted on World.Gate, which may now be cleared.
	GateDone bool
	// AwaitsPromotionHooks says the release would be promoted now but
	// waits for its PrePromotion gates (World.Hooks.PromotionWaiting):
	// the reconciler asks them.
	AwaitsPromotionHooks bool
}

// until records s and decides again when a timer of the release ends,
// after d.
func until(s State, d time.Duration) Decision {
	out := wait(s, d)
	out.Due = true
	return out
}

// Poll is how soon the plan looks again while it waits on the cluster (a
// Deployment rolling out, a gateway accepting a route). Watches usually
// wake the reconciler sooner.
const Poll = 2 * time.Second

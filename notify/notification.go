// Package notify posts a Rollout's phase changes to chat and webhook
// receivers: a generic JSON webhook, Slack-compatible and Microsoft
// Teams-compatible endpoints. A Dispatcher queues each message and posts it
// beside the state machine, with retries; the receiver's URL is read from a
// Secret when the message is sent and never shown anywhere.
package notify

import (
	"time"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// EventType is the type field of every notification.
const EventType = "backstop.dev/phase-change"

// Version is the version field of the notification's JSON shape; fields
// may be added within a version, never renamed or removed.
const Version = "v1"

// Notification is one recorded phase change of a Rollout, and the body the
// Webhook type posts (see docs/notifications.md).
type Notification struct {
	// Type is always EventType.
	Type string `json:"type"`
	// Version is always Version.
	Version string `json:"version"`
	// Time is when the phase change was recorded.
	Time time.Time `json:"time"`
	// Namespace and Rollout name the Rollout.
	Namespace string `json:"namespace"`
	Rollout   string `json:"rollout"`
	// Phase is the phase the Rollout entered; PreviousPhase the one it
	// left (empty for a new Rollout).
	Phase         backstopv1.RolloutPhase `json:"phase"`
	PreviousPhase backstopv1.RolloutPhase `json:"previousPhase,omitempty"`
	// Reason and Message are those of the decision that changed the
	// phase, as its Event shows them; empty when no decision was made
	// (a new Rollout).
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Warning says the decision's Event is a Warning (a rollback, an
	// abort).
	Warning bool `json:"warning"`
	// Strategy is canary or blueGreen.
	Strategy string `json:"strategy"`
	// Step is the canary step the release is at, or stopped at; absent
	// for blue-green and outside a release.
	Step *Step `json:"step,omitempty"`
	// CanaryWeight is the percentage of traffic the canary gets.
	CanaryWeight int32 `json:"canaryWeight"`
	// StableRevision and CanaryRevision are pod template hashes of the
	// primary and the candidate.
	StableRevision string `json:"stableRevision,omitempty"`
	CanaryRevision string `json:"canaryRevision,omitempty"`
	// StableSourceRevision and CanarySourceRevision are their source
	// (Git) revisions, as the GitOps tool reported them.
	StableSourceRevision string `json:"stableSourceRevision,omitempty"`
	CanarySourceRevision string `json:"canarySourceRevision,omitempty"`
	// FailedCheck names the check (or hook/<name>) that failed the
	// release, on a rollback.
	FailedCheck string `json:"failedCheck,omitempty"`
	// RevertCommit is the commit that reverted the release in Git, when
	// it is already known.
	RevertCommit string `json:"revertCommit,omitempty"`
}

// Step is a canary step, counted from 1.
type Step struct {
	Current int32 `json:"current"`
	Total   int32 `json:"total"`
}

// PhaseChange is the notification of after's phase, entered from before's.
// totalSteps is the number of canary steps (the short form expanded); now
// is when the change was recorded. The caller fills in the decision's
// Reason, Message and Warning.
func PhaseChange(before, after *backstopv1.Rollout, totalSteps int32, now time.Time) Notification {
	st := after.Status
	n := Notification{
		Type: EventType, Version: Version, Time: now.UTC(),
		Namespace: after.Namespace, Rollout: after.Name,
		Phase: st.Phase, PreviousPhase: before.Status.Phase,
		Strategy: "canary", CanaryWeight: st.CanaryWeight,
		StableRevision: st.StableRevision, CanaryRevision: st.CanaryRevision,
		StableSourceRevision: st.StableSourceRevision, CanarySourceRevision: st.CanarySourceRevision,
	}
	if after.Spec.Strategy.BlueGreen != nil {
		n.Strategy = "blueGreen"
	} else if totalSteps > 0 && inRelease(st.Phase) {
		n.Step = &Step{Current: min(st.CurrentStep+1, totalSteps), Total: totalSteps}
	}
	if rollingBack(st.Phase) && len(st.History) > 0 {
		if h := st.History[0]; h.Outcome == backstopv1.OutcomeRolledBack && h.ToRevision == st.CanaryRevision {
			n.FailedCheck, n.RevertCommit = h.FailedCheck, h.RevertCommit
		}
	}
	if rv := st.Revert; n.RevertCommit == "" && rollingBack(st.Phase) && rv != nil && rv.State == backstopv1.RevertPushed &&
		rv.Release == after.Namespace+"/"+after.Name+"@"+st.CanaryRevision {
		n.RevertCommit = rv.Commit
	}
	return n
}

// inRelease lists the phases that have a canary step to show: those of a
// running release, and those of one that stopped.
func inRelease(p backstopv1.RolloutPhase) bool {
	switch p {
	case backstopv1.PhaseProgressing, backstopv1.PhasePaused, backstopv1.PhasePromoting,
		backstopv1.PhaseRollingBack, backstopv1.PhaseRolledBack:
		return true
	}
	return false
}

func rollingBack(p backstopv1.RolloutPhase) bool {
	return p == backstopv1.PhaseRollingBack || p == backstopv1.PhaseRolledBack
}

// Selects says whether a target's phases select a change to phase: empty
// selects every phase but Initializing.
func Selects(phases []backstopv1.RolloutPhase, phase backstopv1.RolloutPhase) bool {
	if len(phases) == 0 {
		return phase != backstopv1.PhaseInitializing
	}
	for _, p := range phases {
		if p == phase {
			return true
		}
	}
	return false
}

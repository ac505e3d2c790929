package controllers

import (
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
	"backstop.dev/backstop/internal/text"
)

// maxHistoryMessage bounds a history entry's message (the API's MaxLength).
const maxHistoryMessage = 1024

// recordHistory keeps status.history and status.releaseStartTime as a
// decision from state from to ro's recorded state changes them: a release
// that starts gets its start time; one that ends (promoted, rolled back,
// withdrawn or replaced by a newer revision) gets an entry, newest first;
// a promotion undone in its bake time has its entry turned into a
// rollback. from is the status before the decision; ev is its Event.
func recordHistory(ro *backstopv1.Rollout, from backstopv1.RolloutStatus, ev *plan.Event, v plan.Verdict, now time.Time) {
	st := &ro.Status
	entry := backstopv1.ReleaseRecord{
		FromRevision: from.StableRevision, ToRevision: from.CanaryRevision,
		FromSourceRevision: from.StableSourceRevision, ToSourceRevision: from.CanarySourceRevision,
		StartTime: from.ReleaseStartTime, EndTime: metav1.NewTime(now.Truncate(time.Second)),
	}
	if ev != nil {
		entry.Reason, entry.Message = ev.Reason, text.Truncate(ev.Message, maxHistoryMessage)
		if strings.HasPrefix(ev.Reason, "Analysis") || ev.Reason == "AlertAfterPromotion" || ev.Reason == backstopv1.ReasonHookFailed {
			entry.FailedCheck = v.Check
		}
	}
	ongoing := releasing(from.Phase) || from.Phase == backstopv1.PhasePromoting
	switch {
	case ongoing && st.Phase == backstopv1.PhaseRollingBack:
		entry.Outcome = backstopv1.OutcomeRolledBack
		if entry.Reason == "ReleaseWithdrawn" {
			entry.Outcome = backstopv1.OutcomeWithdrawn
		}
		addHistory(st, entry)
	case ongoing && st.Phase == backstopv1.PhaseSucceeded:
		entry.Outcome = backstopv1.OutcomePromoted
		addHistory(st, entry)
	case ongoing && releasing(st.Phase) && st.CanaryRevision != from.CanaryRevision:
		entry.Outcome = backstopv1.OutcomeReplaced
		addHistory(st, entry)
	case from.Phase == backstopv1.PhaseSucceeded && st.Phase == backstopv1.PhaseRollingBack:
		// The promotion of from.StableRevision is undone in its bake time.
		for i := range st.History {
			if h := &st.History[i]; h.ToRevision == from.StableRevision && h.Outcome == backstopv1.OutcomePromoted {
				h.Outcome, h.Reason, h.Message, h.FailedCheck, h.EndTime = backstopv1.OutcomeRolledBack, entry.Reason, entry.Message, entry.FailedCheck, entry.EndTime
				break
			}
		}
	}
	if releasing(st.Phase) && (!releasing(from.Phase) || from.CanaryRevision != st.CanaryRevision) {
		t := metav1.NewTime(now.Truncate(time.Second))
		st.ReleaseStartTime = &t
	}
}

// addHistory puts e first in the history and drops the oldest beyond
// HistoryLimit.
func addHistory(st *backstopv1.RolloutStatus, e backstopv1.ReleaseRecord) {
	st.History = append([]backstopv1.ReleaseRecord{e}, st.History...)
	if len(st.History) > backstopv1.HistoryLimit {
		st.History = st.History[:backstopv1.HistoryLimit]
	}
}

// linkRevertCommit puts a pushed revert's commit on the history entry of
// the release it reverted.
func linkRevertCommit(ro *backstopv1.Rollout) {
	rv := ro.Status.Revert
	if rv == nil || rv.State != backstopv1.RevertPushed || rv.Commit == "" {
		return
	}
	_, revision, ok := strings.Cut(rv.Release, "@")
	if !ok {
		return
	}
	for i := range ro.Status.History {
		h := &ro.Status.History[i]
		if h.ToRevision == revision && h.Outcome == backstopv1.OutcomeRolledBack {
			h.RevertCommit = rv.Commit
			return
		}
	}
}

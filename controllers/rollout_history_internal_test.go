package controllers

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
)

func TestRecordHistory(t *testing.T) {
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	now := start.Add(7 * time.Minute)
	at := func(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }
	running := backstopv1.RolloutStatus{Phase: backstopv1.PhaseProgressing, StableRevision: "aaa", CanaryRevision: "bbb",
		StableSourceRevision: "main@sha1:1111", CanarySourceRevision: "main@sha1:2222", ReleaseStartTime: at(start)}
	promoted := backstopv1.ReleaseRecord{FromRevision: "aaa", ToRevision: "bbb", Outcome: backstopv1.OutcomePromoted,
		Reason: "Promoted", EndTime: metav1.NewTime(start)}
	failed := plan.Verdict{Result: plan.Fail, Check: "error-rate", Message: "0.3 > 0.01"}
	tests := []struct {
		name        string
		from        backstopv1.RolloutStatus
		to          backstopv1.RolloutStatus
		ev          *plan.Event
		verdict     plan.Verdict
		wantHistory []backstopv1.ReleaseRecord
		wantStart   *metav1.Time
	}{{
		name:    "a failed check rolls the release back",
		from:    running,
		to:      backstopv1.RolloutStatus{Phase: backstopv1.PhaseRollingBack, StableRevision: "aaa", CanaryRevision: "bbb", ReleaseStartTime: at(start)},
		ev:      &plan.Event{Warning: true, Reason: "AnalysisFailed", Message: "Check error-rate failed: 0.3 > 0.01"},
		verdict: failed,
		wantHistory: []backstopv1.ReleaseRecord{{FromRevision: "aaa", ToRevision: "bbb", FromSourceRevision: "main@sha1:1111", ToSourceRevision: "main@sha1:2222",
			Outcome: backstopv1.OutcomeRolledBack, Reason: "AnalysisFailed", FailedCheck: "error-rate", Message: "Check error-rate failed: 0.3 > 0.01",
			StartTime: at(start), EndTime: metav1.NewTime(now)}},
		wantStart: at(start),
	}, {
		name:    "an abort names no check",
		from:    running,
		to:      backstopv1.RolloutStatus{Phase: backstopv1.PhaseRollingBack, StableRevision: "aaa", CanaryRevision: "bbb"},
		ev:      &plan.Event{Warning: true, Reason: "Aborted", Message: "The release was aborted by hand"},
		verdict: plan.Verdict{Result: plan.Pass},
		wantHistory: []backstopv1.ReleaseRecord{{FromRevision: "aaa", ToRevision: "bbb", FromSourceRevision: "main@sha1:1111", ToSourceRevision: "main@sha1:2222",
			Outcome: backstopv1.OutcomeRolledBack, Reason: "Aborted", Message: "The release was aborted by hand", StartTime: at(start), EndTime: metav1.NewTime(now)}},
	}, {
		name: "a promotion",
		from: func() backstopv1.RolloutStatus { s := running; s.Phase = backstopv1.PhasePromoting; return s }(),
		to:   backstopv1.RolloutStatus{Phase: backstopv1.PhaseSucceeded, StableRevision: "bbb"},
		ev:   &plan.Event{Reason: "Promoted", Message: "Revision bbb is now stable"},
		wantHistory: []backstopv1.ReleaseRecord{{FromRevision: "aaa", ToRevision: "bbb", FromSourceRevision: "main@sha1:1111", ToSourceRevision: "main@sha1:2222",
			Outcome: backstopv1.OutcomePromoted, Reason: "Promoted", Message: "Revision bbb is now stable", StartTime: at(start), EndTime: metav1.NewTime(now)}},
	}, {
		name: "the target returns to the stable revision",
		from: running,
		to:   backstopv1.RolloutStatus{Phase: backstopv1.PhaseRollingBack, StableRevision: "aaa", CanaryRevision: "aaa"},
		ev:   &plan.Event{Reason: "ReleaseWithdrawn", Message: "The target returned to the stable revision aaa"},
		wantHistory: []backstopv1.ReleaseRecord{{FromRevision: "aaa", ToRevision: "bbb", FromSourceRevision: "main@sha1:1111", ToSourceRevision: "main@sha1:2222",
			Outcome: backstopv1.OutcomeWithdrawn, Reason: "ReleaseWithdrawn", Message: "The target returned to the stable revision aaa", StartTime: at(start), EndTime: metav1.NewTime(now)}},
	}, {
		name: "a newer revision replaces the candidate and starts a release of its own",
		from: running,
		to:   backstopv1.RolloutStatus{Phase: backstopv1.PhaseProgressing, StableRevision: "aaa", CanaryRevision: "ccc", ReleaseStartTime: at(start)},
		ev:   &plan.Event{Reason: "ReleaseRestarted", Message: "Revision ccc replaced bbb during the release; starting again from step 1"},
		wantHistory: []backstopv1.ReleaseRecord{{FromRevision: "aaa", ToRevision: "bbb", FromSourceRevision: "main@sha1:1111", ToSourceRevision: "main@sha1:2222",
			Outcome: backstopv1.OutcomeReplaced, Reason: "ReleaseRestarted", Message: "Revision ccc replaced bbb during the release; starting again from step 1",
			StartTime: at(start), EndTime: metav1.NewTime(now)}},
		wantStart: at(now),
	}, {
		name:      "a release that starts gets its start time and no entry",
		from:      backstopv1.RolloutStatus{Phase: backstopv1.PhaseIdle, StableRevision: "aaa"},
		to:        backstopv1.RolloutStatus{Phase: backstopv1.PhaseProgressing, StableRevision: "aaa", CanaryRevision: "bbb"},
		ev:        &plan.Event{Reason: "ReleaseStarted"},
		wantStart: at(now),
	}, {
		name: "a step that passes changes nothing",
		from: running,
		to: func() backstopv1.RolloutStatus {
			s := running
			s.CurrentStep = 1
			return s
		}(),
		ev:        &plan.Event{Reason: "StepStarted"},
		wantStart: at(start),
	}, {
		name:    "an alert in the bake time turns the promotion into a rollback",
		from:    backstopv1.RolloutStatus{Phase: backstopv1.PhaseSucceeded, StableRevision: "bbb", PreviousStableRevision: "aaa", History: []backstopv1.ReleaseRecord{promoted}},
		to:      backstopv1.RolloutStatus{Phase: backstopv1.PhaseRollingBack, StableRevision: "aaa", CanaryRevision: "bbb", History: []backstopv1.ReleaseRecord{promoted}},
		ev:      &plan.Event{Warning: true, Reason: "AlertAfterPromotion", Message: "Check alerts failed within the bake time"},
		verdict: plan.Verdict{Result: plan.Fail, Check: "alerts"},
		wantHistory: []backstopv1.ReleaseRecord{{FromRevision: "aaa", ToRevision: "bbb", Outcome: backstopv1.OutcomeRolledBack,
			Reason: "AlertAfterPromotion", FailedCheck: "alerts", Message: "Check alerts failed within the bake time", EndTime: metav1.NewTime(now)}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ro := &backstopv1.Rollout{Status: tc.to}
			recordHistory(ro, tc.from, tc.ev, tc.verdict, now)
			if got, want := toJSON(t, ro.Status.History), toJSON(t, tc.wantHistory); got != want {
				t.Errorf("history:\n got %s\nwant %s", got, want)
			}
			if got, want := toJSON(t, ro.Status.ReleaseStartTime), toJSON(t, tc.wantStart); got != want {
				t.Errorf("releaseStartTime = %s, want %s", got, want)
			}
		})
	}
}

func TestHistoryIsBounded(t *testing.T) {
	st := &backstopv1.RolloutStatus{}
	for i := range backstopv1.HistoryLimit + 3 {
		addHistory(st, backstopv1.ReleaseRecord{ToRevision: string(rune('a' + i))})
	}
	if len(st.History) != backstopv1.HistoryLimit {
		t.Fatalf("history holds %d entries, want %d", len(st.History), backstopv1.HistoryLimit)
	}
	if got, want := st.History[0].ToRevision, string(rune('a'+backstopv1.HistoryLimit+2)); got != want {
		t.Errorf("newest entry = %s, want %s first", got, want)
	}
}

func TestLinkRevertCommit(t *testing.T) {
	ro := &backstopv1.Rollout{Status: backstopv1.RolloutStatus{
		Revert: &backstopv1.RevertStatus{State: backstopv1.RevertPushed, Release: "shop/app@bbb", Commit: "c0ffee"},
		History: []backstopv1.ReleaseRecord{
			{ToRevision: "ccc", Outcome: backstopv1.OutcomeReplaced},
			{ToRevision: "bbb", Outcome: backstopv1.OutcomeRolledBack},
			{ToRevision: "bbb", Outcome: backstopv1.OutcomeRolledBack},
		},
	}}
	linkRevertCommit(ro)
	got := []string{ro.Status.History[0].RevertCommit, ro.Status.History[1].RevertCommit, ro.Status.History[2].RevertCommit}
	if strings.Join(got, ",") != ",c0ffee," {
		t.Errorf("revert commits = %q, want only the newest rollback of bbb to carry c0ffee", got)
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package main

import (
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// The golden files show a fixed set of Rollouts, created once in the
// namespaces shop and payments and labelled golden=true (so that -A with
// that selector leaves out the Rollouts of other tests):
//
//   - shop/app: a canary of explicit steps, mid-release at step 4 of 7, with
//     checks (one failing), hooks and more Events than the view shows;
//   - shop/cart: a blue-green release in its analysis stage;
//   - shop/search: a short-form canary that was rolled back, with its
//     revert pushed and a history of four releases;
//   - payments/api: a short-form canary mid-release (step 3 of 6);
//   - payments/ledger: a canary whose last release succeeded.
var (
	fixturesOnce sync.Once
	// fixturesCreated is the creation time of the newest fixture.
	fixturesCreated time.Time
)

// goldenFixtures creates the fixtures on first use and returns the time
// `get` is run at: a day and two hours after the newest was created, so
// that every AGE reads 26h.
func goldenFixtures(t *testing.T) time.Time {
	t.Helper()
	fixturesOnce.Do(func() { createFixtures(t) })
	if fixturesCreated.IsZero() {
		t.Fatal("the golden fixtures could not be created")
	}
	return fixturesCreated.Add(26 * time.Hour)
}

func createFixtures(t *testing.T) {
	namespace(t, "shop")
	namespace(t, "payments")
	var made []*backstopv1.Rollout
	add := func(ro *backstopv1.Rollout, st backstopv1.RolloutStatus) *backstopv1.Rollout {
		ro.Labels = map[string]string{"golden": "true"}
		made = append(made, create(t, ro, &st))
		return ro
	}

	app := rollout("shop", "app", canarySteps())
	app.Spec.Hooks = []backstopv1.Hook{
		{Name: "smoke", Type: backstopv1.HookPreRelease, URL: "http://smoke.shop.svc/run"},
		{Name: "load-test", Type: backstopv1.HookStep, URL: "http://loadgen.shop.svc/start", Steps: []int32{3, 4}},
	}
	app = add(app, backstopv1.RolloutStatus{
		Phase:                backstopv1.PhaseProgressing,
		CurrentStep:          3,
		ReleaseStartTime:     before(12 * time.Minute),
		StepStartTime:        before(2 * time.Minute),
		CanaryWeight:         20,
		StableRevision:       "5f6d7c8b9",
		CanaryRevision:       "7c9d6f8b4",
		StableSourceRevision: "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
		CanarySourceRevision: "9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e",
		Conditions: conditions(metav1.ConditionFalse, "Progressing", "Releasing revision 7c9d6f8b4: step 4, 20% of traffic",
			metav1.Condition{Type: backstopv1.ReconcilingCondition, Status: metav1.ConditionTrue, Reason: "Progressing", Message: "Releasing revision 7c9d6f8b4: step 4, 20% of traffic"}),
		Analysis: &backstopv1.AnalysisStatus{Revision: "7c9d6f8b4", Checks: []backstopv1.CheckResult{
			{Name: "error-rate", Verdict: backstopv1.VerdictPass, Value: "0.0042", Bound: "<= 0.01", LastEvaluationTime: before(20 * time.Second)},
			{Name: "latency-p99", Verdict: backstopv1.VerdictFail, Value: "0.41", Bound: "<= 0.3", Failures: 1, Message: "0.41 > 0.3", LastEvaluationTime: before(20 * time.Second)},
			{Name: "alerts", Verdict: backstopv1.VerdictPass, Value: "none firing", Bound: "no firing alert matching rollout=app,severity=critical", LastEvaluationTime: before(20 * time.Second)},
		}},
		Hooks: []backstopv1.HookStatus{
			{Name: "smoke", Type: backstopv1.HookPreRelease, Revision: "7c9d6f8b4", Result: backstopv1.HookPass, Message: "200 OK", Attempts: 1, Time: before(11 * time.Minute)},
			{Name: "load-test", Type: backstopv1.HookStep, Step: 3, Revision: "7c9d6f8b4", Result: backstopv1.HookPass, Message: "202 Accepted: load test started", Attempts: 2, Time: before(4 * time.Minute)},
			{Name: "load-test", Type: backstopv1.HookStep, Step: 4, Revision: "7c9d6f8b4", Result: backstopv1.HookRunning, Attempts: 1, Time: before(2 * time.Minute)},
		},
	})
	for _, e := range []struct {
		name, typ, reason, note string
		at                      time.Duration
		count                   int32
	}{
		{"a", "Normal", "SpecValid", "The spec is valid and every reference resolves", 3 * time.Hour, 1},
		{"b", "Normal", "ReleaseStarted", "Releasing revision 7c9d6f8b4 over 5f6d7c8b9", 12 * time.Minute, 1},
		{"c", "Normal", "StepStarted", "Step 1 of 7: setWeight 5", 11 * time.Minute, 1},
		{"d", "Normal", "StepStarted", "Step 2 of 7: analysis 5m0s", 11 * time.Minute, 1},
		{"e", "Normal", "Paused", "The release is paused (spec.paused)", 9 * time.Minute, 1},
		{"f", "Normal", "Resumed", "Resumed at step 2", 7 * time.Minute, 1},
		{"g", "Normal", "StepStarted", "Step 3 of 7: setWeight 20", 6 * time.Minute, 1},
		{"h", "Normal", "StepStarted", "Step 4 of 7: analysis 10m0s", 2 * time.Minute, 1},
		{"i", "Warning", "GateIgnored", `Ignored backstop.dev/gate="retry": it does not apply in phase Progressing`, 20 * time.Second, 2},
		{"j", "Normal", "Initialized", "Primary serves revision 5f6d7c8b9", 26 * time.Hour, 1},
	} {
		recordEvent(t, app, e.name, e.typ, e.reason, e.note, t0.Add(-e.at), e.count)
	}

	cart := add(rollout("shop", "cart", backstopv1.Strategy{BlueGreen: &backstopv1.BlueGreenStrategy{
		Preview:        &backstopv1.TrafficMatch{Headers: []gwapiv1.HTTPHeaderMatch{{Name: "x-preview", Value: "1"}}},
		Analysis:       &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: 5 * time.Minute}},
		AutoPromote:    ptr.To(false),
		ScaleDownDelay: &metav1.Duration{Duration: time.Minute},
	}}), backstopv1.RolloutStatus{
		Phase:            backstopv1.PhaseProgressing,
		CurrentStep:      1,
		ReleaseStartTime: before(4 * time.Minute),
		StepStartTime:    before(3 * time.Minute),
		StableRevision:   "2d3e4f5a6",
		CanaryRevision:   "3e4f5a6b7",
		Conditions:       conditions(metav1.ConditionFalse, "Progressing", "Releasing revision 3e4f5a6b7: step 2, 0% of traffic"),
		Analysis: &backstopv1.AnalysisStatus{Revision: "3e4f5a6b7", Checks: []backstopv1.CheckResult{
			{Name: "error-rate", Verdict: backstopv1.VerdictPass, Value: "0", Bound: "<= 0.01", LastEvaluationTime: before(30 * time.Second)},
			{Name: "latency-p99", Verdict: backstopv1.VerdictInconclusive, Bound: "<= 0.3", Inconclusive: 2, Message: "the query returned no series", LastEvaluationTime: before(30 * time.Second)},
		}},
	})
	recordEvent(t, cart, "a", "Normal", "ReleaseStarted", "Releasing revision 3e4f5a6b7 over 2d3e4f5a6", t0.Add(-4*time.Minute), 1)
	recordEvent(t, cart, "b", "Normal", "StepStarted", "Blue-green analysis", t0.Add(-3*time.Minute), 1)

	search := rollout("shop", "search", shortForm(25, 0, 2*time.Minute))
	search.Spec.Revert = &backstopv1.RevertSpec{Source: &backstopv1.GitSource{URL: "https://git.example.com/shop/deploy.git", Branch: "main", Path: "apps/search"}}
	search = add(search, backstopv1.RolloutStatus{
		Phase:                backstopv1.PhaseRolledBack,
		CurrentStep:          3,
		ReleaseStartTime:     before(20 * time.Minute),
		StepStartTime:        before(10 * time.Minute),
		StableRevision:       "4b5c6d7e8",
		CanaryRevision:       "6d7e8f9a0",
		StableSourceRevision: "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
		CanarySourceRevision: "fedcba9876543210fedcba9876543210fedcba98",
		Conditions: conditions(metav1.ConditionFalse, "RolledBack", "Revision 6d7e8f9a0 was rolled back; revision 4b5c6d7e8 serves all traffic. AnalysisFailed: Check error-rate failed: value 0.052, bound <= 0.01: above the maximum",
			metav1.Condition{Type: backstopv1.StalledCondition, Status: metav1.ConditionTrue, Reason: "RolledBack", Message: "Revision 6d7e8f9a0 was rolled back; revision 4b5c6d7e8 serves all traffic. AnalysisFailed: Check error-rate failed: value 0.052, bound <= 0.01: above the maximum"},
			metav1.Condition{Type: backstopv1.RevertedCondition, Status: metav1.ConditionTrue, Reason: "Pushed", Message: "Pushed c0ffee123456 to main"}),
		Analysis: &backstopv1.AnalysisStatus{Revision: "6d7e8f9a0", Checks: []backstopv1.CheckResult{
			{Name: "error-rate", Verdict: backstopv1.VerdictFail, Value: "0.052", Bound: "<= 0.01", Failures: 2, Message: "above the maximum", LastEvaluationTime: before(8 * time.Minute)},
			{Name: "latency-p99", Verdict: backstopv1.VerdictPass, Value: "0.12", Bound: "<= 0.3", LastEvaluationTime: before(8 * time.Minute)},
		}},
		Revert: &backstopv1.RevertStatus{
			State:      backstopv1.RevertPushed,
			Release:    "shop/search@6d7e8f9a0",
			Repository: "https://git.example.com/shop/deploy.git",
			Branch:     "main",
			Commit:     "c0ffee1234567890abcdef1234567890abcdef12",
			Reverted: []backstopv1.RevertedCommit{
				{Commit: "fedcba9876543210fedcba9876543210fedcba98", Reason: "changed apps/search between 0a1b2c3d4e5f and fedcba987654"},
				{Commit: "8765432109abcdef8765432109abcdef87654321", Reason: "changed apps/search between 0a1b2c3d4e5f and fedcba987654"},
			},
			Message:         "Reverted 2 commits: pushed c0ffee123456 to main",
			Attempts:        1,
			LastAttemptTime: before(7 * time.Minute),
		},
		History: []backstopv1.ReleaseRecord{
			{
				FromRevision: "4b5c6d7e8", ToRevision: "6d7e8f9a0", ToSourceRevision: "fedcba9876543210fedcba9876543210fedcba98",
				Outcome: backstopv1.OutcomeRolledBack, Reason: "AnalysisFailed", FailedCheck: "error-rate",
				Message: "Check error-rate failed: value 0.052, bound <= 0.01: above the maximum", RevertCommit: "c0ffee1234567890abcdef1234567890abcdef12",
				StartTime: before(20 * time.Minute), EndTime: *before(8 * time.Minute),
			},
			{
				FromRevision: "3a4b5c6d7", ToRevision: "4b5c6d7e8", ToSourceRevision: "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
				Outcome: backstopv1.OutcomePromoted, Reason: "Promoted", Message: "Revision 4b5c6d7e8 is now stable",
				StartTime: before(50 * time.Hour), EndTime: *before(50*time.Hour - 17*time.Minute),
			},
			{
				FromRevision: "3a4b5c6d7", ToRevision: "5c6d7e8f9",
				Outcome: backstopv1.OutcomeReplaced, Reason: "ReleaseRestarted", Message: "Revision 4b5c6d7e8 replaced 5c6d7e8f9 during the release; starting again from step 1",
				StartTime: before(50*time.Hour + 6*time.Minute), EndTime: *before(50 * time.Hour),
			},
			{
				FromRevision: "3a4b5c6d7", ToRevision: "3a4b5c6d7",
				Outcome: backstopv1.OutcomeWithdrawn, Reason: "ReleaseWithdrawn", Message: "The target returned to the stable revision 3a4b5c6d7",
				EndTime: *before(9 * 24 * time.Hour),
			},
		},
	})
	recordEvent(t, search, "a", "Warning", "AnalysisFailed", "Check error-rate failed: value 0.052, bound <= 0.01: above the maximum", t0.Add(-8*time.Minute), 1)
	recordEvent(t, search, "b", "Warning", "RolledBack", "Revision 6d7e8f9a0 was rolled back; reverting it in Git", t0.Add(-8*time.Minute), 1)
	recordEvent(t, search, "c", "Normal", "Reverted", "Reverted 2 commits: pushed c0ffee123456 to main", t0.Add(-7*time.Minute), 1)

	add(rollout("payments", "api", shortForm(10, 30, 5*time.Minute)), backstopv1.RolloutStatus{
		Phase:          backstopv1.PhasePaused,
		CurrentStep:    2,
		StepStartTime:  before(time.Minute),
		CanaryWeight:   20,
		StableRevision: "7a8b9c0d1",
		CanaryRevision: "8b9c0d1e2",
		Conditions:     conditions(metav1.ConditionFalse, "Paused", "Release of revision 8b9c0d1e2 paused at step 3, 20% of traffic"),
	})
	add(rollout("payments", "ledger", shortForm(50, 0, time.Minute)), backstopv1.RolloutStatus{
		Phase:          backstopv1.PhaseSucceeded,
		StableRevision: "9c0d1e2f3",
		CanaryRevision: "9c0d1e2f3",
		Conditions:     conditions(metav1.ConditionTrue, "Succeeded", "Revision 9c0d1e2f3 serves all traffic"),
	})

	for _, ro := range made {
		if c := ro.CreationTimestamp.Time; c.After(fixturesCreated) {
			fixturesCreated = c
		}
	}
}

// conditions are a Ready condition and more.
func conditions(ready metav1.ConditionStatus, reason, message string, more ...metav1.Condition) []metav1.Condition {
	all := append([]metav1.Condition{{Type: backstopv1.ReadyCondition, Status: ready, Reason: reason, Message: message}}, more...)
	for i := range all {
		all[i].LastTransitionTime = *before(2 * time.Minute)
	}
	return all
}

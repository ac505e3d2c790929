package plan

import (
	"testing"
	"time"

	"k8s.io/utils/ptr"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

const bakeTime = 10 * time.Minute

// bakeSim is a canary sim whose Rollout has a bake time, with the
// reconciler asking about alerts every minute meanwhile.
func bakeSim() *sim {
	cfg := config()
	cfg.BakeTime = bakeTime
	s := newSim(cfg)
	s.analysisEvery = time.Minute
	return s
}

// bakingFor holds once the bake time has run for d.
func bakingFor(d time.Duration) func(*sim) bool {
	return func(s *sim) bool {
		return s.state.Phase == backstopv1.PhaseSucceeded && s.state.Previous != "" && s.now.Sub(s.state.StepStart) >= d
	}
}

func alertFiring(s *sim) {
	s.verdict = Verdict{Result: Fail, Check: "alerts", Message: "HighErrorRate firing"}
}

// TestBakeSequences replays the scenarios of a bake time after promotion
// (spec.analysis.alerts.bakeTime) and compares the decisions with their
// golden files (run with -update to rewrite them).
func TestBakeSequences(t *testing.T) {
	always := func(*sim) bool { return true }
	released := func(s *sim) bool { return s.state.Phase == backstopv1.PhaseIdle && s.target == "v1" }
	promoteAtLastPause := func(s *sim) { s.gate = GatePromote }
	runGolden(t, "canary", map[string]func() *sim{
		// v2 is promoted and watched for 10 minutes; an alert fires after
		// 3: the primary runs v1 again, and v2 is rolled back and reverted
		// in Git. The revert lands and the target returns to v1.
		"bake-alert-after-promotion": func() *sim {
			return bakeSim().
				on(always, passing).
				on(released, release("v2")).
				on(inPhase(backstopv1.PhasePaused), promoteAtLastPause).
				on(bakingFor(3*time.Minute), alertFiring).
				on(inPhase(backstopv1.PhaseRolledBack), release("v1"))
		},
		// No alert within the bake time: v1 is let go and the Rollout
		// settles in Succeeded.
		"bake-time-passes": func() *sim {
			return bakeSim().
				on(always, passing).
				on(released, release("v2")).
				on(inPhase(backstopv1.PhasePaused), promoteAtLastPause)
		},
		// The manager dies after restoring v1 on the primary and before
		// recording the rollback, and the alert resolves meanwhile: on
		// restart the rollback goes on; v2 is not promoted again.
		"bake-restart-after-restore": func() *sim {
			return bakeSim().
				on(always, passing).
				on(released, release("v2")).
				on(inPhase(backstopv1.PhasePaused), promoteAtLastPause).
				on(bakingFor(3*time.Minute), alertFiring).
				on(func(s *sim) bool { return s.state.Previous != "" && s.verdict.Result == Fail },
					func(s *sim) { s.crashBeforeRecord = true }).
				on(func(s *sim) bool { return s.state.Phase == backstopv1.PhaseSucceeded && s.primary == "v1" }, passing).
				on(inPhase(backstopv1.PhaseRolledBack), release("v1"))
		},
		// v3 arrives during the bake of v2: the bake ends and v3 is
		// released over v2 as usual, then baked in turn.
		"bake-new-revision": func() *sim {
			return bakeSim().
				on(always, passing).
				on(released, release("v2")).
				on(inPhase(backstopv1.PhasePaused), promoteAtLastPause).
				on(bakingFor(3*time.Minute), release("v3")).
				on(func(s *sim) bool { return s.state.Phase == backstopv1.PhasePaused && s.state.Canary == "v3" },
					func(s *sim) { s.gate = GatePromoteFull })
		},
		// The abort gate during the bake time acts as an alert does.
		"bake-abort": func() *sim {
			return bakeSim().
				on(always, passing).
				on(released, release("v2")).
				on(inPhase(backstopv1.PhasePaused), promoteAtLastPause).
				on(bakingFor(5*time.Minute), func(s *sim) { s.gate = GateAbort }).
				on(inPhase(backstopv1.PhaseRolledBack), release("v1"))
		},
	})
	runGolden(t, "bluegreen", map[string]func() *sim{
		// After the scale-down delay v2 is copied to the primary; an alert
		// during the bake time restores v1 on the primary (its pods were
		// scaled down, so this is a rollout of the primary, not a switch).
		"bake-alert-after-promotion": func() *sim {
			s := blueGreenSim(func(c *BlueGreenConfig) { c.BakeTime = bakeTime })
			s.analysisEvery = time.Minute
			return s.
				on(always, passing).
				on(released, release("v2")).
				on(bakingFor(2*time.Minute), alertFiring).
				on(inPhase(backstopv1.PhaseRolledBack), release("v1"))
		},
	})
}

func TestBakeConfig(t *testing.T) {
	tests := []struct {
		name string
		spec backstopv1.RolloutSpec
		want time.Duration
	}{
		{name: "no analysis", spec: backstopv1.RolloutSpec{}, want: 0},
		{name: "alerts without bake time", spec: backstopv1.RolloutSpec{Analysis: &backstopv1.AnalysisSpec{Alerts: &backstopv1.AlertGuard{}}}, want: 0},
		{name: "bake time", spec: backstopv1.RolloutSpec{Analysis: &backstopv1.AnalysisSpec{Alerts: &backstopv1.AlertGuard{BakeTime: dur(15 * time.Minute)}}}, want: 15 * time.Minute},
		{name: "skipAnalysis judges nothing, after promotion either", spec: backstopv1.RolloutSpec{SkipAnalysis: true,
			Analysis: &backstopv1.AnalysisSpec{Alerts: &backstopv1.AlertGuard{BakeTime: dur(15 * time.Minute)}}}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Strategy.Canary = &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](10)}}}
			if got := CanaryConfig(&tt.spec).BakeTime; got != tt.want {
				t.Errorf("CanaryConfig().BakeTime = %s, want %s", got, tt.want)
			}
			tt.spec.Strategy.Canary, tt.spec.Strategy.BlueGreen = nil, &backstopv1.BlueGreenStrategy{}
			if got := BlueGreenConfigOf(&tt.spec).BakeTime; got != tt.want {
				t.Errorf("BlueGreenConfigOf().BakeTime = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestPromotionRecordsPrevious: the decision that records Succeeded keeps
// the old stable revision and starts the bake's clock only with a bake time.
func TestPromotionRecordsPrevious(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := State{Phase: backstopv1.PhasePromoting, Step: 6, StepStart: now.Add(-time.Hour), Stable: "v1", Canary: "v2"}
	w := World{TargetRevision: "v2", PrimaryRevision: "v2", PrimaryReady: true, CanaryDown: true,
		Routes: Routes{Carries: func(t Traffic) bool { return t == Traffic{} }, Accepted: true}}
	for _, tt := range []struct {
		name      string
		bake      time.Duration
		previous  string
		stepStart time.Time
		requeue   time.Duration
	}{
		{name: "no bake time", bake: 0, previous: "", stepStart: s.StepStart, requeue: 0},
		{name: "bake time", bake: bakeTime, previous: "v1", stepStart: now, requeue: bakeTime},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := common()
			c.BakeTime = tt.bake
			d := decide(c, s, w, now, nil)
			if d.Action.Kind != ActNone || d.Next.Phase != backstopv1.PhaseSucceeded || d.Next.Stable != "v2" ||
				d.Next.Previous != tt.previous || !d.Next.StepStart.Equal(tt.stepStart) || d.RequeueAfter != tt.requeue || d.Settled {
				t.Errorf("decided %s -> %+v requeue %s settled %v; want Succeeded, stable v2, previous %q, stepStart %s, requeue %s",
					d.Action, d.Next, d.RequeueAfter, d.Settled, tt.previous, tt.stepStart, tt.requeue)
			}
		})
	}
}

// TestBake decides single rounds of the bake time.
func TestBake(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	baking := State{Phase: backstopv1.PhaseSucceeded, Step: 6, StepStart: start, Stable: "v2", Canary: "v2", Previous: "v1"}
	world := func(edit func(*World)) World {
		w := World{TargetRevision: "v2", PrimaryRevision: "v2", PrimaryReady: true, CanaryDown: true, Verdict: Verdict{Result: Pass},
			Routes: Routes{Carries: func(t Traffic) bool { return t == Traffic{} }, Accepted: true}}
		if edit != nil {
			edit(&w)
		}
		return w
	}
	rolledBack := State{Phase: backstopv1.PhaseRollingBack, Step: 6, StepStart: start, Stable: "v1", Canary: "v2"}
	restore := Action{Kind: ActRestorePrevious, Revision: "v1"}
	fail := func(w *World) { w.Verdict = Verdict{Result: Fail, Check: "alerts", Message: "HighErrorRate firing"} }
	tests := []struct {
		name     string
		world    World
		at       time.Duration
		action   Action
		next     State
		requeue  time.Duration
		settled  bool
		reason   string
		gateDone bool
	}{
		{name: "quiet: wait for the end of the bake", world: world(nil), at: 4 * time.Minute,
			action: Action{Kind: ActNone}, next: baking, requeue: 6 * time.Minute},
		{name: "inconclusive alerts do not roll back", world: world(func(w *World) { w.Verdict = Verdict{Result: Inconclusive, Check: "alerts", Message: "unreachable"} }),
			at: 4 * time.Minute, action: Action{Kind: ActNone}, next: baking, requeue: 6 * time.Minute},
		{name: "a route changed by hand is put back", world: world(func(w *World) { w.Routes.Carries = func(Traffic) bool { return false } }),
			at: 4 * time.Minute, action: Action{Kind: ActSetTraffic}, next: baking, requeue: Poll},
		{name: "a scaled-up target is scaled down", world: world(func(w *World) { w.CanaryDown = false }),
			at: 4 * time.Minute, action: Action{Kind: ActScaleCanaryDown}, next: baking, requeue: Poll},
		{name: "alert", world: world(fail), at: 4 * time.Minute,
			action: restore, next: rolledBack, requeue: Poll, reason: "AlertAfterPromotion"},
		{name: "alert after the bake time", world: world(fail), at: bakeTime,
			action: Action{Kind: ActNone}, next: State{Phase: backstopv1.PhaseSucceeded, Step: 6, StepStart: start, Stable: "v2", Canary: "v2"}, reason: "BakeTimePassed"},
		{name: "abort", world: world(func(w *World) { w.Gate = GateAbort }), at: 4 * time.Minute,
			action: restore, next: rolledBack, requeue: Poll, reason: "Aborted", gateDone: true},
		{name: "restored before a restart, alert resolved", world: world(func(w *World) { w.PrimaryRevision, w.PrimaryReady = "v1", false }), at: 5 * time.Minute,
			action: restore, next: rolledBack, requeue: Poll, reason: "PreviousRestored"},
		{name: "restored before a restart, alert still firing", world: world(func(w *World) { fail(w); w.PrimaryRevision = "v1" }), at: 5 * time.Minute,
			action: restore, next: rolledBack, requeue: Poll, reason: "AlertAfterPromotion"},
		{name: "restored before a restart, abort gate still set", world: world(func(w *World) { w.Gate = GateAbort; w.PrimaryRevision = "v1" }), at: 5 * time.Minute,
			action: restore, next: rolledBack, requeue: Poll, reason: "Aborted", gateDone: true},
		{name: "restored before a restart that outlasted the bake time", world: world(func(w *World) { w.PrimaryRevision = "v1" }), at: time.Hour,
			action: restore, next: rolledBack, requeue: Poll, reason: "PreviousRestored"},
		{name: "restored before a restart, target moved on", world: world(func(w *World) { w.PrimaryRevision, w.TargetRevision = "v1", "v3" }), at: 5 * time.Minute,
			action: restore, next: rolledBack, requeue: Poll, reason: "PreviousRestored"},
		{name: "new revision ends the bake", world: world(func(w *World) { fail(w); w.TargetRevision = "v3" }), at: 4 * time.Minute,
			action: Action{Kind: ActScaleCanaryUp}, next: State{Phase: backstopv1.PhaseProgressing, StepStart: start.Add(4 * time.Minute), Stable: "v2", Canary: "v3"},
			requeue: Poll, reason: "ReleaseStarted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := common()
			c.BakeTime = bakeTime
			for _, strategy := range []string{"canary", "blue-green"} {
				var d Decision
				if strategy == "canary" {
					d = Canary(Config{Common: c, Steps: sixSteps()}, baking, tt.world, start.Add(tt.at))
				} else {
					d = BlueGreen(BlueGreenConfig{Common: c}, baking, tt.world, start.Add(tt.at))
				}
				reason := ""
				if d.Event != nil {
					reason = d.Event.Reason
				}
				if d.Action != tt.action || d.Next != tt.next || d.RequeueAfter != tt.requeue || d.Settled != tt.settled || reason != tt.reason || d.GateDone != tt.gateDone {
					t.Errorf("%s: decided %s -> %+v requeue %s settled %v event %q gateDone %v\nwant %s -> %+v requeue %s settled %v event %q gateDone %v",
						strategy, d.Action, d.Next, d.RequeueAfter, d.Settled, reason, d.GateDone,
						tt.action, tt.next, tt.requeue, tt.settled, tt.reason, tt.gateDone)
				}
			}
		})
	}
}

package plan

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// sim is a small deterministic cluster the plan's decisions act on, round
// by round, as the reconciler would: Deployments become ready and gateways
// accept routes one round after being changed.
type sim struct {
	cfg   Config
	bg    *BlueGreenConfig
	state State
	start time.Time
	now   time.Time

	target, primary             string
	primaryReady, primaryJustUp bool
	canaryScaled, canaryReady   bool
	canaryDown, canaryNeverUp   bool
	canaryJustUp                bool
	routes                      Traffic
	accepted                    bool
	routeWrites                 int
	verdict                     Verdict
	gate                        Gate
	hooks                       Hooks
	// awaits says the last decision waited on the PrePromotion gates.
	awaits            bool
	crashBeforeRecord bool
	// analysisEvery, when set, caps how long the plan waits, as the
	// reconciler does to ask the analyzer again during a bake time.
	analysisEvery time.Duration

	events []trigger
	log    strings.Builder
	// last and repeats fold identical waiting rounds into one log line.
	last    string
	repeats int
}

// trigger changes the world once, the first round its condition holds.
type trigger struct {
	when func(*sim) bool
	do   func(*sim)
	done bool
}

func newSim(cfg Config) *sim {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &sim{cfg: cfg, start: start, now: start, target: "v1", routes: Traffic{Weight: -1}}
}

func (s *sim) on(when func(*sim) bool, do func(*sim)) *sim {
	s.events = append(s.events, trigger{when: when, do: do})
	return s
}

func (s *sim) world() World {
	return World{
		TargetRevision:  s.target,
		PrimaryRevision: s.primary,
		PrimaryReady:    s.primaryReady,
		CanaryReady:     s.canaryReady,
		CanaryNotReady:  "0 of 2 replicas available",
		CanaryScaled:    s.canaryScaled,
		CanaryDown:      s.canaryDown,
		Routes:          Routes{Carries: func(t Traffic) bool { return s.routes == t }, Accepted: s.accepted},
		Verdict:         s.verdict,
		Gate:            s.gate,
		Hooks:           s.hooks,
	}
}

// settle lets one round of cluster activity happen: what was changed in the
// previous round becomes ready or accepted.
func (s *sim) settle() {
	if s.primaryJustUp {
		s.primaryReady, s.primaryJustUp = true, false
	}
	if s.canaryJustUp && !s.canaryNeverUp {
		s.canaryReady, s.canaryJustUp = true, false
	}
	s.accepted = true
}

func (s *sim) perform(a Action) {
	switch a.Kind {
	case ActCopyToPrimary:
		s.primary, s.primaryReady, s.primaryJustUp = a.Revision, false, true
	case ActRestorePrevious:
		if s.primary != a.Revision {
			s.primary, s.primaryReady, s.primaryJustUp = a.Revision, false, true
		}
	case ActScaleCanaryUp:
		s.canaryScaled, s.canaryDown, s.canaryJustUp = true, false, true
	case ActScaleCanaryDown:
		s.canaryScaled, s.canaryReady, s.canaryDown = false, false, true
	case ActSetTraffic:
		if s.routes != a.Traffic {
			s.routes, s.accepted = a.Traffic, false
			s.routeWrites++
		}
	}
}

// run decides round after round until the plan settles with nothing left
// to trigger, and returns the log of decisions.
func (s *sim) run(t *testing.T) string {
	s.canaryDown = true
	for round := 0; round < 300; round++ {
		for i := range s.events {
			if e := &s.events[i]; !e.done && e.when(s) {
				e.done = true
				e.do(s)
			}
		}
		d := s.decide()
		s.perform(d.Action)
		s.record(d)
		if s.crashBeforeRecord {
			s.crashBeforeRecord = false
			s.flushRepeats()
			s.last = ""
			fmt.Fprintf(&s.log, "%8s   -- manager killed after the action, before the status write\n", "")
		} else {
			s.state = d.Next
			if d.GateDone {
				s.gate = NoGate
			}
		}
		s.settle()
		switch {
		case d.Settled && s.pending() == 0:
			s.flushRepeats()
			fmt.Fprintf(&s.log, "route writes: %d\n", s.routeWrites)
			return s.log.String()
		case d.Settled:
			s.now = s.now.Add(time.Second)
		case s.analysisEvery > 0 && d.RequeueAfter > s.analysisEvery:
			s.now = s.now.Add(s.analysisEvery)
		default:
			s.now = s.now.Add(d.RequeueAfter)
		}
	}
	t.Fatalf("the plan did not settle in 300 rounds:\n%s", s.log.String())
	return ""
}

func (s *sim) decide() Decision {
	if s.bg != nil {
		return BlueGreen(*s.bg, s.state, s.world(), s.now)
	}
	return Canary(s.cfg, s.state, s.world(), s.now)
}

func (s *sim) pending() int {
	n := 0
	for _, e := range s.events {
		if !e.done {
			n++
		}
	}
	return n
}

func (s *sim) record(d Decision) {
	st := d.Next
	line := fmt.Sprintf("%8s %-12s %-17s -> %-11s step=%d w=%d", s.now.Sub(s.start), s.state.Phase, d.Action, st.Phase, st.Step, st.Weight)
	if st.Previous != "" {
		line += " previous=" + st.Previous
	}
	s.awaits = d.AwaitsPromotionHooks
	if d.AwaitsPromotionHooks {
		line += "  (awaits the promotion hooks)"
	}
	if d.Event != nil {
		kind := "Normal"
		if d.Event.Warning {
			kind = "Warning"
		}
		line += fmt.Sprintf("  %s %s: %s", kind, d.Event.Reason, d.Event.Message)
	}
	line = strings.TrimRight(line, " ")
	what := line[9:]
	if what == s.last && d.Event == nil {
		s.repeats++
		return
	}
	s.flushRepeats()
	s.last = what
	s.log.WriteString(line + "\n")
}

func (s *sim) flushRepeats() {
	if s.repeats > 0 {
		fmt.Fprintf(&s.log, "%8s   (the same %d more times)\n", "", s.repeats)
		s.repeats = 0
	}
}

func atStep(i int32) func(*sim) bool {
	return func(s *sim) bool { return s.state.Phase == backstopv1.PhaseProgressing && s.state.Step == i }
}

func inPhase(p backstopv1.RolloutPhase) func(*sim) bool {
	return func(s *sim) bool { return s.state.Phase == p }
}

func release(rev string) func(*sim) {
	return func(s *sim) {
		s.target = rev
		if s.canaryScaled {
			s.canaryReady, s.canaryJustUp = false, true
		}
	}
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// sixSteps is the release the scenarios share: 10%, analysis, 50%, a timed
// pause, analysis, and a pause until promoted.
func sixSteps() []backstopv1.CanaryStep {
	return []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](10)},
		{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: time.Minute}}},
		{SetWeight: ptr.To[int32](50)},
		{Pause: &backstopv1.PauseStep{Duration: dur(30 * time.Second)}},
		{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: time.Minute}}},
		{Pause: &backstopv1.PauseStep{}},
	}
}

func config() Config {
	return Config{Common: common(), Steps: sixSteps()}
}

func common() Common {
	return Common{ProgressDeadline: 5 * time.Minute, OnInconclusive: backstopv1.InconclusivePause}
}

func passing(s *sim) { s.verdict = Verdict{Result: Pass} }

// TestCanarySequences replays each scenario and compares the decisions with
// its golden file. Run with -update to rewrite them after a deliberate change.
func TestCanarySequences(t *testing.T) {
	always := func(*sim) bool { return true }
	released := func(s *sim) bool { return s.state.Phase == backstopv1.PhaseIdle && s.target == "v1" }
	scenarios := map[string]func() *sim{
		// v1 is set up, v2 goes through every step and is promoted by hand
		// at the final pause.
		"healthy": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, release("v2")).
				on(inPhase(backstopv1.PhasePaused), func(s *sim) { s.gate = GatePromote })
		},
		// A check fails at step 3 (50%): one route write back to 0%, the
		// canary scaled down, the revert started; the revert lands and the
		// target returns to v1.
		"breach-at-step-3": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, release("v2")).
				on(atStep(3), func(s *sim) { s.verdict = Verdict{Result: Fail, Check: "error-rate", Message: "0.052 > 0.01"} }).
				on(inPhase(backstopv1.PhaseRolledBack), release("v1"))
		},
		// v3 replaces v2 at step 4: traffic back to 0% for the unchecked
		// v3, and the release starts again from step 1.
		"new-revision-mid-release": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, release("v2")).
				on(atStep(4), release("v3")).
				on(inPhase(backstopv1.PhasePaused), func(s *sim) { s.gate = GatePromoteFull })
		},
		// Promote-full at step 2 skips the remaining steps.
		"manual-promote-full": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, release("v2")).
				on(atStep(2), func(s *sim) { s.gate = GatePromoteFull })
		},
		// Abort at step 2, then retry the same revision, which passes.
		"abort-then-retry": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, release("v2")).
				on(atStep(2), func(s *sim) { s.gate = GateAbort }).
				on(inPhase(backstopv1.PhaseRolledBack), func(s *sim) { s.gate = GateRetry }).
				on(func(s *sim) bool { return s.state.Phase == backstopv1.PhasePaused && s.state.Step == 5 },
					func(s *sim) { s.gate = GatePromote })
		},
		// spec.paused at step 1 holds the analysis; resuming restarts the
		// step's clock.
		"pause-resume": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, release("v2")).
				on(atStep(1), func(s *sim) { s.cfg.Paused = true }).
				on(inPhase(backstopv1.PhasePaused), func(s *sim) { s.now = s.now.Add(10 * time.Minute); s.cfg.Paused = false }).
				on(func(s *sim) bool { return s.state.Step == 5 }, func(s *sim) { s.gate = GatePromote })
		},
		// A new revision arrives while spec.paused is set: the release
		// starts (the canary is scaled up) but no traffic moves until it
		// is resumed.
		"paused-before-first-step": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, func(s *sim) { s.cfg.Paused = true; release("v2")(s) }).
				on(inPhase(backstopv1.PhasePaused), func(s *sim) { s.now = s.now.Add(time.Minute); s.cfg.Paused = false }).
				on(func(s *sim) bool { return s.state.Step == 5 }, func(s *sim) { s.gate = GatePromoteFull })
		},
		// The manager dies after writing 50% to the routes and before
		// recording it: on restart nothing is written twice.
		"restart-between-route-and-status-write": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, release("v2")).
				on(atStep(2), func(s *sim) { s.crashBeforeRecord = true }).
				on(func(s *sim) bool { return s.state.Step == 5 }, func(s *sim) { s.gate = GatePromoteFull })
		},
		// Checks turn inconclusive at step 1: the release holds (policy
		// Pause) until promoted by hand.
		"inconclusive-pauses": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, release("v2")).
				on(atStep(1), func(s *sim) { s.verdict = Verdict{Result: Inconclusive, Check: "latency", Message: "empty result"} }).
				on(inPhase(backstopv1.PhasePaused), func(s *sim) { s.verdict = Verdict{Result: Pass}; s.gate = GatePromoteFull })
		},
		// The canary's pods never become ready: rolled back after the
		// progress deadline.
		"canary-never-ready": func() *sim {
			return newSim(config()).
				on(released, func(s *sim) { s.canaryNeverUp = true; release("v2")(s) })
		},
		// A/B match and mirroring: the match holds for the whole release,
		// the mirror only while the canary has no weight; promotion
		// clears both in its one route write.
		"match-and-mirror": func() *sim {
			cfg := config()
			cfg.Match, cfg.Mirror = true, true
			cfg.Steps = []backstopv1.CanaryStep{
				{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: time.Minute}}},
				{SetWeight: ptr.To[int32](20)},
				{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: time.Minute}}},
			}
			return newSim(cfg).
				on(always, passing).
				on(released, release("v2"))
		},
		// The change is withdrawn in Git during the release: back to the
		// primary with nothing to revert.
		// A PreRelease hook answers 20s after the canary is ready: no
		// traffic moves to the canary before it has.
		"pre-release-hook": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, func(s *sim) { release("v2")(s); s.hooks.Holding = true }).
				on(func(s *sim) bool { return s.canaryReady && s.now.Sub(s.start) >= 20*time.Second },
					func(s *sim) { s.hooks.Holding = false }).
				on(inPhase(backstopv1.PhasePaused), func(s *sim) { s.gate = GatePromoteFull })
		},
		// A Step hook fails at step 3: rolled back with reason HookFailed.
		"step-hook-fails": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, release("v2")).
				on(atStep(3), func(s *sim) {
					s.verdict = Verdict{Result: Fail, Check: "hook/load-test", Message: "HTTP 500: load test failed to start", Hook: true}
				}).
				on(inPhase(backstopv1.PhaseRolledBack), release("v1"))
		},
		// The PrePromotion gate holds the release at its last step until
		// it says yes; then it is promoted.
		"promotion-gate": func() *sim {
			cfg := config()
			cfg.Steps = cfg.Steps[:5]
			return newSim(cfg).
				on(always, passing).
				on(released, func(s *sim) { release("v2")(s); s.hooks.PromotionWaiting = true }).
				on(func(s *sim) bool { return s.awaits && s.now.Sub(s.start) > 5*time.Minute },
					func(s *sim) { s.hooks.PromotionWaiting = false })
		},
		"withdrawn": func() *sim {
			return newSim(config()).
				on(always, passing).
				on(released, release("v2")).
				on(atStep(2), release("v1"))
		},
	}
	runGolden(t, "canary", scenarios)
}

// runGolden runs each scenario and compares its log with
// testdata/<dir>/<name>.golden.
func runGolden(t *testing.T, dir string, scenarios map[string]func() *sim) {
	for name, build := range scenarios {
		t.Run(name, func(t *testing.T) {
			got := build().run(t)
			golden := filepath.Join("testdata", dir, name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading %s (run with -update to create it): %v", golden, err)
			}
			if got != string(want) {
				t.Errorf("decisions differ from %s (run with -update after a deliberate change)\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestSteps(t *testing.T) {
	tests := []struct {
		name string
		in   *backstopv1.CanaryStrategy
		want string
	}{
		{name: "explicit steps kept", in: &backstopv1.CanaryStrategy{Steps: sixSteps()},
			want: "setWeight 10, analysis 1m0s, setWeight 50, pause 30s, analysis 1m0s, pause until promoted"},
		{name: "short form to 100", in: &backstopv1.CanaryStrategy{StepWeight: ptr.To[int32](25), Interval: dur(time.Minute)},
			want: "setWeight 25, analysis 1m0s, setWeight 50, analysis 1m0s, setWeight 75, analysis 1m0s, setWeight 100, analysis 1m0s"},
		{name: "short form capped at maxWeight", in: &backstopv1.CanaryStrategy{StepWeight: ptr.To[int32](20), MaxWeight: ptr.To[int32](50), Interval: dur(30 * time.Second)},
			want: "setWeight 20, analysis 30s, setWeight 40, analysis 30s, setWeight 50, analysis 30s"},
		{name: "stepWeight equal to maxWeight", in: &backstopv1.CanaryStrategy{StepWeight: ptr.To[int32](30), MaxWeight: ptr.To[int32](30), Interval: dur(time.Minute)},
			want: "setWeight 30, analysis 1m0s"},
		{name: "no strategy", in: nil, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, st := range Steps(tt.in) {
				got = append(got, describe(st))
			}
			if g := strings.Join(got, ", "); g != tt.want {
				t.Errorf("Steps() = %s, want %s", g, tt.want)
			}
		})
	}
}

func TestWeightAt(t *testing.T) {
	steps := sixSteps()
	for i, want := range []int32{10, 10, 50, 50, 50, 50, 50} {
		if got := WeightAt(steps, int32(i)); got != want {
			t.Errorf("WeightAt(step %d) = %d, want %d", i, got, want)
		}
	}
	pauseFirst := []backstopv1.CanaryStep{{Pause: &backstopv1.PauseStep{}}, {SetWeight: ptr.To[int32](5)}}
	if got := WeightAt(pauseFirst, 0); got != 0 {
		t.Errorf("WeightAt before any setWeight = %d, want 0", got)
	}
}

// TestRollbackWritesTrafficFirst: whatever the phase of a release, a failed
// verdict's first action is the route write that sends everything to the
// primary, recorded together with RollingBack.
func TestRollbackWritesTrafficFirst(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, phase := range []backstopv1.RolloutPhase{backstopv1.PhaseProgressing, backstopv1.PhasePaused} {
		for step := int32(0); step < 6; step++ {
			s := State{Phase: phase, Step: step, StepStart: now, Weight: 50, Stable: "v1", Canary: "v2"}
			w := World{TargetRevision: "v2", PrimaryRevision: "v1", PrimaryReady: true, CanaryReady: true, CanaryScaled: true,
				Routes: Routes{Carries: func(t Traffic) bool { return t == Traffic{Weight: 50} }, Accepted: true}, Verdict: Verdict{Result: Fail, Check: "errors", Message: "1 > 0"}}
			d := Canary(config(), s, w, now)
			if d.Action != (Action{Kind: ActSetTraffic}) || d.Next.Phase != backstopv1.PhaseRollingBack {
				t.Errorf("%s step %d: decided %s -> %s, want SetTraffic(0) -> RollingBack", phase, step, d.Action, d.Next.Phase)
			}
		}
	}
}

// TestDueSaysATimerEnds: a decision that waits for a pause or an analysis
// window to end says it is due then, so the reconciler can serve it before
// routine looks; waiting on the cluster or for a verdict is not due.
func TestDueSaysATimerEnds(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		step    int32
		ready   bool
		verdict Verdict
		due     bool
		after   time.Duration
	}{
		{name: "in an analysis window", step: 1, ready: true, due: true, after: 50 * time.Second},
		{name: "past the window, waiting for a verdict", step: 4, ready: true, due: false, after: Poll},
		{name: "in a pause", step: 3, ready: true, due: true, after: 20 * time.Second},
		{name: "waiting for the canary's pods", step: 3, ready: false, due: false, after: Poll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := now.Add(-10 * time.Second)
			if tt.step == 4 {
				start = now.Add(-2 * time.Minute)
			}
			weight := WeightAt(config().Steps, tt.step)
			s := State{Phase: backstopv1.PhaseProgressing, Step: tt.step, StepStart: start, Weight: weight, Stable: "v1", Canary: "v2"}
			w := World{TargetRevision: "v2", PrimaryRevision: "v1", PrimaryReady: true, CanaryReady: tt.ready, CanaryScaled: true,
				CanaryNotReady: "0 of 2 replicas available",
				Routes:         Routes{Carries: func(t Traffic) bool { return t == Traffic{Weight: weight} }, Accepted: true}, Verdict: tt.verdict}
			d := Canary(config(), s, w, now)
			if d.Action.Kind != ActNone || d.Due != tt.due || d.RequeueAfter != tt.after {
				t.Errorf("decided %s, due %v after %s; want nothing, due %v after %s", d.Action, d.Due, d.RequeueAfter, tt.due, tt.after)
			}
		})
	}
}

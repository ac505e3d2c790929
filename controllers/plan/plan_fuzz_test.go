package plan

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// planFuzzMaxDuration is the longest duration the CRD admits in any field
// (a CEL rule on each: duration(self) <= duration('8760h')). The plan's
// waits are bounded by the durations it is given, so this bound holds only
// because the apiserver enforces it.
const planFuzzMaxDuration = 8760 * time.Hour

// planFuzzRounds bounds the quiet rounds that end a run: after the
// fuzzer's script, the checks pass and a person promotes every pause, and
// the plan must settle within this many decisions.
const planFuzzRounds = 2000

// planFuzzScript bounds the script, so that one input runs quickly.
const planFuzzScript = 4096

// planFuzzReader hands out the fuzzer's bytes, then zeros.
type planFuzzReader struct{ b []byte }

func (r *planFuzzReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *planFuzzReader) done() bool { return len(r.b) == 0 }

// planFuzzDuration is a duration the CRD admits: 0 to 8760h.
func planFuzzDuration(r *planFuzzReader) time.Duration {
	table := []time.Duration{0, time.Millisecond, time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
		5 * time.Minute, time.Hour, 24 * time.Hour, planFuzzMaxDuration}
	c := r.next()
	if int(c) < len(table) {
		return table[c]
	}
	return time.Duration(c) * time.Duration(r.next()) * time.Second
}

// planFuzzConfig builds a strategy the CRD admits from the fuzzer's bytes:
// a canary of 1 to 64 steps (setWeight 0..100, pauses with or without a
// duration, analysis windows) or of the short form (1 <= stepWeight <=
// maxWeight <= 100), or a blue-green release; each with the common
// settings. The bounds are the CRD's (OpenAPI minimum, maximum, maxItems
// and the CEL rules on durations and the short form): the plan relies on
// them rather than checking them again.
func planFuzzConfig(r *planFuzzReader) (Config, *BlueGreenConfig) {
	c := Common{
		SkipAnalysis:     r.next()%4 == 0,
		ProgressDeadline: time.Duration(1+int(r.next())*int(r.next())%86400) * time.Second,
		OnInconclusive:   backstopv1.InconclusivePause,
		BakeTime:         planFuzzDuration(r),
	}
	if r.next()%2 == 0 {
		c.OnInconclusive = backstopv1.InconclusiveRollBack
	}
	if r.next()%3 == 0 {
		return Config{Common: c}, &BlueGreenConfig{
			Common:         c,
			Preview:        r.next()%2 == 0,
			Window:         planFuzzDuration(r),
			AutoPromote:    r.next()%2 == 0,
			ScaleDownDelay: planFuzzDuration(r),
		}
	}
	cfg := Config{Common: c, Match: r.next()%2 == 0, Mirror: r.next()%2 == 0}
	if r.next()%2 == 0 {
		step := int32(1 + r.next()%100)
		maxWeight := step + int32(r.next())%(101-step)
		cfg.Steps = Steps(&backstopv1.CanaryStrategy{StepWeight: &step, MaxWeight: &maxWeight, Interval: &metav1.Duration{Duration: planFuzzDuration(r)}})
		return cfg, nil
	}
	n := 1 + int(r.next())%64
	for range n {
		switch r.next() % 4 {
		case 0:
			w := int32(r.next() % 101)
			cfg.Steps = append(cfg.Steps, backstopv1.CanaryStep{SetWeight: &w})
		case 1:
			cfg.Steps = append(cfg.Steps, backstopv1.CanaryStep{Pause: &backstopv1.PauseStep{}})
		case 2:
			cfg.Steps = append(cfg.Steps, backstopv1.CanaryStep{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: planFuzzDuration(r)}}})
		default:
			cfg.Steps = append(cfg.Steps, backstopv1.CanaryStep{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: planFuzzDuration(r)}}})
		}
	}
	return cfg, nil
}

// planFuzzTimer is the longest timer a configuration runs: a pause, an
// analysis window, the scale-down delay or the bake time.
func planFuzzTimer(cfg Config, bg *BlueGreenConfig) time.Duration {
	longest := cfg.BakeTime
	for _, s := range cfg.Steps {
		switch {
		case s.Pause != nil && s.Pause.Duration != nil:
			longest = max(longest, s.Pause.Duration.Duration)
		case s.Analysis != nil:
			longest = max(longest, s.Analysis.Window.Duration)
		}
	}
	if bg != nil {
		longest = max(longest, bg.Window, bg.ScaleDownDelay, bg.BakeTime)
	}
	return longest
}

// FuzzPlan runs the canary and blue-green plans against a small cluster
// (the golden tests' sim) that the fuzzer's script disturbs round by round:
// verdicts, gates, new revisions, a revision withdrawn, pods that never get
// ready, a primary that restarts, hooks that hold, spec.paused, routes or
// the canary changed by hand, the spec's strategy and steps edited
// mid-release, the clock jumping ahead or going back a little, and the
// manager killed between an action and its status write. At every
// decision:
//
//   - it does not panic;
//   - every traffic weight written or recorded is within 0..100, and
//     outside a release the routes carry everything to the primary;
//   - every wait is non-negative and no longer than the longest timer of
//     the spec (at most 8760h, the CRD's bound) plus how far the clock went
//     back; a timer that is due waits a positive time;
//   - a recorded step stays one of the strategy's;
//   - a failed verdict during a release rolls back in that decision, with
//     all traffic to the primary;
//   - a promotion copies only the released revision while it is the
//     target; a revert starts only on finishing a rollback;
//   - every Event has a reason and a message.
//
// Once the script ends, the checks pass, a person promotes every pause, and
// the plan must settle within 2,000 rounds. The same input gives the same
// decisions.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{1, 10, 10, 3, 1, 1, 1, 1, 6, 0, 10, 3, 5, 1, 2}, []byte{10, 1})
	f.Fuzz(func(t *testing.T, spec, script []byte) {
		first := planFuzzRun(t, spec, script)
		if again := planFuzzRun(t, spec, script); again != first {
			t.Fatalf("the same input decided differently:\n--- first\n%s--- again\n%s", first, again)
		}
		lines := strings.Split(strings.TrimSuffix(first, "\n"), "\n")
		t.Logf("%d decisions, the last: %s", len(lines), lines[len(lines)-1])
	})
}

// planFuzzRun runs one script and returns the log of decisions.
func planFuzzRun(t *testing.T, spec, script []byte) string {
	cfg, bg := planFuzzConfig(&planFuzzReader{b: spec})
	s := newSim(cfg)
	s.bg = bg
	s.canaryDown = true
	longest := planFuzzTimer(cfg, bg)
	var back time.Duration // how far the clock went back, in all
	revisions := 1
	var log strings.Builder
	r := &planFuzzReader{b: script[:min(len(script), planFuzzScript)]}
	for quietRounds := 0; quietRounds < planFuzzRounds; {
		quiet := r.done()
		if quiet {
			quietRounds++
			// What is left to end the release: the checks pass, nothing
			// holds, and a person promotes a pause.
			s.verdict, s.hooks, s.canaryNeverUp = Verdict{Result: Pass}, Hooks{}, false
			s.cfg.Paused = false
			if s.bg != nil {
				s.bg.Paused = false
			}
			if s.state.Phase == backstopv1.PhasePaused {
				s.gate = GatePromote
			}
		} else {
			switch op := r.next() % 23; op {
			case 1:
				s.verdict = Verdict{Result: Pass}
			case 2:
				s.verdict = Verdict{Result: Fail, Check: "errors", Message: "0.2 > 0.01"}
			case 3:
				s.verdict = Verdict{Result: Inconclusive, Check: "latency", Message: "empty result"}
			case 4:
				s.verdict = Verdict{}
			case 5:
				s.verdict = Verdict{Result: Fail, Check: "hook/load", Message: "HTTP 500", Hook: true}
			case 6, 7, 8, 9:
				s.gate = []Gate{GatePromote, GatePromoteFull, GateAbort, GateRetry}[op-6]
			case 10:
				revisions++
				release(fmt.Sprintf("v%d", revisions))(s)
			case 11:
				if s.state.Stable != "" {
					release(s.state.Stable)(s)
				}
			case 12:
				s.canaryNeverUp = !s.canaryNeverUp
			case 13:
				s.primaryReady, s.primaryJustUp = false, true
			case 14:
				s.crashBeforeRecord = true
			case 15:
				// The spec is edited: other steps, or the other strategy.
				paused := s.cfg.Paused
				s.cfg, s.bg = planFuzzConfig(r)
				s.cfg.Paused = paused
				if s.bg != nil {
					s.bg.Paused = paused
				}
				longest = max(longest, planFuzzTimer(s.cfg, s.bg))
			case 16:
				s.now = s.now.Add(planFuzzDuration(r))
			case 17:
				d := time.Duration(r.next()) * time.Second
				s.now, back = s.now.Add(-d), back+d
			case 18:
				s.hooks.Holding = !s.hooks.Holding
			case 19:
				s.hooks.PromotionWaiting = !s.hooks.PromotionWaiting
			case 20:
				s.cfg.Paused = !s.cfg.Paused
				if s.bg != nil {
					s.bg.Paused = s.cfg.Paused
				}
			case 21:
				s.routes, s.accepted = Traffic{Weight: int32(r.next() % 101)}, false
			case 22:
				s.canaryScaled, s.canaryReady, s.canaryDown = false, false, true
			}
		}

		before, w := s.state, s.world()
		d := s.decide()
		fmt.Fprintf(&log, "%s %s %s -> %s step=%d w=%d after=%s settled=%t due=%t", s.now.Sub(s.start), before.Phase, d.Action,
			d.Next.Phase, d.Next.Step, d.Next.Weight, d.RequeueAfter, d.Settled, d.Due)
		if d.Event != nil {
			fmt.Fprintf(&log, " %s: %s", d.Event.Reason, d.Event.Message)
		}
		log.WriteString("\n")
		planFuzzCheck(t, s, before, w, d, longest+back, &log)

		s.perform(d.Action)
		if s.crashBeforeRecord {
			s.crashBeforeRecord = false
		} else {
			s.state = d.Next
			if d.GateDone {
				s.gate = NoGate
			}
		}
		s.settle()
		switch {
		case d.Settled && quiet:
			return log.String()
		case d.Settled:
			s.now = s.now.Add(time.Second)
		default:
			s.now = s.now.Add(d.RequeueAfter)
		}
	}
	t.Fatalf("the plan did not settle within %d rounds after the script:\n%s", planFuzzRounds, planFuzzTail(log.String()))
	return ""
}

// planFuzzCheck checks one decision; bound is the longest wait allowed.
func planFuzzCheck(t *testing.T, s *sim, before State, w World, d Decision, bound time.Duration, log *strings.Builder) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\n--- decisions\n%s", fmt.Sprintf(format, args...), planFuzzTail(log.String()))
	}
	if a := d.Action; a.Kind == ActSetTraffic && (a.Weight < 0 || a.Weight > 100) {
		fail("traffic weight %d written", a.Weight)
	}
	if d.Next.Weight < 0 || d.Next.Weight > 100 {
		fail("weight %d recorded", d.Next.Weight)
	}
	releasing := d.Next.Phase == backstopv1.PhaseProgressing || d.Next.Phase == backstopv1.PhasePaused
	if d.Action.Kind == ActSetTraffic && !releasing && d.Action.Traffic != (Traffic{}) {
		fail("traffic %s written in phase %s: outside a release everything goes to the primary", d.Action.Traffic, d.Next.Phase)
	}
	if d.RequeueAfter < 0 || d.RequeueAfter > max(bound, Poll) {
		fail("waits %s; the longest timer of the spec, plus the clock going back, is %s", d.RequeueAfter, bound)
	}
	if d.Due && d.RequeueAfter <= 0 {
		fail("a due timer waits %s", d.RequeueAfter)
	}
	steps := int32(len(s.cfg.Steps))
	if s.bg != nil {
		steps = bgStages - 1
	}
	inRange := func(st State) bool {
		return st.Phase == "" || st.Phase == backstopv1.PhaseInitializing || (st.Step >= 0 && st.Step <= steps)
	}
	if inRange(before) && !inRange(d.Next) {
		fail("step %d recorded in phase %s; the strategy has %d steps", d.Next.Step, d.Next.Phase, steps)
	}
	wasReleasing := before.Phase == backstopv1.PhaseProgressing || before.Phase == backstopv1.PhasePaused
	if wasReleasing && w.TargetRevision == before.Canary && w.Gate != GateAbort && w.Verdict.Result == Fail &&
		(d.Next.Phase != backstopv1.PhaseRollingBack || d.Action != Action{Kind: ActSetTraffic}) {
		fail("a failed verdict decided %s -> %s, not SetTraffic(0) -> RollingBack", d.Action, d.Next.Phase)
	}
	if d.Action.Kind == ActCopyToPrimary && before.Phase == backstopv1.PhasePromoting &&
		(d.Action.Revision != before.Canary || w.TargetRevision != before.Canary) {
		fail("promoted revision %s; the release was of %s and the target is at %s", d.Action.Revision, before.Canary, w.TargetRevision)
	}
	if d.Action.Kind == ActRevert && (before.Phase != backstopv1.PhaseRollingBack || d.Next.Phase != backstopv1.PhaseRolledBack || before.Canary == before.Stable) {
		fail("a revert started from %s to %s (canary %s, stable %s)", before.Phase, d.Next.Phase, before.Canary, before.Stable)
	}
	if e := d.Event; e != nil && (e.Reason == "" || e.Message == "") {
		fail("an Event without a reason or a message: %+v", *e)
	}
}

// planFuzzTail is the end of a long log.
func planFuzzTail(log string) string {
	lines := strings.SplitAfter(log, "\n")
	if len(lines) > 60 {
		lines = append([]string{fmt.Sprintf("(%d decisions before)\n", len(lines)-60)}, lines[len(lines)-60:]...)
	}
	return strings.Join(lines, "")
}

// TestPlanRestartsAStepOutsideTheStrategy: a recorded step that is not one
// of the strategy's (a canary's step 7 after the spec switched to
// blue-green, which has five stages, or a status written by hand) starts
// the release again from its first step, with a Warning Event, instead of
// indexing past the stages (a panic) or running the last stage's timer and
// promoting an unchecked release. FuzzPlan's corpus keeps the spec edit
// that found it.
func TestPlanRestartsAStepOutsideTheStrategy(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := World{TargetRevision: "v2", PrimaryRevision: "v1", PrimaryReady: true, CanaryReady: true, CanaryScaled: true,
		Routes: Routes{Carries: func(Traffic) bool { return true }, Accepted: true}, Verdict: Verdict{Result: Pass}}
	bg := BlueGreenConfig{Common: common(), Preview: true, Window: time.Minute, AutoPromote: true, ScaleDownDelay: 30 * time.Second}
	tests := []struct {
		name   string
		decide func(State) Decision
		step   int32
	}{
		{"blue-green at a canary's step 7", func(s State) Decision { return BlueGreen(bg, s, w, now) }, 6},
		{"blue-green at step 5 (of stages 0-4)", func(s State) Decision { return BlueGreen(bg, s, w, now) }, bgStages},
		{"blue-green at step -1 written by hand", func(s State) Decision { return BlueGreen(bg, s, w, now) }, -1},
		{"canary at step -1 written by hand", func(s State) Decision { return Canary(config(), s, w, now) }, -1},
	}
	restarts := 0
	for _, tt := range tests {
		for _, phase := range []backstopv1.RolloutPhase{backstopv1.PhaseProgressing, backstopv1.PhasePaused} {
			s := State{Phase: phase, Step: tt.step, StepStart: now.Add(-time.Hour), Weight: 50, Stable: "v1", Canary: "v2"}
			d := tt.decide(s)
			if d.Action.Kind != ActNone || d.Next.Phase != backstopv1.PhaseProgressing || d.Next.Step != 0 || !d.Next.StepStart.Equal(now) ||
				d.Event == nil || !d.Event.Warning || d.Event.Reason != "StepOutsideStrategy" {
				t.Errorf("%s, %s: decided %s -> %s step %d, event %+v; want a restart at step 0", tt.name, phase, d.Action, d.Next.Phase, d.Next.Step, d.Event)
				continue
			}
			restarts++
			t.Logf("%s, %s: %s", tt.name, phase, d.Event.Message)
		}
	}
	t.Logf("%d recorded steps outside the strategy restarted the release", restarts)
}

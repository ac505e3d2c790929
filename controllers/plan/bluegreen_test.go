package plan

import (
	"testing"
	"time"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

func blueGreenSim(mutate func(*BlueGreenConfig)) *sim {
	cfg := BlueGreenConfig{Common: common(), Preview: true, Window: time.Minute, AutoPromote: true, ScaleDownDelay: 30 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	s := newSim(Config{})
	s.bg = &cfg
	return s
}

// TestBlueGreenSequences replays each blue-green scenario and compares the
// decisions with its golden file (run with -update to rewrite them).
func TestBlueGreenSequences(t *testing.T) {
	always := func(*sim) bool { return true }
	released := func(s *sim) bool { return s.state.Phase == backstopv1.PhaseIdle && s.target == "v1" }
	atStage := func(i int32) func(*sim) bool {
		return func(s *sim) bool { return s.state.Phase == backstopv1.PhaseProgressing && s.state.Step == i }
	}
	runGolden(t, "bluegreen", map[string]func() *sim{
		// The new version runs at full size behind the preview match, is
		// checked for a minute, takes all traffic at once, and is copied to
		// the primary after the scale-down delay.
		"healthy": func() *sim {
			return blueGreenSim(nil).
				on(always, passing).
				on(released, release("v2"))
		},
		// The PrePromotion gate holds the switch until it says yes.
		"promotion-gate": func() *sim {
			return blueGreenSim(nil).
				on(always, passing).
				on(released, func(s *sim) { release("v2")(s); s.hooks.PromotionWaiting = true }).
				on(func(s *sim) bool { return s.awaits && s.now.Sub(s.start) > 3*time.Minute },
					func(s *sim) { s.hooks.PromotionWaiting = false })
		},
		// autoPromote off: the switch waits for a promotion by hand.
		"manual-promotion": func() *sim {
			return blueGreenSim(func(c *BlueGreenConfig) { c.AutoPromote = false }).
				on(always, passing).
				on(released, release("v2")).
				on(inPhase(backstopv1.PhasePaused), func(s *sim) { s.gate = GatePromote })
		},
		// A check fails during the analysis: the preview is dropped in one
		// route write and the new version scaled down.
		"breach-in-analysis": func() *sim {
			return blueGreenSim(nil).
				on(always, passing).
				on(released, release("v2")).
				on(atStage(bgAnalysis), func(s *sim) { s.verdict = Verdict{Result: Fail, Check: "error-rate", Message: "0.2 > 0.01"} }).
				on(inPhase(backstopv1.PhaseRolledBack), release("v1"))
		},
		// An alert fires after the switch, during the scale-down delay: the
		// old version, still running, takes all traffic back at once.
		"alert-after-switch": func() *sim {
			return blueGreenSim(nil).
				on(always, passing).
				on(released, release("v2")).
				on(atStage(bgScaleDownDelay), func(s *sim) { s.verdict = Verdict{Result: Fail, Check: "alerts", Message: "HighErrorRate firing"} })
		},
		// The manager dies after writing the switch and before recording
		// it: on restart the switch is not written again.
		"restart-after-switch-write": func() *sim {
			return blueGreenSim(nil).
				on(always, passing).
				on(released, release("v2")).
				on(atStage(bgSwitch), func(s *sim) { s.crashBeforeRecord = true })
		},
	})
}

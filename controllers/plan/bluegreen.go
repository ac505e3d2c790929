package plan

import (
	"fmt"
	"time"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// BlueGreenConfig is what the blue-green plan reads from the Rollout's spec.
type BlueGreenConfig struct {
	Common
	// Preview says the strategy has a preview (a match or preview
	// hostnames) that reaches the new version before the switch.
	Preview bool
	// Window is how long the checks run before the switch; zero runs none.
	Window time.Duration
	// AutoPromote switches as soon as the checks pass; otherwise the
	// release waits to be promoted by hand.
	AutoPromote bool
	// ScaleDownDelay is how long the old version keeps running after the
	// switch, so that a failure can switch back without a cold start.
	ScaleDownDelay time.Duration
}

// DefaultScaleDownDelay applies when the spec leaves it unset.
const DefaultScaleDownDelay = 30 * time.Second

// BlueGreenConfigOf reads the blue-green plan's configuration from a
// Rollout's spec.
func BlueGreenConfigOf(spec *backstopv1.RolloutSpec) BlueGreenConfig {
	cfg := BlueGreenConfig{Common: CommonConfig(spec), AutoPromote: true, ScaleDownDelay: DefaultScaleDownDelay}
	bg := spec.Strategy.BlueGreen
	if bg == nil {
		return cfg
	}
	cfg.Preview = bg.Preview != nil || len(bg.PreviewHostnames) > 0
	if bg.Analysis != nil {
		cfg.Window = bg.Analysis.Window.Duration
	}
	if bg.AutoPromote != nil {
		cfg.AutoPromote = *bg.AutoPromote
	}
	if bg.ScaleDownDelay != nil {
		cfg.ScaleDownDelay = bg.ScaleDownDelay.Duration
	}
	return cfg
}

// BlueGreenAnalysisStage is the step a blue-green release records while
// its checks run; Step hooks are called when it starts.
const BlueGreenAnalysisStage = bgAnalysis

// The stages of a blue-green release, recorded as its step.
const (
	// bgPreview: the new version runs at full size; only the preview match
	// reaches it.
	bgPreview int32 = iota
	// bgAnalysis: the checks run for the window.
	bgAnalysis
	// bgPromotion: with autoPromote off, the release waits to be promoted.
	bgPromotion
	// bgSwitch: all traffic moves to the new version.
	bgSwitch
	// bgScaleDownDelay: the new version serves everything; the old one
	// still runs, so a failure switches back at once.
	bgScaleDownDelay
	bgStages
)

// BlueGreenStageNames name the stages of a blue-green release, which its
// status counts as steps.
var BlueGreenStageNames = [bgStages]string{"preview", "analysis", "promotion", "switch", "scale-down delay"}

// BlueGreen decides the next move of a blue-green release. Idle,
// initialisation, promotion, the bake time and rollback work as for a
// canary; the release itself runs through the stages preview, analysis,
// switch and scale-down delay, after which the new version is copied to the
// primary.
func BlueGreen(cfg BlueGreenConfig, s State, w World, now time.Time) Decision {
	return decide(cfg.Common, s, w, now, func() Decision { return blueGreenProgress(cfg, s, w, now) })
}

func blueGreenProgress(cfg BlueGreenConfig, s State, w World, now time.Time) Decision {
	if d, handled := guard(cfg.Common, s, w, now); handled {
		return d
	}
	if w.Gate == GatePromoteFull && s.Step < bgSwitch {
		s.Phase, s.Step, s.StepStart = backstopv1.PhaseProgressing, bgSwitch, now
		d := next(s)
		d.GateDone = true
		d.Event = &Event{Reason: "PromotedByHand", Message: "Skipping the checks to switch"}
		return d
	}
	if cfg.Paused {
		return pause(s, "Paused", "The release is paused (spec.paused)")
	}
	if w.Hooks.Holding {
		return holdForHooks(s, w)
	}
	if s.Step < 0 || s.Step >= bgStages {
		return restartRelease(s, now)
	}
	traffic := bgTraffic(cfg, s.Step)
	if d, waiting := routesAt(s, w, traffic); waiting {
		return d
	}
	s.Weight = traffic.Weight
	if w.Verdict.Result == Inconclusive && s.Step < bgPromotion {
		if w.Gate == GatePromote {
			return bgAdvance(s, now, true)
		}
		return pause(s, "AnalysisInconclusive", fmt.Sprintf("Check %s was inconclusive: %s; promote or abort", w.Verdict.Check, w.Verdict.Message))
	}
	waitsForHand := s.Step == bgPromotion && !cfg.AutoPromote
	if s.Phase == backstopv1.PhasePaused && !waitsForHand {
		s.Phase, s.StepStart = backstopv1.PhaseProgressing, now
		d := next(s)
		d.Event = &Event{Reason: "Resumed", Message: "Resumed at the " + BlueGreenStageNames[s.Step]}
		return d
	}

	elapsed := now.Sub(s.StepStart)
	promote := w.Gate == GatePromote
	switch s.Step {
	case bgPreview:
		return bgAdvance(s, now, false)
	case bgAnalysis:
		switch {
		case promote || cfg.SkipAnalysis || cfg.Window == 0:
			return bgAdvance(s, now, promote)
		case elapsed < cfg.Window:
			return until(s, cfg.Window-elapsed)
		case w.Verdict.Result == Pass:
			return bgAdvance(s, now, false)
		}
		return wait(s, Poll)
	case bgPromotion:
		if waitsForHand && !promote {
			return pause(s, "WaitingForPromotion", "The new version is checked and waits to be promoted")
		}
		if w.Hooks.PromotionWaiting && !promote {
			d := wait(s, Poll)
			d.AwaitsPromotionHooks = true
			return d
		}
		return bgAdvance(s, now, promote)
	case bgSwitch:
		// The routes carry everything to the new version (written above).
		return bgAdvance(s, now, false)
	default:
		if elapsed < cfg.ScaleDownDelay {
			return until(s, cfg.ScaleDownDelay-elapsed)
		}
		s.Phase = backstopv1.PhasePromoting
		d := next(s)
		d.Event = &Event{Reason: "Promoting", Message: fmt.Sprintf("Revision %s serves all traffic; promoting it", s.Canary)}
		return d
	}
}

// bgTraffic is what the routes carry at a stage: the preview before the
// switch, everything from it on.
func bgTraffic(cfg BlueGreenConfig, stage int32) Traffic {
	if stage >= bgSwitch {
		return Traffic{Weight: 100}
	}
	return Traffic{Match: cfg.Preview}
}

func bgAdvance(s State, now time.Time, byHand bool) Decision {
	s.Phase, s.StepStart = backstopv1.PhaseProgressing, now
	s.Step++
	d := next(s)
	d.GateDone = byHand
	d.Event = &Event{Reason: "StepStarted", Message: "Blue-green " + BlueGreenStageNames[s.Step]}
	if byHand {
		d.Event.Message += " (promoted by hand)"
	}
	return d
}

package plan

import (
	"fmt"
	"time"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// bake watches a promoted revision for the bake time
// (spec.analysis.alerts.bakeTime): phase Succeeded with s.Previous, the
// stable revision before the promotion, kept, and the bake's clock started
// at s.StepStart. The reconciler asks the analyzer about alerts alone
// meanwhile, so a Fail verdict is a matching alert. In order:
//
//   - The primary already runs s.Previous: a manager restored it and died
//     before recording the rollback. The rollback goes on, even if the alert
//     has resolved since or the bake time has passed: the promoted revision
//     is never promoted again without a release.
//   - The target moved to another revision: the bake ends and a release
//     starts as from Idle.
//   - The bake time has passed: s.Previous is let go (Event BakeTimePassed).
//   - The abort gate, or a Fail verdict: the primary is made to run
//     s.Previous again (ActRestorePrevious), recorded as RollingBack with
//     the promoted revision as the canary, so rollBack goes on to the
//     revert of the promoted change.
//   - Otherwise the routes and the canary are held as between releases
//     until the bake time ends. An inconclusive verdict (alerts that could
//     not be read) does not end the bake early or roll anything back.
func bake(c Common, s State, w World, now time.Time) Decision {
	restored := w.PrimaryRevision == s.Previous
	end := s.StepStart.Add(c.BakeTime)
	if !restored {
		if w.TargetRevision != s.Stable {
			s.Previous = ""
			return idle(s, w, now)
		}
		if !now.Before(end) {
			previous := s.Previous
			s.Previous = ""
			d := next(s)
			d.Event = &Event{Reason: "BakeTimePassed", Message: fmt.Sprintf("The bake time of %s after the promotion of revision %s has passed; alerts no longer restore revision %s",
				c.BakeTime, s.Stable, previous)}
			return d
		}
	}
	switch {
	case w.Gate == GateAbort:
		d := restorePrevious(s, "Aborted", fmt.Sprintf("The promotion of revision %s was aborted by hand during the bake time; restoring revision %s", s.Stable, s.Previous))
		d.GateDone = true
		return d
	case w.Verdict.Result == Fail:
		return restorePrevious(s, "AlertAfterPromotion", fmt.Sprintf("Check %s failed within the bake time after the promotion of revision %s: %s; restoring revision %s",
			w.Verdict.Check, s.Stable, w.Verdict.Message, s.Previous))
	case restored:
		return restorePrevious(s, "PreviousRestored", fmt.Sprintf("The primary runs revision %s again; rolling back revision %s", s.Previous, s.Stable))
	}
	d := keepOnPrimary(s, w)
	if d.Settled {
		return until(s, end.Sub(now))
	}
	return d
}

// restorePrevious makes the primary run s.Previous again and records the
// promoted revision as rolling back: the routes already send everything to
// the primary and the canary is at zero, so rollBack goes straight on to
// the revert.
func restorePrevious(s State, reason, message string) Decision {
	promoted, previous := s.Stable, s.Previous
	s.Phase, s.Canary, s.Stable, s.Previous, s.Weight = backstopv1.PhaseRollingBack, promoted, previous, "", 0
	d := act(s, Action{Kind: ActRestorePrevious, Revision: previous})
	d.Event = &Event{Warning: true, Reason: reason, Message: message}
	return d
}

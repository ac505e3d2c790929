package v1alpha1

// GateAnnotation asks a Rollout for a manual step; its value is one of the
// Gate constants (`kubectl annotate rollout NAME backstop.dev/gate=promote`,
// or `kubectl backstop promote NAME`). Backstop removes it once it has acted
// on it, or at once, with a GateIgnored Event, when it does not apply in the
// Rollout's phase (see GateApplies).
const GateAnnotation = "backstop.dev/gate"

// Gate is a value of the backstop.dev/gate annotation.
type Gate string

const (
	// GatePromote ends the running pause or analysis step now; on a
	// Rollout paused by an inconclusive check it moves on to the next step.
	GatePromote Gate = "promote"
	// GatePromoteFull skips every remaining step and promotes.
	GatePromoteFull Gate = "promote-full"
	// GateAbort rolls the release back, or, during the bake time after a
	// promotion, restores the version it replaced.
	GateAbort Gate = "abort"
	// GateRetry releases again a revision that was rolled back.
	GateRetry Gate = "retry"
)

// Gates are every known value of the backstop.dev/gate annotation.
var Gates = []Gate{GatePromote, GatePromoteFull, GateAbort, GateRetry}

// GateApplies says whether gate g acts on a Rollout in phase p; one that
// does not is removed rather than left to act on a later release. baking
// says a promotion's bake time is running (status.previousStableRevision
// is set), when an abort restores the version the promotion replaced.
func GateApplies(p RolloutPhase, g Gate, baking bool) bool {
	switch p {
	case PhaseProgressing, PhasePaused:
		return g == GatePromote || g == GatePromoteFull || g == GateAbort
	case PhaseRolledBack:
		return g == GateRetry
	case PhaseSucceeded:
		return g == GateAbort && baking
	}
	return false
}

package v1alpha1

// Condition types of a Rollout. Ready is for people and `kubectl wait`;
// Reconciling and Stalled are the abnormal-true conditions kstatus reads, so
// Flux, cli-utils and kpt see a Rollout at work as InProgress and one that
// needs a person as Failed. docs/conditions.md lists every reason.
const (
	// ReadyCondition is True when the primary serves the stable version and
	// nothing is under way (reason Idle or Succeeded). It is False with the
	// phase as reason during a release or rollback, with RolledBack after
	// one, and with the problem's reason for an invalid spec, a missing
	// reference, a rejected route or a failed action.
	ReadyCondition = "Ready"

	// ReconcilingCondition is True while Backstop is at work or waits for
	// something that may still happen: a release or rollback running, an
	// object the spec names that does not exist yet, a route a gateway has
	// not accepted. Abnormal-true: absent when all is well.
	ReconcilingCondition = "Reconciling"

	// ProgressingCondition is True while a release or a rollback runs, with
	// the phase as its reason, and False with the outcome (Idle, Succeeded,
	// RolledBack) once it has ended, as a Deployment's Progressing condition
	// reads.
	ProgressingCondition = "Progressing"

	// StalledCondition is True when only a person can move the Rollout on:
	// an invalid spec (reason InvalidSpec), or a release that was rolled
	// back (reason RolledBack) until the target returns to the stable
	// version. Abnormal-true: absent when all is well.
	StalledCondition = "Stalled"

	// RevertedCondition reports the Git revert of the last rollback, as
	// status.revert holds it: Unknown (reason Pending) while it runs, True
	// when the revert is on the remote (reason Pushed), False when a person
	// must act (reason Conflict or Failed) or nothing was reverted (reason
	// Skipped). Absent until a release is rolled back.
	RevertedCondition = "Reverted"
)

// Condition reasons.
const (
	// ReasonSpecValid is the reason of the Event recorded when a spec that
	// had a problem becomes valid.
	ReasonSpecValid = "SpecValid"
	// ReasonInvalidSpec: the spec breaks a rule the API schema cannot express.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonTargetNotFound: the target Deployment does not exist.
	ReasonTargetNotFound = "TargetNotFound"
	// ReasonRouteNotFound: an existing route named in spec.routes does not
	// exist, or the Gateway API is not installed.
	ReasonRouteNotFound = "RouteNotFound"
	// ReasonParentNotFound: a parent Gateway of a generated route does not exist.
	ReasonParentNotFound = "ParentNotFound"
	// ReasonTemplateNotFound: a check's SLOTemplate or ClusterSLOTemplate
	// does not exist.
	ReasonTemplateNotFound = "TemplateNotFound"
	// ReasonActionFailed: a step of the release (a route write, a scale, the
	// primary's update) failed; the message says which and why, and it is
	// retried with backoff.
	ReasonActionFailed = "ActionFailed"
	// ReasonGateIgnored: the backstop.dev/gate annotation asked for
	// something that does not apply in the Rollout's phase (or is not a
	// gate); it was removed. Event only.
	ReasonGateIgnored = "GateIgnored"
	// ReasonRouteRejected: a gateway rejected a route; the message quotes it.
	// The release holds until the route is accepted.
	ReasonRouteRejected = "RouteRejected"
	// ReasonHookFailed: a hook answered a release with a failure (a
	// non-2xx status from a PreRelease or Step hook) and the release was
	// rolled back. Event and history reason.
	ReasonHookFailed = "HookFailed"
	// ReasonSecretNotFound: a Secret named by the spec does not exist, or
	// the manager may not read it.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonRouteNotAllowed: no listener of a generated route's parent
	// Gateway admits routes of its kind from the Rollout's namespace
	// (allowedRoutes); the route is not written until one does.
	ReasonRouteNotAllowed = "RouteNotAllowed"
	// ReasonHandingBack: the Rollout was deleted and Backstop is handing
	// its workload back to the target Deployment before it lets the
	// Rollout go (Ready=False and Reconciling=True); the message says what
	// it waits for. An Event of this reason marks the start.
	ReasonHandingBack = "HandingBack"
	// ReasonHandedBack: the target Deployment serves all traffic of the
	// deleted Rollout, which is let go. Event only.
	ReasonHandedBack = "HandedBack"
	// ReasonHandBackSkipped: part of a deleted Rollout's workload could not
	// be handed back (a route that does not exist or names neither
	// Service) and the hand-back went on without it; or none of it could,
	// because Kubernetes deleted the primary first (foreground deletion).
	// Event only.
	ReasonHandBackSkipped = "HandBackSkipped"
)

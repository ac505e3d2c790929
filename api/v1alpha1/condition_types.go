package v1alpha1

// Condition types of a Rollout. Ready is for people and `kubectl wait`;
// Reconciling and Stalled are the abnormal-true conditions kstatus reads, so
// Flux, cli-utils and kpt see a Rollout that waits as InProgress and one
// that cannot proceed as Failed.
const (
	// ReadyCondition is True when the Rollout is valid and every reference
	// resolves; False with a reason when not.
	ReadyCondition = "Ready"

	// ReconcilingCondition is True while the Rollout waits for something
	// that may still appear, such as its target Deployment. Abnormal-true:
	// absent when all is well.
	ReconcilingCondition = "Reconciling"

	// ProgressingCondition is True while a release or a rollback runs, with
	// the phase as its reason, and False with the outcome (Idle, Succeeded,
	// RolledBack) once it has ended, as a Deployment's Progressing condition
	// reads.
	ProgressingCondition = "Progressing"

	// StalledCondition is True when the Rollout cannot make progress until
	// its spec changes (reason InvalidSpec). Abnormal-true: absent when all
	// is well.
	StalledCondition = "Stalled"
)

// Condition reasons.
const (
	// ReasonSpecValid: the spec is valid and every reference resolves.
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
	// ReasonRouteRejected: a gateway rejected a route; the message quotes it.
	// The release holds until the route is accepted.
	ReasonRouteRejected = "RouteRejected"
	// ReasonSecretNotFound: a Secret named by the spec does not exist, or
	// the manager may not read it.
	ReasonSecretNotFound = "SecretNotFound"
)

package v1alpha1

// Condition types of a Rollout. Ready and Stalled follow kstatus, so Flux,
// Argo CD (with the health check in docs) and `kubectl wait` understand them.
const (
	// ReadyCondition is True when the Rollout is valid, settled and serving
	// the version it should; False with a reason when it is not.
	ReadyCondition = "Ready"

	// StalledCondition is True when the Rollout cannot make progress until
	// its spec or its references change (an invalid spec, a missing target).
	// Abnormal-true: absent or False when all is well.
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
	// ReasonTemplateNotFound: a check's SLOTemplate or ClusterSLOTemplate does
	// not exist or lacks a required argument.
	ReasonTemplateNotFound = "TemplateNotFound"
	// ReasonSecretNotFound: a Secret named by the spec does not exist.
	ReasonSecretNotFound = "SecretNotFound"
)

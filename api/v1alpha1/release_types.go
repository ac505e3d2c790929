package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HistoryLimit is how many ended releases status.history keeps.
const HistoryLimit = 10

// ReleaseOutcome is how a release ended.
// +kubebuilder:validation:Enum=Promoted;RolledBack;Withdrawn;Replaced
type ReleaseOutcome string

const (
	// OutcomePromoted: the candidate became the stable version.
	OutcomePromoted ReleaseOutcome = "Promoted"
	// OutcomeRolledBack: the candidate lost its traffic; a failed check,
	// an alert, a hook, the progress deadline or an abort decided it.
	OutcomeRolledBack ReleaseOutcome = "RolledBack"
	// OutcomeWithdrawn: the target went back to the stable version during
	// the release; nothing was reverted.
	OutcomeWithdrawn ReleaseOutcome = "Withdrawn"
	// OutcomeReplaced: a newer revision of the target replaced the
	// candidate during the release, which started again for it.
	OutcomeReplaced ReleaseOutcome = "Replaced"
)

// ReleaseRecord is one ended release, as `kubectl backstop history` shows it.
type ReleaseRecord struct {
	// FromRevision is the stable revision (pod template hash) the release
	// started from.
	// +optional
	FromRevision string `json:"fromRevision,omitempty"`

	// ToRevision is the candidate revision the release was for.
	// +required
	ToRevision string `json:"toRevision"`

	// FromSourceRevision and ToSourceRevision are the source (Git)
	// revisions of those two, as the GitOps tool reported them.
	// +optional
	FromSourceRevision string `json:"fromSourceRevision,omitempty"`
	// +optional
	ToSourceRevision string `json:"toSourceRevision,omitempty"`

	// Outcome is how the release ended.
	// +required
	Outcome ReleaseOutcome `json:"outcome"`

	// Reason is that of the decision that ended it, such as Promoted,
	// AnalysisFailed, Aborted, HookFailed or AlertAfterPromotion.
	// +optional
	Reason string `json:"reason,omitempty"`

	// FailedCheck names the check (or hook, as hook/<name>) that failed
	// the release.
	// +optional
	FailedCheck string `json:"failedCheck,omitempty"`

	// Message says what decided the outcome.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// RevertCommit is the commit that reverted the release in Git, once
	// pushed.
	// +optional
	RevertCommit string `json:"revertCommit,omitempty"`

	// StartTime is when the release started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// EndTime is when its outcome was decided: for a rollback, when the
	// traffic went back to the stable version.
	// +required
	EndTime metav1.Time `json:"endTime"`
}

// HookType says when a hook is called and what its answer means.
// +kubebuilder:validation:Enum=PreRelease;Step;PrePromotion;PostPromotion;PostRollback
type HookType string

const (
	// HookPreRelease is called once per release when the canary is ready
	// and before any traffic moves to it. The release waits for its
	// answer: 2xx lets it go on; any other status rolls it back (reason
	// HookFailed).
	HookPreRelease HookType = "PreRelease"
	// HookStep is called when each canary step starts (or the blue-green
	// analysis), for example to start a load test. The release does not
	// wait for it; a non-2xx answer rolls it back (reason HookFailed).
	HookStep HookType = "Step"
	// HookPrePromotion is a gate called when every step has passed: only a
	// 2xx answer lets the release be promoted. Any other status holds it at
	// its last step and the gate is asked again each retryInterval.
	HookPrePromotion HookType = "PrePromotion"
	// HookPostPromotion is called once after a promotion; its answer is
	// recorded and changes nothing.
	HookPostPromotion HookType = "PostPromotion"
	// HookPostRollback is called once after a rollback, when the traffic
	// is back on the stable version; its answer is recorded and changes
	// nothing.
	HookPostRollback HookType = "PostRollback"
)

// Hook is an HTTP call made at a point of each release. Backstop POSTs a
// JSON body (see docs/hooks.md) and judges the answer by its status code.
// A call that times out or cannot connect is tried again, up to attempts
// times with backoff; when every attempt fails that way the hook is
// inconclusive, which spec.analysis.onInconclusive turns into a pause
// (the default) or a rollback. Calls never hold up a rollback: they run
// beside the state machine, which only reads their results.
//
// +kubebuilder:validation:XValidation:rule="has(self.url) != has(self.urlSecretRef)",message="a hook needs exactly one of url or urlSecretRef"
// +kubebuilder:validation:XValidation:rule="!has(self.steps) || self.type == 'Step'",message="steps apply only to hooks of type Step"
type Hook struct {
	// Name of the hook, unique in the Rollout.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Type says when the hook is called and what its answer means.
	// +required
	Type HookType `json:"type"`

	// URL the hook POSTs to, http or https.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	URL string `json:"url,omitempty"`

	// URLSecretRef takes the URL from a key of a Secret in the Rollout's
	// namespace, for URLs that carry a token. It is never shown in status,
	// Events or logs.
	// +optional
	URLSecretRef *SecretKeyReference `json:"urlSecretRef,omitempty"`

	// Timeout of one call.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Attempts is how many times a call that times out or cannot connect
	// is made before the hook is inconclusive.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	Attempts *int32 `json:"attempts,omitempty"`

	// RetryInterval is how often a PrePromotion gate that said no is asked
	// again: at least 1s.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="an interval is at least 1s"
	RetryInterval *metav1.Duration `json:"retryInterval,omitempty"`

	// Steps limits a Step hook to these canary steps, counted from 1 as
	// `kubectl backstop status` shows them. Empty calls it at every step.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=64
	Steps []int32 `json:"steps,omitempty"`

	// Metadata is sent in the body, for the receiver (such as the command
	// of a load test).
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Metadata map[string]string `json:"metadata,omitempty"`
}

// SecretKeyReference names a key of a Secret in the Rollout's namespace.
// The name is a Kubernetes object name (a DNS-1123 subdomain): a slash or
// anything else that could reach outside the namespace is refused.
type SecretKeyReference struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Key in the Secret's data: letters, digits, '-', '_' and '.', as
	// Kubernetes allows in a Secret's keys.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// HookResult is what a hook's answer meant.
// +kubebuilder:validation:Enum=Running;Pass;Fail;Waiting;Inconclusive
type HookResult string

const (
	// HookRunning: the call has not ended yet.
	HookRunning HookResult = "Running"
	// HookPass: the receiver answered 2xx.
	HookPass HookResult = "Pass"
	// HookFail: the receiver answered with another status.
	HookFail HookResult = "Fail"
	// HookWaiting: a PrePromotion gate said no; it is asked again.
	HookWaiting HookResult = "Waiting"
	// HookInconclusive: every attempt timed out or could not connect.
	HookInconclusive HookResult = "Inconclusive"
)

// HookStatus is the result of one call of a hook in the running (or last)
// release.
type HookStatus struct {
	// Name of the hook.
	// +required
	Name string `json:"name"`

	// Type of the hook.
	// +required
	Type HookType `json:"type"`

	// Step is the canary step (from 1) a Step hook was called for.
	// +optional
	Step int32 `json:"step,omitempty"`

	// Revision is the candidate revision of the release it was called for.
	// +required
	Revision string `json:"revision"`

	// Result of the call.
	// +required
	Result HookResult `json:"result"`

	// Message says what the receiver answered (status and the start of
	// the body) or why it could not be reached.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// Attempts counts the calls made.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`

	// Time of the last answer (or failure to get one).
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// NotificationType is the shape of the message a notification target gets.
// +kubebuilder:validation:Enum=Webhook;Slack;Teams
type NotificationType string

const (
	// NotifyWebhook posts Backstop's JSON event (see docs/notifications.md).
	NotifyWebhook NotificationType = "Webhook"
	// NotifySlack posts a Slack incoming-webhook message (text and blocks);
	// Mattermost and Rocket.Chat take it too.
	NotifySlack NotificationType = "Slack"
	// NotifyTeams posts a Microsoft Teams message card with an adaptive
	// card, as Teams workflows and incoming webhooks take it.
	NotifyTeams NotificationType = "Teams"
)

// NotificationSpec says where a Rollout's phase changes are posted.
type NotificationSpec struct {
	// Targets each get a message at every phase change they select.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Targets []NotificationTarget `json:"targets,omitempty"`

	// SkipClusterDefault leaves out the manager's default target
	// (--notification-secret), which otherwise gets every Rollout's phase
	// changes too.
	// +optional
	SkipClusterDefault bool `json:"skipClusterDefault,omitempty"`
}

// NotificationTarget is one receiver of a Rollout's phase changes.
type NotificationTarget struct {
	// Name of the target, unique in the Rollout.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Type is the message's shape.
	// +optional
	// +kubebuilder:default=Webhook
	Type NotificationType `json:"type,omitempty"`

	// URLSecretRef names the Secret key that holds the URL to post to:
	// chat webhook URLs are credentials. It is never shown in status,
	// Events or logs.
	// +required
	URLSecretRef SecretKeyReference `json:"urlSecretRef"`

	// Phases selects the phases whose start is posted. Empty posts every
	// phase change but Initializing.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	Phases []RolloutPhase `json:"phases,omitempty"`
}

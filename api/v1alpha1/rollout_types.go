package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// RolloutKind is the kind of the Rollout resource.
const RolloutKind = "Rollout"

// RolloutSpec says which Deployment Backstop releases, how traffic reaches
// it, how the release proceeds and how it is judged.
//
// +kubebuilder:validation:XValidation:rule="!has(self.strategy.canary) || !has(self.strategy.canary.steps) || self.strategy.canary.steps.all(s, !has(s.analysis) || !has(s.analysis.checks) || s.analysis.checks.all(c, has(self.analysis) && has(self.analysis.checks) && self.analysis.checks.exists(k, k.name == c)))",message="every check named in an analysis step must be defined in spec.analysis.checks"
// +kubebuilder:validation:XValidation:rule="!has(self.strategy.blueGreen) || !has(self.strategy.blueGreen.analysis) || !has(self.strategy.blueGreen.analysis.checks) || self.strategy.blueGreen.analysis.checks.all(c, has(self.analysis) && has(self.analysis.checks) && self.analysis.checks.exists(k, k.name == c))",message="every check named in strategy.blueGreen.analysis must be defined in spec.analysis.checks"
// +kubebuilder:validation:XValidation:rule="!has(self.strategy.canary) || !has(self.strategy.canary.sessionAffinity) || self.routes.exists(r, !(has(r.existing) && r.existing) && (!has(r.kind) || r.kind == 'HTTPRoute'))",message="strategy.canary.sessionAffinity needs a generated HTTPRoute in spec.routes: GRPCRoutes and existing routes get no sticky rule and no cookie"
// +kubebuilder:validation:XValidation:rule="!has(self.strategy.canary) || !has(self.strategy.canary.sessionAffinity) || self.routes.all(r, !has(r.http) || !has(r.http.matches) || r.http.matches.all(m, !has(m.headers) || m.headers.all(h, h.name.lowerAscii() != 'cookie')))",message="strategy.canary.sessionAffinity matches the Cookie header, so no http.matches of a route may match it too: a route match considers only one match per header name"
// +kubebuilder:validation:XValidation:rule="has(self.service.name) || (size(self.targetRef.name) <= 55 && self.targetRef.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))",message="service.name is needed when targetRef.name is not a valid base for Service names (a DNS-1035 label of at most 55 characters)"
type RolloutSpec struct {
	// TargetRef names the Deployment, in the Rollout's namespace, that the
	// GitOps tool keeps in sync with Git. Its pod template is the candidate:
	// when it differs from the last promoted template, a release starts.
	// +required
	TargetRef TargetReference `json:"targetRef"`

	// Service describes the port the application serves on. Backstop creates
	// the Services <name>-primary and <name>-canary that select the two pod
	// sets and that the routes send traffic to.
	// +required
	Service ServiceSpec `json:"service"`

	// Routes are the Gateway API routes that carry the application's traffic.
	// Each is either generated and owned by Backstop, or an existing route
	// whose backendRefs Backstop edits. At least one route is needed to
	// move traffic.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	Routes []Route `json:"routes"`

	// Strategy is how a new version is released: exactly one of canary or
	// blueGreen.
	// +required
	Strategy Strategy `json:"strategy"`

	// Analysis holds the SLO checks that judge a release.
	// +optional
	Analysis *AnalysisSpec `json:"analysis,omitempty"`

	// Revert configures the Git revert that follows a rollback.
	// +optional
	Revert *RevertSpec `json:"revert,omitempty"`

	// Paused holds a release where it is: no step advances and no traffic
	// moves until it is set back to false; a release that starts while
	// paused scales its canary up and waits. A failed check, an abort or a
	// new revision still acts while paused, and resuming restarts the
	// current step's clock.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// SkipAnalysis promotes through every step without judging the
	// release: analysis steps end at once.
	// +optional
	SkipAnalysis bool `json:"skipAnalysis,omitempty"`

	// Hooks are HTTP calls made at points of each release: before it,
	// at each step, as a gate before promotion, and after it ends.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Hooks []Hook `json:"hooks,omitempty"`

	// Notifications posts the Rollout's phase changes to chat or a webhook.
	// +optional
	Notifications *NotificationSpec `json:"notifications,omitempty"`

	// ProgressDeadlineSeconds is how long the canary may take to become ready
	// before the release is rolled back.
	// +optional
	// +kubebuilder:default=600
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`
}

// TargetReference names the workload that Backstop releases.
type TargetReference struct {
	// APIVersion of the target. Only apps/v1 is supported.
	// +optional
	// +kubebuilder:default="apps/v1"
	// +kubebuilder:validation:Enum="apps/v1"
	APIVersion string `json:"apiVersion,omitempty"`

	// Kind of the target. Only Deployment is supported.
	// +optional
	// +kubebuilder:default=Deployment
	// +kubebuilder:validation:Enum=Deployment
	Kind string `json:"kind,omitempty"`

	// Name of the Deployment in the Rollout's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// ServiceSpec describes how the application is reached.
type ServiceSpec struct {
	// Name is the base name of the Services Backstop creates
	// (<name>-primary, <name>-canary). Defaults to the target's name, which
	// must then be a DNS-1035 label of at most 55 characters.
	// +optional
	// +kubebuilder:validation:MaxLength=55
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// Port is the Service port that routes send traffic to.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// TargetPort is the container port, by number or name. Defaults to Port.
	// +optional
	TargetPort *intstr.IntOrString `json:"targetPort,omitempty"`

	// PortName names the Service port, a DNS label. Defaults to "http", or
	// "grpc" when the Rollout has only GRPCRoutes.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	PortName string `json:"portName,omitempty"`

	// AppProtocol is set on the Service port (for example kubernetes.io/h2c
	// for gRPC without TLS) so gateways pick the right upstream protocol.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	AppProtocol *string `json:"appProtocol,omitempty"`
}

// RouteKind is the kind of a Gateway API route.
// +kubebuilder:validation:Enum=HTTPRoute;GRPCRoute
type RouteKind string

const (
	// HTTPRouteKind selects a gateway.networking.k8s.io/v1 HTTPRoute.
	HTTPRouteKind RouteKind = "HTTPRoute"
	// GRPCRouteKind selects a gateway.networking.k8s.io/v1 GRPCRoute.
	GRPCRouteKind RouteKind = "GRPCRoute"
)

// Route is one Gateway API route that carries the application's traffic.
// With existing set, Backstop edits only the backendRefs that point at its
// Services in that route; otherwise it generates and owns a route named
// name from parentRefs, hostnames and the http or grpc rule template.
//
// +kubebuilder:validation:XValidation:rule="(has(self.existing) && self.existing) ? (!has(self.parentRefs) && !has(self.hostnames) && !has(self.http) && !has(self.grpc)) : has(self.parentRefs)",message="a generated route needs parentRefs; a route with existing=true takes no parentRefs, hostnames, http or grpc"
// +kubebuilder:validation:XValidation:rule="!has(self.http) || self.kind == 'HTTPRoute'",message="http applies only to kind HTTPRoute"
// +kubebuilder:validation:XValidation:rule="!has(self.grpc) || self.kind == 'GRPCRoute'",message="grpc applies only to kind GRPCRoute"
type Route struct {
	// Name of the route in the Rollout's namespace: the route Backstop
	// creates, or the existing route it edits.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Kind of the route.
	// +optional
	// +kubebuilder:default=HTTPRoute
	Kind RouteKind `json:"kind,omitempty"`

	// Existing says the route is kept by the user (typically in Git) and
	// Backstop only sets the weights of the backendRefs that name its
	// primary and canary Services. See docs/routing.md for keeping the
	// GitOps tool from fighting over those weights.
	// +optional
	Existing bool `json:"existing,omitempty"`

	// ParentRefs are the Gateways (or other parents) the generated route
	// attaches to.
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	ParentRefs []gwapiv1.ParentReference `json:"parentRefs,omitempty"`

	// Hostnames of the generated route.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Hostnames []gwapiv1.Hostname `json:"hostnames,omitempty"`

	// HTTP is the rule template of a generated HTTPRoute.
	// +optional
	HTTP *HTTPRouteTemplate `json:"http,omitempty"`

	// GRPC is the rule template of a generated GRPCRoute.
	// +optional
	GRPC *GRPCRouteTemplate `json:"grpc,omitempty"`
}

// HTTPRouteTemplate is the part of a generated HTTPRoute's rule that is not
// the backends: Backstop fills in backendRefs and weights.
type HTTPRouteTemplate struct {
	// Matches select the requests the route carries. Empty matches all.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	Matches []gwapiv1.HTTPRouteMatch `json:"matches,omitempty"`

	// Filters apply to every request the route carries.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Filters []gwapiv1.HTTPRouteFilter `json:"filters,omitempty"`

	// Timeouts of the route's rule.
	// +optional
	Timeouts *gwapiv1.HTTPRouteTimeouts `json:"timeouts,omitempty"`
}

// GRPCRouteTemplate is the part of a generated GRPCRoute's rule that is not
// the backends.
type GRPCRouteTemplate struct {
	// Matches select the calls the route carries. Empty matches all.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	Matches []gwapiv1.GRPCRouteMatch `json:"matches,omitempty"`

	// Filters apply to every call the route carries.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Filters []gwapiv1.GRPCRouteFilter `json:"filters,omitempty"`
}

// Strategy is how a new version is released.
//
// +kubebuilder:validation:XValidation:rule="has(self.canary) != has(self.blueGreen)",message="exactly one of strategy.canary or strategy.blueGreen must be set"
type Strategy struct {
	// Canary shifts traffic to the new version step by step.
	// +optional
	Canary *CanaryStrategy `json:"canary,omitempty"`

	// BlueGreen runs the new version at full size beside the old one, checks
	// it through a preview route, then switches all traffic at once.
	// +optional
	BlueGreen *BlueGreenStrategy `json:"blueGreen,omitempty"`
}

// CanaryStrategy shifts traffic to the canary step by step. Give either
// steps, or the short form stepWeight, maxWeight and interval, which expands
// to setWeight and analysis steps of interval each, from stepWeight to
// maxWeight.
//
// +kubebuilder:validation:XValidation:rule="has(self.steps) != has(self.stepWeight)",message="set either steps or the short form (stepWeight, maxWeight, interval), not both and not neither"
// +kubebuilder:validation:XValidation:rule="has(self.stepWeight) == has(self.interval)",message="stepWeight and interval go together"
// +kubebuilder:validation:XValidation:rule="!has(self.maxWeight) || has(self.stepWeight)",message="maxWeight needs stepWeight"
// +kubebuilder:validation:XValidation:rule="!has(self.maxWeight) || !has(self.stepWeight) || self.stepWeight <= self.maxWeight",message="stepWeight must not exceed maxWeight"
type CanaryStrategy struct {
	// Steps are run in order; after the last one the canary is promoted.
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Steps []CanaryStep `json:"steps,omitempty"`

	// StepWeight is the weight added at each step of the short form.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	StepWeight *int32 `json:"stepWeight,omitempty"`

	// MaxWeight is the last weight of the short form before promotion.
	// Defaults to 100.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxWeight *int32 `json:"maxWeight,omitempty"`

	// Interval is how long each step of the short form lasts, with checks
	// running throughout.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	Interval *metav1.Duration `json:"interval,omitempty"`

	// ReplicaPercent sizes the canary as a percentage of the primary's
	// replicas (rounded up, at least one). Defaults to 100.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	ReplicaPercent *int32 `json:"replicaPercent,omitempty"`

	// Match sends requests that match (by header or cookie) to the canary
	// for the whole release: A/B testing. Other requests follow the weights.
	// +optional
	Match *TrafficMatch `json:"match,omitempty"`

	// Mirror copies a share of the stable traffic to the canary while its
	// weight is zero; responses from the canary are discarded.
	// +optional
	Mirror *MirrorSpec `json:"mirror,omitempty"`

	// SessionAffinity keeps a user whom the weights sent to the canary on
	// the canary for the rest of the release, through a cookie. While the
	// canary's weight is above zero, each generated HTTPRoute gets a
	// ResponseHeaderModifier filter on the canary's backendRef of the
	// weighted rule that adds "Set-Cookie: <cookieName>=<release id>;
	// Max-Age=<maxAge in seconds>; Path=/; HttpOnly; SameSite=Lax" to the
	// canary's responses, and a sticky rule before the weighted rule that
	// sends the requests carrying that cookie (each template match plus a
	// match of the Cookie header) to the canary alone. The release id is 12
	// hexadecimal digits derived from the Rollout's UID, the canary's
	// revision and the release's start time: each release (a retry of the
	// same revision too) has its own, so a cookie from an earlier release
	// matches no later one, and it reveals nothing about the Rollout or the
	// cluster. At weight 0 (before the first weighted step, at promotion,
	// at a rollback, between releases) neither exists, so users holding the
	// cookie follow the weights again at once. GRPCRoutes and existing
	// routes get neither. The gateway must apply filters given on a
	// backendRef (implementation-specific in Gateway API): one that ignores
	// them, as Traefik v3.6 does, never sets the cookie, and the weights
	// alone decide. See docs/routing.md.
	// +optional
	SessionAffinity *SessionAffinity `json:"sessionAffinity,omitempty"`
}

// Defaults of SessionAffinity.
const (
	// DefaultSessionCookieName is the cookie of SessionAffinity when
	// cookieName is not given.
	DefaultSessionCookieName = "backstop-canary"
	// DefaultSessionMaxAge is how long a browser keeps the cookie of
	// SessionAffinity when maxAge is not given.
	DefaultSessionMaxAge = 24 * time.Hour
)

// SessionAffinity keeps a user on the canary once the weights have sent
// them there, so that one user does not flip between the two versions from
// one request to the next (see CanaryStrategy.SessionAffinity for the
// route shape).
type SessionAffinity struct {
	// CookieName is the name of the cookie: an RFC 6265 token of at most
	// 64 characters that does not start with "__" (browsers give the
	// __Secure- and __Host- prefixes meanings that need the Secure
	// attribute, which Backstop does not set since it cannot tell whether
	// the listener serves HTTPS). Rollouts that share a hostname should
	// each have their own name: a browser keeps one cookie of a name per
	// host and path, so the releases would take each other's users.
	// +optional
	// +kubebuilder:default="backstop-canary"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[!#$%&'*+\-.^_|~0-9A-Za-z]+$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('__')",message="a cookie name must not start with __: browsers reserve the __Secure- and __Host- prefixes for cookies with the Secure attribute, which Backstop does not set"
	CookieName string `json:"cookieName,omitempty"`

	// MaxAge is how long a browser keeps the cookie (its Max-Age, in whole
	// seconds), from 1s to 720h (30 days). The cookie matches only during
	// the release that set it, however long it lives; a user whose cookie
	// expires during the release follows the weights again, and may be
	// sent to the canary and given a new one.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('720h')",message="maxAge is at most 720h (30 days)"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="maxAge is at least 1s: a cookie with Max-Age 0 is deleted at once"
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
}

// CanaryStep is one step of a canary release: exactly one of setWeight,
// pause and analysis.
//
// +kubebuilder:validation:XValidation:rule="[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",message="a step has exactly one of setWeight, pause or analysis"
type CanaryStep struct {
	// SetWeight sends this percentage of traffic to the canary.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	SetWeight *int32 `json:"setWeight,omitempty"`

	// Pause holds the release for a duration, or until it is promoted when
	// no duration is given. Checks keep running during a pause.
	// +optional
	Pause *PauseStep `json:"pause,omitempty"`

	// Analysis runs the checks for a window before the next step.
	// +optional
	Analysis *AnalysisStep `json:"analysis,omitempty"`
}

// PauseStep holds a release.
type PauseStep struct {
	// Duration of the pause. Without it the release waits until promoted.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// AnalysisStep runs checks for a window.
type AnalysisStep struct {
	// Window is how long the checks run; the step passes when no check has
	// reached its failure limit by the end of it.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	Window metav1.Duration `json:"window"`

	// Checks names the checks of spec.analysis.checks to run. Empty runs all.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	Checks []string `json:"checks,omitempty"`
}

// TrafficMatch selects requests by header or cookie.
//
// +kubebuilder:validation:XValidation:rule="has(self.headers) || has(self.cookies)",message="a match needs at least one header or cookie"
type TrafficMatch struct {
	// Headers that must all match.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	Headers []gwapiv1.HTTPHeaderMatch `json:"headers,omitempty"`

	// Cookies that must all be present with the given value, in any order.
	// At most four: they are matched by one expression on the Cookie header.
	// +optional
	// +kubebuilder:validation:MaxItems=4
	Cookies []CookieMatch `json:"cookies,omitempty"`
}

// CookieMatch matches a cookie by name and exact value.
type CookieMatch struct {
	// Name of the cookie.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[!#$%&'*+\-.^_|~0-9A-Za-z]+$`
	Name string `json:"name"`

	// Value the cookie must have.
	// +required
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^[!#$%&'()*+\-./0-9:<=>?@A-Z\[\]^_a-z{|}~]*$`
	Value string `json:"value"`
}

// MirrorSpec mirrors traffic to the canary.
type MirrorSpec struct {
	// Percent of requests to mirror.
	// +optional
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent,omitempty"`
}

// BlueGreenStrategy runs the new version beside the old one at full size,
// checks it through a preview route, then switches all traffic at once.
type BlueGreenStrategy struct {
	// Preview selects the requests (by header or cookie) that reach the new
	// version before the switch. Without it or previewHostnames only the
	// checks see it.
	// +optional
	Preview *TrafficMatch `json:"preview,omitempty"`

	// PreviewHostnames are hostnames whose requests reach the new version
	// only, during the release. For each generated route Backstop generates
	// an HTTPRoute or GRPCRoute named <route>-preview, with the same
	// parentRefs and rule template and these hostnames, that sends
	// everything to the canary Service; it is removed at the switch or on
	// rollback. Existing (user-kept) routes get no preview route. Preview
	// and previewHostnames may be combined.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	PreviewHostnames []gwapiv1.Hostname `json:"previewHostnames,omitempty"`

	// Analysis runs the checks for a window before the switch.
	// +optional
	Analysis *AnalysisStep `json:"analysis,omitempty"`

	// AutoPromote switches traffic as soon as the checks pass. When false
	// the release waits to be promoted by hand.
	// +optional
	// +kubebuilder:default=true
	AutoPromote *bool `json:"autoPromote,omitempty"`

	// ScaleDownDelay is how long the old version keeps running after the
	// switch, so that an alert can switch back without a cold start.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	ScaleDownDelay *metav1.Duration `json:"scaleDownDelay,omitempty"`
}

// RolloutPhase is where a Rollout is in its life.
// +kubebuilder:validation:Enum=Initializing;Idle;Progressing;Paused;Promoting;Succeeded;RollingBack;RolledBack
type RolloutPhase string

const (
	// PhaseInitializing: the primary Deployment and Services are being set up.
	PhaseInitializing RolloutPhase = "Initializing"
	// PhaseIdle: the primary serves all traffic and no release is running.
	PhaseIdle RolloutPhase = "Idle"
	// PhaseProgressing: a release is running its steps.
	PhaseProgressing RolloutPhase = "Progressing"
	// PhasePaused: a release waits on a pause step, spec.paused or a promotion.
	PhasePaused RolloutPhase = "Paused"
	// PhasePromoting: the candidate is being copied to the primary.
	PhasePromoting RolloutPhase = "Promoting"
	// PhaseSucceeded: the last release was promoted.
	PhaseSucceeded RolloutPhase = "Succeeded"
	// PhaseRollingBack: traffic is back on the primary and the canary is
	// being scaled down; the revert starts on entering RolledBack.
	PhaseRollingBack RolloutPhase = "RollingBack"
	// PhaseRolledBack: the last release was rolled back.
	PhaseRolledBack RolloutPhase = "RolledBack"
)

// RolloutStatus is everything Backstop knows about a release; a restarted
// controller resumes from it.
type RolloutStatus struct {
	// ObservedGeneration is the generation of the spec last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase of the Rollout.
	// +optional
	Phase RolloutPhase `json:"phase,omitempty"`

	// CurrentStep is the index of the running step of the release.
	// +optional
	CurrentStep int32 `json:"currentStep,omitempty"`

	// ReleaseStartTime is when the running (or last) release started.
	// +optional
	ReleaseStartTime *metav1.Time `json:"releaseStartTime,omitempty"`

	// StepStartTime is when the current step began.
	// +optional
	StepStartTime *metav1.Time `json:"stepStartTime,omitempty"`

	// CanaryWeight is the percentage of traffic the routes send to the canary.
	// +optional
	CanaryWeight int32 `json:"canaryWeight,omitempty"`

	// StableRevision is the pod template hash of the primary.
	// +optional
	StableRevision string `json:"stableRevision,omitempty"`

	// CanaryRevision is the pod template hash of the candidate.
	// +optional
	CanaryRevision string `json:"canaryRevision,omitempty"`

	// PreviousStableRevision is the revision the primary ran before the
	// last promotion, kept while spec.analysis.alerts.bakeTime runs: a
	// matching alert in that time restores it. Empty once the bake time
	// has passed.
	// +optional
	PreviousStableRevision string `json:"previousStableRevision,omitempty"`

	// StableSourceRevision is the source (Git) revision the primary was
	// promoted from, as the GitOps tool reported it.
	// +optional
	StableSourceRevision string `json:"stableSourceRevision,omitempty"`

	// CanarySourceRevision is the source (Git) revision the candidate was
	// applied from, as the GitOps tool reported it.
	// +optional
	CanarySourceRevision string `json:"canarySourceRevision,omitempty"`

	// PreviousStableSourceRevision is the source revision of
	// previousStableRevision, kept with it during the bake time: when an
	// alert restores that revision, the revert undoes the commits from
	// there to the promoted one.
	// +optional
	PreviousStableSourceRevision string `json:"previousStableSourceRevision,omitempty"`

	// Conditions: Ready (kstatus-compatible, True when the Rollout is
	// settled and healthy), Stalled, and the release conditions described
	// in docs/conditions.md.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Analysis holds the last result of each check.
	// +optional
	Analysis *AnalysisStatus `json:"analysis,omitempty"`

	// Revert is the state of the Git revert of the last rollback.
	// +optional
	Revert *RevertStatus `json:"revert,omitempty"`

	// Hooks are the results of the hook calls of the running (or last)
	// release, at most 128.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=128
	Hooks []HookStatus `json:"hooks,omitempty"`

	// History lists the releases that ended, newest first, at most
	// HistoryLimit (10).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	History []ReleaseRecord `json:"history,omitempty"`
}

// Rollout releases a Deployment progressively through Gateway API routes,
// judged by SLOs, and reverts the offending change in Git when it fails.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bro,categories=backstop
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.status.canaryWeight`
// +kubebuilder:printcolumn:name="Step",type=integer,JSONPath=`.status.currentStep`
// +kubebuilder:printcolumn:name="Stable",type=string,JSONPath=`.status.stableRevision`
// +kubebuilder:printcolumn:name="Canary",type=string,JSONPath=`.status.canaryRevision`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
type Rollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec RolloutSpec `json:"spec"`

	// +optional
	Status RolloutStatus `json:"status,omitempty"`
}

// RolloutList is a list of Rollouts.
//
// +kubebuilder:object:root=true
type RolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Rollout `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Rollout{}, &RolloutList{})
}

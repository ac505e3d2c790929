package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Decimal is a number written as a string, such as "0.99", "-3" or "1e-3".
// Strings keep values exact in Git and in the API, where floats are not.
// +kubebuilder:validation:Pattern=`^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$`
// +kubebuilder:validation:MaxLength=32
type Decimal string

// AnalysisSpec holds the checks that judge a release.
type AnalysisSpec struct {
	// Interval between two evaluations of each check: at least 1s, since
	// each evaluation queries Prometheus and a shorter one would only load
	// it and the manager.
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="an interval is at least 1s"
	Interval *metav1.Duration `json:"interval,omitempty"`

	// WarmUp is how long after a weight change the checks wait before their
	// first evaluation, so the new traffic shows in the metrics.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	WarmUp *metav1.Duration `json:"warmUp,omitempty"`

	// Prometheus is the metrics source of the checks that name none. Without
	// it the manager's --prometheus-address is used.
	// +optional
	Prometheus *PrometheusSource `json:"prometheus,omitempty"`

	// Checks are evaluated at every interval throughout a release.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(c, c.name != 'alerts')",message="the check name alerts is taken by spec.analysis.alerts"
	Checks []Check `json:"checks,omitempty"`

	// Alerts fail the release as soon as a matching alert fires, and roll
	// back a promoted version during the bake time after promotion.
	// +optional
	Alerts *AlertGuard `json:"alerts,omitempty"`

	// InconclusiveLimit is how many inconclusive evaluations in a row (empty
	// result, NaN, Prometheus unreachable) a check may have before
	// onInconclusive applies.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	InconclusiveLimit *int32 `json:"inconclusiveLimit,omitempty"`

	// OnInconclusive is what happens when a check reaches its inconclusive
	// limit: Pause holds the release at its current weight until a person
	// acts; RollBack fails it.
	// +optional
	// +kubebuilder:default=Pause
	// +kubebuilder:validation:Enum=Pause;RollBack
	OnInconclusive InconclusivePolicy `json:"onInconclusive,omitempty"`
}

// InconclusivePolicy is what a release does when its checks cannot decide.
type InconclusivePolicy string

const (
	// InconclusivePause holds the release until a person promotes or aborts.
	InconclusivePause InconclusivePolicy = "Pause"
	// InconclusiveRollBack fails the release.
	InconclusiveRollBack InconclusivePolicy = "RollBack"
)

// PrometheusSource is a Prometheus-compatible HTTP API (Prometheus, Thanos,
// Mimir, VictoriaMetrics).
type PrometheusSource struct {
	// Address is the base URL of the API, for example
	// http://prometheus.monitoring:9090.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	Address string `json:"address"`

	// SecretRef names a Secret in the Rollout's namespace with credentials:
	// "token" (bearer), or "username" and "password" (basic auth); and
	// optionally "ca.crt", "tls.crt" and "tls.key".
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`

	// Timeout of one query.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// LocalObjectReference names an object in the Rollout's namespace. The
// name is a Kubernetes object name (a DNS-1123 subdomain): a slash or
// anything else that could reach outside the namespace is refused.
type LocalObjectReference struct {
	// Name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// Check is one SLO check: inline, or taken from an SLOTemplate or
// ClusterSLOTemplate with arguments.
//
// +kubebuilder:validation:XValidation:rule="has(self.templateRef) != (has(self.query) || has(self.objective) || has(self.sequential))",message="a check has either templateRef or an inline query, objective or sequential"
// +kubebuilder:validation:XValidation:rule="!has(self.args) || has(self.templateRef)",message="args are only for checks with a templateRef"
// +kubebuilder:validation:XValidation:rule="!has(self.objective) || (!has(self.query) && !has(self.min) && !has(self.max) && !has(self.compare) && !has(self.sequential))",message="an objective check takes its queries in objective; query, min, max, compare and sequential do not apply"
// +kubebuilder:validation:XValidation:rule="!has(self.sequential) || (!has(self.query) && !has(self.min) && !has(self.max) && !has(self.compare))",message="a sequential check takes its queries in sequential; query, min, max and compare do not apply"
// +kubebuilder:validation:XValidation:rule="!has(self.query) || has(self.min) || has(self.max) || has(self.compare)",message="a query check needs min, max or compare"
// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || double(self.min) <= double(self.max)",message="min must not exceed max"
type Check struct {
	// Name of the check, unique within the Rollout; it names the check in
	// status, events and the revert commit message.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// TemplateRef takes the check from an SLOTemplate or ClusterSLOTemplate.
	// The template gives the query or objective; min, max, compare and
	// prometheus set beside templateRef override the template's.
	// +optional
	TemplateRef *TemplateReference `json:"templateRef,omitempty"`

	// Args are values for the template's args.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Args map[string]string `json:"args,omitempty"`

	// FailureLimit is how many failed evaluations the check tolerates; the
	// next one fails the release. 0 fails it on the first.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	FailureLimit int32 `json:"failureLimit,omitempty"`

	CheckSpec `json:",inline"`
}

// CheckSpec is the rule of a check. A query check passes when the query's
// value lies within min and max, or compares well with the primary; an
// objective check passes while the error budget burns slower than allowed.
type CheckSpec struct {
	// Prometheus is the metrics source of this check, if not the Rollout's.
	// +optional
	Prometheus *PrometheusSource `json:"prometheus,omitempty"`

	// Query is a PromQL expression with one result. It is a Go template:
	// {{.Namespace}}, {{.Name}}, {{.Target}}, {{.Primary}}, {{.Canary}},
	// {{.Service}}, {{.CanaryService}}, {{.PrimaryService}}, {{.Window}},
	// {{.Interval}} and {{.Args.NAME}}, each escaped for PromQL.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Query string `json:"query,omitempty"`

	// Min is the lowest passing value.
	// +optional
	Min *Decimal `json:"min,omitempty"`

	// Max is the highest passing value.
	// +optional
	Max *Decimal `json:"max,omitempty"`

	// Compare runs the query for the canary and for the primary (the
	// template's {{.Canary}} and {{.Primary}} swapped) and passes when the
	// canary is no worse than the primary within a tolerance.
	// +optional
	Compare *CompareRule `json:"compare,omitempty"`

	// Objective is an SLO evaluated as an error-budget burn rate.
	// +optional
	Objective *ObjectiveRule `json:"objective,omitempty"`

	// Sequential compares the canary's error rate with the primary's by an
	// anytime-valid sequential test, which may be evaluated at every
	// interval without raising its false-positive rate.
	// +optional
	Sequential *SequentialRule `json:"sequential,omitempty"`
}

// SequentialRule tests whether the canary fails a larger share of its
// requests than the primary, with a mixture sequential probability ratio
// test on the error counts of each interval (docs/sequential-test.md). The
// check fails once the evidence against "the canary is no worse" reaches
// 1/alpha; the chance that this happens to a canary that is no worse, at
// any evaluation of the release, is at most alpha.
//
// +kubebuilder:validation:XValidation:rule="!has(self.alpha) || (double(self.alpha) > 0.0 && double(self.alpha) < 0.5)",message="alpha is a probability greater than 0 and less than 0.5"
type SequentialRule struct {
	// ErrorsQuery counts the canary's failed requests over {{.Window}},
	// which is the time since the previous evaluation. It runs again with
	// {{.Canary}} and {{.Primary}} (and {{.CanaryService}} and
	// {{.PrimaryService}}) swapped to count the primary's.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	ErrorsQuery string `json:"errorsQuery"`

	// TotalQuery counts all of the canary's requests over {{.Window}}, and
	// the primary's the same way.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	TotalQuery string `json:"totalQuery"`

	// Alpha is the false-positive rate the test allows over a whole
	// release, however often it is evaluated.
	// +optional
	// +kubebuilder:default="0.05"
	Alpha Decimal `json:"alpha,omitempty"`
}

// CompareRule compares the canary's value with the primary's.
type CompareRule struct {
	// Direction says which way is better.
	// +optional
	// +kubebuilder:default=LowerIsBetter
	// +kubebuilder:validation:Enum=LowerIsBetter;HigherIsBetter
	Direction string `json:"direction,omitempty"`

	// Tolerance is how much worse the canary may be.
	// +optional
	// +kubebuilder:default="0"
	Tolerance Decimal `json:"tolerance,omitempty"`

	// ToleranceType says whether tolerance is a fraction of the primary's
	// value (Relative: 0.1 is 10%) or in the query's units (Absolute).
	// +optional
	// +kubebuilder:default=Relative
	// +kubebuilder:validation:Enum=Relative;Absolute
	ToleranceType string `json:"toleranceType,omitempty"`
}

// ObjectiveRule is an SLO such as "99.9% of requests succeed", judged by how
// fast the release burns the error budget, over a short and a long window
// (multiwindow burn-rate alerting, as in the SRE Workbook). The check fails
// when the burn rate exceeds burnRateThreshold in both windows.
//
// +kubebuilder:validation:XValidation:rule="has(self.errorRatioQuery) != (has(self.goodQuery) || has(self.totalQuery))",message="give either errorRatioQuery, or goodQuery and totalQuery"
// +kubebuilder:validation:XValidation:rule="has(self.goodQuery) == has(self.totalQuery)",message="goodQuery and totalQuery go together"
// +kubebuilder:validation:XValidation:rule="double(self.target) > 0.0 && double(self.target) < 100.0",message="target is a percentage greater than 0 and less than 100"
type ObjectiveRule struct {
	// Target is the objective as a percentage, such as "99.9".
	// +required
	Target Decimal `json:"target"`

	// GoodQuery counts good events over {{.Window}}.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	GoodQuery string `json:"goodQuery,omitempty"`

	// TotalQuery counts all events over {{.Window}}.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	TotalQuery string `json:"totalQuery,omitempty"`

	// ErrorRatioQuery is the ratio of bad events over {{.Window}}, 0 to 1.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	ErrorRatioQuery string `json:"errorRatioQuery,omitempty"`

	// ShortWindow is the short burn-rate window.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	ShortWindow *metav1.Duration `json:"shortWindow,omitempty"`

	// LongWindow is the long burn-rate window.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	LongWindow *metav1.Duration `json:"longWindow,omitempty"`

	// BurnRateThreshold is the burn-rate factor that fails the check when
	// both windows exceed it; 14.4 spends 2% of a 30-day budget in an hour.
	// +optional
	// +kubebuilder:default="14.4"
	BurnRateThreshold Decimal `json:"burnRateThreshold,omitempty"`
}

// AlertGuard fails a release on firing alerts.
type AlertGuard struct {
	// Selector matches the labels of firing alerts. An empty selector
	// matches every alert that carries the Rollout's namespace and name in
	// the labels "namespace" and "rollout".
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// Sources of alerts: Prometheus (the ALERTS series) and Alertmanager
	// (the manager's webhook receiver).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:items:Enum=Prometheus;Alertmanager
	Sources []string `json:"sources,omitempty"`

	// BakeTime is how long after promotion a matching alert still rolls the
	// promoted version back.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="a duration is at most 8760h (365 days)"
	BakeTime *metav1.Duration `json:"bakeTime,omitempty"`
}

// TemplateReference names an SLOTemplate or ClusterSLOTemplate.
type TemplateReference struct {
	// Kind of the template.
	// +optional
	// +kubebuilder:default=SLOTemplate
	// +kubebuilder:validation:Enum=SLOTemplate;ClusterSLOTemplate
	Kind string `json:"kind,omitempty"`

	// Name of the template; an SLOTemplate is looked up in the Rollout's
	// namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// Verdict is the outcome of one evaluation of a check.
// +kubebuilder:validation:Enum=Pass;Fail;Inconclusive
type Verdict string

const (
	// VerdictPass: the value was within bounds.
	VerdictPass Verdict = "Pass"
	// VerdictFail: the value was out of bounds.
	VerdictFail Verdict = "Fail"
	// VerdictInconclusive: no usable value (empty, NaN, error, timeout).
	VerdictInconclusive Verdict = "Inconclusive"
)

// AnalysisStatus holds the last result of each check.
type AnalysisStatus struct {
	// Revision is the template revision these results judge.
	// +optional
	Revision string `json:"revision,omitempty"`

	// Checks, one entry per check, and one named "alerts" for
	// spec.analysis.alerts.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=33
	Checks []CheckResult `json:"checks,omitempty"`
}

// AlertsCheckName names the status entry of spec.analysis.alerts; no check
// may take this name.
const AlertsCheckName = "alerts"

// CheckResult is the last evaluation of a check.
type CheckResult struct {
	// Name of the check.
	// +required
	Name string `json:"name"`

	// Verdict of the last evaluation.
	// +optional
	Verdict Verdict `json:"verdict,omitempty"`

	// Value the query returned, as text.
	// +optional
	Value string `json:"value,omitempty"`

	// Bound the value was held against, such as "<= 0.01".
	// +optional
	Bound string `json:"bound,omitempty"`

	// Message explains an inconclusive or failed verdict.
	// +optional
	Message string `json:"message,omitempty"`

	// Failures counts failed evaluations in this release.
	// +optional
	Failures int32 `json:"failures,omitempty"`

	// Inconclusive counts inconclusive evaluations in a row.
	// +optional
	Inconclusive int32 `json:"inconclusive,omitempty"`

	// LastEvaluationTime is when the check last ran.
	// +optional
	LastEvaluationTime *metav1.Time `json:"lastEvaluationTime,omitempty"`

	// Evidence is the state of a sequential check's test, carried from one
	// evaluation to the next.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Evidence string `json:"evidence,omitempty"`

	// Measurements are the last evaluations of the check, oldest first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Measurements []Measurement `json:"measurements,omitempty"`
}

// MaxMeasurements is how many evaluations of each check status keeps.
const MaxMeasurements = 10

// Measurement is one evaluation of a check.
type Measurement struct {
	// Time of the evaluation.
	// +required
	Time metav1.Time `json:"time"`

	// Verdict of the evaluation.
	// +required
	Verdict Verdict `json:"verdict"`

	// Value the check saw, as text.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Value string `json:"value,omitempty"`

	// Message explains an inconclusive or failed verdict.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}

// SLOTemplateSpec is a reusable check with named arguments.
//
// +kubebuilder:validation:XValidation:rule="has(self.query) || has(self.objective) || has(self.sequential)",message="a template has a query, an objective or a sequential test"
// +kubebuilder:validation:XValidation:rule="!has(self.objective) || (!has(self.query) && !has(self.min) && !has(self.max) && !has(self.compare) && !has(self.sequential))",message="an objective check takes its queries in objective; query, min, max, compare and sequential do not apply"
// +kubebuilder:validation:XValidation:rule="!has(self.sequential) || (!has(self.query) && !has(self.min) && !has(self.max) && !has(self.compare))",message="a sequential check takes its queries in sequential; query, min, max and compare do not apply"
// +kubebuilder:validation:XValidation:rule="!has(self.query) || has(self.min) || has(self.max) || has(self.compare)",message="a query check needs min, max or compare"
// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || double(self.min) <= double(self.max)",message="min must not exceed max"
type SLOTemplateSpec struct {
	// Description says what the check measures, for people.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// Args are the template's parameters, used as {{.Args.NAME}}. An arg
	// without a default must be given by every check that uses the template.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Args []TemplateArg `json:"args,omitempty"`

	CheckSpec `json:",inline"`
}

// TemplateArg is a parameter of a template.
type TemplateArg struct {
	// Name of the argument.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`

	// Default value; without one the argument is required.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Default *string `json:"default,omitempty"`
}

// SLOTemplate is a reusable check for the Rollouts of its namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=slot,categories=backstop
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SLOTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec SLOTemplateSpec `json:"spec"`
}

// SLOTemplateList is a list of SLOTemplates.
//
// +kubebuilder:object:root=true
type SLOTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SLOTemplate `json:"items"`
}

// ClusterSLOTemplate is a reusable check for the Rollouts of every namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cslot,categories=backstop
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterSLOTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec SLOTemplateSpec `json:"spec"`
}

// ClusterSLOTemplateList is a list of ClusterSLOTemplates.
//
// +kubebuilder:object:root=true
type ClusterSLOTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterSLOTemplate `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SLOTemplate{}, &SLOTemplateList{}, &ClusterSLOTemplate{}, &ClusterSLOTemplateList{})
}

// Kinds of check templates, as named in a TemplateReference.
const (
	SLOTemplateKindName        = "SLOTemplate"
	ClusterSLOTemplateKindName = "ClusterSLOTemplate"
)

package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// specProblem is why a Rollout cannot proceed: the reason and message of its
// Ready=False condition and of the Warning Event.
type specProblem struct {
	Reason  string
	Message string
}

func problemf(reason, format string, args ...any) *specProblem {
	return &specProblem{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// validation is one rule of the chain. It returns a problem for bad input,
// or an error when the API server could not answer.
type validation func(ctx context.Context, ro *backstopv1.Rollout) (*specProblem, error)

// validate runs the rules in order and returns the first problem: the spec's
// own rules first (they need no API call), then each kind of reference.
func (r *RolloutReconciler) validate(ctx context.Context, ro *backstopv1.Rollout) (*specProblem, error) {
	chain := []validation{
		pure(checkSpecRules),
		pure(r.checkDefaults),
		r.checkTarget,
		r.checkRoutes,
		r.checkTemplates,
		r.checkSecrets,
	}
	for _, rule := range chain {
		p, err := rule(ctx, ro)
		if p != nil || err != nil {
			return p, err
		}
	}
	return nil, nil
}

func pure(fn func(*backstopv1.Rollout) *specProblem) validation {
	return func(_ context.Context, ro *backstopv1.Rollout) (*specProblem, error) { return fn(ro), nil }
}

// checkSpecRules holds the rules the CRD schema cannot express.
func checkSpecRules(ro *backstopv1.Rollout) *specProblem {
	onlyGRPC := true
	for _, rt := range ro.Spec.Routes {
		if rt.Kind != backstopv1.GRPCRouteKind {
			onlyGRPC = false
		}
	}
	if c := ro.Spec.Strategy.Canary; c != nil && c.Match != nil && len(c.Match.Cookies) > 0 && onlyGRPC {
		return problemf(backstopv1.ReasonInvalidSpec, "spec.strategy.canary.match.cookies: cookies apply to HTTPRoutes, and every route is a GRPCRoute")
	}
	if bg := ro.Spec.Strategy.BlueGreen; bg != nil && bg.Preview != nil && len(bg.Preview.Cookies) > 0 && onlyGRPC {
		return problemf(backstopv1.ReasonInvalidSpec, "spec.strategy.blueGreen.preview.cookies: cookies apply to HTTPRoutes, and every route is a GRPCRoute")
	}
	if ro.Spec.Analysis == nil {
		return nil
	}
	for _, c := range ro.Spec.Analysis.Checks {
		if c.TemplateRef != nil {
			continue
		}
		if p := checkQueries(ro, fmt.Sprintf("spec.analysis.checks[%s]", c.Name), c.CheckSpec, nil); p != nil {
			return p
		}
	}
	return nil
}

// checkQueries renders each query of a check as it will be sent and parses
// it as PromQL, so a typo, a syntax error or an arg that would change a
// query's shape is reported when the Rollout is applied rather than
// mid-release.
func checkQueries(ro *backstopv1.Rollout, where string, spec backstopv1.CheckSpec, args map[string]string) *specProblem {
	if err := analysis.CheckQueries(ro, spec, args); err != nil {
		return problemf(backstopv1.ReasonInvalidSpec, "%s.%v", where, err)
	}
	return nil
}

// checkDefaults reports settings the Rollout leaves to the manager when the
// manager has none.
func (r *RolloutReconciler) checkDefaults(ro *backstopv1.Rollout) *specProblem {
	a := ro.Spec.Analysis
	if a == nil || a.Prometheus != nil || r.Defaults.PrometheusAddress != "" {
		return nil
	}
	for _, c := range a.Checks {
		if c.TemplateRef == nil && c.Prometheus == nil {
			return noPrometheus(c.Name)
		}
	}
	return nil
}

func noPrometheus(check string) *specProblem {
	return problemf(backstopv1.ReasonInvalidSpec,
		"spec.analysis.checks[%s] has no Prometheus: set spec.analysis.prometheus.address, or start the manager with --prometheus-address", check)
}

// checkTarget checks that the target exists, that it is not a Deployment
// Backstop keeps itself (another Rollout's primary, which a release would
// scale to zero), and that no older Rollout releases it: two Rollouts of
// one Deployment would fight over its scale and routes. The older one keeps
// it.
func (r *RolloutReconciler) checkTarget(ctx context.Context, ro *backstopv1.Rollout) (*specProblem, error) {
	var d appsv1.Deployment
	err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ro.Spec.TargetRef.Name}, &d)
	if apierrors.IsNotFound(err) {
		return problemf(backstopv1.ReasonTargetNotFound, "Deployment %q named by spec.targetRef was not found in namespace %q",
			ro.Spec.TargetRef.Name, ro.Namespace), nil
	}
	if err != nil {
		return nil, err
	}
	if owner := metav1.GetControllerOf(&d); owner != nil && owner.Kind == backstopv1.RolloutKind &&
		strings.HasPrefix(owner.APIVersion, backstopv1.GroupVersion.Group+"/") {
		return problemf(backstopv1.ReasonInvalidSpec,
			"spec.targetRef: Deployment %q is the primary of Rollout %q and is kept by Backstop; name the Deployment your GitOps tool applies",
			d.Name, owner.Name), nil
	}
	var list backstopv1.RolloutList
	if err := r.List(ctx, &list, client.InNamespace(ro.Namespace), client.MatchingFields{indexTarget: ro.Namespace + "/" + ro.Spec.TargetRef.Name}); err != nil {
		return nil, err
	}
	for i := range list.Items {
		if other := &list.Items[i]; other.UID != ro.UID && other.DeletionTimestamp.IsZero() && claimedBefore(other, ro) {
			return problemf(backstopv1.ReasonInvalidSpec,
				"spec.targetRef: Deployment %q is already released by Rollout %q; a Deployment has one Rollout, so delete one of them or point this one at another Deployment",
				d.Name, other.Name), nil
		}
	}
	return nil, nil
}

// claimedBefore says whether a was created before b, by creation time and
// then by name: of two Rollouts of one target, the first keeps it.
func claimedBefore(a, b *backstopv1.Rollout) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

func (r *RolloutReconciler) checkRoutes(ctx context.Context, ro *backstopv1.Rollout) (*specProblem, error) {
	for _, rt := range ro.Spec.Routes {
		kind := string(rt.Kind)
		if !r.gatewayKinds[kind] {
			return problemf(backstopv1.ReasonRouteNotFound,
				"spec.routes[%s]: the cluster does not serve %s (gateway.networking.k8s.io/v1); install the Gateway API CRDs and restart the manager",
				rt.Name, kind), nil
		}
		route, err := r.getRoute(ctx, ro.Namespace, rt)
		switch {
		case apierrors.IsNotFound(err) && rt.Existing:
			return problemf(backstopv1.ReasonRouteNotFound, "spec.routes[%s]: %s %q was not found in namespace %q",
				rt.Name, kind, rt.Name, ro.Namespace), nil
		case apierrors.IsNotFound(err):
			// A generated route that does not exist yet is created later.
		case err != nil:
			return nil, err
		case !rt.Existing && !metav1.IsControlledBy(route, ro):
			return problemf(backstopv1.ReasonInvalidSpec,
				"spec.routes[%s]: %s %q already exists and is not owned by this Rollout; set existing: true to edit its weights, or choose another name",
				rt.Name, kind, rt.Name), nil
		}
		if rt.Existing {
			continue
		}
		if p, err := r.checkParents(ctx, ro, rt); p != nil || err != nil {
			return p, err
		}
	}
	return nil, nil
}

func (r *RolloutReconciler) getRoute(ctx context.Context, namespace string, rt backstopv1.Route) (client.Object, error) {
	var obj client.Object = &gwapiv1.HTTPRoute{}
	if rt.Kind == backstopv1.GRPCRouteKind {
		obj = &gwapiv1.GRPCRoute{}
	}
	err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: rt.Name}, obj)
	return obj, err
}

// checkParents checks that the Gateways a generated route attaches to exist.
// Parents of other kinds are left to the gateway implementation to judge.
func (r *RolloutReconciler) checkParents(ctx context.Context, ro *backstopv1.Rollout, rt backstopv1.Route) (*specProblem, error) {
	for _, ref := range rt.ParentRefs {
		key, ok := gatewayKey(ro.Namespace, ref)
		if !ok {
			continue
		}
		if !r.gatewayKinds["Gateway"] {
			return problemf(backstopv1.ReasonParentNotFound, "spec.routes[%s]: the cluster does not serve Gateway (gateway.networking.k8s.io/v1)", rt.Name), nil
		}
		var gw gwapiv1.Gateway
		err := r.Get(ctx, key, &gw)
		if apierrors.IsNotFound(err) {
			return problemf(backstopv1.ReasonParentNotFound, "spec.routes[%s]: parent Gateway %q was not found in namespace %q",
				rt.Name, key.Name, key.Namespace), nil
		}
		if err != nil {
			return nil, err
		}
		if why, ok := admitsRoutes(&gw, ref, string(rt.Kind), ro.Namespace); !ok {
			return problemf(backstopv1.ReasonRouteNotAllowed,
				"spec.routes[%s]: no listener of Gateway %s/%s admits %ss from namespace %q (%s); nothing was written. The Gateway's owner grants it in its listeners' allowedRoutes (namespaces.from All, or a Selector that matches this namespace)",
				rt.Name, gw.Namespace, gw.Name, rt.Kind, ro.Namespace, why), nil
		}
	}
	return nil, nil
}

// admitsRoutes says whether a listener of gw that ref may attach to admits
// routes of kind from namespace ns, as Gateway API's allowedRoutes says:
// namespaces.from Same (the default) admits only the Gateway's own
// namespace, All admits every one; and kinds, when given, must name the
// kind. A Selector needs the namespace's labels, which the manager does not
// read: it is left to the gateway, whose verdict Backstop reports as
// RouteRejected. When no listener admits the route, why says what the
// listeners allow.
func admitsRoutes(gw *gwapiv1.Gateway, ref gwapiv1.ParentReference, kind, ns string) (why string, ok bool) {
	var seen []string
	for _, l := range gw.Spec.Listeners {
		if ref.SectionName != nil && l.Name != *ref.SectionName {
			continue
		}
		if ref.Port != nil && l.Port != *ref.Port {
			continue
		}
		from := gwapiv1.NamespacesFromSame
		var kinds []gwapiv1.RouteGroupKind
		if ar := l.AllowedRoutes; ar != nil {
			if ar.Namespaces != nil && ar.Namespaces.From != nil {
				from = *ar.Namespaces.From
			}
			kinds = ar.Kinds
		}
		if !admitsKind(kinds, kind) {
			seen = append(seen, fmt.Sprintf("listener %s admits other kinds", l.Name))
			continue
		}
		switch {
		case from == gwapiv1.NamespacesFromAll, from == gwapiv1.NamespacesFromSelector:
			return "", true
		case from == gwapiv1.NamespacesFromSame && gw.Namespace == ns:
			return "", true
		}
		seen = append(seen, fmt.Sprintf("listener %s admits namespaces from %s", l.Name, from))
	}
	if len(seen) == 0 {
		return "no listener matches the parentRef's sectionName and port", false
	}
	return strings.Join(seen, ", "), false
}

func admitsKind(kinds []gwapiv1.RouteGroupKind, kind string) bool {
	if len(kinds) == 0 {
		return true
	}
	for _, k := range kinds {
		if string(k.Kind) == kind && (k.Group == nil || string(*k.Group) == gwapiv1.GroupName) {
			return true
		}
	}
	return false
}

// gatewayKey is the namespace and name of a parentRef that names a Gateway.
func gatewayKey(defaultNamespace string, ref gwapiv1.ParentReference) (types.NamespacedName, bool) {
	if ref.Group != nil && string(*ref.Group) != gwapiv1.GroupName {
		return types.NamespacedName{}, false
	}
	if ref.Kind != nil && string(*ref.Kind) != "Gateway" {
		return types.NamespacedName{}, false
	}
	ns := defaultNamespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	return types.NamespacedName{Namespace: ns, Name: string(ref.Name)}, true
}

func (r *RolloutReconciler) checkTemplates(ctx context.Context, ro *backstopv1.Rollout) (*specProblem, error) {
	if ro.Spec.Analysis == nil {
		return nil, nil
	}
	for _, c := range ro.Spec.Analysis.Checks {
		if c.TemplateRef == nil {
			continue
		}
		spec, p, err := r.getTemplate(ctx, ro.Namespace, c)
		if p != nil || err != nil {
			return p, err
		}
		if p := checkTemplateArgs(c, spec); p != nil {
			return p, nil
		}
		where := fmt.Sprintf("spec.analysis.checks[%s] (%s %q) spec", c.Name, c.TemplateRef.Kind, c.TemplateRef.Name)
		if p := checkQueries(ro, where, spec.CheckSpec, templateArgs(c, spec)); p != nil {
			return p, nil
		}
		if c.Prometheus == nil && spec.Prometheus == nil && ro.Spec.Analysis.Prometheus == nil && r.Defaults.PrometheusAddress == "" {
			return noPrometheus(c.Name), nil
		}
	}
	return nil, nil
}

func (r *RolloutReconciler) getTemplate(ctx context.Context, namespace string, c backstopv1.Check) (*backstopv1.SLOTemplateSpec, *specProblem, error) {
	ref := c.TemplateRef
	var (
		obj  client.Object
		spec *backstopv1.SLOTemplateSpec
		key  = types.NamespacedName{Name: ref.Name}
		in   = ""
	)
	if ref.Kind == backstopv1.ClusterSLOTemplateKindName {
		t := &backstopv1.ClusterSLOTemplate{}
		obj, spec = t, &t.Spec
	} else {
		t := &backstopv1.SLOTemplate{}
		obj, spec = t, &t.Spec
		key.Namespace = namespace
		in = fmt.Sprintf(" in namespace %q", namespace)
	}
	err := r.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		return nil, problemf(backstopv1.ReasonTemplateNotFound, "spec.analysis.checks[%s]: %s %q was not found%s",
			c.Name, ref.Kind, ref.Name, in), nil
	}
	return spec, nil, err
}

// checkTemplateArgs checks that a check gives every arg its template needs
// and none that it does not declare.
func checkTemplateArgs(c backstopv1.Check, spec *backstopv1.SLOTemplateSpec) *specProblem {
	declared := map[string]bool{}
	var missing []string
	for _, a := range spec.Args {
		declared[a.Name] = true
		if _, given := c.Args[a.Name]; !given && a.Default == nil {
			missing = append(missing, a.Name)
		}
	}
	if len(missing) > 0 {
		return problemf(backstopv1.ReasonInvalidSpec, "spec.analysis.checks[%s]: %s %q needs args %s",
			c.Name, c.TemplateRef.Kind, c.TemplateRef.Name, strings.Join(missing, ", "))
	}
	var unknown []string
	for name := range c.Args {
		if !declared[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return problemf(backstopv1.ReasonInvalidSpec, "spec.analysis.checks[%s]: %s %q declares no args %s",
			c.Name, c.TemplateRef.Kind, c.TemplateRef.Name, strings.Join(unknown, ", "))
	}
	return nil
}

// templateArgs are the args a template check renders with: the check's,
// and the template's defaults for the others.
func templateArgs(c backstopv1.Check, spec *backstopv1.SLOTemplateSpec) map[string]string {
	args := map[string]string{}
	for _, a := range spec.Args {
		if a.Default != nil {
			args[a.Name] = *a.Default
		}
	}
	for k, v := range c.Args {
		args[k] = v
	}
	return args
}

// checkSecrets checks that every Secret the spec names exists. Only the
// Secret's metadata is read, and only by name: its data never enters the
// manager here.
func (r *RolloutReconciler) checkSecrets(ctx context.Context, ro *backstopv1.Rollout) (*specProblem, error) {
	for _, ref := range secretRefs(ro) {
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.name}, meta)
		switch {
		case apierrors.IsNotFound(err):
			return problemf(backstopv1.ReasonSecretNotFound, "%s: Secret %q was not found in namespace %q",
				ref.field, ref.name, ro.Namespace), nil
		case apierrors.IsForbidden(err):
			return problemf(backstopv1.ReasonSecretNotFound, "%s: the manager may not read Secret %q in namespace %q",
				ref.field, ref.name, ro.Namespace), nil
		case err != nil:
			return nil, err
		}
	}
	return nil, nil
}

type namedSecret struct{ field, name string }

// secretRefs lists the Secrets a Rollout names, with the field naming each.
func secretRefs(ro *backstopv1.Rollout) []namedSecret {
	var refs []namedSecret
	if a := ro.Spec.Analysis; a != nil {
		if a.Prometheus != nil && a.Prometheus.SecretRef != nil {
			refs = append(refs, namedSecret{"spec.analysis.prometheus.secretRef", a.Prometheus.SecretRef.Name})
		}
		for _, c := range a.Checks {
			if c.Prometheus != nil && c.Prometheus.SecretRef != nil {
				refs = append(refs, namedSecret{fmt.Sprintf("spec.analysis.checks[%s].prometheus.secretRef", c.Name), c.Prometheus.SecretRef.Name})
			}
		}
	}
	if rv := ro.Spec.Revert; rv != nil {
		if rv.Source != nil && rv.Source.SecretRef != nil {
			refs = append(refs, namedSecret{"spec.revert.source.secretRef", rv.Source.SecretRef.Name})
		}
		if rv.Signing != nil {
			refs = append(refs, namedSecret{"spec.revert.signing.secretRef", rv.Signing.SecretRef.Name})
		}
	}
	return refs
}

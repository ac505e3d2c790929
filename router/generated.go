package router

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// generatedKind builds one kind of generated route.
type generatedKind struct {
	newObj func() client.Object
	// setSpec writes the wanted spec into the object.
	setSpec func(client.Object) error
	// spec returns the object's spec, for comparison.
	spec func(client.Object) any
}

func generatedKindOf(rt backstopv1.Route, b Backends, s Split) generatedKind {
	if routeKind(rt) == backstopv1.GRPCRouteKind {
		return generatedKind{
			newObj: func() client.Object { return &gwapiv1.GRPCRoute{} },
			setSpec: func(o client.Object) error {
				spec, err := grpcSpec(rt, b, s)
				o.(*gwapiv1.GRPCRoute).Spec = spec
				return err
			},
			spec: func(o client.Object) any { return o.(*gwapiv1.GRPCRoute).Spec },
		}
	}
	return generatedKind{
		newObj: func() client.Object { return &gwapiv1.HTTPRoute{} },
		setSpec: func(o client.Object) error {
			spec, err := httpSpec(rt, b, s)
			o.(*gwapiv1.HTTPRoute).Spec = spec
			return err
		},
		spec: func(o client.Object) any { return o.(*gwapiv1.HTTPRoute).Spec },
	}
}

// applyGenerated creates or updates a generated route. It reports whether it
// wrote.
//
// The API server defaults fields the template leaves out (a path match, a
// header match type, a parentRef's group and kind...), so the wanted spec is
// compared with the stored one first as built, then as the API server would
// store it (a dry-run update); only a real difference is written.
func (r *Router) applyGenerated(ctx context.Context, ro *backstopv1.Rollout, rt backstopv1.Route, b Backends, s Split, write bool) (bool, error) {
	kind := generatedKindOf(rt, b, s)
	cur := kind.newObj()
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: rt.Name}, cur)
	switch {
	case apierrors.IsNotFound(err) && !write:
		return true, nil
	case apierrors.IsNotFound(err):
		obj := kind.newObj()
		obj.SetNamespace(ro.Namespace)
		obj.SetName(rt.Name)
		if err := r.own(ro, obj); err != nil {
			return false, err
		}
		if err := kind.setSpec(obj); err != nil {
			return false, err
		}
		var opts []client.CreateOption
		if r.FieldOwner != "" {
			opts = append(opts, client.FieldOwner(r.FieldOwner))
		}
		if err := r.Client.Create(ctx, obj, opts...); err != nil {
			return false, fmt.Errorf("creating %s %q: %w", routeKind(rt), rt.Name, err)
		}
		return true, nil
	case err != nil:
		return false, err
	}
	if owner := metav1.GetControllerOf(cur); owner != nil && owner.UID != ro.UID {
		return false, fmt.Errorf("%s %q is controlled by %s %q, not by this Rollout; Backstop does not take over a route it did not create",
			routeKind(rt), rt.Name, owner.Kind, owner.Name)
	}
	want := cur.DeepCopyObject().(client.Object)
	if err := r.own(ro, want); err != nil {
		return false, err
	}
	if err := kind.setSpec(want); err != nil {
		return false, err
	}
	sameMeta := apiequality.Semantic.DeepEqual(cur.GetLabels(), want.GetLabels()) &&
		apiequality.Semantic.DeepEqual(cur.GetOwnerReferences(), want.GetOwnerReferences())
	if !sameMeta {
		return true, r.updateIf(ctx, rt, want, write)
	}
	if apiequality.Semantic.DeepEqual(kind.spec(cur), kind.spec(want)) {
		return false, nil
	}
	dry := want.DeepCopyObject().(client.Object)
	if err := r.Client.Update(ctx, dry, client.DryRunAll); err != nil {
		return false, fmt.Errorf("updating %s %q (dry run): %w", routeKind(rt), rt.Name, err)
	}
	if apiequality.Semantic.DeepEqual(kind.spec(cur), kind.spec(dry)) {
		return false, nil
	}
	return true, r.updateIf(ctx, rt, want, write)
}

// updateIf writes obj when write is set.
func (r *Router) updateIf(ctx context.Context, rt backstopv1.Route, obj client.Object, write bool) error {
	if !write {
		return nil
	}
	if err := r.Client.Update(ctx, obj, r.writeOptions()...); err != nil {
		return fmt.Errorf("updating %s %q: %w", routeKind(rt), rt.Name, err)
	}
	return nil
}

// own sets the labels and the controller owner reference of a generated route.
func (r *Router) own(ro *backstopv1.Rollout, obj client.Object) error {
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = ManagedBy
	labels[LabelRollout] = labelValue(ro.Name)
	obj.SetLabels(labels)
	return controllerutil.SetControllerReference(ro, obj, r.Client.Scheme())
}

// labelValue returns name, or for a name longer than a label value may be,
// its start and a hash of the whole.
func labelValue(name string) string {
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:52], "-.") + "-" + hex.EncodeToString(sum[:])[:10]
}

// backendRef is a reference to a Service of the core group.
func backendRef(name string, port, weight int32) gwapiv1.BackendRef {
	return gwapiv1.BackendRef{
		BackendObjectReference: serviceRef(name, port),
		Weight:                 &weight,
	}
}

func serviceRef(name string, port int32) gwapiv1.BackendObjectReference {
	group := gwapiv1.Group("")
	kind := gwapiv1.Kind("Service")
	return gwapiv1.BackendObjectReference{
		Group: &group,
		Kind:  &kind,
		Name:  gwapiv1.ObjectName(name),
		Port:  &port,
	}
}

func mirrorFilter(b Backends, percent int32) *gwapiv1.HTTPRequestMirrorFilter {
	return &gwapiv1.HTTPRequestMirrorFilter{BackendRef: serviceRef(b.Canary, b.Port), Percent: &percent}
}

// httpSpec is the generated HTTPRoute: an optional rule that sends matching
// requests to the canary, then the weighted rule.
func httpSpec(rt backstopv1.Route, b Backends, s Split) (gwapiv1.HTTPRouteSpec, error) {
	t := &backstopv1.HTTPRouteTemplate{}
	if rt.HTTP != nil {
		t = rt.HTTP.DeepCopy()
	}
	spec := gwapiv1.HTTPRouteSpec{
		CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: copyParents(rt.ParentRefs)},
		Hostnames:       append([]gwapiv1.Hostname(nil), rt.Hostnames...),
	}
	if s.Match != nil {
		matches, err := httpMatches(t.Matches, s.Match)
		if err != nil {
			return spec, err
		}
		spec.Rules = append(spec.Rules, gwapiv1.HTTPRouteRule{
			Matches:     matches,
			Filters:     copyHTTPFilters(t.Filters),
			Timeouts:    t.Timeouts.DeepCopy(),
			BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: backendRef(b.Canary, b.Port, 100)}},
		})
	}
	main := gwapiv1.HTTPRouteRule{
		Matches:  t.Matches,
		Filters:  t.Filters,
		Timeouts: t.Timeouts,
		BackendRefs: []gwapiv1.HTTPBackendRef{
			{BackendRef: backendRef(b.Primary, b.Port, 100-s.CanaryWeight)},
			{BackendRef: backendRef(b.Canary, b.Port, s.CanaryWeight)},
		},
	}
	if s.MirrorPercent > 0 {
		main.Filters = append(main.Filters, gwapiv1.HTTPRouteFilter{
			Type:          gwapiv1.HTTPRouteFilterRequestMirror,
			RequestMirror: mirrorFilter(b, s.MirrorPercent),
		})
	}
	spec.Rules = append(spec.Rules, main)
	return spec, nil
}

// httpMatches combines each template match (or, without any, a match of
// every request) with the Split's headers and cookies.
func httpMatches(template []gwapiv1.HTTPRouteMatch, m *backstopv1.TrafficMatch) ([]gwapiv1.HTTPRouteMatch, error) {
	extra := make([]gwapiv1.HTTPHeaderMatch, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		extra = append(extra, *h.DeepCopy())
	}
	if len(m.Cookies) > 0 {
		for _, h := range m.Headers {
			if strings.EqualFold(string(h.Name), cookieHeader) {
				return nil, fmt.Errorf("the traffic match names the %s header and cookies; a route can match the header only once, so give the cookies alone", cookieHeader)
			}
		}
		re, err := cookieRegex(m.Cookies)
		if err != nil {
			return nil, err
		}
		regex := gwapiv1.HeaderMatchRegularExpression
		extra = append(extra, gwapiv1.HTTPHeaderMatch{Type: &regex, Name: cookieHeader, Value: re})
	}
	if len(template) == 0 {
		return []gwapiv1.HTTPRouteMatch{{Headers: extra}}, nil
	}
	out := make([]gwapiv1.HTTPRouteMatch, 0, len(template))
	for i, tm := range template {
		c := tm.DeepCopy()
		for _, h := range c.Headers {
			for _, e := range extra {
				if strings.EqualFold(string(h.Name), string(e.Name)) {
					return nil, fmt.Errorf("header %q is in both the traffic match and match %d of the route template", e.Name, i)
				}
			}
		}
		c.Headers = append(c.Headers, extra...)
		out = append(out, *c)
	}
	return out, nil
}

// grpcSpec is the generated GRPCRoute, shaped as httpSpec's. Cookies do not
// apply to gRPC; a match of cookies alone adds no rule.
func grpcSpec(rt backstopv1.Route, b Backends, s Split) (gwapiv1.GRPCRouteSpec, error) {
	t := &backstopv1.GRPCRouteTemplate{}
	if rt.GRPC != nil {
		t = rt.GRPC.DeepCopy()
	}
	spec := gwapiv1.GRPCRouteSpec{
		CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: copyParents(rt.ParentRefs)},
		Hostnames:       append([]gwapiv1.Hostname(nil), rt.Hostnames...),
	}
	if s.Match != nil && len(s.Match.Headers) > 0 {
		matches, err := grpcMatches(t.Matches, s.Match.Headers)
		if err != nil {
			return spec, err
		}
		spec.Rules = append(spec.Rules, gwapiv1.GRPCRouteRule{
			Matches:     matches,
			Filters:     copyGRPCFilters(t.Filters),
			BackendRefs: []gwapiv1.GRPCBackendRef{{BackendRef: backendRef(b.Canary, b.Port, 100)}},
		})
	}
	main := gwapiv1.GRPCRouteRule{
		Matches: t.Matches,
		Filters: t.Filters,
		BackendRefs: []gwapiv1.GRPCBackendRef{
			{BackendRef: backendRef(b.Primary, b.Port, 100-s.CanaryWeight)},
			{BackendRef: backendRef(b.Canary, b.Port, s.CanaryWeight)},
		},
	}
	if s.MirrorPercent > 0 {
		main.Filters = append(main.Filters, gwapiv1.GRPCRouteFilter{
			Type:          gwapiv1.GRPCRouteFilterRequestMirror,
			RequestMirror: mirrorFilter(b, s.MirrorPercent),
		})
	}
	spec.Rules = append(spec.Rules, main)
	return spec, nil
}

func grpcMatches(template []gwapiv1.GRPCRouteMatch, headers []gwapiv1.HTTPHeaderMatch) ([]gwapiv1.GRPCRouteMatch, error) {
	extra := make([]gwapiv1.GRPCHeaderMatch, 0, len(headers))
	for _, h := range headers {
		g := gwapiv1.GRPCHeaderMatch{Name: gwapiv1.GRPCHeaderName(h.Name), Value: h.Value}
		if h.Type != nil {
			typ := gwapiv1.GRPCHeaderMatchExact
			if *h.Type == gwapiv1.HeaderMatchRegularExpression {
				typ = gwapiv1.GRPCHeaderMatchRegularExpression
			}
			g.Type = &typ
		}
		extra = append(extra, g)
	}
	if len(template) == 0 {
		return []gwapiv1.GRPCRouteMatch{{Headers: extra}}, nil
	}
	out := make([]gwapiv1.GRPCRouteMatch, 0, len(template))
	for i, tm := range template {
		c := tm.DeepCopy()
		for _, h := range c.Headers {
			for _, e := range extra {
				if strings.EqualFold(string(h.Name), string(e.Name)) {
					return nil, fmt.Errorf("header %q is in both the traffic match and match %d of the route template", e.Name, i)
				}
			}
		}
		c.Headers = append(c.Headers, extra...)
		out = append(out, *c)
	}
	return out, nil
}

func copyParents(in []gwapiv1.ParentReference) []gwapiv1.ParentReference {
	var out []gwapiv1.ParentReference
	for _, p := range in {
		out = append(out, *p.DeepCopy())
	}
	return out
}

func copyHTTPFilters(in []gwapiv1.HTTPRouteFilter) []gwapiv1.HTTPRouteFilter {
	var out []gwapiv1.HTTPRouteFilter
	for _, f := range in {
		out = append(out, *f.DeepCopy())
	}
	return out
}

func copyGRPCFilters(in []gwapiv1.GRPCRouteFilter) []gwapiv1.GRPCRouteFilter {
	var out []gwapiv1.GRPCRouteFilter
	for _, f := range in {
		out = append(out, *f.DeepCopy())
	}
	return out
}

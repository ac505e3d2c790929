package router

import (
	"context"
	"errors"
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
	// kind is HTTPRoute or GRPCRoute, for messages.
	kind   backstopv1.RouteKind
	newObj func() client.Object
	// setSpec writes the wanted spec into the object.
	setSpec func(client.Object) error
	// spec returns the object's spec, for comparison.
	spec func(client.Object) any
}

func generatedKindOf(rt backstopv1.Route, b Backends, s Split) generatedKind {
	if routeKind(rt) == backstopv1.GRPCRouteKind {
		return grpcKind(func() (gwapiv1.GRPCRouteSpec, error) { return grpcSpec(rt, b, s) })
	}
	return httpKind(func() (gwapiv1.HTTPRouteSpec, error) { return httpSpec(rt, b, s) })
}

// previewKindOf builds the preview route of a generated route.
func previewKindOf(rt backstopv1.Route, b Backends, s Split) generatedKind {
	if routeKind(rt) == backstopv1.GRPCRouteKind {
		return grpcKind(func() (gwapiv1.GRPCRouteSpec, error) { return grpcPreviewSpec(rt, b, s), nil })
	}
	return httpKind(func() (gwapiv1.HTTPRouteSpec, error) { return httpPreviewSpec(rt, b, s), nil })
}

func httpKind(build func() (gwapiv1.HTTPRouteSpec, error)) generatedKind {
	return generatedKind{
		kind:   backstopv1.HTTPRouteKind,
		newObj: func() client.Object { return &gwapiv1.HTTPRoute{} },
		setSpec: func(o client.Object) error {
			spec, err := build()
			o.(*gwapiv1.HTTPRoute).Spec = spec
			return err
		},
		spec: func(o client.Object) any { return o.(*gwapiv1.HTTPRoute).Spec },
	}
}

func grpcKind(build func() (gwapiv1.GRPCRouteSpec, error)) generatedKind {
	return generatedKind{
		kind:   backstopv1.GRPCRouteKind,
		newObj: func() client.Object { return &gwapiv1.GRPCRoute{} },
		setSpec: func(o client.Object) error {
			spec, err := build()
			o.(*gwapiv1.GRPCRoute).Spec = spec
			return err
		},
		spec: func(o client.Object) any { return o.(*gwapiv1.GRPCRoute).Spec },
	}
}

// PreviewSuffix is appended to a generated route's name to name its preview
// route.
const PreviewSuffix = "-preview"

// PreviewName is the name of the preview route of the generated route name.
func PreviewName(name string) string { return name + PreviewSuffix }

// applyGenerated creates or updates a generated route, and creates, updates
// or deletes its preview route. It returns the routes it wrote (or would
// write), as "Kind/name".
func (r *Router) applyGenerated(ctx context.Context, ro *backstopv1.Rollout, rt backstopv1.Route, b Backends, s Split, write bool) ([]string, error) {
	var (
		written []string
		errs    []error
	)
	kind := generatedKindOf(rt, b, s)
	if wrote, err := r.ensureGenerated(ctx, ro, rt.Name, kind, true, write); err != nil {
		errs = append(errs, err)
	} else if wrote {
		written = append(written, fmt.Sprintf("%s/%s", kind.kind, rt.Name))
	}
	preview := previewKindOf(rt, b, s)
	name := PreviewName(rt.Name)
	var (
		wrote bool
		err   error
	)
	switch {
	case previewClash(ro, name):
		// The name is another route of the Rollout: never touch it as a
		// preview route.
		if len(s.PreviewHostnames) > 0 {
			err = fmt.Errorf("the preview route %q would have the name of another route of the Rollout; rename one of them", name)
		}
	case len(s.PreviewHostnames) > 0 && len(name) > 253:
		err = fmt.Errorf("the preview route name %q is longer than 253 characters; shorten the route's name", name)
	case len(s.PreviewHostnames) > 0:
		wrote, err = r.ensureGenerated(ctx, ro, name, preview, false, write)
	default:
		wrote, err = r.deleteGenerated(ctx, ro, name, preview, write)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("preview: %w", err))
	} else if wrote {
		written = append(written, fmt.Sprintf("%s/%s", preview.kind, name))
	}
	return written, errors.Join(errs...)
}

// previewClash says whether name is the name of one of the Rollout's routes.
func previewClash(ro *backstopv1.Rollout, name string) bool {
	for _, rt := range ro.Spec.Routes {
		if rt.Name == name {
			return true
		}
	}
	return false
}

// ensureGenerated creates or updates one generated route. It reports whether
// it wrote (or, with write=false, would write).
//
// The API server defaults fields the template leaves out (a path match, a
// header match type, a parentRef's group and kind...), so the wanted spec is
// compared with the stored one as built, then by what r.Stored remembers of
// the route. Past that, a write is an update, which stores nothing when
// only defaults differ; with write=false, a dry-run update tells.
//
// A route of that name controlled by another owner is an error; one without
// a controller is taken over when adopt is set, and is an error otherwise.
func (r *Router) ensureGenerated(ctx context.Context, ro *backstopv1.Rollout, name string, kind generatedKind, adopt, write bool) (bool, error) {
	cur := kind.newObj()
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: name}, cur)
	switch {
	case apierrors.IsNotFound(err) && !write:
		return true, nil
	case apierrors.IsNotFound(err):
		obj := kind.newObj()
		obj.SetNamespace(ro.Namespace)
		obj.SetName(name)
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
		hash := r.Stored.hash(kind.spec(obj))
		if err := r.Client.Create(ctx, obj, opts...); err != nil {
			return false, fmt.Errorf("creating %s %q: %w", kind.kind, name, err)
		}
		r.Stored.remember(obj, hash)
		return true, nil
	case err != nil:
		return false, err
	}
	switch owner := metav1.GetControllerOf(cur); {
	case owner != nil && owner.UID != ro.UID:
		return false, fmt.Errorf("%s %q is controlled by %s %q, not by this Rollout; Backstop does not take over a route it did not create",
			kind.kind, name, owner.Kind, owner.Name)
	case owner == nil && !adopt:
		return false, fmt.Errorf("%s %q exists and is not controlled by this Rollout; Backstop does not take over a route it did not create",
			kind.kind, name)
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
		return true, r.updateIf(ctx, kind, want, write)
	}
	hash := r.Stored.hash(kind.spec(want))
	if apiequality.Semantic.DeepEqual(kind.spec(cur), kind.spec(want)) {
		r.Stored.remember(cur, hash)
		return false, nil
	}
	if known, ok := r.Stored.known(cur); ok && known == hash {
		return false, nil
	} else if ok && !write {
		// The route holds another spec of ours: a weight change, most
		// often. (Should the two differ only in defaults, the update
		// that follows stores nothing, and is remembered.)
		return true, nil
	}
	if write {
		// An update that only leaves out defaults stores nothing (the
		// resourceVersion stays): no dry run first.
		rv := cur.GetResourceVersion()
		if err := r.updateIf(ctx, kind, want, write); err != nil {
			return false, err
		}
		return want.GetResourceVersion() != rv, nil
	}
	dry := want.DeepCopyObject().(client.Object)
	if err := r.Client.Update(ctx, dry, client.DryRunAll); err != nil {
		return false, fmt.Errorf("updating %s %q (dry run): %w", kind.kind, name, err)
	}
	if apiequality.Semantic.DeepEqual(kind.spec(cur), kind.spec(dry)) {
		r.Stored.remember(cur, hash)
		return false, nil
	}
	return true, nil
}

// deleteGenerated deletes a generated route that this Rollout controls, if
// there is one. A route of that name that the Rollout does not control is
// left alone. It reports whether it deleted (or, with write=false, would
// delete).
func (r *Router) deleteGenerated(ctx context.Context, ro *backstopv1.Rollout, name string, kind generatedKind, write bool) (bool, error) {
	cur := kind.newObj()
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: name}, cur)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	if owner := metav1.GetControllerOf(cur); owner == nil || owner.UID != ro.UID {
		return false, nil
	}
	if !write {
		return true, nil
	}
	uid, rv := cur.GetUID(), cur.GetResourceVersion()
	err = r.Client.Delete(ctx, cur, client.Preconditions{UID: &uid, ResourceVersion: &rv})
	if err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("deleting %s %q: %w", kind.kind, name, err)
	}
	return err == nil, nil
}

// updateIf writes obj when write is set.
func (r *Router) updateIf(ctx context.Context, kind generatedKind, obj client.Object, write bool) error {
	if !write {
		return nil
	}
	hash := r.Stored.hash(kind.spec(obj))
	if err := r.Client.Update(ctx, obj, r.writeOptions()...); err != nil {
		return fmt.Errorf("updating %s %q: %w", kind.kind, obj.GetName(), err)
	}
	// The route now holds the wanted spec at its new generation.
	r.Stored.remember(obj, hash)
	return nil
}

// own sets the labels and the controller owner reference of a generated route.
func (r *Router) own(ro *backstopv1.Rollout, obj client.Object) error {
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = ManagedBy
	labels[LabelRollout] = backstopv1.RolloutLabelValue(ro.Name)
	obj.SetLabels(labels)
	return controllerutil.SetControllerReference(ro, obj, r.Client.Scheme())
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
// requests to the canary, an optional sticky rule that sends the requests
// holding the affinity cookie to the canary, then the weighted rule, where
// the canary's backendRef sets that cookie.
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
	canary := gwapiv1.HTTPBackendRef{BackendRef: backendRef(b.Canary, b.Port, s.CanaryWeight)}
	if a := s.affinity(); a != nil {
		matches, err := a.stickyMatches(t.Matches)
		if err != nil {
			return spec, err
		}
		spec.Rules = append(spec.Rules, gwapiv1.HTTPRouteRule{
			Matches:     matches,
			Filters:     copyHTTPFilters(t.Filters),
			Timeouts:    t.Timeouts.DeepCopy(),
			BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: backendRef(b.Canary, b.Port, 100)}},
		})
		canary.Filters = a.stampFilters()
	}
	main := gwapiv1.HTTPRouteRule{
		Matches:     t.Matches,
		Filters:     t.Filters,
		Timeouts:    t.Timeouts,
		BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: backendRef(b.Primary, b.Port, 100-s.CanaryWeight)}, canary},
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
	copied := make([]gwapiv1.HTTPRouteMatch, len(template))
	for i := range template {
		template[i].DeepCopyInto(&copied[i])
	}
	return withHeaders(copied, extra,
		func(m *gwapiv1.HTTPRouteMatch) *[]gwapiv1.HTTPHeaderMatch { return &m.Headers },
		func(h gwapiv1.HTTPHeaderMatch) string { return string(h.Name) })
}

// withHeaders adds the traffic match's headers to each match of a route
// template, which it changes (pass a copy), or makes one match of them when
// the template has none. A header already in a template match is an error:
// the two would have to agree.
func withHeaders[M any, H any](template []M, extra []H, headers func(*M) *[]H, name func(H) string) ([]M, error) {
	if len(template) == 0 {
		var m M
		*headers(&m) = extra
		return []M{m}, nil
	}
	out := make([]M, 0, len(template))
	for i, tm := range template {
		c := tm
		hs := headers(&c)
		for _, h := range *hs {
			for _, e := range extra {
				if strings.EqualFold(name(h), name(e)) {
					return nil, fmt.Errorf("header %q is in both the traffic match and match %d of the route template", name(e), i)
				}
			}
		}
		*hs = append(append([]H(nil), *hs...), extra...)
		out = append(out, c)
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

// httpPreviewSpec is the preview route of a generated HTTPRoute: the
// template's parentRefs, the Split's preview hostnames, and one rule with
// the template's matches, filters and timeouts that sends everything to the
// canary.
func httpPreviewSpec(rt backstopv1.Route, b Backends, s Split) gwapiv1.HTTPRouteSpec {
	t := &backstopv1.HTTPRouteTemplate{}
	if rt.HTTP != nil {
		t = rt.HTTP.DeepCopy()
	}
	return gwapiv1.HTTPRouteSpec{
		CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: copyParents(rt.ParentRefs)},
		Hostnames:       append([]gwapiv1.Hostname(nil), s.PreviewHostnames...),
		Rules: []gwapiv1.HTTPRouteRule{{
			Matches:     t.Matches,
			Filters:     t.Filters,
			Timeouts:    t.Timeouts,
			BackendRefs: []gwapiv1.HTTPBackendRef{{BackendRef: backendRef(b.Canary, b.Port, 100)}},
		}},
	}
}

// grpcPreviewSpec is the preview route of a generated GRPCRoute, shaped as
// httpPreviewSpec's.
func grpcPreviewSpec(rt backstopv1.Route, b Backends, s Split) gwapiv1.GRPCRouteSpec {
	t := &backstopv1.GRPCRouteTemplate{}
	if rt.GRPC != nil {
		t = rt.GRPC.DeepCopy()
	}
	return gwapiv1.GRPCRouteSpec{
		CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: copyParents(rt.ParentRefs)},
		Hostnames:       append([]gwapiv1.Hostname(nil), s.PreviewHostnames...),
		Rules: []gwapiv1.GRPCRouteRule{{
			Matches:     t.Matches,
			Filters:     t.Filters,
			BackendRefs: []gwapiv1.GRPCBackendRef{{BackendRef: backendRef(b.Canary, b.Port, 100)}},
		}},
	}
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
	copied := make([]gwapiv1.GRPCRouteMatch, len(template))
	for i := range template {
		template[i].DeepCopyInto(&copied[i])
	}
	return withHeaders(copied, extra,
		func(m *gwapiv1.GRPCRouteMatch) *[]gwapiv1.GRPCHeaderMatch { return &m.Headers },
		func(h gwapiv1.GRPCHeaderMatch) string { return string(h.Name) })
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

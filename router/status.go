package router

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Acceptance says whether the gateways have taken the routes as written.
type Acceptance struct {
	// Accepted is true when every parent of every route reports Accepted=True
	// and ResolvedRefs=True for the route's current generation.
	Accepted bool
	// Pending lists, one line each, the routes and parents that have not
	// answered for the current generation yet (no status, a stale
	// observedGeneration, a missing condition, a route not created yet).
	Pending []string
	// Rejections are the parents that answered Accepted=False or
	// ResolvedRefs=False for the current generation.
	Rejections []Rejection
}

// Rejection is a parent's refusal of a route, in the gateway's own words.
type Rejection struct {
	// Route is "Kind/name" of the route.
	Route string
	// Parent is the parentRef, as "Kind namespace/name" with the section or
	// port when set.
	Parent string
	// Controller is the gateway controller that answered.
	Controller string
	// Condition is Accepted or ResolvedRefs.
	Condition string
	// Reason and Message are the condition's.
	Reason  string
	Message string
}

func (r Rejection) String() string {
	return fmt.Sprintf("%s was refused by %s (%s): %s=False, reason %s: %q",
		r.Route, r.Parent, r.Controller, r.Condition, r.Reason, r.Message)
}

// Status reports whether every route of the Rollout has been accepted by
// every parent for its current generation. For each parentRef in a route's
// spec, every status.parents entry for that parent must have Accepted=True
// and ResolvedRefs=True with observedGeneration equal to the route's
// metadata.generation. A condition False at the current generation is a
// Rejection; anything else short of acceptance is pending.
//
// The preview route of a generated route (see Split.PreviewHostnames) is
// judged the same way while it exists and the Rollout controls it.
func (r *Router) Status(ctx context.Context, ro *backstopv1.Rollout) (Acceptance, error) {
	var acc Acceptance
	judge := func(kind backstopv1.RouteKind, name string, preview bool) error {
		desc := fmt.Sprintf("%s/%s", kind, name)
		meta, parents, status, err := r.routeState(ctx, kind, types.NamespacedName{Namespace: ro.Namespace, Name: name})
		switch {
		case apierrors.IsNotFound(err) && preview:
			return nil
		case apierrors.IsNotFound(err):
			acc.Pending = append(acc.Pending, desc+": not found")
			return nil
		case err != nil:
			return err
		}
		if owner := metav1.GetControllerOf(&meta); preview && (owner == nil || owner.UID != ro.UID) {
			return nil
		}
		pending, rejections := routeAcceptance(desc, meta.Namespace, meta.Generation, parents, status)
		acc.Pending = append(acc.Pending, pending...)
		acc.Rejections = append(acc.Rejections, rejections...)
		return nil
	}
	for _, rt := range ro.Spec.Routes {
		if err := judge(routeKind(rt), rt.Name, false); err != nil {
			return acc, err
		}
		if rt.Existing || previewClash(ro, PreviewName(rt.Name)) {
			continue
		}
		if err := judge(routeKind(rt), PreviewName(rt.Name), true); err != nil {
			return acc, err
		}
	}
	acc.Accepted = len(ro.Spec.Routes) > 0 && len(acc.Pending) == 0 && len(acc.Rejections) == 0
	return acc, nil
}

// routeState reads a route's metadata, parentRefs and parent status.
func (r *Router) routeState(ctx context.Context, kind backstopv1.RouteKind, key types.NamespacedName) (metav1.ObjectMeta, []gwapiv1.ParentReference, []gwapiv1.RouteParentStatus, error) {
	if kind == backstopv1.GRPCRouteKind {
		route := &gwapiv1.GRPCRoute{}
		err := r.Client.Get(ctx, key, route)
		return route.ObjectMeta, route.Spec.ParentRefs, route.Status.Parents, err
	}
	route := &gwapiv1.HTTPRoute{}
	err := r.Client.Get(ctx, key, route)
	return route.ObjectMeta, route.Spec.ParentRefs, route.Status.Parents, err
}

// routeAcceptance judges one route from its parentRefs and status.
func routeAcceptance(route, namespace string, generation int64, parents []gwapiv1.ParentReference, status []gwapiv1.RouteParentStatus) ([]string, []Rejection) {
	var (
		pending    []string
		rejections []Rejection
	)
	if len(parents) == 0 {
		return []string{route + ": has no parentRefs"}, nil
	}
	for _, p := range parents {
		parent := describeParent(namespace, p)
		answered := false
		for _, st := range status {
			if !sameParent(namespace, p, st.ParentRef) {
				continue
			}
			answered = true
			var missing []string
			for _, typ := range []gwapiv1.RouteConditionType{gwapiv1.RouteConditionAccepted, gwapiv1.RouteConditionResolvedRefs} {
				c := findCondition(st.Conditions, string(typ))
				switch {
				case c == nil:
					missing = append(missing, string(typ)+" is not reported")
				case c.ObservedGeneration != generation:
					missing = append(missing, fmt.Sprintf("%s is for generation %d, not %d", typ, c.ObservedGeneration, generation))
				case c.Status == metav1.ConditionFalse:
					rejections = append(rejections, Rejection{
						Route: route, Parent: parent, Controller: string(st.ControllerName),
						Condition: string(typ), Reason: c.Reason, Message: c.Message,
					})
				case c.Status != metav1.ConditionTrue:
					missing = append(missing, fmt.Sprintf("%s is %s", typ, c.Status))
				}
			}
			if len(missing) > 0 {
				pending = append(pending, fmt.Sprintf("%s: %s (%s): %s", route, parent, st.ControllerName, strings.Join(missing, "; ")))
			}
		}
		if !answered {
			pending = append(pending, fmt.Sprintf("%s: %s has not reported a status", route, parent))
		}
	}
	return pending, rejections
}

func findCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// parentKey is a parentRef with its defaults filled in.
type parentKey struct {
	group, kind, namespace, name, section string
	port                                  int32
}

func keyOf(namespace string, p gwapiv1.ParentReference) parentKey {
	k := parentKey{group: gwapiv1.GroupName, kind: "Gateway", namespace: namespace, name: string(p.Name)}
	if p.Group != nil {
		k.group = string(*p.Group)
	}
	if p.Kind != nil {
		k.kind = string(*p.Kind)
	}
	if p.Namespace != nil {
		k.namespace = string(*p.Namespace)
	}
	if p.SectionName != nil {
		k.section = string(*p.SectionName)
	}
	if p.Port != nil {
		k.port = *p.Port
	}
	return k
}

func sameParent(namespace string, a, b gwapiv1.ParentReference) bool {
	return keyOf(namespace, a) == keyOf(namespace, b)
}

func describeParent(namespace string, p gwapiv1.ParentReference) string {
	k := keyOf(namespace, p)
	s := fmt.Sprintf("%s %s/%s", k.kind, k.namespace, k.name)
	if k.section != "" {
		s += " section " + k.section
	}
	if k.port != 0 {
		s += fmt.Sprintf(" port %d", k.port)
	}
	return s
}

package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// applyExisting sets the weights of the backendRefs naming the two Services
// in an existing route. It reports whether it wrote (with write=false,
// whether it would).
//
// The decision is taken on the route as the Client reads it (through the
// manager's cache), so a route that already carries the Split costs no
// round trip. A write is a server-side apply under the Router's field
// manager (ManagedBy when FieldOwner is empty), forced, of an object that
// holds only the route's identity, the resourceVersion just read and
// spec.rules: the rules of a fresh read (unstructured, which the manager's
// client reads from the API server, not its cache), so that fields this
// build's Gateway API types do not know (a newer or experimental CRD) are
// sent back as they are, with only the weights of the two Services
// changed. Nothing else is applied, so Backstop's field manager owns
// nothing but spec.rules, the smallest unit the Gateway API schema lets
// anyone own (spec.rules is an atomic list).
//
// The resourceVersion is a precondition: a route changed between the read
// and the write fails with a conflict instead of getting weights at indexes
// that no longer name the Services, and the whole read, decide and write is
// then tried again (retry.DefaultRetry), so a route a GitOps tool rewrites
// at the same moment costs a retry, not a failed reconcile. Force is right
// because during a release Backstop's weights are the truth; without it the
// apply would conflict with whoever last applied the rules (the GitOps
// tool), every time.
func (r *Router) applyExisting(ctx context.Context, namespace string, rt backstopv1.Route, b Backends, s Split, write bool) (bool, error) {
	kind := routeKind(rt)
	key := types.NamespacedName{Namespace: namespace, Name: rt.Name}
	cached, err := r.readTyped(ctx, kind, key)
	if err != nil {
		return false, err
	}
	changed, found := setWeights(namespace, cached, b, s)
	if !found {
		return false, noRuleError(kind, rt.Name, namespace, b)
	}
	if !changed || !write {
		return changed, nil
	}

	wrote := false
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wrote = false
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(gwapiv1.SchemeGroupVersion.WithKind(string(kind)))
		if err := r.Client.Get(ctx, key, live); err != nil {
			return err
		}
		rules, _, err := unstructured.NestedSlice(live.Object, "spec", "rules")
		if err != nil {
			return fmt.Errorf("reading spec.rules: %w", err)
		}
		changed, found := setWeights(namespace, rules, b, s)
		if !found {
			return noRuleError(kind, rt.Name, namespace, b)
		}
		if !changed {
			// Someone else (a previous write whose answer was lost, or a
			// user) already set these weights.
			return nil
		}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": gwapiv1.SchemeGroupVersion.String(),
			"kind":       string(kind),
			"metadata": map[string]any{
				"name":            rt.Name,
				"namespace":       namespace,
				"resourceVersion": live.GetResourceVersion(),
			},
			"spec": map[string]any{"rules": rules},
		}}
		if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(r.applyOwner()), client.ForceOwnership); err != nil {
			return err
		}
		wrote = true
		return nil
	})
	var noRule *noRuleErr
	switch {
	case errors.As(err, &noRule):
		return false, err
	case err != nil:
		return false, fmt.Errorf("setting the weights of %s %q: %w", kind, rt.Name, err)
	}
	return wrote, nil
}

// applyOwner is the field manager of the server-side applies to existing
// routes, which the API server requires.
func (r *Router) applyOwner() string {
	if r.FieldOwner == "" {
		return ManagedBy
	}
	return r.FieldOwner
}

// readTyped reads a route with the Gateway API types (through the cache
// where the Client has one) and returns its spec.rules as unstructured
// data, for deciding whether anything must be written.
func (r *Router) readTyped(ctx context.Context, kind backstopv1.RouteKind, key types.NamespacedName) ([]any, error) {
	var obj client.Object = &gwapiv1.HTTPRoute{}
	if kind == backstopv1.GRPCRouteKind {
		obj = &gwapiv1.GRPCRoute{}
	}
	if err := r.Client.Get(ctx, key, obj); err != nil {
		return nil, err
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	rules, _, err := unstructured.NestedSlice(u, "spec", "rules")
	if err != nil {
		return nil, fmt.Errorf("reading spec.rules of %s %q: %w", kind, key.Name, err)
	}
	return rules, nil
}

// noRuleErr says that an existing route has no rule naming both Services.
type noRuleErr struct{ msg string }

func (e *noRuleErr) Error() string { return e.msg }

func noRuleError(kind backstopv1.RouteKind, name, namespace string, b Backends) error {
	return &noRuleErr{fmt.Sprintf("%s %q has no rule whose backendRefs name both Service %q and Service %q (kind Service, core group, namespace %q); "+
		"Backstop sets only the weights of such a rule in an existing route, so add them to the route (the canary at weight 0)",
		kind, name, b.Primary, b.Canary, namespace)}
}

// setWeights gives the primary and canary backendRefs their weights, in
// place, in every rule of rules (a route's spec.rules as unstructured data)
// that names both, and reports whether it changed a weight and whether
// there is such a rule. Rules naming only one of the two are left alone: a
// rule the user wrote to send some requests to the canary alone must keep
// doing so. A backendRef that names one of the two Services twice in a rule
// gets the weight each time.
func setWeights(namespace string, rules []any, b Backends, s Split) (changed, found bool) {
	want := map[string]int64{b.Primary: int64(100 - s.CanaryWeight), b.Canary: int64(s.CanaryWeight)}
	for _, rule := range rules {
		m, ok := rule.(map[string]any)
		if !ok {
			continue
		}
		refs, _ := m["backendRefs"].([]any)
		named := map[string]bool{}
		for _, ref := range refs {
			if name, ok := serviceName(namespace, ref); ok {
				named[name] = true
			}
		}
		if !named[b.Primary] || !named[b.Canary] {
			continue
		}
		found = true
		for _, ref := range refs {
			name, ok := serviceName(namespace, ref)
			w, ours := want[name]
			if !ok || !ours {
				continue
			}
			rm := ref.(map[string]any)
			if cur, ok := weightOf(rm["weight"]); ok && cur == w {
				continue
			}
			rm["weight"] = w
			changed = true
		}
	}
	return changed, found
}

// serviceName returns the name a backendRef (unstructured) gives, when it
// names a Service of the core group in the route's namespace.
func serviceName(namespace string, ref any) (string, bool) {
	m, ok := ref.(map[string]any)
	if !ok {
		return "", false
	}
	if g, ok := m["group"]; ok && g != nil && g != "" {
		return "", false
	}
	if k, ok := m["kind"]; ok && k != nil && k != "Service" {
		return "", false
	}
	if ns, ok := m["namespace"]; ok && ns != nil && ns != namespace {
		return "", false
	}
	name, ok := m["name"].(string)
	return name, ok && name != ""
}

// weightOf reads a weight as unstructured data holds it: an int64 from the
// API server or the converter, a float64 or json.Number from other
// decoders.
func weightOf(v any) (int64, bool) {
	switch w := v.(type) {
	case int64:
		return w, true
	case int32:
		return int64(w), true
	case int:
		return int64(w), true
	case float64:
		return int64(w), float64(int64(w)) == w
	case json.Number:
		i, err := w.Int64()
		return i, err == nil
	}
	return 0, false
}

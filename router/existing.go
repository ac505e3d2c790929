package router

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// jsonPatchOp is one operation of an RFC 6902 JSON patch.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// applyExisting sets the weights of the backendRefs naming the two Services
// in an existing route. It reports whether it wrote.
//
// The write is a JSON patch of the weights alone, guarded by a test of the
// resourceVersion read: the rest of the route is never sent back, so fields
// this build's Gateway API types do not know (a newer or experimental CRD)
// survive, and a route changed since the read fails the patch instead of
// having weights set at the wrong index.
func (r *Router) applyExisting(ctx context.Context, namespace string, rt backstopv1.Route, b Backends, s Split, write bool) (bool, error) {
	var (
		obj  client.Object
		refs [][]gwapiv1.BackendRef
	)
	key := types.NamespacedName{Namespace: namespace, Name: rt.Name}
	if routeKind(rt) == backstopv1.GRPCRouteKind {
		route := &gwapiv1.GRPCRoute{}
		if err := r.Client.Get(ctx, key, route); err != nil {
			return false, err
		}
		for _, rule := range route.Spec.Rules {
			refs = append(refs, grpcRefs(rule.BackendRefs))
		}
		obj = route
	} else {
		route := &gwapiv1.HTTPRoute{}
		if err := r.Client.Get(ctx, key, route); err != nil {
			return false, err
		}
		for _, rule := range route.Spec.Rules {
			refs = append(refs, httpRefs(rule.BackendRefs))
		}
		obj = route
	}
	ops, found := weightOps(namespace, refs, b, s)
	if !found {
		return false, fmt.Errorf("%s %q has no rule whose backendRefs name both Service %q and Service %q (kind Service, core group, namespace %q); "+
			"Backstop sets only the weights of such a rule in an existing route, so add them to the route (the canary at weight 0)",
			routeKind(rt), rt.Name, b.Primary, b.Canary, namespace)
	}
	if len(ops) == 0 || !write {
		return len(ops) > 0, nil
	}
	ops = append([]jsonPatchOp{{Op: "test", Path: "/metadata/resourceVersion", Value: obj.GetResourceVersion()}}, ops...)
	data, err := json.Marshal(ops)
	if err != nil {
		return false, err
	}
	var opts []client.PatchOption
	if r.FieldOwner != "" {
		opts = append(opts, client.FieldOwner(r.FieldOwner))
	}
	if err := r.Client.Patch(ctx, obj, client.RawPatch(types.JSONPatchType, data), opts...); err != nil {
		return false, fmt.Errorf("setting the weights of %s %q: %w", routeKind(rt), rt.Name, err)
	}
	return true, nil
}

func httpRefs(in []gwapiv1.HTTPBackendRef) []gwapiv1.BackendRef {
	out := make([]gwapiv1.BackendRef, len(in))
	for i, r := range in {
		out[i] = r.BackendRef
	}
	return out
}

func grpcRefs(in []gwapiv1.GRPCBackendRef) []gwapiv1.BackendRef {
	out := make([]gwapiv1.BackendRef, len(in))
	for i, r := range in {
		out[i] = r.BackendRef
	}
	return out
}

// weightOps returns the patch operations that give the primary and canary
// backendRefs their weights in every rule that names both, and whether there
// is such a rule. Rules naming only one of the two are left alone: a rule
// the user wrote to send some requests to the canary alone must keep doing so.
func weightOps(namespace string, rules [][]gwapiv1.BackendRef, b Backends, s Split) ([]jsonPatchOp, bool) {
	var (
		ops   []jsonPatchOp
		found bool
	)
	want := map[string]int32{b.Primary: 100 - s.CanaryWeight, b.Canary: s.CanaryWeight}
	for i, refs := range rules {
		named := map[string]bool{}
		for _, ref := range refs {
			if isService(namespace, ref.BackendObjectReference) {
				named[string(ref.Name)] = true
			}
		}
		if !named[b.Primary] || !named[b.Canary] {
			continue
		}
		found = true
		for j, ref := range refs {
			w, ours := want[string(ref.Name)]
			if !ours || !isService(namespace, ref.BackendObjectReference) {
				continue
			}
			if ref.Weight != nil && *ref.Weight == w {
				continue
			}
			ops = append(ops, jsonPatchOp{Op: "add", Path: fmt.Sprintf("/spec/rules/%d/backendRefs/%d/weight", i, j), Value: w})
		}
	}
	return ops, found
}

// isService says whether a backendRef names a Service of the core group in
// the route's namespace.
func isService(namespace string, ref gwapiv1.BackendObjectReference) bool {
	if ref.Group != nil && *ref.Group != "" {
		return false
	}
	if ref.Kind != nil && *ref.Kind != "Service" {
		return false
	}
	return ref.Namespace == nil || string(*ref.Namespace) == namespace
}

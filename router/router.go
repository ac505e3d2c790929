// Package router turns "the canary gets W%" into Gateway API objects and
// tells when the gateways have accepted them.
//
// It knows routes, backends and weights, and nothing about Rollout phases:
// the controller decides the Split, the Router makes every route of the
// Rollout carry it. A generated route (spec.routes[].existing=false) is
// owned by the Rollout and rewritten whole from its template; an existing
// route is edited only in the weights of the backendRefs that name the two
// Services.
package router

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Labels put on every generated route (see the API package's).
const (
	// LabelManagedBy is app.kubernetes.io/managed-by, set to ManagedBy.
	LabelManagedBy = backstopv1.LabelManagedBy
	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = backstopv1.ManagedBy
	// LabelRollout names the Rollout a generated route belongs to (a label
	// value: names longer than 63 characters are shortened with a hash).
	LabelRollout = backstopv1.LabelRollout
)

// Backends are the two Services a route splits traffic between, in the
// Rollout's namespace.
type Backends struct {
	// Primary is the Service of the stable version.
	Primary string
	// Canary is the Service of the candidate.
	Canary string
	// Port is the Service port the routes send traffic to.
	Port int32
}

// Split is the traffic Backstop wants.
type Split struct {
	// CanaryWeight is the percentage of traffic sent to the canary, 0..100;
	// the primary gets the rest.
	CanaryWeight int32
	// Match, when set, sends every request that matches all its headers and
	// cookies to the canary (A/B testing, blue-green preview). It shapes
	// generated routes only. Cookies do not apply to GRPCRoutes and are
	// ignored there.
	Match *backstopv1.TrafficMatch
	// MirrorPercent, when above zero, mirrors that percentage (1..100) of
	// the traffic of the weighted rule to the canary. It shapes generated
	// routes only.
	MirrorPercent int32
	// PreviewHostnames, when set, gives every generated route a preview
	// route named <name>-preview (PreviewName) with these hostnames, the
	// route's parentRefs and one rule of its template that sends everything
	// to the canary (blue-green preview by hostname). Without them, a
	// preview route the Rollout controls is deleted. Existing routes get
	// none.
	PreviewHostnames []gwapiv1.Hostname
	// Affinity, when set and CanaryWeight is above zero, keeps users on the
	// canary once the weights sent them there (session affinity). Each
	// generated HTTPRoute gets a sticky rule, after the match rule and
	// before the weighted rule, that sends the requests carrying the
	// cookie <CookieName>=<Value> (each template match plus a match of the
	// Cookie header) to the canary, and in the weighted rule the canary's
	// backendRef gets a ResponseHeaderModifier filter that adds
	// "Set-Cookie: <CookieName>=<Value>; Max-Age=<MaxAge in seconds>;
	// Path=/; HttpOnly; SameSite=Lax". At weight 0 it is ignored, so
	// neither exists. GRPCRoutes, preview routes and existing routes get
	// neither.
	Affinity *Affinity
}

// Router writes Splits to the routes of Rollouts.
type Router struct {
	// Client reads and writes routes. Its scheme must know the Rollout and
	// the Gateway API v1 types.
	Client client.Client
	// FieldOwner is the field manager of the writes; empty leaves it to the
	// client, except for the server-side applies to existing routes, which
	// need one: they use ManagedBy.
	FieldOwner string
	// Stored, when set, remembers the generated routes found to hold their
	// wanted specs, which spares a dry run at each look (see Stored). It
	// should live as long as the process.
	Stored *Stored
}

// Result says what Apply wrote.
type Result struct {
	// Writes is how many routes were created, updated, patched or deleted
	// (a preview route no longer wanted). Zero means every route already
	// carried the Split.
	Writes int
	// Written names the routes written, as "Kind/name".
	Written []string
}

// Apply makes every route of the Rollout carry the Split.
//
// A generated route is created, or updated when it differs from what the
// Rollout's template and the Split make of it; it gets a controller owner
// reference to the Rollout and the labels LabelManagedBy and LabelRollout.
// A generated route of that name that another owner controls is an error.
// With the Split's PreviewHostnames, each generated route also gets a preview
// route (see Split.PreviewHostnames), created and updated the same way but
// never taken over from another owner or none; without them, a preview
// route this Rollout controls is deleted.
//
// With the Split's Affinity and a canary weight above zero, each generated
// HTTPRoute also carries the sticky rule and the cookie filter (see
// Split.Affinity); without either, it carries neither.
//
// An existing route gets new weights in the rules whose backendRefs name
// both the primary and the canary Service (kind Service of the core group,
// in the route's namespace): primary 100-W, canary W. Nothing else changes:
// other rules, rules naming only one of the two Services, other backendRefs,
// filters and every other field stay as they are. A route with no such rule
// is an error.
//
// Apply is idempotent: a route that already carries the Split is not
// written. It tries every route even when one fails, so that traffic moves
// wherever it can (on a rollback above all), and returns the errors joined.
func (r *Router) Apply(ctx context.Context, ro *backstopv1.Rollout, b Backends, s Split) (Result, error) {
	return r.apply(ctx, ro, b, s, true)
}

// Carries reports whether every route of the Rollout already carries the
// Split, that is whether Apply would write nothing. It writes nothing
// itself (a generated route may be compared through a dry run).
func (r *Router) Carries(ctx context.Context, ro *backstopv1.Rollout, b Backends, s Split) (bool, error) {
	res, err := r.apply(ctx, ro, b, s, false)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil && res.Writes == 0, err
}

// apply makes the routes carry the Split, or with write=false only counts
// the routes it would write.
func (r *Router) apply(ctx context.Context, ro *backstopv1.Rollout, b Backends, s Split, write bool) (Result, error) {
	var res Result
	if err := checkInput(b, s); err != nil {
		return res, err
	}
	var errs []error
	for _, rt := range ro.Spec.Routes {
		var (
			written []string
			err     error
		)
		switch {
		case rt.Existing:
			var wrote bool
			wrote, err = r.applyExisting(ctx, ro.Namespace, rt, b, s, write)
			if wrote {
				written = []string{fmt.Sprintf("%s/%s", routeKind(rt), rt.Name)}
			}
		default:
			written, err = r.applyGenerated(ctx, ro, rt, b, s, write)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.routes[%s]: %w", rt.Name, err))
		}
		res.Writes += len(written)
		res.Written = append(res.Written, written...)
	}
	return res, errors.Join(errs...)
}

func checkInput(b Backends, s Split) error {
	switch {
	case b.Primary == "" || b.Canary == "":
		return fmt.Errorf("router: both the primary and the canary Service must be named (got %q and %q)", b.Primary, b.Canary)
	case b.Primary == b.Canary:
		return fmt.Errorf("router: the primary and the canary Service must differ (both are %q)", b.Primary)
	case b.Port < 1 || b.Port > 65535:
		return fmt.Errorf("router: Service port %d is outside 1..65535", b.Port)
	case s.CanaryWeight < 0 || s.CanaryWeight > 100:
		return fmt.Errorf("router: canary weight %d is outside 0..100", s.CanaryWeight)
	case s.MirrorPercent < 0 || s.MirrorPercent > 100:
		return fmt.Errorf("router: mirror percent %d is outside 0..100", s.MirrorPercent)
	}
	return s.Affinity.check()
}

func routeKind(rt backstopv1.Route) backstopv1.RouteKind {
	if rt.Kind == "" {
		return backstopv1.HTTPRouteKind
	}
	return rt.Kind
}

func (r *Router) writeOptions() []client.UpdateOption {
	if r.FieldOwner == "" {
		return nil
	}
	return []client.UpdateOption{client.FieldOwner(r.FieldOwner)}
}

package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/yaml"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/router"
)

// These tests play a GitOps tool against Backstop on one existing route.
// The tool is played as Flux's kustomize-controller applies: a server-side
// apply of the manifest from Git under its field manager, forced. (Flux
// skips the apply when a dry run shows no drift; an apply of an unchanged
// manifest that changes nothing is the same thing to the route.)
const gitManager = "kustomize-controller"

// shopHTTPRoute is the user's HTTPRoute as Git holds it: a rule that sends
// a header to the canary alone, the weighted rule with filters, timeouts
// and a third backend, a rule naming the primary alone and one naming
// neither. weights says what Git writes as the weights of the weighted
// rule's primary and canary ("" leaves them out); extraRules go first.
func shopHTTPRoute(ns string, weights [2]string, extraRules string) string {
	w := func(s string) string {
		if s == "" {
			return ""
		}
		return ", weight: " + s
	}
	return fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: %s
  labels: {team: shop}
  annotations: {note: kept in git}
spec:
  parentRefs:
    - {name: public, sectionName: https}
  hostnames: [shop.example.com]
  rules:%s
    - matches:
        - headers: [{name: X-Beta, value: "yes"}]
      backendRefs:
        - {name: app-canary, port: 8080, weight: 100}
    - matches:
        - path: {type: PathPrefix, value: /cart}
        - path: {type: Exact, value: /basket}
          method: POST
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            add: [{name: X-Route, value: cart}]
            remove: [X-Debug]
      timeouts: {request: 10s}
      backendRefs:
        - {name: app-primary, port: 8080%s}
        - {name: legacy, port: 8080, weight: 5}
        - name: app-canary
          port: 8080%s
          filters:
            - type: ResponseHeaderModifier
              responseHeaderModifier:
                set: [{name: X-Version, value: canary}]
    - matches:
        - path: {type: PathPrefix, value: /admin}
      backendRefs:
        - {name: app-primary, port: 8080, weight: 1}
    - matches:
        - path: {type: PathPrefix, value: /static}
      filters:
        - type: URLRewrite
          urlRewrite:
            path: {type: ReplacePrefixMatch, replacePrefixMatch: /assets}
      backendRefs:
        - {name: cdn, port: 80, weight: 1}
`, ns, extraRules, w(weights[0]), strings.ReplaceAll(w(weights[1]), ", ", "\n          "))
}

// shopGRPCRoute is the same for a GRPCRoute.
func shopGRPCRoute(ns string) string {
	return fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: shop
  namespace: %s
spec:
  parentRefs: [{name: public}]
  rules:
    - matches:
        - method: {service: shop.v1.Admin}
      backendRefs:
        - {name: app-primary, port: 8080, weight: 1}
    - matches:
        - method: {service: shop.v1.Cart, method: Get}
          headers: [{name: x-tenant, value: acme}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            add: [{name: x-route, value: cart}]
      backendRefs:
        - {name: app-canary, port: 8080, weight: 0}
        - {name: legacy, port: 8080, weight: 5}
        - {name: app-primary, port: 8080, weight: 100}
`, ns)
}

// the weighted rule: its index in shopHTTPRoute without extra rules.
const weightedRule = 1

// manifest decodes a manifest as Git holds it.
func manifest(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatalf("decoding the manifest: %v", err)
	}
	return obj
}

// gitApply applies a manifest as the GitOps tool does.
func gitApply(t *testing.T, doc string) {
	t.Helper()
	obj := manifest(t, doc)
	if err := env.Client.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(obj),
		client.FieldOwner(gitManager), client.ForceOwnership); err != nil {
		t.Fatalf("applying the manifest as %s: %v", gitManager, err)
	}
}

// live reads a route as it is stored, unstructured.
func live(t *testing.T, ns, kind, name string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion("gateway.networking.k8s.io/v1")
	obj.SetKind(kind)
	return get(t, ns, name, obj)
}

// rules returns a route's spec.rules.
func rules(t *testing.T, obj *unstructured.Unstructured) []any {
	t.Helper()
	rs, found, err := unstructured.NestedSlice(obj.Object, "spec", "rules")
	if err != nil || !found {
		t.Fatalf("spec.rules of %s: found %v, %v", obj.GetName(), found, err)
	}
	return rs
}

// weightsOf lists "name=weight" of the backendRefs of a rule.
func weightsOf(t *testing.T, obj *unstructured.Unstructured, rule int) string {
	t.Helper()
	rs := rules(t, obj)
	if rule >= len(rs) {
		t.Fatalf("%s has %d rules; want rule %d", obj.GetName(), len(rs), rule)
	}
	var out []string
	for _, ref := range rs[rule].(map[string]any)["backendRefs"].([]any) {
		m := ref.(map[string]any)
		out = append(out, fmt.Sprintf("%v=%v", m["name"], m["weight"]))
	}
	return strings.Join(out, ",")
}

// withoutOurWeights is the JSON of a route's spec with the weights of
// app-primary and app-canary removed from the rules naming both: what
// Backstop may change. Everything else must stay byte for byte.
func withoutOurWeights(t *testing.T, obj *unstructured.Unstructured) string {
	t.Helper()
	spec, _, err := unstructured.NestedMap(obj.Object, "spec")
	if err != nil {
		t.Fatal(err)
	}
	rs, _, _ := unstructured.NestedSlice(spec, "rules")
	for _, rule := range rs {
		refs, _ := rule.(map[string]any)["backendRefs"].([]any)
		names := map[any]bool{}
		for _, ref := range refs {
			names[ref.(map[string]any)["name"]] = true
		}
		if !names["app-primary"] || !names["app-canary"] {
			continue
		}
		for _, ref := range refs {
			if m := ref.(map[string]any); m["name"] == "app-primary" || m["name"] == "app-canary" {
				delete(m, "weight")
			}
		}
	}
	if err := unstructured.SetNestedSlice(spec, rs, "rules"); err != nil {
		t.Fatal(err)
	}
	return string(mustJSON(spec))
}

// owned returns, per field manager and operation ("backstop/Apply"), the
// fieldsV1 it owns in the route's main resource, as JSON.
func owned(obj *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for _, mf := range obj.GetManagedFields() {
		if mf.Subresource != "" {
			continue
		}
		raw := "{}"
		if mf.FieldsV1 != nil {
			raw = string(mf.FieldsV1.Raw)
		}
		out[mf.Manager+"/"+string(mf.Operation)] = raw
	}
	return out
}

// ownsRules says whether fieldsV1 (JSON) owns spec.rules.
func ownsRules(t *testing.T, fields string) bool {
	t.Helper()
	if fields == "" {
		return false
	}
	var m map[string]map[string]any
	if err := json.Unmarshal([]byte(fields), &m); err != nil {
		t.Fatalf("decoding managed fields %s: %v", fields, err)
	}
	_, ok := m["f:spec"]["f:rules"]
	return ok
}

// TestExistingRouteServerSideApply: on a route a GitOps tool applied,
// Backstop changes the two weights and nothing else, and its field manager
// owns spec.rules and nothing more.
func TestExistingRouteServerSideApply(t *testing.T) {
	tests := []struct {
		kind     backstopv1.RouteKind
		doc      func(ns string) string
		weighted int
		want     func(w int32) string
		others   map[int]string
	}{{
		kind:     backstopv1.HTTPRouteKind,
		doc:      func(ns string) string { return shopHTTPRoute(ns, [2]string{"100", "0"}, "") },
		weighted: weightedRule,
		want: func(w int32) string {
			return fmt.Sprintf("app-primary=%d,legacy=5,app-canary=%d", 100-w, w)
		},
		others: map[int]string{0: "app-canary=100", 2: "app-primary=1", 3: "cdn=1"},
	}, {
		kind:     backstopv1.GRPCRouteKind,
		doc:      shopGRPCRoute,
		weighted: 1,
		want: func(w int32) string {
			return fmt.Sprintf("app-canary=%d,legacy=5,app-primary=%d", w, 100-w)
		},
		others: map[int]string{0: "app-primary=1"},
	}}
	for _, tc := range tests {
		t.Run(string(tc.kind), func(t *testing.T) {
			ns := env.Namespace(t)
			gitApply(t, tc.doc(ns))
			before := live(t, ns, string(tc.kind), "shop")
			ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Kind: tc.kind, Existing: true})

			for _, w := range []int32{20, 0} {
				if res := apply(t, ro, router.Split{CanaryWeight: w}); res.Writes != 1 || res.Written[0] != string(tc.kind)+"/shop" {
					t.Fatalf("weight %d: Apply wrote %v; want %s/shop", w, res.Written, tc.kind)
				}
				after := live(t, ns, string(tc.kind), "shop")
				if got, want := weightsOf(t, after, tc.weighted), tc.want(w); got != want {
					t.Errorf("weight %d: weighted rule %s; want %s", w, got, want)
				}
				for i, want := range tc.others {
					if got := weightsOf(t, after, i); got != want {
						t.Errorf("weight %d: rule %d became %s; want it untouched, %s", w, i, got, want)
					}
				}
				if b, a := withoutOurWeights(t, before), withoutOurWeights(t, after); b != a {
					t.Errorf("weight %d: the spec changed beyond the two weights:\nbefore %s\nafter  %s", w, b, a)
				}
				if string(mustJSON(before.GetLabels())) != string(mustJSON(after.GetLabels())) ||
					string(mustJSON(before.GetAnnotations())) != string(mustJSON(after.GetAnnotations())) || len(after.GetOwnerReferences()) != 0 {
					t.Errorf("weight %d: metadata changed: labels %v annotations %v owners %v", w, after.GetLabels(), after.GetAnnotations(), after.GetOwnerReferences())
				}
				fields := owned(after)
				if got := fields["backstop/Apply"]; got != `{"f:spec":{"f:rules":{}}}` {
					t.Errorf("weight %d: backstop applies %s; want spec.rules alone (managed fields %v)", w, got, fields)
				}
				if len(fields) != 2 {
					t.Errorf("weight %d: managed fields %v; want backstop and %s, both Apply", w, fields, gitManager)
				}
				if git := fields[gitManager+"/Apply"]; git == "" || ownsRules(t, git) || !strings.Contains(git, `"f:parentRefs"`) {
					t.Errorf("weight %d: %s owns %s; want everything it applied but spec.rules, which the forced apply took", w, gitManager, git)
				}
			}
			if ok, err := newRouter().Carries(context.Background(), ro, backends, router.Split{CanaryWeight: 0}); err != nil || !ok {
				t.Errorf("Carries(0) = %v, %v; want true", ok, err)
			}
		})
	}
}

// TestGitOpsReappliesBetweenReleases: with the weights 100/0 in Git, the
// tool and Backstop agree between releases, before and after a release.
func TestGitOpsReappliesBetweenReleases(t *testing.T) {
	ns := env.Namespace(t)
	doc := shopHTTPRoute(ns, [2]string{"100", "0"}, "")
	gitApply(t, doc)
	ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Existing: true})

	// Set up: the route already sends everything to the primary.
	rv := live(t, ns, "HTTPRoute", "shop").GetResourceVersion()
	if res := apply(t, ro, router.Split{}); res.Writes != 0 {
		t.Errorf("Apply(0) on the route from Git wrote %v; want nothing", res.Written)
	}
	gitApply(t, doc)
	if got := live(t, ns, "HTTPRoute", "shop").GetResourceVersion(); got != rv {
		t.Errorf("Backstop's Apply(0) and an unchanged re-apply moved resourceVersion %s to %s; want no write", rv, got)
	}

	// A release, promoted: Backstop applied 100/0 last and owns spec.rules.
	apply(t, ro, router.Split{CanaryWeight: 30})
	apply(t, ro, router.Split{})
	promoted := live(t, ns, "HTTPRoute", "shop")

	// The tool applies the unchanged manifest: no error, the same spec and
	// generation. Its apply leaves out the defaults the API server filled
	// in (group, kind), so for an atomic list it is another value than the
	// stored one: the forced apply takes spec.rules back from Backstop's
	// manager, which the API server records once (the managed fields
	// change, so the resourceVersion moves).
	gitApply(t, doc)
	taken := live(t, ns, "HTTPRoute", "shop")
	if b, a := string(mustJSON(promoted.Object["spec"])), string(mustJSON(taken.Object["spec"])); b != a {
		t.Errorf("the re-apply changed the spec:\nbefore %s\nafter  %s", b, a)
	}
	if taken.GetGeneration() != promoted.GetGeneration() {
		t.Errorf("the re-apply moved generation %d to %d", promoted.GetGeneration(), taken.GetGeneration())
	}
	fields := owned(taken)
	if _, ok := fields["backstop/Apply"]; ok || !ownsRules(t, fields[gitManager+"/Apply"]) {
		t.Errorf("after the re-apply, managed fields %v; want spec.rules owned by %s alone", fields, gitManager)
	}
	t.Logf("the first re-apply after the promotion: resourceVersion %s -> %s, generation %d (managed fields only)",
		promoted.GetResourceVersion(), taken.GetResourceVersion(), taken.GetGeneration())

	// From then on, re-applies and Backstop's looks write nothing.
	rv = taken.GetResourceVersion()
	for range 3 {
		gitApply(t, doc)
		if res := apply(t, ro, router.Split{}); res.Writes != 0 {
			t.Errorf("Apply(0) wrote %v; want nothing", res.Written)
		}
	}
	if got := live(t, ns, "HTTPRoute", "shop").GetResourceVersion(); got != rv {
		t.Errorf("unchanged re-applies and Apply(0) moved resourceVersion %s to %s; want no write", rv, got)
	}
}

// TestGitOpsReappliesDuringARelease: spec.rules is an atomic list, so a
// re-apply of the manifest during a release puts Git's weights back, and
// Backstop's next Apply puts its own back, keeping a rule added in Git
// meanwhile.
func TestGitOpsReappliesDuringARelease(t *testing.T) {
	ns := env.Namespace(t)
	gitApply(t, shopHTTPRoute(ns, [2]string{"100", "0"}, ""))
	ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Existing: true})
	apply(t, ro, router.Split{CanaryWeight: 20})
	if got := weightsOf(t, live(t, ns, "HTTPRoute", "shop"), weightedRule); got != "app-primary=80,legacy=5,app-canary=20" {
		t.Fatalf("after Apply(20): %s", got)
	}

	// The tool applies Git again, forced (as Flux does on drift). The
	// apply owns the whole of spec.rules: Git's weights come back, and
	// Backstop's field manager loses spec.rules.
	gitApply(t, shopHTTPRoute(ns, [2]string{"100", "0"}, ""))
	reset := live(t, ns, "HTTPRoute", "shop")
	if got := weightsOf(t, reset, weightedRule); got != "app-primary=100,legacy=5,app-canary=0" {
		t.Errorf("after the re-apply mid-release: %s; want Git's weights back", got)
	}
	if fields := owned(reset); ownsRules(t, fields["backstop/Apply"]) || !ownsRules(t, fields[gitManager+"/Apply"]) {
		t.Errorf("after the re-apply mid-release, managed fields %v; want spec.rules owned by %s alone", fields, gitManager)
	}
	if ok, err := newRouter().Carries(context.Background(), ro, backends, router.Split{CanaryWeight: 20}); err != nil || ok {
		t.Errorf("Carries(20) after the reset = %v, %v; want false", ok, err)
	}

	// Meanwhile the user added a rule in Git, first, so the weighted rule
	// moved to index 2, and the tool applied it.
	added := `
    - matches:
        - path: {type: PathPrefix, value: /search}
      backendRefs:
        - {name: search, port: 8080, weight: 1}`
	gitApply(t, shopHTTPRoute(ns, [2]string{"100", "0"}, added))
	fromGit := live(t, ns, "HTTPRoute", "shop")
	if res := apply(t, ro, router.Split{CanaryWeight: 20}); res.Writes != 1 {
		t.Errorf("Apply(20) after the reset wrote %v; want the route", res.Written)
	}
	after := live(t, ns, "HTTPRoute", "shop")
	if got := weightsOf(t, after, weightedRule+1); got != "app-primary=80,legacy=5,app-canary=20" {
		t.Errorf("Backstop's weights after the reset: %s; want them back in the moved rule", got)
	}
	if got := weightsOf(t, after, 0); got != "search=1" {
		t.Errorf("the rule added in Git became %s", got)
	}
	if b, a := withoutOurWeights(t, fromGit), withoutOurWeights(t, after); b != a {
		t.Errorf("the spec changed beyond the two weights:\nbefore %s\nafter  %s", b, a)
	}
}

// TestGitOpsManifestWithoutWeights: a backendRef without a weight gets
// weight 1 from the API server, so a manifest without weights sends half
// the traffic to the canary whenever it is applied, between releases too.
func TestGitOpsManifestWithoutWeights(t *testing.T) {
	ns := env.Namespace(t)
	doc := shopHTTPRoute(ns, [2]string{"", ""}, "")
	gitApply(t, doc)
	if got := weightsOf(t, live(t, ns, "HTTPRoute", "shop"), weightedRule); got != "app-primary=1,legacy=5,app-canary=1" {
		t.Fatalf("a manifest without weights is stored as %s; want the default weight 1", got)
	}
	ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Existing: true})
	if res := apply(t, ro, router.Split{}); res.Writes != 1 {
		t.Errorf("Apply(0) wrote %v; want the route", res.Written)
	}
	if got := weightsOf(t, live(t, ns, "HTTPRoute", "shop"), weightedRule); got != "app-primary=100,legacy=5,app-canary=0" {
		t.Errorf("after Apply(0): %s", got)
	}
	// Between releases, the same manifest applied again is a change: the
	// defaults of the apply are 1 and 1, not what Backstop wrote.
	gitApply(t, doc)
	if got := weightsOf(t, live(t, ns, "HTTPRoute", "shop"), weightedRule); got != "app-primary=1,legacy=5,app-canary=1" {
		t.Errorf("after a re-apply of the manifest without weights: %s; want 1 and 1 again", got)
	}
	if ok, err := newRouter().Carries(context.Background(), ro, backends, router.Split{}); err != nil || ok {
		t.Errorf("Carries(0) = %v, %v; want false: the canary has weight 1", ok, err)
	}
}

// racingClient changes the route (inserting a rule first, as a GitOps
// apply of an edited manifest would) just before each of Backstop's
// applies, at most times times.
func racingClient(t *testing.T, ns string, times int) (client.Client, *int) {
	t.Helper()
	applies := 0
	c, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return interceptor.NewClient(c, interceptor.Funcs{
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			applies++
			if applies <= times {
				var extra strings.Builder
				for i := range applies {
					fmt.Fprintf(&extra, "\n    - matches: [{path: {type: PathPrefix, value: /race%d}}]\n      backendRefs: [{name: race, port: 80, weight: 1}]", i)
				}
				gitApply(t, shopHTTPRoute(ns, [2]string{"100", "0"}, extra.String()))
			}
			return c.Apply(ctx, obj, opts...)
		},
	}), &applies
}

// TestExistingRouteChangedBetweenReadAndWrite: the resourceVersion read is
// a precondition of the apply. A route changed in between fails it rather
// than getting weights at indexes that moved; Backstop reads again and
// tries again, and when the route keeps changing, it gives up with the
// conflict and has written nothing.
func TestExistingRouteChangedBetweenReadAndWrite(t *testing.T) {
	t.Run("once", func(t *testing.T) {
		ns := env.Namespace(t)
		gitApply(t, shopHTTPRoute(ns, [2]string{"100", "0"}, ""))
		ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Existing: true})
		c, applies := racingClient(t, ns, 1)
		r := &router.Router{Client: c, FieldOwner: "backstop"}
		res, err := r.Apply(context.Background(), ro, backends, router.Split{CanaryWeight: 20})
		if err != nil || res.Writes != 1 {
			t.Fatalf("Apply(20) = %v, %v; want one write after a retry", res.Written, err)
		}
		if *applies != 2 {
			t.Errorf("%d applies; want 2: one refused, one after a new read", *applies)
		}
		after := live(t, ns, "HTTPRoute", "shop")
		if got := weightsOf(t, after, weightedRule+1); got != "app-primary=80,legacy=5,app-canary=20" {
			t.Errorf("the weighted rule, moved to index %d by the race: %s", weightedRule+1, got)
		}
		if got := weightsOf(t, after, 0); got != "race=1" {
			t.Errorf("the rule inserted by the race became %s; want it untouched", got)
		}
		if got := weightsOf(t, after, weightedRule); got != "app-canary=100" {
			t.Errorf("the rule now at index %d became %s; want it untouched", weightedRule, got)
		}
	})
	t.Run("always", func(t *testing.T) {
		ns := env.Namespace(t)
		gitApply(t, shopHTTPRoute(ns, [2]string{"100", "0"}, ""))
		ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Existing: true})
		c, applies := racingClient(t, ns, 100)
		r := &router.Router{Client: c, FieldOwner: "backstop"}
		res, err := r.Apply(context.Background(), ro, backends, router.Split{CanaryWeight: 20})
		if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), `spec.routes[shop]: setting the weights of HTTPRoute "shop"`) {
			t.Errorf("Apply(20) returned %v; want the conflict", err)
		}
		if res.Writes != 0 {
			t.Errorf("Apply wrote %v; want nothing", res.Written)
		}
		after := live(t, ns, "HTTPRoute", "shop")
		last := manifest(t, shopHTTPRoute(ns, [2]string{"100", "0"}, ""))
		n := len(rules(t, last)) + *applies
		if got := len(rules(t, after)); got != n {
			t.Errorf("%d rules; want %d, the racer's last apply", got, n)
		}
		if got := weightsOf(t, after, weightedRule+*applies); got != "app-primary=100,legacy=5,app-canary=0" {
			t.Errorf("after %d refused applies, the weighted rule is %s; want Git's weights, untouched", *applies, got)
		}
		if fields := owned(after); fields["backstop/Apply"] != "" {
			t.Errorf("managed fields %v; want none of backstop", fields)
		}
	})
}

// TestExistingRouteAfterAJSONPatch: a route whose weights an older Backstop
// set with a JSON patch (an Update by the same field manager) is taken
// over by the apply, and the old entry goes.
func TestExistingRouteAfterAJSONPatch(t *testing.T) {
	ns := env.Namespace(t)
	gitApply(t, shopHTTPRoute(ns, [2]string{"100", "0"}, ""))
	route := live(t, ns, "HTTPRoute", "shop")
	patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/resourceVersion","value":%q},`+
		`{"op":"add","path":"/spec/rules/1/backendRefs/0/weight","value":90},{"op":"add","path":"/spec/rules/1/backendRefs/2/weight","value":10}]`,
		route.GetResourceVersion())
	if err := env.Client.Patch(context.Background(), route, client.RawPatch("application/json-patch+json", []byte(patch)), client.FieldOwner("backstop")); err != nil {
		t.Fatal(err)
	}
	if fields := owned(live(t, ns, "HTTPRoute", "shop")); !ownsRules(t, fields["backstop/Update"]) {
		t.Fatalf("managed fields after the JSON patch: %v; want backstop/Update owning spec.rules", fields)
	}
	ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Existing: true})
	apply(t, ro, router.Split{CanaryWeight: 20})
	after := live(t, ns, "HTTPRoute", "shop")
	if got := weightsOf(t, after, weightedRule); got != "app-primary=80,legacy=5,app-canary=20" {
		t.Errorf("weighted rule %s", got)
	}
	fields := owned(after)
	if _, ok := fields["backstop/Update"]; ok || fields["backstop/Apply"] != `{"f:spec":{"f:rules":{}}}` {
		t.Errorf("managed fields %v; want backstop/Apply owning spec.rules and no backstop/Update", fields)
	}
}

// kubectlApply runs the real kubectl apply of a manifest with args.
func kubectlApply(t *testing.T, doc string, args ...string) (string, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "route.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := env.KubectlCmd(context.Background(), append([]string{"apply", "-f", f}, args...)...).CombinedOutput()
	return string(out), err
}

// TestKubectlApply runs the real kubectl on a route Backstop writes.
// kubectl apply --server-side without --force-conflicts (field manager
// "kubectl") does not take spec.rules from Backstop: once Backstop has
// written the route, it fails with a conflict and changes nothing, during
// a release and between releases alike, because the manifest's rules lack
// the defaults the API server filled in and so never equal what Backstop
// applied. With --force-conflicts, and with client-side apply, Git's
// weights come back during a release.
func TestKubectlApply(t *testing.T) {
	t.Run("server-side", func(t *testing.T) {
		ns := env.Namespace(t)
		doc := shopHTTPRoute(ns, [2]string{"100", "0"}, "")
		if out, err := kubectlApply(t, doc, "--server-side"); err != nil {
			t.Fatalf("kubectl apply --server-side: %v: %s", err, out)
		}
		ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Existing: true})
		for _, w := range []int32{20, 0} {
			apply(t, ro, router.Split{CanaryWeight: w})
			before := live(t, ns, "HTTPRoute", "shop")
			out, err := kubectlApply(t, doc, "--server-side")
			if err == nil || !strings.Contains(out, `Apply failed with 1 conflict: conflict with "backstop": .spec.rules`) {
				t.Errorf("weight %d: kubectl apply --server-side returned %v: %s; want a conflict with backstop over .spec.rules", w, err, out)
			}
			after := live(t, ns, "HTTPRoute", "shop")
			if after.GetResourceVersion() != before.GetResourceVersion() {
				t.Errorf("weight %d: the refused apply moved resourceVersion %s to %s", w, before.GetResourceVersion(), after.GetResourceVersion())
			}
			if got, want := weightsOf(t, after, weightedRule), fmt.Sprintf("app-primary=%d,legacy=5,app-canary=%d", 100-w, w); got != want {
				t.Errorf("weight %d: %s; want %s", w, got, want)
			}
		}
		// Between releases, --force-conflicts takes spec.rules back and
		// changes no weight; plain applies work again after it.
		if out, err := kubectlApply(t, doc, "--server-side", "--force-conflicts"); err != nil {
			t.Fatalf("kubectl apply --server-side --force-conflicts: %v: %s", err, out)
		}
		if got := weightsOf(t, live(t, ns, "HTTPRoute", "shop"), weightedRule); got != "app-primary=100,legacy=5,app-canary=0" {
			t.Errorf("after --force-conflicts between releases: %s", got)
		}
		if out, err := kubectlApply(t, doc, "--server-side"); err != nil {
			t.Errorf("kubectl apply --server-side after --force-conflicts: %v: %s", err, out)
		}
	})
	for _, args := range [][]string{{"--server-side", "--force-conflicts"}, nil} {
		t.Run(fmt.Sprint("args=", args), func(t *testing.T) {
			ns := env.Namespace(t)
			doc := shopHTTPRoute(ns, [2]string{"100", "0"}, "")
			if out, err := kubectlApply(t, doc, args...); err != nil {
				t.Fatalf("kubectl apply %v: %v: %s", args, err, out)
			}
			ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Existing: true})
			apply(t, ro, router.Split{CanaryWeight: 20})
			if out, err := kubectlApply(t, doc, args...); err != nil {
				t.Fatalf("kubectl apply %v: %v: %s", args, err, out)
			}
			if got := weightsOf(t, live(t, ns, "HTTPRoute", "shop"), weightedRule); got != "app-primary=100,legacy=5,app-canary=0" {
				t.Errorf("kubectl apply %v during a release: %s; want Git's weights back", args, got)
			}
		})
	}
}

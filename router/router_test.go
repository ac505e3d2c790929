package router_test

import (
	"context"
	"encoding/json"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/router"
	"backstop.dev/backstop/test/testenv"
)

// env is the control plane shared by this package's tests.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

var backends = router.Backends{Primary: "app-primary", Canary: "app-canary", Port: 8080}

func newRouter() *router.Router {
	return &router.Router{Client: env.Client, FieldOwner: "backstop"}
}

// createRollout stores a valid Rollout with the given routes, so that it has
// the uid that owner references need.
func createRollout(t *testing.T, ns string, routes ...backstopv1.Route) *backstopv1.Rollout {
	t.Helper()
	ro := &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: "app"},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes:    routes,
			Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{
				Steps: []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](10)}},
			}},
		},
	}
	if err := env.Client.Create(context.Background(), ro); err != nil {
		t.Fatalf("creating the Rollout: %v", err)
	}
	return ro
}

func generatedRoute(name string) backstopv1.Route {
	return backstopv1.Route{
		Name:       name,
		ParentRefs: []gwapiv1.ParentReference{{Name: "public"}},
		Hostnames:  []gwapiv1.Hostname{"app.example.com"},
	}
}

func apply(t *testing.T, ro *backstopv1.Rollout, s router.Split) router.Result {
	t.Helper()
	res, err := newRouter().Apply(context.Background(), ro, backends, s)
	if err != nil {
		t.Fatalf("Apply(%+v): %v", s, err)
	}
	return res
}

func get[T client.Object](t *testing.T, ns, name string, obj T) T {
	t.Helper()
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatalf("getting %s: %v", name, err)
	}
	return obj
}

// refWeights lists "name=weight" of a rule's backendRefs.
func refWeights(refs []gwapiv1.BackendRef) string {
	var out []string
	for _, r := range refs {
		w := "unset"
		if r.Weight != nil {
			w = itoa(*r.Weight)
		}
		out = append(out, string(r.Name)+"="+w)
	}
	return strings.Join(out, ",")
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func httpRuleRefs(rule gwapiv1.HTTPRouteRule) []gwapiv1.BackendRef {
	var out []gwapiv1.BackendRef
	for _, r := range rule.BackendRefs {
		out = append(out, r.BackendRef)
	}
	return out
}

func grpcRuleRefs(rule gwapiv1.GRPCRouteRule) []gwapiv1.BackendRef {
	var out []gwapiv1.BackendRef
	for _, r := range rule.BackendRefs {
		out = append(out, r.BackendRef)
	}
	return out
}

// assertIdle applies the split again and checks that nothing is written.
func assertIdle(t *testing.T, ro *backstopv1.Rollout, s router.Split, obj client.Object) {
	t.Helper()
	before := get(t, ro.Namespace, obj.GetName(), obj).GetResourceVersion()
	ctx := context.Background()
	if ok, err := newRouter().Carries(ctx, ro, backends, s); err != nil || !ok {
		t.Errorf("Carries(%+v) = %v, %v; want true", s, ok, err)
	}
	other := s
	other.CanaryWeight = (s.CanaryWeight + 1) % 101
	if ok, err := newRouter().Carries(ctx, ro, backends, other); err != nil || ok {
		t.Errorf("Carries(%+v) = %v, %v; want false", other, ok, err)
	}
	if after := get(t, ro.Namespace, obj.GetName(), obj).GetResourceVersion(); after != before {
		t.Errorf("Carries changed resourceVersion %s to %s; it must not write", before, after)
	}
	if res := apply(t, ro, s); res.Writes != 0 {
		t.Errorf("a second Apply(%+v) wrote %v; want no write", s, res.Written)
	}
	if after := get(t, ro.Namespace, obj.GetName(), obj).GetResourceVersion(); after != before {
		t.Errorf("a second Apply(%+v) changed resourceVersion %s to %s", s, before, after)
	}
}

func TestGeneratedHTTPRouteWeights(t *testing.T) {
	ns := env.Namespace(t)
	rt := generatedRoute("app")
	rt.HTTP = &backstopv1.HTTPRouteTemplate{
		Matches:  []gwapiv1.HTTPRouteMatch{{Path: &gwapiv1.HTTPPathMatch{Value: ptr.To("/")}}},
		Timeouts: &gwapiv1.HTTPRouteTimeouts{Request: ptr.To(gwapiv1.Duration("30s"))},
	}
	ro := createRollout(t, ns, rt)

	for i, w := range []int32{0, 10, 50, 100} {
		res := apply(t, ro, router.Split{CanaryWeight: w})
		if res.Writes != 1 || len(res.Written) != 1 || res.Written[0] != "HTTPRoute/app" {
			t.Errorf("weight %d: Apply wrote %d %v; want HTTPRoute/app once", w, res.Writes, res.Written)
		}
		route := get(t, ns, "app", &gwapiv1.HTTPRoute{})
		if len(route.Spec.Rules) != 1 {
			t.Fatalf("weight %d: %d rules; want 1", w, len(route.Spec.Rules))
		}
		want := "app-primary=" + itoa(100-w) + ",app-canary=" + itoa(w)
		if got := refWeights(httpRuleRefs(route.Spec.Rules[0])); got != want {
			t.Errorf("weight %d: backendRefs %s; want %s", w, got, want)
		}
		if i == 0 {
			checkGeneratedMeta(t, ro, route)
			rule := route.Spec.Rules[0]
			if rule.Timeouts == nil || rule.Timeouts.Request == nil || *rule.Timeouts.Request != "30s" {
				t.Errorf("timeouts %+v; want request 30s from the template", rule.Timeouts)
			}
			if len(route.Spec.Hostnames) != 1 || route.Spec.Hostnames[0] != "app.example.com" {
				t.Errorf("hostnames %v; want the template's", route.Spec.Hostnames)
			}
			if len(route.Spec.ParentRefs) != 1 || route.Spec.ParentRefs[0].Name != "public" {
				t.Errorf("parentRefs %+v; want the template's", route.Spec.ParentRefs)
			}
		}
		assertIdle(t, ro, router.Split{CanaryWeight: w}, &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "app"}})
	}
}

func checkGeneratedMeta(t *testing.T, ro *backstopv1.Rollout, obj client.Object) {
	t.Helper()
	owner := metav1.GetControllerOf(obj)
	if owner == nil || owner.UID != ro.UID || owner.Kind != backstopv1.RolloutKind || owner.Name != ro.Name {
		t.Errorf("controller owner %+v; want the Rollout %s (%s)", owner, ro.Name, ro.UID)
	}
	l := obj.GetLabels()
	if l[router.LabelRollout] != ro.Name || l[router.LabelManagedBy] != router.ManagedBy {
		t.Errorf("labels %v; want %s=%s and %s=%s", l, router.LabelRollout, ro.Name, router.LabelManagedBy, router.ManagedBy)
	}
}

func TestGeneratedHTTPRouteMatch(t *testing.T) {
	tests := []struct {
		name      string
		template  []gwapiv1.HTTPRouteMatch
		match     backstopv1.TrafficMatch
		wantPaths []string // path of each match of the canary rule ("" when none)
		// requests given as (header value of x-canary, Cookie header) and
		// whether the canary rule's header matches select them.
		wantHeaders int
	}{
		{
			name:        "header only, no template matches",
			match:       backstopv1.TrafficMatch{Headers: []gwapiv1.HTTPHeaderMatch{{Name: "X-Canary", Value: "always"}}},
			wantPaths:   []string{"/"},
			wantHeaders: 1,
		},
		{
			name: "header and cookie on every template match",
			template: []gwapiv1.HTTPRouteMatch{
				{Path: &gwapiv1.HTTPPathMatch{Type: ptr.To(gwapiv1.PathMatchPathPrefix), Value: ptr.To("/api")}},
				{Path: &gwapiv1.HTTPPathMatch{Type: ptr.To(gwapiv1.PathMatchExact), Value: ptr.To("/login")}},
			},
			match: backstopv1.TrafficMatch{
				Headers: []gwapiv1.HTTPHeaderMatch{{Name: "X-Canary", Value: "always"}},
				Cookies: []backstopv1.CookieMatch{{Name: "flag", Value: "on.v2"}},
			},
			wantPaths:   []string{"/api", "/login"},
			wantHeaders: 2,
		},
		{
			name:        "two cookies alone",
			match:       backstopv1.TrafficMatch{Cookies: []backstopv1.CookieMatch{{Name: "a", Value: "1"}, {Name: "b", Value: "x+y"}}},
			wantPaths:   []string{"/"},
			wantHeaders: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			rt := generatedRoute("app")
			rt.HTTP = &backstopv1.HTTPRouteTemplate{
				Matches: tc.template,
				Filters: []gwapiv1.HTTPRouteFilter{{
					Type:                   gwapiv1.HTTPRouteFilterResponseHeaderModifier,
					ResponseHeaderModifier: &gwapiv1.HTTPHeaderFilter{Add: []gwapiv1.HTTPHeader{{Name: "X-Served-By", Value: "app"}}},
				}},
			}
			ro := createRollout(t, ns, rt)
			split := router.Split{CanaryWeight: 20, Match: &tc.match}
			if res := apply(t, ro, split); res.Writes != 1 {
				t.Fatalf("Apply wrote %d routes; want 1", res.Writes)
			}
			route := get(t, ns, "app", &gwapiv1.HTTPRoute{})
			if len(route.Spec.Rules) != 2 {
				t.Fatalf("%d rules; want the match rule and the weighted rule", len(route.Spec.Rules))
			}
			ab, main := route.Spec.Rules[0], route.Spec.Rules[1]
			if got := refWeights(httpRuleRefs(ab)); got != "app-canary=100" {
				t.Errorf("match rule backendRefs %s; want app-canary=100", got)
			}
			if got := refWeights(httpRuleRefs(main)); got != "app-primary=80,app-canary=20" {
				t.Errorf("weighted rule backendRefs %s; want app-primary=80,app-canary=20", got)
			}
			if len(ab.Filters) != 1 || len(main.Filters) != 1 {
				t.Errorf("filters %d and %d; want the template's filter on both rules", len(ab.Filters), len(main.Filters))
			}
			if len(ab.Matches) != len(tc.wantPaths) {
				t.Fatalf("match rule has %d matches; want %d", len(ab.Matches), len(tc.wantPaths))
			}
			for i, m := range ab.Matches {
				if m.Path == nil || *m.Path.Value != tc.wantPaths[i] {
					t.Errorf("match %d path %+v; want %s", i, m.Path, tc.wantPaths[i])
				}
				if len(m.Headers) != tc.wantHeaders {
					t.Errorf("match %d has headers %+v; want %d", i, m.Headers, tc.wantHeaders)
				}
				for _, h := range m.Headers {
					switch string(h.Name) {
					case "X-Canary":
						if h.Value != "always" || h.Type == nil || *h.Type != gwapiv1.HeaderMatchExact {
							t.Errorf("match %d header %+v; want Exact X-Canary: always", i, h)
						}
					case "Cookie":
						if h.Type == nil || *h.Type != gwapiv1.HeaderMatchRegularExpression {
							t.Errorf("match %d cookie header type %v; want RegularExpression", i, h.Type)
						}
						checkCookieRegex(t, h.Value, tc.match.Cookies)
					default:
						t.Errorf("match %d has unexpected header %+v", i, h)
					}
				}
			}
			if len(main.Matches) != len(tc.wantPaths) {
				t.Errorf("weighted rule has %d matches; want the template's %d", len(main.Matches), len(tc.wantPaths))
			}
			for _, m := range main.Matches {
				if len(m.Headers) != 0 {
					t.Errorf("weighted rule match has headers %+v; want none", m.Headers)
				}
			}
			assertIdle(t, ro, split, route)

			// Dropping the match removes the rule in one write.
			if res := apply(t, ro, router.Split{CanaryWeight: 20}); res.Writes != 1 {
				t.Errorf("Apply without the match wrote %d routes; want 1", res.Writes)
			}
			if route := get(t, ns, "app", &gwapiv1.HTTPRoute{}); len(route.Spec.Rules) != 1 {
				t.Errorf("%d rules after dropping the match; want 1", len(route.Spec.Rules))
			}
		})
	}
}

// checkCookieRegex checks the stored regular expression against Cookie
// headers with the cookies in both orders, among others, and near misses.
func checkCookieRegex(t *testing.T, expr string, cookies []backstopv1.CookieMatch) {
	t.Helper()
	re, err := regexp.Compile(expr)
	if err != nil {
		t.Fatalf("cookie regex %q: %v", expr, err)
	}
	var pairs []string
	for _, c := range cookies {
		pairs = append(pairs, c.Name+"="+c.Value)
	}
	reversed := make([]string, len(pairs))
	for i, p := range pairs {
		reversed[len(pairs)-1-i] = p
	}
	matching := []string{
		strings.Join(pairs, "; "),
		strings.Join(reversed, ";"),
		"session=abc; " + strings.Join(reversed, "; other=1; ") + "; z=2",
	}
	for _, h := range matching {
		if !re.MatchString(h) {
			t.Errorf("cookie regex %q does not match %q", expr, h)
		}
	}
	first := cookies[0]
	missing := []string{
		"",
		"x" + strings.Join(pairs, "; "), // longer name
		strings.Replace(strings.Join(pairs, "; "), first.Value, first.Value+"0", 1), // longer value
		strings.Join(pairs[1:], "; "),             // one cookie missing
		"other=" + first.Name + "=" + first.Value, // inside a value
	}
	for _, h := range missing {
		if re.MatchString(h) {
			t.Errorf("cookie regex %q matches %q", expr, h)
		}
	}
}

func TestGeneratedHTTPRouteMirror(t *testing.T) {
	ns := env.Namespace(t)
	rt := generatedRoute("app")
	rt.HTTP = &backstopv1.HTTPRouteTemplate{Filters: []gwapiv1.HTTPRouteFilter{{
		Type:                  gwapiv1.HTTPRouteFilterRequestHeaderModifier,
		RequestHeaderModifier: &gwapiv1.HTTPHeaderFilter{Set: []gwapiv1.HTTPHeader{{Name: "X-Env", Value: "prod"}}},
	}}}
	ro := createRollout(t, ns, rt)

	for _, percent := range []int32{25, 100, 0} {
		split := router.Split{MirrorPercent: percent}
		if res := apply(t, ro, split); res.Writes != 1 {
			t.Errorf("mirror %d%%: Apply wrote %d routes; want 1", percent, res.Writes)
		}
		route := get(t, ns, "app", &gwapiv1.HTTPRoute{})
		main := route.Spec.Rules[len(route.Spec.Rules)-1]
		if got := refWeights(httpRuleRefs(main)); got != "app-primary=100,app-canary=0" {
			t.Errorf("mirror %d%%: backendRefs %s; want app-primary=100,app-canary=0", percent, got)
		}
		var mirrors []gwapiv1.HTTPRouteFilter
		for _, f := range main.Filters {
			if f.Type == gwapiv1.HTTPRouteFilterRequestMirror {
				mirrors = append(mirrors, f)
			}
		}
		if main.Filters[0].Type != gwapiv1.HTTPRouteFilterRequestHeaderModifier {
			t.Errorf("mirror %d%%: first filter %s; want the template's RequestHeaderModifier", percent, main.Filters[0].Type)
		}
		switch {
		case percent == 0 && len(mirrors) != 0:
			t.Errorf("mirror off: filters %+v; want no RequestMirror", main.Filters)
		case percent > 0 && len(mirrors) != 1:
			t.Errorf("mirror %d%%: %d RequestMirror filters; want 1", percent, len(mirrors))
		case percent > 0:
			m := mirrors[0].RequestMirror
			if m.BackendRef.Name != "app-canary" || m.BackendRef.Port == nil || *m.BackendRef.Port != 8080 ||
				(m.BackendRef.Kind != nil && *m.BackendRef.Kind != "Service") {
				t.Errorf("mirror %d%%: backendRef %+v; want Service app-canary:8080", percent, m.BackendRef)
			}
			if m.Percent == nil || *m.Percent != percent || m.Fraction != nil {
				t.Errorf("mirror %d%%: percent %v fraction %v; want percent %d", percent, m.Percent, m.Fraction, percent)
			}
		}
		assertIdle(t, ro, split, route)
	}
}

func TestGeneratedGRPCRoute(t *testing.T) {
	ns := env.Namespace(t)
	rt := generatedRoute("app-grpc")
	rt.Kind = backstopv1.GRPCRouteKind
	rt.GRPC = &backstopv1.GRPCRouteTemplate{
		Matches: []gwapiv1.GRPCRouteMatch{{Method: &gwapiv1.GRPCMethodMatch{Service: ptr.To("shop.Cart")}}},
	}
	ro := createRollout(t, ns, rt)

	split := router.Split{
		CanaryWeight: 30,
		// The cookie is ignored on a GRPCRoute.
		Match: &backstopv1.TrafficMatch{
			Headers: []gwapiv1.HTTPHeaderMatch{{Name: "x-canary", Value: "1"}},
			Cookies: []backstopv1.CookieMatch{{Name: "flag", Value: "on"}},
		},
		MirrorPercent: 10,
	}
	if res := apply(t, ro, split); res.Writes != 1 || res.Written[0] != "GRPCRoute/app-grpc" {
		t.Fatalf("Apply wrote %v; want GRPCRoute/app-grpc", res.Written)
	}
	route := get(t, ns, "app-grpc", &gwapiv1.GRPCRoute{})
	checkGeneratedMeta(t, ro, route)
	if len(route.Spec.Rules) != 2 {
		t.Fatalf("%d rules; want the match rule and the weighted rule", len(route.Spec.Rules))
	}
	ab, main := route.Spec.Rules[0], route.Spec.Rules[1]
	if got := refWeights(grpcRuleRefs(ab)); got != "app-canary=100" {
		t.Errorf("match rule backendRefs %s; want app-canary=100", got)
	}
	if len(ab.Matches) != 1 || ab.Matches[0].Method == nil || *ab.Matches[0].Method.Service != "shop.Cart" ||
		len(ab.Matches[0].Headers) != 1 || ab.Matches[0].Headers[0].Name != "x-canary" || ab.Matches[0].Headers[0].Value != "1" {
		t.Errorf("match rule matches %+v; want method shop.Cart with header x-canary: 1 and no cookie", ab.Matches)
	}
	if got := refWeights(grpcRuleRefs(main)); got != "app-primary=70,app-canary=30" {
		t.Errorf("weighted rule backendRefs %s; want app-primary=70,app-canary=30", got)
	}
	if len(main.Filters) != 1 || main.Filters[0].RequestMirror == nil || *main.Filters[0].RequestMirror.Percent != 10 {
		t.Errorf("weighted rule filters %+v; want a RequestMirror of 10%%", main.Filters)
	}
	assertIdle(t, ro, split, route)

	if res := apply(t, ro, router.Split{CanaryWeight: 60}); res.Writes != 1 {
		t.Errorf("Apply of weight 60 wrote %d routes; want 1", res.Writes)
	}
	route = get(t, ns, "app-grpc", &gwapiv1.GRPCRoute{})
	if len(route.Spec.Rules) != 1 || refWeights(grpcRuleRefs(route.Spec.Rules[0])) != "app-primary=40,app-canary=60" {
		t.Errorf("rules %+v; want one rule at app-primary=40,app-canary=60", route.Spec.Rules)
	}
}

func TestGeneratedRouteOfAnotherOwner(t *testing.T) {
	ns := env.Namespace(t)
	other := createRollout(t, ns, generatedRoute("app"))
	if _, err := newRouter().Apply(context.Background(), other, backends, router.Split{}); err != nil {
		t.Fatal(err)
	}
	ro := other.DeepCopy()
	ro.Name, ro.UID = "second", types.UID("not-the-owner")
	_, err := newRouter().Apply(context.Background(), ro, backends, router.Split{CanaryWeight: 50})
	if err == nil || !strings.Contains(err.Error(), "does not take over") {
		t.Errorf("Apply on a route controlled by another Rollout returned %v; want an error refusing it", err)
	}
}

// existingRoute is a route kept by the user: several rules, filters, a rule
// sending a header to the canary alone, and an unrelated third backend.
func existingRoute(ns string) *gwapiv1.HTTPRoute {
	svc := func(name string, weight int32) gwapiv1.HTTPBackendRef {
		return gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{
			BackendObjectReference: gwapiv1.BackendObjectReference{Name: gwapiv1.ObjectName(name), Port: ptr.To[int32](8080)},
			Weight:                 ptr.To(weight),
		}}
	}
	return &gwapiv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{
			Name: "shop", Namespace: ns,
			Labels:      map[string]string{"team": "shop"},
			Annotations: map[string]string{"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"},
		},
		Spec: gwapiv1.HTTPRouteSpec{
			CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: []gwapiv1.ParentReference{{Name: "public", SectionName: ptr.To(gwapiv1.SectionName("https"))}}},
			Hostnames:       []gwapiv1.Hostname{"shop.example.com"},
			Rules: []gwapiv1.HTTPRouteRule{
				{
					Matches:     []gwapiv1.HTTPRouteMatch{{Headers: []gwapiv1.HTTPHeaderMatch{{Name: "X-Beta", Value: "yes"}}}},
					BackendRefs: []gwapiv1.HTTPBackendRef{svc("app-canary", 100)},
				},
				{
					Matches: []gwapiv1.HTTPRouteMatch{{Path: &gwapiv1.HTTPPathMatch{Type: ptr.To(gwapiv1.PathMatchPathPrefix), Value: ptr.To("/cart")}}},
					Filters: []gwapiv1.HTTPRouteFilter{{
						Type:                  gwapiv1.HTTPRouteFilterRequestHeaderModifier,
						RequestHeaderModifier: &gwapiv1.HTTPHeaderFilter{Add: []gwapiv1.HTTPHeader{{Name: "X-Route", Value: "cart"}}},
					}},
					Timeouts:    &gwapiv1.HTTPRouteTimeouts{Request: ptr.To(gwapiv1.Duration("10s"))},
					BackendRefs: []gwapiv1.HTTPBackendRef{svc("app-primary", 100), svc("legacy", 5), svc("app-canary", 0)},
				},
				{
					Matches:     []gwapiv1.HTTPRouteMatch{{Path: &gwapiv1.HTTPPathMatch{Type: ptr.To(gwapiv1.PathMatchPathPrefix), Value: ptr.To("/static")}}},
					BackendRefs: []gwapiv1.HTTPBackendRef{svc("cdn", 1)},
				},
			},
		},
	}
}

// masked is the JSON of a route's spec with the weights of the primary and
// canary in the weighted rule (index 1) removed.
func masked(t *testing.T, route *gwapiv1.HTTPRoute) []byte {
	t.Helper()
	spec := route.Spec.DeepCopy()
	for j, ref := range spec.Rules[1].BackendRefs {
		if ref.Name == "app-primary" || ref.Name == "app-canary" {
			spec.Rules[1].BackendRefs[j].Weight = nil
		}
	}
	return mustJSON(spec)
}

func TestExistingHTTPRoute(t *testing.T) {
	ns := env.Namespace(t)
	orig := existingRoute(ns)
	if err := env.Client.Create(context.Background(), orig); err != nil {
		t.Fatal(err)
	}
	before := get(t, ns, "shop", &gwapiv1.HTTPRoute{})
	ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Existing: true})

	for _, w := range []int32{30, 100, 0} {
		if res := apply(t, ro, router.Split{CanaryWeight: w}); res.Writes != 1 {
			t.Errorf("weight %d: Apply wrote %d routes; want 1", w, res.Writes)
		}
		after := get(t, ns, "shop", &gwapiv1.HTTPRoute{})
		want := "app-primary=" + itoa(100-w) + ",legacy=5,app-canary=" + itoa(w)
		if got := refWeights(httpRuleRefs(after.Spec.Rules[1])); got != want {
			t.Errorf("weight %d: weighted rule %s; want %s", w, got, want)
		}
		if got := refWeights(httpRuleRefs(after.Spec.Rules[0])); got != "app-canary=100" {
			t.Errorf("weight %d: the rule naming only the canary became %s; want it untouched", w, got)
		}
		if b, a := masked(t, before), masked(t, after); string(b) != string(a) {
			t.Errorf("weight %d: the spec changed beyond the two weights:\nbefore %s\nafter  %s", w, b, a)
		}
		if string(mustJSON(before.Labels)) != string(mustJSON(after.Labels)) ||
			string(mustJSON(before.Annotations)) != string(mustJSON(after.Annotations)) || len(after.OwnerReferences) != 0 {
			t.Errorf("weight %d: metadata changed: labels %v annotations %v owners %v", w, after.Labels, after.Annotations, after.OwnerReferences)
		}
		assertIdle(t, ro, router.Split{CanaryWeight: w}, after)
	}
}

func TestExistingRouteWithoutBackends(t *testing.T) {
	tests := []struct {
		name string
		kind backstopv1.RouteKind
		obj  func(ns string) client.Object
	}{
		{
			name: "HTTPRoute with unrelated backends",
			obj: func(ns string) client.Object {
				r := existingRoute(ns)
				r.Spec.Rules = r.Spec.Rules[2:]
				return r
			},
		},
		{
			name: "HTTPRoute naming the primary alone",
			obj: func(ns string) client.Object {
				r := existingRoute(ns)
				r.Spec.Rules[1].BackendRefs = r.Spec.Rules[1].BackendRefs[:2]
				return r
			},
		},
		{
			name: "GRPCRoute with no backends of ours",
			kind: backstopv1.GRPCRouteKind,
			obj: func(ns string) client.Object {
				return &gwapiv1.GRPCRoute{
					ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
					Spec: gwapiv1.GRPCRouteSpec{
						CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: []gwapiv1.ParentReference{{Name: "public"}}},
						Rules: []gwapiv1.GRPCRouteRule{{BackendRefs: []gwapiv1.GRPCBackendRef{{BackendRef: gwapiv1.BackendRef{
							BackendObjectReference: gwapiv1.BackendObjectReference{Name: "other", Port: ptr.To[int32](9000)},
						}}}}},
					},
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			obj := tc.obj(ns)
			if err := env.Client.Create(context.Background(), obj); err != nil {
				t.Fatal(err)
			}
			rv := obj.GetResourceVersion()
			ro := createRollout(t, ns, backstopv1.Route{Name: "shop", Kind: tc.kind, Existing: true})
			res, err := newRouter().Apply(context.Background(), ro, backends, router.Split{CanaryWeight: 10})
			if err == nil || !strings.Contains(err.Error(), `has no rule whose backendRefs name both Service "app-primary" and Service "app-canary"`) ||
				!strings.Contains(err.Error(), "spec.routes[shop]") {
				t.Errorf("Apply returned %v; want an error saying the route does not name both Services", err)
			}
			if res.Writes != 0 {
				t.Errorf("Apply wrote %v; want nothing", res.Written)
			}
			if got := get(t, ns, "shop", obj).GetResourceVersion(); got != rv {
				t.Errorf("resourceVersion %s became %s; want the route untouched", rv, got)
			}
		})
	}
}

func TestApplyRejectsBadInput(t *testing.T) {
	ro := &backstopv1.Rollout{}
	tests := []struct {
		name string
		b    router.Backends
		s    router.Split
		want string
	}{
		{"weight above 100", backends, router.Split{CanaryWeight: 101}, "canary weight 101"},
		{"negative mirror", backends, router.Split{MirrorPercent: -1}, "mirror percent -1"},
		{"no canary Service", router.Backends{Primary: "a", Port: 80}, router.Split{}, "both the primary and the canary"},
		{"same Service twice", router.Backends{Primary: "a", Canary: "a", Port: 80}, router.Split{}, "must differ"},
		{"no port", router.Backends{Primary: "a", Canary: "b"}, router.Split{}, "port 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newRouter().Apply(context.Background(), ro, tc.b, tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Apply returned %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	cond := func(typ string, status metav1.ConditionStatus, gen int64, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, ObservedGeneration: gen, Reason: reason, Message: msg,
			LastTransitionTime: metav1.Now()}
	}
	parent := func(name string, conds ...metav1.Condition) gwapiv1.RouteParentStatus {
		return gwapiv1.RouteParentStatus{
			ParentRef:      gwapiv1.ParentReference{Name: gwapiv1.ObjectName(name)},
			ControllerName: "example.com/gateway",
			Conditions:     conds,
		}
	}
	ok := func(name string, gen int64) gwapiv1.RouteParentStatus {
		return parent(name,
			cond("Accepted", metav1.ConditionTrue, gen, "Accepted", ""),
			cond("ResolvedRefs", metav1.ConditionTrue, gen, "ResolvedRefs", ""))
	}
	tests := []struct {
		name string
		// parents of the route; the route's generation is 1, or 2 when
		// bumped is set.
		parentRefs    []string
		bumped        bool
		status        func(gen int64) []gwapiv1.RouteParentStatus
		wantAccepted  bool
		wantPending   string
		wantRejection string
	}{
		{
			name:        "no status yet",
			parentRefs:  []string{"public"},
			status:      func(int64) []gwapiv1.RouteParentStatus { return nil },
			wantPending: "Gateway NS/public has not reported a status",
		},
		{
			name:         "accepted at the current generation",
			parentRefs:   []string{"public"},
			status:       func(gen int64) []gwapiv1.RouteParentStatus { return []gwapiv1.RouteParentStatus{ok("public", gen)} },
			wantAccepted: true,
		},
		{
			name:       "accepted by both parents",
			parentRefs: []string{"public", "internal"},
			status: func(gen int64) []gwapiv1.RouteParentStatus {
				return []gwapiv1.RouteParentStatus{ok("internal", gen), ok("public", gen)}
			},
			wantAccepted: true,
		},
		{
			name:        "one parent of two answered",
			parentRefs:  []string{"public", "internal"},
			status:      func(gen int64) []gwapiv1.RouteParentStatus { return []gwapiv1.RouteParentStatus{ok("public", gen)} },
			wantPending: "Gateway NS/internal has not reported a status",
		},
		{
			name:        "stale observedGeneration",
			parentRefs:  []string{"public"},
			bumped:      true,
			status:      func(gen int64) []gwapiv1.RouteParentStatus { return []gwapiv1.RouteParentStatus{ok("public", gen-1)} },
			wantPending: "Accepted is for generation 1, not 2",
		},
		{
			name:       "stale rejection is pending",
			parentRefs: []string{"public"},
			bumped:     true,
			status: func(gen int64) []gwapiv1.RouteParentStatus {
				return []gwapiv1.RouteParentStatus{parent("public",
					cond("Accepted", metav1.ConditionFalse, gen-1, "NotAllowedByListeners", "old"),
					cond("ResolvedRefs", metav1.ConditionTrue, gen-1, "ResolvedRefs", ""))}
			},
			wantPending: "is for generation 1, not 2",
		},
		{
			name:       "not accepted",
			parentRefs: []string{"public"},
			status: func(gen int64) []gwapiv1.RouteParentStatus {
				return []gwapiv1.RouteParentStatus{parent("public",
					cond("Accepted", metav1.ConditionFalse, gen, "NotAllowedByListeners", "listener https does not allow routes from other namespaces"),
					cond("ResolvedRefs", metav1.ConditionTrue, gen, "ResolvedRefs", ""))}
			},
			wantRejection: `HTTPRoute/app was refused by Gateway NS/public (example.com/gateway): Accepted=False, reason NotAllowedByListeners: "listener https does not allow routes from other namespaces"`,
		},
		{
			name:       "refs not resolved",
			parentRefs: []string{"public"},
			status: func(gen int64) []gwapiv1.RouteParentStatus {
				return []gwapiv1.RouteParentStatus{parent("public",
					cond("Accepted", metav1.ConditionTrue, gen, "Accepted", ""),
					cond("ResolvedRefs", metav1.ConditionFalse, gen, "BackendNotFound", `service "app-canary" not found`))}
			},
			wantRejection: `ResolvedRefs=False, reason BackendNotFound: "service \"app-canary\" not found"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			rt := generatedRoute("app")
			rt.ParentRefs = nil
			for _, p := range tc.parentRefs {
				rt.ParentRefs = append(rt.ParentRefs, gwapiv1.ParentReference{Name: gwapiv1.ObjectName(p)})
			}
			ro := createRollout(t, ns, rt)
			apply(t, ro, router.Split{CanaryWeight: 10})
			if tc.bumped {
				apply(t, ro, router.Split{CanaryWeight: 20})
			}
			route := get(t, ns, "app", &gwapiv1.HTTPRoute{})
			if want := int64(1); tc.bumped {
				want = 2
				if route.Generation != want {
					t.Fatalf("generation %d; want %d", route.Generation, want)
				}
			}
			route.Status.Parents = tc.status(route.Generation)
			if route.Status.Parents == nil {
				route.Status.Parents = []gwapiv1.RouteParentStatus{}
			}
			if err := env.Client.Status().Update(context.Background(), route); err != nil {
				t.Fatalf("writing the route status: %v", err)
			}

			acc, err := newRouter().Status(context.Background(), ro)
			if err != nil {
				t.Fatal(err)
			}
			if acc.Accepted != tc.wantAccepted {
				t.Errorf("Accepted %v; want %v (%+v)", acc.Accepted, tc.wantAccepted, acc)
			}
			pending := strings.Join(acc.Pending, "\n")
			if want := strings.ReplaceAll(tc.wantPending, "NS", ns); (want == "") != (pending == "") || !strings.Contains(pending, want) {
				t.Errorf("pending %q; want %q", pending, want)
			}
			var rejections []string
			for _, r := range acc.Rejections {
				rejections = append(rejections, r.String())
			}
			got := strings.Join(rejections, "\n")
			if want := strings.ReplaceAll(tc.wantRejection, "NS", ns); (want == "") != (got == "") || !strings.Contains(got, want) {
				t.Errorf("rejections %q; want %q", got, want)
			}
		})
	}
}

func TestStatusOfMissingRoute(t *testing.T) {
	ns := env.Namespace(t)
	ro := createRollout(t, ns, generatedRoute("app"))
	acc, err := newRouter().Status(context.Background(), ro)
	if err != nil {
		t.Fatal(err)
	}
	if acc.Accepted || len(acc.Pending) != 1 || !strings.Contains(acc.Pending[0], "HTTPRoute/app: not found") {
		t.Errorf("Status of a route not created yet: %+v; want pending, not found", acc)
	}
}

// TestCarriesBeforeTheRouteExists: a generated route not yet created carries
// nothing, and asking does not create it.
func TestCarriesBeforeTheRouteExists(t *testing.T) {
	ns := env.Namespace(t)
	ro := createRollout(t, ns, generatedRoute("app"))
	ok, err := newRouter().Carries(context.Background(), ro, backends, router.Split{})
	if err != nil || ok {
		t.Fatalf("Carries = %v, %v; want false, nil", ok, err)
	}
	err = env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "app"}, &gwapiv1.HTTPRoute{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("Carries created the route (get: %v)", err)
	}
}

// carries asks Carries and fails the test on an error.
func carries(t *testing.T, ro *backstopv1.Rollout, s router.Split) bool {
	t.Helper()
	ok, err := newRouter().Carries(context.Background(), ro, backends, s)
	if err != nil {
		t.Fatalf("Carries(%+v): %v", s, err)
	}
	return ok
}

func exists(t *testing.T, ns, name string, obj client.Object) bool {
	t.Helper()
	err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("getting %s: %v", name, err)
	}
	return err == nil
}

// TestPreviewHostnamesHTTPRoute: a generated HTTPRoute gets a preview route
// with the preview hostnames that sends everything to the canary, written
// once, updated with the hostnames and deleted when the Split drops them;
// the existing route beside it gets none.
func TestPreviewHostnamesHTTPRoute(t *testing.T) {
	ns := env.Namespace(t)
	if err := env.Client.Create(context.Background(), existingRoute(ns)); err != nil {
		t.Fatal(err)
	}
	rt := generatedRoute("app")
	rt.HTTP = &backstopv1.HTTPRouteTemplate{
		Matches: []gwapiv1.HTTPRouteMatch{{Path: &gwapiv1.HTTPPathMatch{Type: ptr.To(gwapiv1.PathMatchPathPrefix), Value: ptr.To("/api")}}},
		Filters: []gwapiv1.HTTPRouteFilter{{
			Type:                   gwapiv1.HTTPRouteFilterResponseHeaderModifier,
			ResponseHeaderModifier: &gwapiv1.HTTPHeaderFilter{Add: []gwapiv1.HTTPHeader{{Name: "X-Served-By", Value: "app"}}},
		}},
		Timeouts: &gwapiv1.HTTPRouteTimeouts{Request: ptr.To(gwapiv1.Duration("30s"))},
	}
	ro := createRollout(t, ns, rt, backstopv1.Route{Name: "shop", Existing: true})
	match := &backstopv1.TrafficMatch{Headers: []gwapiv1.HTTPHeaderMatch{{Name: "X-Preview", Value: "true"}}}
	split := router.Split{Match: match, PreviewHostnames: []gwapiv1.Hostname{"preview.example.com", "*.preview.example.com"}}

	if carries(t, ro, split) {
		t.Errorf("Carries before any route exists = true; want false")
	}
	res := apply(t, ro, split)
	if got := strings.Join(res.Written, " "); res.Writes != 2 || got != "HTTPRoute/app HTTPRoute/app-preview" {
		t.Errorf("Apply wrote %d %v; want HTTPRoute/app and HTTPRoute/app-preview", res.Writes, res.Written)
	}
	preview := get(t, ns, "app-preview", &gwapiv1.HTTPRoute{})
	checkGeneratedMeta(t, ro, preview)
	if got := mustJSON(preview.Spec.Hostnames); string(got) != `["preview.example.com","*.preview.example.com"]` {
		t.Errorf("preview hostnames %s; want the Split's", got)
	}
	if len(preview.Spec.ParentRefs) != 1 || preview.Spec.ParentRefs[0].Name != "public" {
		t.Errorf("preview parentRefs %+v; want the template's", preview.Spec.ParentRefs)
	}
	if len(preview.Spec.Rules) != 1 {
		t.Fatalf("preview route has %d rules; want 1", len(preview.Spec.Rules))
	}
	rule := preview.Spec.Rules[0]
	if got := refWeights(httpRuleRefs(rule)); got != "app-canary=100" {
		t.Errorf("preview backendRefs %s; want app-canary=100", got)
	}
	if len(rule.Matches) != 1 || rule.Matches[0].Path == nil || *rule.Matches[0].Path.Value != "/api" || len(rule.Matches[0].Headers) != 0 {
		t.Errorf("preview matches %s; want the template's /api match without the preview header", mustJSON(rule.Matches))
	}
	if len(rule.Filters) != 1 || rule.Filters[0].ResponseHeaderModifier == nil {
		t.Errorf("preview filters %s; want the template's", mustJSON(rule.Filters))
	}
	if rule.Timeouts == nil || rule.Timeouts.Request == nil || *rule.Timeouts.Request != "30s" {
		t.Errorf("preview timeouts %+v; want request 30s from the template", rule.Timeouts)
	}
	if main := get(t, ns, "app", &gwapiv1.HTTPRoute{}); len(main.Spec.Rules) != 2 || len(main.Spec.Hostnames) != 1 || main.Spec.Hostnames[0] != "app.example.com" {
		t.Errorf("main route rules %d, hostnames %v; want the match rule and the weighted rule on app.example.com", len(main.Spec.Rules), main.Spec.Hostnames)
	}
	if exists(t, ns, "shop-preview", &gwapiv1.HTTPRoute{}) {
		t.Errorf("the existing route got a preview route; want none")
	}

	// Nothing more to write, and Carries tells the preview apart.
	assertIdle(t, ro, split, &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "app-preview"}})
	other := split
	other.PreviewHostnames = []gwapiv1.Hostname{"preview.example.com"}
	if carries(t, ro, other) {
		t.Errorf("Carries with other preview hostnames = true; want false")
	}

	// Other hostnames update the preview route in place.
	if res := apply(t, ro, other); res.Writes != 1 || res.Written[0] != "HTTPRoute/app-preview" {
		t.Errorf("Apply with other hostnames wrote %v; want HTTPRoute/app-preview", res.Written)
	}
	if got := get(t, ns, "app-preview", &gwapiv1.HTTPRoute{}).Spec.Hostnames; len(got) != 1 || got[0] != "preview.example.com" {
		t.Errorf("preview hostnames %v; want [preview.example.com]", got)
	}

	// Without the hostnames the preview route is stale: Carries says so
	// without deleting it, and Apply deletes it alone.
	dropped := router.Split{Match: match}
	if carries(t, ro, dropped) {
		t.Errorf("Carries while a stale preview route exists = true; want false")
	}
	if !exists(t, ns, "app-preview", &gwapiv1.HTTPRoute{}) {
		t.Fatalf("Carries deleted the preview route")
	}
	if res := apply(t, ro, dropped); res.Writes != 1 || res.Written[0] != "HTTPRoute/app-preview" {
		t.Errorf("Apply without preview hostnames wrote %v; want HTTPRoute/app-preview (deleted)", res.Written)
	}
	if exists(t, ns, "app-preview", &gwapiv1.HTTPRoute{}) {
		t.Errorf("the preview route is still there after the Split dropped it")
	}
	if !carries(t, ro, dropped) {
		t.Errorf("Carries after the deletion = false; want true")
	}
	if res := apply(t, ro, dropped); res.Writes != 0 {
		t.Errorf("a second Apply without preview hostnames wrote %v; want nothing", res.Written)
	}

	// The switch: all traffic to the new version, no preview route.
	if res := apply(t, ro, router.Split{CanaryWeight: 100}); res.Writes != 2 {
		t.Errorf("Apply of the switch wrote %v; want HTTPRoute/app and HTTPRoute/shop", res.Written)
	}
	if exists(t, ns, "app-preview", &gwapiv1.HTTPRoute{}) {
		t.Errorf("a preview route came back at the switch")
	}
}

func TestPreviewHostnamesGRPCRoute(t *testing.T) {
	ns := env.Namespace(t)
	rt := generatedRoute("app-grpc")
	rt.Kind = backstopv1.GRPCRouteKind
	rt.GRPC = &backstopv1.GRPCRouteTemplate{
		Matches: []gwapiv1.GRPCRouteMatch{{Method: &gwapiv1.GRPCMethodMatch{Service: ptr.To("shop.Cart")}}},
	}
	ro := createRollout(t, ns, rt)
	split := router.Split{PreviewHostnames: []gwapiv1.Hostname{"preview.example.com"}}
	res := apply(t, ro, split)
	if got := strings.Join(res.Written, " "); got != "GRPCRoute/app-grpc GRPCRoute/app-grpc-preview" {
		t.Errorf("Apply wrote %v; want GRPCRoute/app-grpc and GRPCRoute/app-grpc-preview", res.Written)
	}
	preview := get(t, ns, "app-grpc-preview", &gwapiv1.GRPCRoute{})
	checkGeneratedMeta(t, ro, preview)
	if len(preview.Spec.Hostnames) != 1 || preview.Spec.Hostnames[0] != "preview.example.com" {
		t.Errorf("preview hostnames %v; want [preview.example.com]", preview.Spec.Hostnames)
	}
	if len(preview.Spec.ParentRefs) != 1 || preview.Spec.ParentRefs[0].Name != "public" {
		t.Errorf("preview parentRefs %+v; want the template's", preview.Spec.ParentRefs)
	}
	if len(preview.Spec.Rules) != 1 {
		t.Fatalf("preview route has %d rules; want 1", len(preview.Spec.Rules))
	}
	rule := preview.Spec.Rules[0]
	if got := refWeights(grpcRuleRefs(rule)); got != "app-canary=100" {
		t.Errorf("preview backendRefs %s; want app-canary=100", got)
	}
	if len(rule.Matches) != 1 || rule.Matches[0].Method == nil || *rule.Matches[0].Method.Service != "shop.Cart" {
		t.Errorf("preview matches %s; want the template's", mustJSON(rule.Matches))
	}
	assertIdle(t, ro, split, &gwapiv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Name: "app-grpc-preview"}})

	if res := apply(t, ro, router.Split{}); res.Writes != 1 || res.Written[0] != "GRPCRoute/app-grpc-preview" {
		t.Errorf("Apply without preview hostnames wrote %v; want GRPCRoute/app-grpc-preview (deleted)", res.Written)
	}
	if exists(t, ns, "app-grpc-preview", &gwapiv1.GRPCRoute{}) {
		t.Errorf("the preview GRPCRoute is still there after the Split dropped it")
	}
}

// TestPreviewRouteNotOurs: a route named <route>-preview that the Rollout
// does not control is neither taken over nor deleted.
func TestPreviewRouteNotOurs(t *testing.T) {
	ns := env.Namespace(t)
	user := existingRoute(ns)
	user.Name = "app-preview"
	if err := env.Client.Create(context.Background(), user); err != nil {
		t.Fatal(err)
	}
	before := get(t, ns, "app-preview", &gwapiv1.HTTPRoute{}).ResourceVersion
	ro := createRollout(t, ns, generatedRoute("app"))

	split := router.Split{PreviewHostnames: []gwapiv1.Hostname{"preview.example.com"}}
	_, err := newRouter().Apply(context.Background(), ro, backends, split)
	if err == nil || !strings.Contains(err.Error(), "does not take over") {
		t.Errorf("Apply over a user's app-preview returned %v; want an error refusing it", err)
	}
	if res := apply(t, ro, router.Split{}); res.Writes != 0 {
		t.Errorf("Apply without preview hostnames wrote %v; want nothing (the main route is already written)", res.Written)
	}
	if !carries(t, ro, router.Split{}) {
		t.Errorf("Carries with a user's app-preview = false; want true")
	}
	if after := get(t, ns, "app-preview", &gwapiv1.HTTPRoute{}).ResourceVersion; after != before {
		t.Errorf("the user's app-preview changed (resourceVersion %s to %s)", before, after)
	}
}

// TestPreviewRouteNameClash: a preview route may not take the name of
// another route of the Rollout, and that route is never deleted as a stale
// preview.
func TestPreviewRouteNameClash(t *testing.T) {
	ns := env.Namespace(t)
	ro := createRollout(t, ns, generatedRoute("app"), generatedRoute("app-preview"))
	apply(t, ro, router.Split{})
	_, err := newRouter().Apply(context.Background(), ro, backends, router.Split{PreviewHostnames: []gwapiv1.Hostname{"preview.example.com"}})
	if err == nil || !strings.Contains(err.Error(), "name of another route") {
		t.Errorf("Apply with a clashing preview name returned %v; want an error", err)
	}
	if !exists(t, ns, "app-preview", &gwapiv1.HTTPRoute{}) {
		t.Errorf("the route app-preview was deleted as a stale preview")
	}
}

func TestStatusOfPreviewRoute(t *testing.T) {
	ns := env.Namespace(t)
	ro := createRollout(t, ns, generatedRoute("app"))
	accept := func(name string) {
		t.Helper()
		route := get(t, ns, name, &gwapiv1.HTTPRoute{})
		route.Status.Parents = []gwapiv1.RouteParentStatus{{
			ParentRef:      gwapiv1.ParentReference{Name: "public"},
			ControllerName: "example.com/gateway",
			Conditions: []metav1.Condition{
				{Type: "Accepted", Status: metav1.ConditionTrue, ObservedGeneration: route.Generation, Reason: "Accepted", LastTransitionTime: metav1.Now()},
				{Type: "ResolvedRefs", Status: metav1.ConditionTrue, ObservedGeneration: route.Generation, Reason: "ResolvedRefs", LastTransitionTime: metav1.Now()},
			},
		}}
		if err := env.Client.Status().Update(context.Background(), route); err != nil {
			t.Fatalf("writing the status of %s: %v", name, err)
		}
	}
	status := func() router.Acceptance {
		t.Helper()
		acc, err := newRouter().Status(context.Background(), ro)
		if err != nil {
			t.Fatal(err)
		}
		return acc
	}

	apply(t, ro, router.Split{PreviewHostnames: []gwapiv1.Hostname{"preview.example.com"}})
	accept("app")
	acc := status()
	if acc.Accepted || len(acc.Pending) != 1 || !strings.Contains(acc.Pending[0], "HTTPRoute/app-preview: Gateway "+ns+"/public has not reported a status") {
		t.Errorf("Status with an unanswered preview route: %+v; want it pending", acc)
	}
	accept("app-preview")
	if acc := status(); !acc.Accepted {
		t.Errorf("Status with both routes accepted: %+v; want accepted", acc)
	}

	apply(t, ro, router.Split{})
	if acc := status(); !acc.Accepted {
		t.Errorf("Status after the preview route is gone: %+v; want accepted", acc)
	}
}

// TestGeneratedRouteIsDryRunOncePerChange: the wanted spec lacks the
// defaults the API server fills in, so telling whether a route holds it
// takes a dry run. With a Stored memory, a look at a route whose spec did
// not change since it was last found to hold a wanted spec takes none,
// however often it is looked at: not after a weight change, nor after the
// gateway's status writes or a label. Without one, every look takes one.
func TestGeneratedRouteIsDryRunOncePerChange(t *testing.T) {
	ns := env.Namespace(t)
	// A rule without matches is stored with the default one, a path
	// prefix "/".
	ro := createRollout(t, ns, generatedRoute("app"))
	ctx := context.Background()

	var dryRuns, updates int
	base, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	counted := interceptor.NewClient(base, interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			o := &client.UpdateOptions{}
			o.ApplyOptions(opts)
			if len(o.DryRun) > 0 {
				dryRuns++
			} else {
				updates++
			}
			return c.Update(ctx, obj, opts...)
		},
	})
	memory := &router.Stored{}
	look := func(r *router.Router, s router.Split, times int) {
		t.Helper()
		for range times {
			if _, err := r.Apply(ctx, ro, backends, s); err != nil {
				t.Fatal(err)
			}
			if ok, err := r.Carries(ctx, ro, backends, s); err != nil || !ok {
				t.Fatalf("Carries(%+v) = %v, %v after Apply", s, ok, err)
			}
		}
	}
	remembering := &router.Router{Client: counted, FieldOwner: "backstop", Stored: memory}
	steps := []struct {
		name             string
		router           *router.Router
		split            router.Split
		before           func()
		dryRuns, updates int
	}{
		{name: "created, then looked at", router: remembering, split: router.Split{CanaryWeight: 10}},
		{name: "a new weight, asked about before it is applied", router: remembering, split: router.Split{CanaryWeight: 50}, updates: 1,
			before: func() {
				if ok, err := remembering.Carries(ctx, ro, backends, router.Split{CanaryWeight: 50}); err != nil || ok {
					t.Errorf("Carries(50) before the write = %v, %v; want false", ok, err)
				}
			}},
		{name: "the gateway writes the route's status", router: remembering, split: router.Split{CanaryWeight: 50},
			before: func() {
				route := get(t, ns, "app", &gwapiv1.HTTPRoute{})
				route.Status.Parents = []gwapiv1.RouteParentStatus{{ParentRef: gwapiv1.ParentReference{Name: "public"}, ControllerName: "example.com/gateway",
					Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: metav1.Now()}}}}
				if err := env.Client.Status().Update(ctx, route); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "a label added by hand", router: remembering, split: router.Split{CanaryWeight: 50},
			before: func() {
				route := get(t, ns, "app", &gwapiv1.HTTPRoute{})
				route.Labels["team"] = "shop"
				if err := env.Client.Update(ctx, route); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "a hostname added by hand is put back", router: remembering, split: router.Split{CanaryWeight: 50}, updates: 1,
			before: func() {
				route := get(t, ns, "app", &gwapiv1.HTTPRoute{})
				route.Spec.Hostnames = append(route.Spec.Hostnames, "other.example.com")
				if err := env.Client.Update(ctx, route); err != nil {
					t.Fatal(err)
				}
			}},
		// Apply updates without a dry run; the update stores nothing.
		{name: "without a memory, every look", router: &router.Router{Client: counted, FieldOwner: "backstop"}, split: router.Split{CanaryWeight: 50},
			dryRuns: 5, updates: 5},
	}
	for _, step := range steps {
		dryRuns, updates = 0, 0
		if step.before != nil {
			step.before()
		}
		look(step.router, step.split, 5)
		if dryRuns != step.dryRuns || updates != step.updates {
			t.Errorf("%s: %d dry runs and %d updates in 5 Applies and 5 Carries; want %d and %d", step.name, dryRuns, updates, step.dryRuns, step.updates)
		}
	}
}

package router_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/router"
)

// affinity is the session affinity of these tests: the release id of a
// made-up release.
func affinity() *router.Affinity {
	return &router.Affinity{
		CookieName: backstopv1.DefaultSessionCookieName,
		Value:      router.ReleaseID("3f1c2b9e-0d1a-4c55-9a8e-1b2c3d4e5f60", "7d9f8c6b5", time.Unix(1_790_000_000, 0)),
		MaxAge:     90 * time.Minute,
	}
}

func TestAffinityRouteShapes(t *testing.T) {
	// A template with two matches, filters and timeouts, which the sticky
	// rule must carry as the weighted rule does.
	template := &backstopv1.HTTPRouteTemplate{
		Matches: []gwapiv1.HTTPRouteMatch{
			{Path: &gwapiv1.HTTPPathMatch{Type: ptr.To(gwapiv1.PathMatchPathPrefix), Value: ptr.To("/api")},
				Headers: []gwapiv1.HTTPHeaderMatch{{Name: "X-Env", Value: "prod"}}},
			{Path: &gwapiv1.HTTPPathMatch{Type: ptr.To(gwapiv1.PathMatchExact), Value: ptr.To("/login")}},
		},
		Filters: []gwapiv1.HTTPRouteFilter{{
			Type:                  gwapiv1.HTTPRouteFilterRequestHeaderModifier,
			RequestHeaderModifier: &gwapiv1.HTTPHeaderFilter{Set: []gwapiv1.HTTPHeader{{Name: "X-Route", Value: "app"}}},
		}},
		Timeouts: &gwapiv1.HTTPRouteTimeouts{Request: ptr.To(gwapiv1.Duration("30s"))},
	}
	abMatch := &backstopv1.TrafficMatch{
		Headers: []gwapiv1.HTTPHeaderMatch{{Name: "X-Canary", Value: "always"}},
		Cookies: []backstopv1.CookieMatch{{Name: "beta", Value: "yes"}},
	}
	tests := []struct {
		name     string
		template *backstopv1.HTTPRouteTemplate
		split    router.Split
		// rules are the kinds of the rules in order: "match", "sticky",
		// "weighted".
		rules []string
		// paths are the paths of the sticky rule's matches, with their
		// other headers ("" when none).
		paths   []string
		headers []string
		mirror  bool
	}{{
		name:  "weight 0: nothing",
		split: router.Split{CanaryWeight: 0, Affinity: affinity()},
		rules: []string{"weighted"},
	}, {
		name:  "weight 20, no template",
		split: router.Split{CanaryWeight: 20, Affinity: affinity()},
		rules: []string{"sticky", "weighted"}, paths: []string{"/"}, headers: []string{""},
	}, {
		name:     "weight 100 with a template",
		template: template,
		split:    router.Split{CanaryWeight: 100, Affinity: affinity()},
		rules:    []string{"sticky", "weighted"}, paths: []string{"/api", "/login"}, headers: []string{"X-Env", ""},
	}, {
		name:     "weight 20 with a match",
		template: template,
		split:    router.Split{CanaryWeight: 20, Match: abMatch, Affinity: affinity()},
		rules:    []string{"match", "sticky", "weighted"}, paths: []string{"/api", "/login"}, headers: []string{"X-Env", ""},
	}, {
		name:  "weight 20 with a mirror",
		split: router.Split{CanaryWeight: 20, MirrorPercent: 10, Affinity: affinity()},
		rules: []string{"sticky", "weighted"}, paths: []string{"/"}, headers: []string{""}, mirror: true,
	}, {
		name:  "weight 0 with a match and a mirror",
		split: router.Split{CanaryWeight: 0, Match: abMatch, MirrorPercent: 100, Affinity: affinity()},
		rules: []string{"match", "weighted"}, mirror: true,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			rt := generatedRoute("app")
			rt.HTTP = tc.template
			ro := createRollout(t, ns, rt)
			// The apiserver validates the route as it creates it.
			if res := apply(t, ro, tc.split); res.Writes != 1 {
				t.Fatalf("Apply wrote %v; want HTTPRoute/app", res.Written)
			}
			route := get(t, ns, "app", &gwapiv1.HTTPRoute{})
			if len(route.Spec.Rules) != len(tc.rules) {
				t.Fatalf("%d rules; want %v", len(route.Spec.Rules), tc.rules)
			}
			a := tc.split.Affinity
			w := tc.split.CanaryWeight
			for i, kind := range tc.rules {
				rule := route.Spec.Rules[i]
				switch kind {
				case "sticky":
					checkStickyRule(t, rule, a, tc.template, tc.paths, tc.headers)
				case "match":
					checkNoCookieFilter(t, "match rule", rule)
				case "weighted":
					want := "app-primary=" + itoa(100-w) + ",app-canary=" + itoa(w)
					if got := refWeights(httpRuleRefs(rule)); got != want {
						t.Errorf("weighted rule backendRefs %s; want %s", got, want)
					}
					checkStamp(t, rule, a, w > 0)
					mirrors := 0
					for _, f := range rule.Filters {
						if f.Type == gwapiv1.HTTPRouteFilterRequestMirror {
							mirrors++
						}
					}
					if (mirrors == 1) != tc.mirror || mirrors > 1 {
						t.Errorf("weighted rule has %d RequestMirror filters; want a mirror: %v", mirrors, tc.mirror)
					}
				}
			}
			assertIdle(t, ro, tc.split, route)
		})
	}
}

// checkStickyRule checks that the sticky rule sends the requests holding
// the cookie, on each template match, to the canary alone, and carries the
// template's filters and timeouts.
func checkStickyRule(t *testing.T, rule gwapiv1.HTTPRouteRule, a *router.Affinity, template *backstopv1.HTTPRouteTemplate, paths, headers []string) {
	t.Helper()
	if got := refWeights(httpRuleRefs(rule)); got != "app-canary=100" {
		t.Errorf("sticky rule backendRefs %s; want app-canary=100", got)
	}
	checkNoCookieFilter(t, "sticky rule", rule)
	if template != nil {
		if len(rule.Filters) != len(template.Filters) {
			t.Errorf("sticky rule filters %+v; want the template's", rule.Filters)
		}
		if rule.Timeouts == nil || rule.Timeouts.Request == nil || *rule.Timeouts.Request != "30s" {
			t.Errorf("sticky rule timeouts %+v; want the template's", rule.Timeouts)
		}
	}
	if len(rule.Matches) != len(paths) {
		t.Fatalf("sticky rule has %d matches; want %d", len(rule.Matches), len(paths))
	}
	for i, m := range rule.Matches {
		if m.Path == nil || *m.Path.Value != paths[i] {
			t.Errorf("sticky match %d path %+v; want %s", i, m.Path, paths[i])
		}
		var cookie, other []gwapiv1.HTTPHeaderMatch
		for _, h := range m.Headers {
			if h.Name == "Cookie" {
				cookie = append(cookie, h)
			} else {
				other = append(other, h)
			}
		}
		if headers[i] == "" && len(other) != 0 || headers[i] != "" && (len(other) != 1 || string(other[0].Name) != headers[i]) {
			t.Errorf("sticky match %d other headers %+v; want the template's %q", i, other, headers[i])
		}
		if len(cookie) != 1 || cookie[0].Type == nil || *cookie[0].Type != gwapiv1.HeaderMatchRegularExpression {
			t.Fatalf("sticky match %d Cookie header matches %+v; want one RegularExpression", i, cookie)
		}
		checkCookieRegex(t, cookie[0].Value, []backstopv1.CookieMatch{{Name: a.CookieName, Value: a.Value}})
		checkAffinityRegex(t, cookie[0].Value, a)
	}
}

// checkAffinityRegex checks the sticky rule's expression against the
// Cookie headers of users of this release, of another release and of none.
func checkAffinityRegex(t *testing.T, expr string, a *router.Affinity) {
	t.Helper()
	re := regexp.MustCompile(expr)
	other := router.ReleaseID("3f1c2b9e-0d1a-4c55-9a8e-1b2c3d4e5f60", "7d9f8c6b6", time.Unix(1_790_000_000, 0))
	for header, want := range map[string]bool{
		a.CookieName + "=" + a.Value:                                true,
		"_ga=GA1.2.3; " + a.CookieName + "=" + a.Value:              true,
		a.CookieName + "=" + a.Value + ";session=x":                 true,
		a.CookieName + "=" + other:                                  false, // another release
		a.CookieName + "=":                                          false,
		"x" + a.CookieName + "=" + a.Value:                          false,
		a.CookieName + "=" + a.Value[:len(a.Value)-1]:               false,
		"session=" + a.CookieName + "=" + a.Value:                   false,
		"other=1; " + a.CookieName + "=" + strings.ToUpper(a.Value): false,
	} {
		if got := re.MatchString(header); got != want {
			t.Errorf("sticky rule %q matches Cookie: %q: %v; want %v", expr, header, got, want)
		}
	}
}

// checkStamp checks the backendRef filters of the weighted rule: the
// canary's adds the cookie when stamp is set, and nothing else has any.
func checkStamp(t *testing.T, rule gwapiv1.HTTPRouteRule, a *router.Affinity, stamp bool) {
	t.Helper()
	for _, ref := range rule.BackendRefs {
		if ref.Name != "app-canary" || !stamp {
			if len(ref.Filters) != 0 {
				t.Errorf("backendRef %s has filters %+v; want none", ref.Name, ref.Filters)
			}
			continue
		}
		want := a.CookieName + "=" + a.Value + "; Max-Age=5400; Path=/; HttpOnly; SameSite=Lax"
		f := ref.Filters
		if len(f) != 1 || f[0].Type != gwapiv1.HTTPRouteFilterResponseHeaderModifier || f[0].ResponseHeaderModifier == nil ||
			len(f[0].ResponseHeaderModifier.Add) != 1 || len(f[0].ResponseHeaderModifier.Set) != 0 ||
			f[0].ResponseHeaderModifier.Add[0].Name != "Set-Cookie" || f[0].ResponseHeaderModifier.Add[0].Value != want {
			t.Errorf("canary backendRef filters %+v; want one ResponseHeaderModifier adding Set-Cookie: %s", f, want)
		}
	}
	checkNoCookieFilter(t, "weighted rule", rule)
}

// checkNoCookieFilter checks that a rule sets no cookie at the rule level,
// where it would reach the primary's users too.
func checkNoCookieFilter(t *testing.T, what string, rule gwapiv1.HTTPRouteRule) {
	t.Helper()
	for _, f := range rule.Filters {
		if f.ResponseHeaderModifier != nil {
			t.Errorf("%s has a rule-level ResponseHeaderModifier %+v; want none", what, f.ResponseHeaderModifier)
		}
	}
	if what != "weighted rule" {
		for _, ref := range rule.BackendRefs {
			if len(ref.Filters) != 0 {
				t.Errorf("%s backendRef %s has filters %+v; want none", what, ref.Name, ref.Filters)
			}
		}
	}
}

// TestAffinityLifecycle follows one route through a release: the sticky
// rule and the cookie come with the first weight, follow the release id,
// and go with weight 0, each in one write.
func TestAffinityLifecycle(t *testing.T) {
	ns := env.Namespace(t)
	ro := createRollout(t, ns, generatedRoute("app"))
	a := affinity()
	steps := []struct {
		name   string
		split  router.Split
		rules  int
		writes int
	}{
		{"idle", router.Split{}, 1, 1},
		{"release at weight 0", router.Split{Affinity: a}, 1, 0},
		{"first weight", router.Split{CanaryWeight: 10, Affinity: a}, 2, 1},
		{"next weight", router.Split{CanaryWeight: 50, Affinity: a}, 2, 1},
		{"a newer release", router.Split{CanaryWeight: 50, Affinity: &router.Affinity{CookieName: a.CookieName, MaxAge: a.MaxAge,
			Value: router.ReleaseID(ro.UID, "5c4b3a291", time.Unix(1_790_000_600, 0))}}, 2, 1},
		{"rollback", router.Split{Affinity: a}, 1, 1},
	}
	var prev, prevID string
	for _, st := range steps {
		res := apply(t, ro, st.split)
		route := get(t, ns, "app", &gwapiv1.HTTPRoute{})
		if res.Writes != st.writes {
			t.Errorf("%s: Apply wrote %v; want %d writes", st.name, res.Written, st.writes)
		}
		if len(route.Spec.Rules) != st.rules {
			t.Fatalf("%s: %d rules; want %d", st.name, len(route.Spec.Rules), st.rules)
		}
		main := route.Spec.Rules[len(route.Spec.Rules)-1]
		checkStamp(t, main, st.split.Affinity, st.split.CanaryWeight > 0)
		if st.rules == 2 {
			// The sticky rule follows the release id, and only it.
			expr := route.Spec.Rules[0].Matches[0].Headers[0].Value
			if !strings.Contains(expr, st.split.Affinity.Value) {
				t.Errorf("%s: the sticky rule %q does not match the release id %s", st.name, expr, st.split.Affinity.Value)
			}
			if sameRelease := st.split.Affinity.Value == prevID; sameRelease != (expr == prev) {
				t.Errorf("%s: the sticky rule went from %q to %q; want a change exactly when the release changes", st.name, prev, expr)
			}
			prev, prevID = expr, st.split.Affinity.Value
		}
		assertIdle(t, ro, st.split, route)
	}
}

func TestAffinityConflicts(t *testing.T) {
	ns := env.Namespace(t)
	rt := generatedRoute("app")
	rt.HTTP = &backstopv1.HTTPRouteTemplate{Matches: []gwapiv1.HTTPRouteMatch{
		{Headers: []gwapiv1.HTTPHeaderMatch{{Name: "cookie", Value: "x=1"}}},
	}}
	ro := createRollout(t, ns, rt)
	_, err := newRouter().Apply(context.Background(), ro, backends, router.Split{CanaryWeight: 10, Affinity: affinity()})
	if err == nil || !strings.Contains(err.Error(), "match 0 of the route template matches too") {
		t.Errorf("a template matching the Cookie header: Apply returned %v; want a conflict", err)
	}
	// At weight 0 there is no sticky rule, so nothing conflicts.
	if _, err := newRouter().Apply(context.Background(), ro, backends, router.Split{Affinity: affinity()}); err != nil {
		t.Errorf("Apply at weight 0: %v", err)
	}

	bad := []struct {
		name string
		a    router.Affinity
		want string
	}{
		{"no cookie name", router.Affinity{Value: "abc", MaxAge: time.Hour}, "cookie name"},
		{"a space in the name", router.Affinity{CookieName: "a b", Value: "abc", MaxAge: time.Hour}, "cookie name"},
		{"a ';' in the value", router.Affinity{CookieName: "a", Value: "abc;Domain=x", MaxAge: time.Hour}, "cookie value"},
		{"no value", router.Affinity{CookieName: "a", MaxAge: time.Hour}, "cookie value"},
		{"max age under a second", router.Affinity{CookieName: "a", Value: "abc", MaxAge: time.Millisecond}, "under one second"},
	}
	for _, tc := range bad {
		_, err := newRouter().Apply(context.Background(), ro, backends, router.Split{CanaryWeight: 10, Affinity: &tc.a})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Apply returned %v; want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestAffinityGRPCRouteUntouched(t *testing.T) {
	ns := env.Namespace(t)
	rt := generatedRoute("app-grpc")
	rt.Kind = backstopv1.GRPCRouteKind
	ro := createRollout(t, ns, rt)
	split := router.Split{CanaryWeight: 40, Affinity: affinity()}
	apply(t, ro, split)
	route := get(t, ns, "app-grpc", &gwapiv1.GRPCRoute{})
	if len(route.Spec.Rules) != 1 || refWeights(grpcRuleRefs(route.Spec.Rules[0])) != "app-primary=60,app-canary=40" {
		t.Errorf("rules %+v; want only the weighted rule", route.Spec.Rules)
	}
	for _, ref := range route.Spec.Rules[0].BackendRefs {
		if len(ref.Filters) != 0 {
			t.Errorf("backendRef %s has filters %+v; want none", ref.Name, ref.Filters)
		}
	}
	assertIdle(t, ro, split, route)
}

func TestReleaseID(t *testing.T) {
	uid := types.UID("3f1c2b9e-0d1a-4c55-9a8e-1b2c3d4e5f60")
	start := time.Unix(1_790_000_000, 0)
	id := router.ReleaseID(uid, "7d9f8c6b5", start)
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("ReleaseID = %q; want 12 hexadecimal digits", id)
	}
	if again := router.ReleaseID(uid, "7d9f8c6b5", start.Add(300*time.Millisecond)); again != id {
		t.Errorf("ReleaseID changed with a fraction of a second: %q, then %q", id, again)
	}
	for name, other := range map[string]string{
		"another revision":   router.ReleaseID(uid, "7d9f8c6b6", start),
		"a retry":            router.ReleaseID(uid, "7d9f8c6b5", start.Add(time.Second)),
		"another Rollout":    router.ReleaseID("3f1c2b9e-0d1a-4c55-9a8e-1b2c3d4e5f61", "7d9f8c6b5", start),
		"an unknown start":   router.ReleaseID(uid, "7d9f8c6b5", time.Time{}),
		"a revision shifted": router.ReleaseID(uid, "7d9f8c6b", start),
	} {
		if other == id {
			t.Errorf("%s has the same release id %q", name, id)
		}
	}
	if strings.Contains(id, "7d9f8c6b5") || strings.Contains("7d9f8c6b5", id) {
		t.Errorf("release id %q shows the revision", id)
	}
}

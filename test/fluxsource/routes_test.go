//go:build e2e

package fluxsource_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/router"
	"backstop.dev/backstop/test/gittest"
)

// The real kustomize-controller applies an existing route from Git while
// Backstop's Router sets its weights: what a re-apply does mid-release with
// and without the Kustomization's drift ignore rules (.spec.ignore).

// routeBackends are the Services of the Rollouts of these tests.
var routeBackends = router.Backends{Primary: "app-primary", Canary: "app-canary", Port: 8080}

// shopRoute is the HTTPRoute in Git. The weighted rule is rules[1], with
// the primary at backendRefs[0] and the canary at backendRefs[1]; without
// weights, the two weights are left out. extra is appended to the rules.
func shopRoute(weights bool, hostnames []string, extra string) string {
	w := func(v int) string {
		if !weights {
			return ""
		}
		return fmt.Sprintf(", weight: %d", v)
	}
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
spec:
  parentRefs:
    - name: public
  hostnames: [%s]
  rules:
    - matches:
        - headers: [{name: X-Beta, value: "yes"}]
      backendRefs:
        - {name: app-canary, port: 8080, weight: 100}
    - matches:
        - path: {type: PathPrefix, value: /}
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            add: [{name: X-Route, value: shop}]
      backendRefs:
        - {name: app-primary, port: 8080%s}
        - {name: app-canary, port: 8080%s}
        - {name: legacy, port: 8080, weight: 5}%s
`, strings.Join(hostnames, ", "), w(100), w(0), extra)
}

// weightPaths are the JSON pointers of the two weights in shopRoute.
var weightPaths = []any{"/spec/rules/1/backendRefs/0/weight", "/spec/rules/1/backendRefs/1/weight"}

// routeWeights lists "name=weight" of the backendRefs of the route's rule.
func routeWeights(t *testing.T, u *unstructured.Unstructured, rule int) string {
	t.Helper()
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	if rule >= len(rules) {
		t.Fatalf("the route has %d rules; want rule %d", len(rules), rule)
	}
	var out []string
	for _, ref := range rules[rule].(map[string]any)["backendRefs"].([]any) {
		m := ref.(map[string]any)
		out = append(out, fmt.Sprintf("%v=%v", m["name"], m["weight"]))
	}
	return strings.Join(out, ",")
}

func shop(t *testing.T, ns string) *unstructured.Unstructured {
	t.Helper()
	u, err := get(ns, "shop", "gateway.networking.k8s.io/v1", "HTTPRoute")
	if err != nil {
		t.Fatalf("getting HTTPRoute shop: %v", err)
	}
	return u
}

// setWeight makes Backstop's Router give the canary w% of the route.
func setWeight(t *testing.T, ro *backstopv1.Rollout, w int32) {
	t.Helper()
	r := &router.Router{Client: env.Client, FieldOwner: "backstop"}
	if _, err := r.Apply(context.Background(), ro, routeBackends, router.Split{CanaryWeight: w}); err != nil {
		t.Fatalf("Router.Apply(%d): %v", w, err)
	}
}

// reconcileNow asks kustomize-controller to reconcile the Kustomization, as
// `flux reconcile kustomization` does, and waits until it has.
func reconcileNow(t *testing.T, ns, name string) {
	t.Helper()
	at := time.Now().Format(time.RFC3339Nano)
	u, err := get(ns, name, "kustomize.toolkit.fluxcd.io/v1", "Kustomization")
	if err != nil {
		t.Fatal(err)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":%q}}}`, at)
	if err := env.Client.Patch(context.Background(), u, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Kustomization "+name+" reconciled at "+at, func() error {
		u, err := get(ns, name, "kustomize.toolkit.fluxcd.io/v1", "Kustomization")
		if err != nil {
			return err
		}
		handled, _, _ := unstructured.NestedString(u.Object, "status", "lastHandledReconcileAt")
		if ready := condition(u, "Ready"); handled != at || ready == nil || ready.Status != metav1.ConditionTrue {
			return fmt.Errorf("lastHandledReconcileAt %q, Ready %+v", handled, ready)
		}
		return nil
	})
}

// fluxRoute puts the route in Git, has kustomize-controller apply it with
// ignore as the Kustomization's .spec.ignore, and creates a Rollout of it.
func fluxRoute(t *testing.T, weights bool, ignore []any) (ns string, w *gittest.Work, ro *backstopv1.Rollout) {
	t.Helper()
	ns = env.Namespace(t)
	_, work, first := fleet(t, map[string]string{
		"apps/shop/kustomization.yaml": kustomization("route.yaml"),
		"apps/shop/route.yaml":         shopRoute(weights, []string{"shop.example.com"}, ""),
	})
	createSecret(t, ns, "git-auth", gitUser, gitPassword)
	createGitRepository(t, ns, "fleet", map[string]any{
		"url": gittestURL(t, work), "interval": "1m", "ref": map[string]any{"branch": branch}, "secretRef": map[string]any{"name": "git-auth"},
	})
	spec := map[string]any{
		"interval":        "10m",
		"path":            "./apps/shop",
		"prune":           true,
		"targetNamespace": ns,
		"timeout":         "30s",
		"sourceRef":       map[string]any{"kind": "GitRepository", "name": "fleet"},
	}
	if ignore != nil {
		spec["ignore"] = []any{map[string]any{
			"paths":  ignore,
			"target": map[string]any{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "shop"},
		}}
	}
	create(t, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", ns, "shop", spec)
	kustomizationMustBeApplied(t, ns, "shop", first)

	ro = &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: "app"},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes:    []backstopv1.Route{{Name: "shop", Existing: true}},
			Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{
				Steps: []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](20)}},
			}},
		},
	}
	if err := env.Client.Create(context.Background(), ro); err != nil {
		t.Fatalf("creating the Rollout: %v", err)
	}
	return ns, work, ro
}

const (
	gitWeights     = "app-primary=100,app-canary=0,legacy=5"
	releaseWeights = "app-primary=80,app-canary=20,legacy=5"
)

// TestKustomizeControllerWithoutIgnoreRulesResetsTheWeights: without
// ignore rules, a reconciliation of the Kustomization mid-release finds the
// weights drifted and applies Git's over Backstop's.
func TestKustomizeControllerWithoutIgnoreRulesResetsTheWeights(t *testing.T) {
	ns, _, ro := fluxRoute(t, true, nil)
	setWeight(t, ro, 20)
	if got := routeWeights(t, shop(t, ns), 1); got != releaseWeights {
		t.Fatalf("after Router.Apply(20): %s", got)
	}
	reconcileNow(t, ns, "shop")
	if got := routeWeights(t, shop(t, ns), 1); got != gitWeights {
		t.Errorf("after a reconciliation mid-release: %s; want Git's weights back, %s", got, gitWeights)
	}
	setWeight(t, ro, 20)
	if got := routeWeights(t, shop(t, ns), 1); got != releaseWeights {
		t.Errorf("Backstop's next write: %s; want %s", got, releaseWeights)
	}
}

// TestKustomizeControllerIgnoresTheWeights: with the two weights' paths in
// .spec.ignore, a reconciliation leaves Backstop's weights alone and writes
// nothing, and a change in Git is applied with Backstop's weights kept:
// spec.rules is an atomic list, so kustomize-controller finds no other
// Apply manager of the weights and copies the live values into what it
// applies (github.com/fluxcd/pkg/ssa, computeDriftedPaths: "adopt").
func TestKustomizeControllerIgnoresTheWeights(t *testing.T) {
	ns, w, ro := fluxRoute(t, true, weightPaths)
	setWeight(t, ro, 20)
	before := shop(t, ns)
	reconcileNow(t, ns, "shop")
	after := shop(t, ns)
	if got := routeWeights(t, after, 1); got != releaseWeights {
		t.Errorf("after a reconciliation mid-release: %s; want Backstop's, %s", got, releaseWeights)
	}
	if after.GetResourceVersion() != before.GetResourceVersion() {
		t.Errorf("the reconciliation wrote the route (resourceVersion %s to %s); want no write", before.GetResourceVersion(), after.GetResourceVersion())
	}

	// A change in Git mid-release: a hostname and a rule, last.
	second := changeInGit(t, w, true)
	kustomizationMustBeApplied(t, ns, "shop", second)
	changed := shop(t, ns)
	if got := routeWeights(t, changed, 1); got != releaseWeights {
		t.Errorf("after the change in Git was applied mid-release: %s; want Backstop's, %s", got, releaseWeights)
	}
	if got := routeWeights(t, changed, 2); got != "search=1" {
		t.Errorf("the rule added in Git: %s", got)
	}
	if hosts, _, _ := unstructured.NestedStringSlice(changed.Object, "spec", "hostnames"); strings.Join(hosts, ",") != "shop.example.com,www.shop.example.com" {
		t.Errorf("hostnames %v; want Git's", hosts)
	}

	// Promotion, then a reconciliation: 100/0 stays.
	setWeight(t, ro, 0)
	reconcileNow(t, ns, "shop")
	if got := routeWeights(t, shop(t, ns), 1); got != gitWeights {
		t.Errorf("after promotion and a reconciliation: %s; want %s", got, gitWeights)
	}
}

// changeInGit pushes a change to the route: a hostname and a rule, last.
func changeInGit(t *testing.T, w *gittest.Work, weights bool) string {
	t.Helper()
	w.Write(t, "apps/shop/route.yaml", shopRoute(weights, []string{"shop.example.com", "www.shop.example.com"}, `
    - matches:
        - path: {type: PathPrefix, value: /search}
      backendRefs:
        - {name: search, port: 8080, weight: 1}`))
	sha := w.Commit(t, "Add www and search")
	w.Push(t)
	return sha
}

// TestKustomizeControllerIgnoreRulesNeedTheWeightsInGit: with ignore rules
// and a manifest without weights, the route is created with weight 1 on
// both Services (half the traffic to the canary) until Backstop writes
// 100/0; reconciliations leave that alone, but the next change in Git
// fails the whole Kustomization: kustomize-controller copies the live
// weight into a manifest that has no weight to replace.
func TestKustomizeControllerIgnoreRulesNeedTheWeightsInGit(t *testing.T) {
	ns, w, ro := fluxRoute(t, false, weightPaths)
	if got := routeWeights(t, shop(t, ns), 1); got != "app-primary=1,app-canary=1,legacy=5" {
		t.Errorf("a manifest without weights is applied as %s; want the default weight 1 on both", got)
	}
	setWeight(t, ro, 0)
	reconcileNow(t, ns, "shop")
	if got := routeWeights(t, shop(t, ns), 1); got != gitWeights {
		t.Errorf("after a reconciliation: %s; want Backstop's %s", got, gitWeights)
	}

	second := changeInGit(t, w, false)
	eventually(t, "Kustomization shop failing on "+second, func() error {
		u, err := get(ns, "shop", "kustomize.toolkit.fluxcd.io/v1", "Kustomization")
		if err != nil {
			return err
		}
		attempted, _, _ := unstructured.NestedString(u.Object, "status", "lastAttemptedRevision")
		ready := condition(u, "Ready")
		if attempted != branch+"@sha1:"+second || ready == nil || ready.Status != metav1.ConditionFalse {
			return fmt.Errorf("lastAttemptedRevision %q, Ready %+v", attempted, ready)
		}
		if want := "replace operation does not apply: doc is missing key: /spec/rules/1/backendRefs/"; !strings.Contains(ready.Message, want) {
			return fmt.Errorf("Ready says %q; want it to say %q", ready.Message, want)
		}
		return nil
	})
	if hosts, _, _ := unstructured.NestedStringSlice(shop(t, ns).Object, "spec", "hostnames"); strings.Join(hosts, ",") != "shop.example.com" {
		t.Errorf("hostnames %v; want the change in Git not applied", hosts)
	}
}

// TestKustomizeControllerIgnoreRulesTakeNoWildcards: ignore paths are
// plain JSON pointers; "*" matches nothing, so the weights are reset as
// without ignore rules, and the Kustomization stays Ready.
func TestKustomizeControllerIgnoreRulesTakeNoWildcards(t *testing.T) {
	ns, _, ro := fluxRoute(t, true, []any{"/spec/rules/*/backendRefs/*/weight"})
	setWeight(t, ro, 20)
	reconcileNow(t, ns, "shop")
	if got := routeWeights(t, shop(t, ns), 1); got != gitWeights {
		t.Errorf("after a reconciliation mid-release: %s; want Git's weights back, %s", got, gitWeights)
	}
}

//go:build e2e

package stack_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/router"
	"backstop.dev/backstop/test/stack"
)

// TestSessionAffinityThroughTraefik: with session affinity at 20%, traefik
// accepts the route and its sticky rule sends every request holding the
// release's cookie to the canary, while a cookie of another release follows
// the weights; after an abort the cookie no longer sticks. Traefik v3.6
// ignores filters on a backendRef, so it never sets the cookie itself
// (docs/routing.md#session-affinity): the test sends it by hand, and logs
// what the canary's answers carried.
func TestSessionAffinityThroughTraefik(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "affinity")
	d := stack.Deployment(ns, "demo", "v1", 1)
	if err := s.Env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	ro := canaryRollout(ns, "demo", "affinity.demo", 0)
	ro.Spec.Strategy.Canary.Steps = []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](20)}, {Pause: &backstopv1.PauseStep{}}}
	ro.Spec.Strategy.Canary.SessionAffinity = &backstopv1.SessionAffinity{}
	ro.Spec.Analysis = nil
	ro.Spec.Revert = &backstopv1.RevertSpec{Mode: backstopv1.RevertDisabled}
	if err := s.Env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ro, backstopv1.PhaseIdle, 90*time.Second)
	setVersion(t, d, "v2")
	paused := waitForPhase(t, ro, backstopv1.PhasePaused, 90*time.Second)
	if paused.Status.CanaryWeight != 20 || paused.Status.ReleaseStartTime == nil {
		t.Fatalf("paused at weight %d with release start %v; want 20 and a start", paused.Status.CanaryWeight, paused.Status.ReleaseStartTime)
	}
	id := router.ReleaseID(paused.UID, paused.Status.CanaryRevision, paused.Status.ReleaseStartTime.Time)
	cookie := backstopv1.DefaultSessionCookieName + "=" + id
	stale := backstopv1.DefaultSessionCookieName + "=000000000000"

	url := "http://" + s.Gateway + "/"
	waitFor(t, "a request with the release's cookie to reach v2", func() bool { return getCookie(url, "affinity.demo", cookie).version == "v2" })
	for i := 0; i < 30; i++ {
		if v := getCookie(url, "affinity.demo", "other=1; "+cookie).version; v != "v2" {
			t.Fatalf("a request with the release's cookie reached %q; want v2 every time", v)
		}
	}
	versions := map[string]int{}
	setCookies := 0
	for i := 0; i < 60; i++ {
		a := getCookie(url, "affinity.demo", stale)
		versions[a.version]++
		if a.version == "v2" && a.setCookie != "" {
			setCookies++
		}
	}
	t.Logf("with another release's cookie: %v; Set-Cookie on %d of the canary's answers (traefik v3.6 applies no backendRef filter)", versions, setCookies)
	if versions["v1"] == 0 {
		t.Errorf("every request with another release's cookie reached v2 (%v); want the weights to decide", versions)
	}

	abort := []byte(`{"metadata":{"annotations":{"` + backstopv1.GateAnnotation + `":"` + string(backstopv1.GateAbort) + `"}}}`)
	if err := s.Env.Client.Patch(ctx, ro, client.RawPatch(types.MergePatchType, abort)); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ro, backstopv1.PhaseRolledBack, 90*time.Second)
	waitFor(t, "the release's cookie to stop sticking after the abort", func() bool {
		for i := 0; i < 10; i++ {
			if getCookie(url, "affinity.demo", cookie).version != "v1" {
				return false
			}
		}
		return true
	})
}

// answer is what the gateway answered a request.
type answer struct{ version, setCookie string }

// getCookie sends a request with the Cookie header cookie.
func getCookie(url, host, cookie string) answer {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return answer{}
	}
	req.Host = host
	req.Header.Set("Cookie", cookie)
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return answer{}
	}
	defer resp.Body.Close()
	return answer{version: resp.Header.Get("X-App-Version"), setCookie: resp.Header.Get("Set-Cookie")}
}

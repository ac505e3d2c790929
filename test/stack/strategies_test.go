//go:build e2e

package stack_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/stack"
)

// previewHeader selects the new version, in the blue-green and A/B tests.
var previewHeader = gwapiv1.HTTPHeaderMatch{Name: "X-Preview", Value: "true"}

// TestBlueGreenPreviewsThenSwitches: while the new version is previewed,
// only requests with the preview header reach it through traefik; after
// the analysis window it takes all the traffic at once.
func TestBlueGreenPreviewsThenSwitches(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "bluegreen")
	d := stack.Deployment(ns, "demo", "v1", 1)
	if err := s.Env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	ro := canaryRollout(ns, "demo", "bluegreen.demo", 0)
	ro.Spec.Strategy = backstopv1.Strategy{BlueGreen: &backstopv1.BlueGreenStrategy{
		Preview:     &backstopv1.TrafficMatch{Headers: []gwapiv1.HTTPHeaderMatch{previewHeader}},
		Analysis:    &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: 8 * time.Second}},
		AutoPromote: ptr.To(true),
	}}
	ro.Spec.Analysis = nil
	ro.Spec.Revert = &backstopv1.RevertSpec{Mode: backstopv1.RevertDisabled}
	if err := s.Env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ro, backstopv1.PhaseIdle, 90*time.Second)
	url := "http://" + s.Gateway + "/"
	waitForVersions(t, url, "bluegreen.demo", map[string]bool{"v1": true})

	setVersion(t, d, "v2")
	waitFor(t, "the preview to reach v2", func() bool { return getWith(url, "bluegreen.demo", previewHeader) == "v2" })
	if v := get(url, "bluegreen.demo"); v != "v1" {
		t.Errorf("during the preview a request without the header reached %q; want v1", v)
	}
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, 90*time.Second)
	waitForVersions(t, url, "bluegreen.demo", map[string]bool{"v2": true})
}

// TestABReleaseByHeader: with a canary match, requests with the header reach
// the new version for the whole release, whatever the weight.
func TestABReleaseByHeader(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "ab")
	d := stack.Deployment(ns, "demo", "v1", 1)
	if err := s.Env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	ro := canaryRollout(ns, "demo", "ab.demo", 0)
	ro.Spec.Strategy.Canary.Steps = []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](0)}, {Pause: &backstopv1.PauseStep{}}}
	ro.Spec.Strategy.Canary.Match = &backstopv1.TrafficMatch{Headers: []gwapiv1.HTTPHeaderMatch{previewHeader}}
	ro.Spec.Analysis = nil
	ro.Spec.Revert = &backstopv1.RevertSpec{Mode: backstopv1.RevertDisabled}
	if err := s.Env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ro, backstopv1.PhaseIdle, 90*time.Second)
	setVersion(t, d, "v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, 90*time.Second)

	url := "http://" + s.Gateway + "/"
	waitFor(t, "requests with the header to reach v2", func() bool { return getWith(url, "ab.demo", previewHeader) == "v2" })
	for i := 0; i < 20; i++ {
		if v := getWith(url, "ab.demo", previewHeader); v != "v2" {
			t.Fatalf("a request with the header reached %q; want v2 every time", v)
		}
		if v := get(url, "ab.demo"); v != "v1" {
			t.Fatalf("a request without the header reached %q at weight 0; want v1", v)
		}
	}
}

func setVersion(t *testing.T, d client.Object, version string) {
	t.Helper()
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"` + stack.DemoImage + ":" + version + `"}]}}}}`)
	if err := s.Env.Client.Patch(context.Background(), d, client.RawPatch("application/strategic-merge-patch+json", patch)); err != nil {
		t.Fatal(err)
	}
}

// getWith is get with a header.
func getWith(url, host string, h gwapiv1.HTTPHeaderMatch) string {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	req.Host = host
	req.Header.Set(string(h.Name), h.Value)
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	return resp.Header.Get("X-App-Version")
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("waiting for %s: not within 60s (logs in %s)", what, s.Dir)
}

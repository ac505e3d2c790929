package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/test/testenv"
)

// hookReceiver is a local HTTP receiver of hook calls: it records each
// call's body and answers with what the test's answer func says for the
// hook it names.
type hookReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	calls  []controllers.HookBody
	answer func(controllers.HookBody) int
}

func newHookReceiver(t *testing.T, answer func(controllers.HookBody) int) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b controllers.HookBody
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.calls = append(rc.calls, b)
		rc.mu.Unlock()
		code := rc.answer(b)
		w.WriteHeader(code)
		fmt.Fprintf(w, "answered %d to %s", code, b.Hook)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// called lists the calls so far as "hook/step".
func (rc *hookReceiver) called() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, c := range rc.calls {
		out = append(out, fmt.Sprintf("%s/%d", c.Hook, c.Step))
	}
	return out
}

func (rc *hookReceiver) body(hook string) (controllers.HookBody, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, c := range rc.calls {
		if c.Hook == hook {
			return c, true
		}
	}
	return controllers.HookBody{}, false
}

func hookStatus(ro *backstopv1.Rollout, name string) *backstopv1.HookStatus {
	for i := range ro.Status.Hooks {
		if ro.Status.Hooks[i].Name == name {
			return &ro.Status.Hooks[i]
		}
	}
	return nil
}

// TestHooksOfARelease: the PreRelease hook holds every bit of traffic
// until it answers; the Step hook is called at the step it names, with
// the release in its body; the PrePromotion gate holds the release at its
// last step until it says yes, asked again each retryInterval; the
// PostPromotion hook is called once after the promotion.
func TestHooksOfARelease(t *testing.T) {
	ns := releaseEnv(t)
	open := make(chan struct{}) // the PreRelease receiver answers once closed
	var gateAsked int
	var mu sync.Mutex
	rc := newHookReceiver(t, func(b controllers.HookBody) int {
		switch b.Hook {
		case "warm-up":
			<-open
		case "gate":
			mu.Lock()
			defer mu.Unlock()
			if gateAsked++; gateAsked < 3 {
				return http.StatusServiceUnavailable
			}
		}
		return http.StatusOK
	})
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](20)},
		{SetWeight: ptr.To[int32](60)},
	}}})
	ro.Spec.Hooks = []backstopv1.Hook{
		{Name: "warm-up", Type: backstopv1.HookPreRelease, URL: rc.URL + "/pre", Timeout: &metav1.Duration{Duration: time.Minute}},
		{Name: "load-test", Type: backstopv1.HookStep, URL: rc.URL + "/step", Steps: []int32{2}, Metadata: map[string]string{"cmd": "hey -z 1m"}},
		{Name: "gate", Type: backstopv1.HookPrePromotion, URL: rc.URL + "/gate", RetryInterval: &metav1.Duration{Duration: time.Second}},
		{Name: "announce", Type: backstopv1.HookPostPromotion, URL: rc.URL + "/post"},
	}
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	log := env.WatchRouteWrites(t, ns, "app")
	setImage(t, ns, "app:v2")

	var held *backstopv1.Rollout
	testenv.Eventually(t, "the PreRelease hook is called", func() bool {
		held = get(t, ro)
		h := hookStatus(held, "warm-up")
		return h != nil && h.Result == backstopv1.HookRunning && len(rc.called()) == 1
	})
	time.Sleep(time.Second) // the release would have moved on by now
	if held = get(t, ro); held.Status.CanaryWeight != 0 || held.Status.CurrentStep != 0 || held.Status.Phase != backstopv1.PhaseProgressing {
		t.Errorf("while the PreRelease hook runs: %s step %d at %d%%; want Progressing at step 0 with 0%%",
			held.Status.Phase, held.Status.CurrentStep, held.Status.CanaryWeight)
	}
	close(open)

	var waiting *backstopv1.Rollout
	testenv.Eventually(t, "the gate holds the release at its last step", func() bool {
		waiting = get(t, ro)
		h := hookStatus(waiting, "gate")
		return h != nil && h.Result == backstopv1.HookWaiting
	})
	if waiting.Status.Phase != backstopv1.PhaseProgressing || waiting.Status.CurrentStep != 1 || waiting.Status.CanaryWeight != 60 {
		t.Errorf("held by the gate at %s step %d, %d%%; want Progressing at step 1 with 60%%",
			waiting.Status.Phase, waiting.Status.CurrentStep, waiting.Status.CanaryWeight)
	}
	if h := hookStatus(waiting, "gate"); !strings.Contains(h.Message, "HTTP 503") || strings.Contains(h.Message, rc.URL) {
		t.Errorf("the gate's status message %q; want the 503 it answered, without the URL", h.Message)
	}
	done := waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	testenv.Eventually(t, "the PostPromotion hook is called", func() bool {
		h := hookStatus(get(t, ro), "announce")
		return h != nil && h.Result == backstopv1.HookPass
	})

	// The Step hook of the last step and the gate are called in the same
	// moment, in either order.
	calls := rc.called()
	got := strings.Join(calls, " ")
	slices.Sort(calls[1 : len(calls)-1])
	if want := "warm-up/0 gate/0 gate/0 gate/0 load-test/2 announce/0"; strings.Join(calls, " ") != want {
		t.Errorf("the receiver got %s; want warm-up first, announce last, and between them load-test at step 2 and the gate three times", got)
	}
	step, _ := rc.body("load-test")
	want := controllers.HookBody{Name: "app", Namespace: ns, Hook: "load-test", Type: backstopv1.HookStep, Phase: backstopv1.PhaseProgressing,
		StableRevision: idle.Status.StableRevision, CanaryRevision: done.Status.StableRevision, Step: 2, CanaryWeight: 60,
		Metadata: map[string]string{"cmd": "hey -z 1m"}}
	if a, b := toJSONString(step), toJSONString(want); a != b {
		t.Errorf("the Step hook's body:\n got %s\nwant %s", a, b)
	}
	assertStates(t, log.States(), []string{
		"app-primary=100,app-canary=0",
		"app-primary=80,app-canary=20",
		"app-primary=40,app-canary=60",
		"app-primary=100,app-canary=0",
	})
}

// TestFailingStepHookRollsBack: a Step hook that answers 500 rolls the
// release back with reason HookFailed, the history names the hook, and the
// PostRollback hook is called once with the failed revision.
func TestFailingStepHookRollsBack(t *testing.T) {
	ns := releaseEnv(t)
	rc := newHookReceiver(t, func(b controllers.HookBody) int {
		if b.Hook == "load-test" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
		{Pause: &backstopv1.PauseStep{}},
	}}})
	ro.Spec.Hooks = []backstopv1.Hook{
		{Name: "load-test", Type: backstopv1.HookStep, URL: rc.URL + "/step"},
		{Name: "page-oncall", Type: backstopv1.HookPostRollback, URL: rc.URL + "/rollback"},
	}
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setImage(t, ns, "app:v2")
	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	testenv.Eventually(t, "the PostRollback hook is called", func() bool {
		rolled = get(t, ro)
		h := hookStatus(rolled, "page-oncall")
		return h != nil && h.Result == backstopv1.HookPass
	})

	if h := rolled.Status.History; len(h) == 0 || h[0].Reason != backstopv1.ReasonHookFailed || h[0].FailedCheck != "hook/load-test" ||
		!strings.Contains(h[0].Message, "HTTP 500") {
		t.Errorf("status.history = %+v; want the release rolled back by hook/load-test with its HTTP 500", h)
	}
	ev := waitForEvent(t, context.Background(), ro, "Warning", backstopv1.ReasonHookFailed)
	if strings.Contains(ev, rc.URL) {
		t.Errorf("the HookFailed Event %q shows the URL", ev)
	}
	body, ok := rc.body("page-oncall")
	if !ok || body.CanaryRevision != rolled.Status.CanaryRevision || body.Type != backstopv1.HookPostRollback {
		t.Errorf("the PostRollback call %+v; want it for revision %s", body, rolled.Status.CanaryRevision)
	}
	// The release does not wait for a Step hook: it may reach step 2, and
	// call the hook there, before step 1's answer rolls it back.
	calls := rc.called()
	slices.Sort(calls)
	if got := strings.Join(calls, " "); got != "load-test/1 page-oncall/0" && got != "load-test/1 load-test/2 page-oncall/0" {
		t.Errorf("the receiver got %s; want the Step hook at step 1 (and perhaps 2) and one PostRollback call", got)
	}
}

// TestUnreachableHookIsInconclusive: a PreRelease hook whose URL comes from
// a Secret that does not exist, and one whose receiver refuses
// connections, are inconclusive: the release pauses (onInconclusive
// Pause) with no traffic on the canary, and a promotion by hand moves it
// on.
func TestUnreachableHookIsInconclusive(t *testing.T) {
	ns := releaseEnv(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
	}}})
	ro.Spec.Hooks = []backstopv1.Hook{
		{Name: "refused", Type: backstopv1.HookPreRelease, URL: closed.URL + "/pre", Attempts: ptr.To[int32](2)},
		{Name: "from-secret", Type: backstopv1.HookPreRelease, URLSecretRef: &backstopv1.SecretKeyReference{Name: "hook-url", Key: "url"}},
	}
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setImage(t, ns, "app:v2")

	var paused *backstopv1.Rollout
	testenv.Eventually(t, "both PreRelease hooks are inconclusive", func() bool {
		paused = get(t, ro)
		a, b := hookStatus(paused, "refused"), hookStatus(paused, "from-secret")
		return a != nil && b != nil && a.Result != backstopv1.HookRunning && b.Result != backstopv1.HookRunning
	})
	if paused.Status.Phase != backstopv1.PhasePaused || paused.Status.CanaryWeight != 0 {
		t.Errorf("%s at %d%%; want Paused at 0%%: the PreRelease hooks never passed", paused.Status.Phase, paused.Status.CanaryWeight)
	}
	refused, fromSecret := hookStatus(paused, "refused"), hookStatus(paused, "from-secret")
	if refused == nil || refused.Result != backstopv1.HookInconclusive || refused.Attempts != 2 || !strings.Contains(refused.Message, "connection refused") {
		t.Errorf("the refused hook's status: %+v; want Inconclusive after 2 attempts, connection refused", refused)
	}
	if fromSecret == nil || fromSecret.Result != backstopv1.HookInconclusive || !strings.Contains(fromSecret.Message, "hook-url") {
		t.Errorf("the Secret hook's status: %+v; want Inconclusive naming Secret hook-url", fromSecret)
	}
	if strings.Contains(refused.Message, strings.TrimPrefix(closed.URL, "http://")) {
		t.Errorf("the status message %q shows the receiver's address", refused.Message)
	}

	setGate(t, ro, "promote")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
}

// TestHookURLFromSecret: the URL is read from the Secret key at call time
// and never shows in status.
func TestHookURLFromSecret(t *testing.T) {
	ns := releaseEnv(t)
	rc := newHookReceiver(t, func(controllers.HookBody) int { return http.StatusOK })
	url := rc.URL + "/hooks/t0k3n-in-path"
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook-url"}, StringData: map[string]string{"url": url}})
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](30)}}}})
	ro.Spec.Hooks = []backstopv1.Hook{{Name: "gate", Type: backstopv1.HookPrePromotion, URLSecretRef: &backstopv1.SecretKeyReference{Name: "hook-url", Key: "url"}}}
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setImage(t, ns, "app:v2")
	done := waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	if got := rc.called(); len(got) != 1 || got[0] != "gate/0" {
		t.Errorf("the receiver got %v; want one gate call", got)
	}
	if s := toJSONString(done.Status); strings.Contains(s, "t0k3n") {
		t.Errorf("status shows the hook's URL: %s", s)
	}
}

func toJSONString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

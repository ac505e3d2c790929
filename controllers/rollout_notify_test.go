package controllers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/notify"
	"backstop.dev/backstop/test/testenv"
)

// startNotifier adds to mgr the Dispatcher that posts the phase changes of
// the suite's Rollouts, as the manager binary does. Its retries wait from
// 100ms, so a failing target is given up on within the test.
func startNotifier(mgr ctrl.Manager) (*notify.Dispatcher, error) {
	d := notify.New(notify.Options{
		Resolve: notify.SecretResolver(mgr.GetAPIReader()),
		Events:  mgr.GetEventRecorder(controllers.ControllerName),
		Log:     ctrl.Log.WithName("notify"),
		Backoff: 100 * time.Millisecond,
	})
	return d, mgr.Add(d)
}

// hookToken stands for the credential a chat webhook URL carries.
const hookToken = "T0KEN-0f-the-hook"

// chatReceiver is a local HTTP receiver of notifications that answers
// every request with code and body.
type chatReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

func newChatReceiver(t *testing.T, code int, body string) *chatReceiver {
	t.Helper()
	rc := &chatReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, b)
		rc.mu.Unlock()
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// hookURL is the receiver's URL with a token in its path, as chat
// webhook URLs have.
func (rc *chatReceiver) hookURL() string { return rc.URL + "/hooks/" + hookToken }

// notifications are the Webhook bodies received, in order.
func (rc *chatReceiver) notifications(t *testing.T) []notify.Notification {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []notify.Notification
	for _, b := range rc.bodies {
		var n notify.Notification
		if err := json.Unmarshal(b, &n); err != nil {
			t.Fatalf("a Webhook body is not a notification: %v\n%s", err, b)
		}
		out = append(out, n)
	}
	return out
}

func (rc *chatReceiver) phases(t *testing.T) []string {
	var out []string
	for _, n := range rc.notifications(t) {
		out = append(out, string(n.Phase))
	}
	return out
}

// slackHeaders are the header blocks of the Slack messages received.
func (rc *chatReceiver) slackHeaders(t *testing.T) []string {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, b := range rc.bodies {
		var msg struct {
			Text   string `json:"text"`
			Blocks []struct {
				Type string `json:"type"`
				Text struct {
					Text string `json:"text"`
				} `json:"text"`
			} `json:"blocks"`
		}
		if err := json.Unmarshal(b, &msg); err != nil || msg.Text == "" || len(msg.Blocks) == 0 || msg.Blocks[0].Type != "header" {
			t.Fatalf("not a Slack message with a text and a header block (%v):\n%s", err, b)
		}
		out = append(out, msg.Blocks[0].Text.Text)
	}
	return out
}

// waitForLast waits until the last of got ends with want.
func waitForLast(t *testing.T, what string, got func() []string, want string) {
	t.Helper()
	testenv.Eventually(t, what, func() bool {
		g := got()
		return len(g) > 0 && strings.HasSuffix(g[len(g)-1], want)
	})
}

func notifyTarget(name string, typ backstopv1.NotificationType, secret, key string, phases ...backstopv1.RolloutPhase) backstopv1.NotificationTarget {
	return backstopv1.NotificationTarget{Name: name, Type: typ, URLSecretRef: backstopv1.SecretKeyReference{Name: secret, Key: key}, Phases: phases}
}

// TestNotificationsOfAReleaseAndARollback: a Rollout with a Webhook and a
// Slack target, whose URLs are in a Secret, is released and promoted, then
// releases a revision that fails a check. Each target gets every phase
// change in order with the release's details; a target of RolledBack only
// gets the rollback.
func TestNotificationsOfAReleaseAndARollback(t *testing.T) {
	ns := releaseEnv(t)
	audit := newChatReceiver(t, http.StatusOK, "")
	chat := newChatReceiver(t, http.StatusOK, "ok")
	rollbacks := newChatReceiver(t, http.StatusOK, "")
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hooks", Namespace: ns},
		StringData: map[string]string{"audit": audit.hookURL(), "chat": chat.hookURL(), "rollbacks": rollbacks.hookURL()}})
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](30)},
		{Pause: &backstopv1.PauseStep{}},
	}}})
	// Checks run every second, pauses included.
	ro.Spec.Analysis = &backstopv1.AnalysisSpec{Interval: &metav1.Duration{Duration: time.Second}}
	ro.Spec.Notifications = &backstopv1.NotificationSpec{Targets: []backstopv1.NotificationTarget{
		notifyTarget("audit", backstopv1.NotifyWebhook, "hooks", "audit"),
		notifyTarget("chat", backstopv1.NotifySlack, "hooks", "chat"),
		notifyTarget("rollbacks", backstopv1.NotifyWebhook, "hooks", "rollbacks", backstopv1.PhaseRolledBack),
	}}
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	setGate(t, ro, "promote")
	done := waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	waitForLast(t, "the audit target to get Succeeded", func() []string { return audit.phases(t) }, "Succeeded")

	setImage(t, ns, "app:v3")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	verdicts.set(ro, analysis.Outcome{Result: backstopv1.VerdictFail, Check: "error-rate", Message: "0.31 > 0.01"})
	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	waitForLast(t, "the audit target to get RolledBack", func() []string { return audit.phases(t) }, "RolledBack")
	waitForLast(t, "the Slack target to get RolledBack", func() []string { return chat.slackHeaders(t) }, "RolledBack")
	waitForLast(t, "the rollback target to get RolledBack", func() []string { return rollbacks.phases(t) }, "RolledBack")

	want := []string{"Idle", "Progressing", "Paused", "Promoting", "Succeeded", "Progressing", "Paused", "RollingBack", "RolledBack"}
	if got := audit.phases(t); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the Webhook target got phases\n  %v\nwant\n  %v", got, want)
	}
	var headers []string
	for _, p := range want {
		headers = append(headers, "Rollout "+ns+"/app: "+p)
	}
	if got := chat.slackHeaders(t); strings.Join(got, "\n") != strings.Join(headers, "\n") {
		t.Errorf("the Slack target got headers\n  %v\nwant\n  %v", got, headers)
	}

	got := audit.notifications(t)
	if len(got) != len(want) {
		t.Fatalf("the Webhook target got %d notifications; want %d", len(got), len(want))
	}
	for _, n := range got {
		if n.Type != notify.EventType || n.Version != notify.Version || n.Namespace != ns || n.Rollout != "app" || n.Strategy != "canary" || n.Time.IsZero() {
			t.Errorf("notification %+v does not name its type, version, Rollout, strategy and time", n)
		}
	}
	if p := got[4]; p.PreviousPhase != backstopv1.PhasePromoting || p.Reason != "Promoted" || p.Warning ||
		p.StableRevision != done.Status.StableRevision || p.FailedCheck != "" {
		t.Errorf("Succeeded notification = %+v; want the promotion of %s", p, done.Status.StableRevision)
	}
	if p := got[5]; p.Reason != "ReleaseStarted" || p.CanaryRevision != rolled.Status.CanaryRevision ||
		p.StableRevision != done.Status.StableRevision || p.Step == nil || *p.Step != (notify.Step{Current: 1, Total: 2}) {
		t.Errorf("second Progressing notification = %+v; want the release of %s at step 1 of 2", p, rolled.Status.CanaryRevision)
	}
	if p := got[7]; p.Reason != "AnalysisFailed" || !p.Warning || p.FailedCheck != "error-rate" || !strings.Contains(p.Message, "0.31 > 0.01") ||
		p.Step == nil || p.Step.Current != 2 {
		t.Errorf("RollingBack notification = %+v; want a warning naming check error-rate at step 2", p)
	}
	if p := got[8]; p.PreviousPhase != backstopv1.PhaseRollingBack || p.FailedCheck != "error-rate" || p.CanaryWeight != 0 {
		t.Errorf("RolledBack notification = %+v; want the failed check with the traffic back on stable", p)
	}

	only := rollbacks.notifications(t)
	if len(only) != 1 || only[0].Phase != backstopv1.PhaseRolledBack || only[0].FailedCheck != "error-rate" {
		t.Errorf("the target of RolledBack got %+v; want only the rollback", only)
	}
}

// TestNotificationFailuresDoNotHoldTheRelease: a target whose Secret is
// missing, and one whose receiver refuses the message, hold nothing up:
// the release is promoted and each target gets one NotificationFailed
// Event, without the URL. Once the Secret exists, the next release's
// changes reach its target.
func TestNotificationFailuresDoNotHoldTheRelease(t *testing.T) {
	ns := releaseEnv(t)
	refusing := newChatReceiver(t, http.StatusForbidden, "invalid_token")
	late := newChatReceiver(t, http.StatusOK, "")
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "refused-url", Namespace: ns},
		StringData: map[string]string{"url": refusing.hookURL()}})
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](50)},
	}}})
	ro.Spec.Notifications = &backstopv1.NotificationSpec{Targets: []backstopv1.NotificationTarget{
		notifyTarget("late", backstopv1.NotifyWebhook, "late-url", "url"),
		notifyTarget("refused", backstopv1.NotifySlack, "refused-url", "url"),
	}}
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)

	ctx := context.Background()
	var lateNote, refusedNote string
	testenv.Eventually(t, "a NotificationFailed Event for each target", func() bool {
		for _, e := range events(t, ctx, ro) {
			if e.Type != "Warning" || e.Reason != notify.ReasonNotificationFailed {
				continue
			}
			switch {
			case strings.Contains(e.Note, `target "late"`):
				lateNote = e.Note
			case strings.Contains(e.Note, `target "refused"`):
				refusedNote = e.Note
			}
		}
		return lateNote != "" && refusedNote != ""
	})
	if !strings.Contains(lateNote, `secret "late-url" was not found in namespace "`+ns+`"`) {
		t.Errorf("the Event of the target without a Secret says %q; want that the Secret was not found", lateNote)
	}
	if !strings.Contains(refusedNote, "answered 403 Forbidden: invalid_token") {
		t.Errorf("the Event of the refused target says %q; want the receiver's answer", refusedNote)
	}

	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "late-url", Namespace: ns},
		StringData: map[string]string{"url": late.hookURL()}})
	setImage(t, ns, "app:v3")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	waitForLast(t, "the late target to get Succeeded", func() []string { return late.phases(t) }, "Succeeded")
	if got := late.phases(t); strings.Join(got, ",") != "Progressing,Promoting,Succeeded" {
		t.Errorf("once its Secret exists, the late target got %v; want the next release's Progressing, Promoting, Succeeded", got)
	}
	// The late target failed four times in a row (Idle and the first
	// release) before its Secret existed; the refused one fails every time.
	if n := countEvents(t, ctx, ro, notify.ReasonNotificationFailed); n != 2 {
		t.Errorf("%d NotificationFailed Events; want 2, one per target for its run of failures", n)
	}
	for _, e := range events(t, ctx, ro) {
		if strings.Contains(e.Note, hookToken) || strings.Contains(e.Note, "/hooks/") {
			t.Errorf("an Event shows a notification URL: %s", e.Note)
		}
	}
}

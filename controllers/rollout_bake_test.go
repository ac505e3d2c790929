package controllers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// bakeRollout is a one-step canary whose alerts guard a bake time.
func bakeRollout(ns string, bake time.Duration) *backstopv1.Rollout {
	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](50)},
	}}})
	ro.Spec.Analysis = &backstopv1.AnalysisSpec{Interval: &metav1.Duration{Duration: time.Second},
		Alerts: &backstopv1.AlertGuard{BakeTime: &metav1.Duration{Duration: bake}}}
	return ro
}

// TestBakeAlertRestoresPrevious: an alert during the bake time after a
// promotion puts the previous template back on the primary (kept in a
// ControllerRevision at the promotion), and the promoted revision ends
// rolled back, to be reverted.
func TestBakeAlertRestoresPrevious(t *testing.T) {
	ns := releaseEnv(t)
	ro := bakeRollout(ns, time.Hour)
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	v1 := idle.Status.StableRevision

	setImage(t, ns, "app:v2")
	done := waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	if done.Status.PreviousStableRevision != v1 {
		t.Fatalf("previousStableRevision %q, want %q", done.Status.PreviousStableRevision, v1)
	}
	var cr appsv1.ControllerRevision
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "app-" + v1}, &cr); err != nil {
		t.Fatalf("the v1 template was not kept: %v", err)
	}
	if img := deploymentOf(t, ns, "app-primary").Spec.Template.Spec.Containers[0].Image; img != "app:v2" {
		t.Fatalf("primary image %s after promotion", img)
	}
	verdicts.set(ro, analysis.Outcome{Result: backstopv1.VerdictFail, Check: "alerts", Message: "HighErrorRate firing"})
	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	if rolled.Status.StableRevision != v1 || rolled.Status.PreviousStableRevision != "" || rolled.Status.CanaryRevision == v1 {
		t.Errorf("status after the restore: %+v", rolled.Status)
	}
	if img := deploymentOf(t, ns, "app-primary").Spec.Template.Spec.Containers[0].Image; img != "app:v1" {
		t.Errorf("primary image %s after the restore, want app:v1", img)
	}
	waitForEvent(t, context.Background(), ro, "Warning", "AlertAfterPromotion")
	verdicts.set(ro, analysis.Outcome{Result: backstopv1.VerdictPass})
	setImage(t, ns, "app:v1")
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
}

// TestBakeTimePasses: without an alert, the bake time ends with an Event and
// the previous revision is forgotten.
func TestBakeTimePasses(t *testing.T) {
	ns := releaseEnv(t)
	ro := bakeRollout(ns, 3*time.Second)
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	waitForEvent(t, context.Background(), ro, "Normal", "BakeTimePassed")
	got := waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	if got.Status.PreviousStableRevision != "" {
		t.Errorf("previousStableRevision %q after the bake time", got.Status.PreviousStableRevision)
	}
}

// TestAlertmanagerAlertAfterPromotion: the real analysis with the
// Alertmanager receiver's store. An alert for the Rollout that Alertmanager
// sends during the bake time rolls the promoted version back, and status
// names the alert.
func TestAlertmanagerAlertAfterPromotion(t *testing.T) {
	ns := releaseEnv(t)
	ro := bakeRollout(ns, time.Hour)
	ro.Spec.Analysis.Alerts.Sources = []string{analysis.SourceAlertmanager}
	store := analysis.NewAlertStore(0)
	verdicts.judgeForReal(ro, &analysis.Analyzer{Client: env.Client, Secrets: env.Client, Alerts: store})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)

	recv := httptest.NewServer(&analysis.AlertReceiver{Store: store, Token: func(context.Context) ([]byte, error) { return []byte("t"), nil }})
	defer recv.Close()
	body := `{"version":"4","status":"firing","receiver":"backstop","groupKey":"{}","alerts":[{"status":"firing","labels":` +
		`{"alertname":"CheckoutErrors","namespace":"` + ns + `","rollout":"app"},"startsAt":"` + time.Now().UTC().Format(time.RFC3339) + `"}]}`
	req, _ := http.NewRequest(http.MethodPost, recv.URL, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("posting the alert: %s", resp.Status)
	}

	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	var alerts *backstopv1.CheckResult
	if rolled.Status.Analysis != nil {
		for i := range rolled.Status.Analysis.Checks {
			if rolled.Status.Analysis.Checks[i].Name == backstopv1.AlertsCheckName {
				alerts = &rolled.Status.Analysis.Checks[i]
			}
		}
	}
	if alerts == nil || alerts.Verdict != backstopv1.VerdictFail || !strings.Contains(alerts.Value, "CheckoutErrors (Alertmanager)") {
		t.Errorf("the alerts entry in status: %+v; want a failure naming CheckoutErrors", alerts)
	}
	if img := deploymentOf(t, ns, "app-primary").Spec.Template.Spec.Containers[0].Image; img != "app:v1" {
		t.Errorf("primary image %s after the alert; want app:v1 restored", img)
	}
	waitForEvent(t, context.Background(), ro, "Warning", "AlertAfterPromotion")
}

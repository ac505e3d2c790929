package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const alertRecvTestToken = "bkst-7Qm2x9TokenValue"

// alertRecvTestFixture is a webhook as Alertmanager sends it: two firing
// alerts of one group, endsAt zeroed as Alertmanager does for firing alerts.
const alertRecvTestFixture = `{
  "receiver": "backstop",
  "status": "firing",
  "alerts": [
    {
      "status": "firing",
      "labels": {
        "alertname": "HighErrorRate",
        "job": "checkout",
        "namespace": "shop",
        "rollout": "checkout",
        "pod": "checkout-canary-7d9c8b6f5-x2k4q",
        "severity": "page"
      },
      "annotations": {
        "description": "5.3% of checkout requests fail.",
        "runbook_url": "https://runbooks.example.com/HighErrorRate",
        "summary": "Checkout error rate above 1%"
      },
      "startsAt": "2025-03-04T10:15:30.123456789Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus-k8s-0:9090/graph?g0.expr=job%3Arequest_errors%3Aratio_rate5m%7Bjob%3D%22checkout%22%7D+%3E+0.01&g0.tab=1",
      "fingerprint": "5f0a4b1c9d3e2a17"
    },
    {
      "status": "firing",
      "labels": {
        "alertname": "HighErrorRate",
        "job": "checkout",
        "namespace": "shop",
        "rollout": "checkout",
        "pod": "checkout-canary-7d9c8b6f5-p8w2n",
        "severity": "page"
      },
      "annotations": {
        "description": "4.9% of checkout requests fail.",
        "runbook_url": "https://runbooks.example.com/HighErrorRate",
        "summary": "Checkout error rate above 1%"
      },
      "startsAt": "2025-03-04T10:16:00Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus-k8s-0:9090/graph?g0.expr=job%3Arequest_errors%3Aratio_rate5m%7Bjob%3D%22checkout%22%7D+%3E+0.01&g0.tab=1",
      "fingerprint": "a1c3e5f7092b4d68"
    }
  ],
  "groupLabels": {
    "alertname": "HighErrorRate"
  },
  "commonLabels": {
    "alertname": "HighErrorRate",
    "job": "checkout",
    "namespace": "shop",
    "rollout": "checkout",
    "severity": "page"
  },
  "commonAnnotations": {
    "runbook_url": "https://runbooks.example.com/HighErrorRate",
    "summary": "Checkout error rate above 1%"
  },
  "externalURL": "http://alertmanager-main-0:9093",
  "version": "4",
  "groupKey": "{}/{severity=\"page\"}:{alertname=\"HighErrorRate\"}",
  "truncatedAlerts": 0
}`

var alertRecvTestT0 = time.Date(2025, 3, 4, 10, 15, 30, 0, time.UTC)

// alertRecvTestClock is a settable clock.
type alertRecvTestClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *alertRecvTestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *alertRecvTestClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// alertRecvTestLog collects the lines of a funcr logger.
type alertRecvTestLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *alertRecvTestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *alertRecvTestLog) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.b.WriteString(prefix + args + "\n")
	}, funcr.Options{Verbosity: 1})
}

type alertRecvTestEnv struct {
	srv   *httptest.Server
	store *AlertStore
	clock *alertRecvTestClock
	log   *alertRecvTestLog
}

// newAlertRecvTestEnv serves a receiver on loopback. token nil means the
// test token.
func newAlertRecvTestEnv(t *testing.T, max int, token func(context.Context) ([]byte, error)) *alertRecvTestEnv {
	t.Helper()
	if token == nil {
		token = func(context.Context) ([]byte, error) { return []byte(alertRecvTestToken), nil }
	}
	env := &alertRecvTestEnv{
		store: NewAlertStore(max),
		clock: &alertRecvTestClock{now: alertRecvTestT0.Add(5 * time.Minute)},
		log:   &alertRecvTestLog{},
	}
	env.srv = httptest.NewServer(&AlertReceiver{
		Store: env.store,
		Token: token,
		Log:   env.log.logger(),
		Now:   env.clock.Now,
	})
	t.Cleanup(env.srv.Close)
	return env
}

// do sends a request and returns the status, the body and the headers.
func (e *alertRecvTestEnv) do(t *testing.T, method, auth, contentType, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+"/alerts", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// post sends a webhook with the test token and fails the test unless it is
// accepted.
func (e *alertRecvTestEnv) post(t *testing.T, body string) {
	t.Helper()
	code, resp, _ := e.do(t, http.MethodPost, "Bearer "+alertRecvTestToken, "application/json", body)
	if code != http.StatusOK {
		t.Fatalf("POST: got %d %q, want 200", code, resp)
	}
}

// alertRecvTestAlert is one alert of a test webhook.
type alertRecvTestAlert struct {
	status   string
	labels   map[string]string
	startsAt time.Time
	endsAt   time.Time // zero: Alertmanager's "0001-01-01T00:00:00Z"
}

// alertRecvTestPayload renders a version 4 webhook the way Alertmanager does.
func alertRecvTestPayload(alerts ...alertRecvTestAlert) string {
	type wire struct {
		Status       string            `json:"status"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		StartsAt     time.Time         `json:"startsAt"`
		EndsAt       time.Time         `json:"endsAt"`
		GeneratorURL string            `json:"generatorURL"`
	}
	p := map[string]any{
		"version":           "4",
		"groupKey":          `{}:{alertname="Test"}`,
		"truncatedAlerts":   0,
		"status":            "firing",
		"receiver":          "backstop",
		"groupLabels":       map[string]string{},
		"commonLabels":      map[string]string{},
		"commonAnnotations": map[string]string{},
		"externalURL":       "http://alertmanager:9093",
	}
	as := make([]wire, 0, len(alerts))
	for _, a := range alerts {
		if a.status == "" {
			a.status = "firing"
		}
		as = append(as, wire{
			Status:       a.status,
			Labels:       a.labels,
			Annotations:  map[string]string{"summary": "test"},
			StartsAt:     a.startsAt,
			EndsAt:       a.endsAt,
			GeneratorURL: "http://prometheus:9090/graph",
		})
	}
	p["alerts"] = as
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func alertRecvTestNames(as []Alert) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.Labels["alertname"])
	}
	return out
}

func TestAlertReceiverHTTPContract(t *testing.T) {
	tooBig := `{"version":"4","receiver":"` + strings.Repeat("x", 1<<20) + `","alerts":[]}`
	noLabels := strings.Replace(alertRecvTestPayload(alertRecvTestAlert{labels: map[string]string{"a": "b"}, startsAt: alertRecvTestT0}),
		`"labels":{"a":"b"}`, `"labels":{}`, 1)
	tests := []struct {
		name        string
		method      string
		auth        string
		contentType string
		body        string
		token       func(context.Context) ([]byte, error)
		wantCode    int
		wantHeader  map[string]string
		wantBody    string // substring
		wantStored  int
	}{
		{name: "no token header", auth: "", wantCode: 401,
			wantHeader: map[string]string{"WWW-Authenticate": "Bearer"}, wantBody: "missing bearer token"},
		{name: "wrong token", auth: "Bearer not-the-token", wantCode: 401,
			wantHeader: map[string]string{"WWW-Authenticate": "Bearer"}, wantBody: "invalid bearer token"},
		{name: "token with another scheme", auth: "Basic " + alertRecvTestToken, wantCode: 401},
		{name: "token prefix only", auth: "Bearer " + alertRecvTestToken[:5], wantCode: 401},
		{name: "right token", wantCode: 200, wantBody: `{"accepted":2}`, wantStored: 2,
			wantHeader: map[string]string{"Content-Type": "application/json"}},
		{name: "scheme is case-insensitive", auth: "bearer " + alertRecvTestToken, wantCode: 200, wantStored: 2},
		{name: "secret with trailing newline", wantCode: 200, wantStored: 2,
			token: func(context.Context) ([]byte, error) { return []byte(alertRecvTestToken + "\n"), nil }},
		{name: "no token configured", wantCode: 503, wantBody: "no token configured",
			token: func(context.Context) ([]byte, error) { return nil, nil }},
		{name: "blank token configured", wantCode: 503, wantBody: "no token configured",
			token: func(context.Context) ([]byte, error) { return []byte(" \n"), nil }},
		{name: "token lookup fails", wantCode: 503, wantBody: "no token configured",
			token: func(context.Context) ([]byte, error) { return nil, errors.New(`secrets "backstop-alerts" not found`) }},
		{name: "GET", method: http.MethodGet, body: "", wantCode: 405,
			wantHeader: map[string]string{"Allow": "POST"}},
		{name: "body over 1 MiB", body: tooBig, wantCode: 413},
		{name: "bad JSON", body: `{"version":"4","alerts":[{`, wantCode: 400, wantBody: "malformed"},
		{name: "JSON of the wrong shape", body: `{"version":"4","alerts":{"a":1}}`, wantCode: 400, wantBody: "malformed"},
		{name: "version 3", body: strings.Replace(alertRecvTestFixture, `"version": "4"`, `"version": "3"`, 1),
			wantCode: 400, wantBody: `unsupported Alertmanager webhook version "3"`},
		{name: "alert without labels", body: noLabels, wantCode: 400, wantBody: "alerts[0] has no labels"},
		{name: "unknown alert status", body: strings.Replace(alertRecvTestFixture, `"status": "firing",
      "labels"`, `"status": "pending",
      "labels"`, 1), wantCode: 400, wantBody: `status "pending"`},
		{name: "not JSON content", contentType: "text/plain", wantCode: 415},
		{name: "JSON with charset", contentType: "application/json; charset=utf-8", wantCode: 200, wantStored: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newAlertRecvTestEnv(t, 0, tc.token)
			method, auth, ct, body := tc.method, tc.auth, tc.contentType, tc.body
			if method == "" {
				method = http.MethodPost
			}
			if auth == "" && tc.wantCode != 401 {
				auth = "Bearer " + alertRecvTestToken
			}
			if ct == "" {
				ct = "application/json"
			}
			if body == "" && method == http.MethodPost {
				body = alertRecvTestFixture
			}
			code, resp, h := env.do(t, method, auth, ct, body)
			if code != tc.wantCode {
				t.Errorf("status = %d (%q), want %d", code, resp, tc.wantCode)
			}
			for k, v := range tc.wantHeader {
				if got := h.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if !strings.Contains(resp, tc.wantBody) {
				t.Errorf("body = %q, want it to contain %q", resp, tc.wantBody)
			}
			if strings.Contains(resp, alertRecvTestToken) {
				t.Errorf("body %q echoes the token", resp)
			}
			if got := env.store.Len(); got != tc.wantStored {
				t.Errorf("stored %d alerts, want %d", got, tc.wantStored)
			}
		})
	}
}

func TestAlertReceiverStoresFixture(t *testing.T) {
	env := newAlertRecvTestEnv(t, 0, nil)
	env.post(t, alertRecvTestFixture)
	sel, err := AlertSelector(nil, "shop", "checkout")
	if err != nil {
		t.Fatal(err)
	}
	got := env.store.Firing(sel, env.clock.Now())
	want := []Alert{
		{Labels: map[string]string{"alertname": "HighErrorRate", "job": "checkout", "namespace": "shop",
			"rollout": "checkout", "pod": "checkout-canary-7d9c8b6f5-x2k4q", "severity": "page"},
			StartsAt: time.Date(2025, 3, 4, 10, 15, 30, 123456789, time.UTC), Source: "Alertmanager"},
		{Labels: map[string]string{"alertname": "HighErrorRate", "job": "checkout", "namespace": "shop",
			"rollout": "checkout", "pod": "checkout-canary-7d9c8b6f5-p8w2n", "severity": "page"},
			StartsAt: time.Date(2025, 3, 4, 10, 16, 0, 0, time.UTC), Source: "Alertmanager"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Firing = %+v\nwant %+v", got, want)
	}
	// The result is a copy.
	got[0].Labels["severity"] = "none"
	if again := env.store.Firing(sel, env.clock.Now()); again[0].Labels["severity"] != "page" {
		t.Errorf("Firing returned the store's own labels")
	}
	// Alertmanager re-sends the group: still two alerts.
	env.post(t, alertRecvTestFixture)
	if got := env.store.Len(); got != 2 {
		t.Errorf("after re-send Len = %d, want 2", got)
	}
}

func TestAlertReceiverFiringThenResolved(t *testing.T) {
	env := newAlertRecvTestEnv(t, 0, nil)
	ls := map[string]string{"alertname": "Latency", "namespace": "shop", "rollout": "checkout"}
	other := map[string]string{"alertname": "Saturation", "namespace": "shop", "rollout": "checkout"}
	env.post(t, alertRecvTestPayload(
		alertRecvTestAlert{labels: ls, startsAt: alertRecvTestT0},
		alertRecvTestAlert{labels: other, startsAt: alertRecvTestT0.Add(time.Minute)},
	))
	sel, _ := AlertSelector(nil, "shop", "checkout")
	if got := alertRecvTestNames(env.store.Firing(sel, env.clock.Now())); !reflect.DeepEqual(got, []string{"Latency", "Saturation"}) {
		t.Fatalf("firing = %v", got)
	}

	// Resolved: Alertmanager sets endsAt to the time it resolved. The
	// fingerprint field is absent from these payloads: alerts are keyed by
	// their labels.
	env.post(t, alertRecvTestPayload(alertRecvTestAlert{
		status: "resolved", labels: ls, startsAt: alertRecvTestT0, endsAt: alertRecvTestT0.Add(3 * time.Minute),
	}))
	if got := alertRecvTestNames(env.store.Firing(sel, env.clock.Now())); !reflect.DeepEqual(got, []string{"Saturation"}) {
		t.Errorf("after resolve, firing = %v, want [Saturation]", got)
	}
	if got := env.store.Len(); got != 1 {
		t.Errorf("Len = %d, want 1", got)
	}

	// Resolving an alert never seen is accepted and changes nothing.
	env.post(t, alertRecvTestPayload(alertRecvTestAlert{
		status: "resolved", labels: map[string]string{"alertname": "Unknown"}, startsAt: alertRecvTestT0, endsAt: alertRecvTestT0,
	}))
	if got := env.store.Len(); got != 1 {
		t.Errorf("Len = %d, want 1", got)
	}

	// Fingerprint present on firing, absent on resolved: same alert.
	env.post(t, alertRecvTestFixture)
	resolved := strings.ReplaceAll(alertRecvTestFixture, `"status": "firing"`, `"status": "resolved"`)
	resolved = strings.ReplaceAll(resolved, `"fingerprint": "5f0a4b1c9d3e2a17"`, `"fingerprint": ""`)
	env.post(t, resolved)
	if got := alertRecvTestNames(env.store.Firing(sel, env.clock.Now())); !reflect.DeepEqual(got, []string{"Saturation"}) {
		t.Errorf("after resolving the fixture, firing = %v, want [Saturation]", got)
	}
}

func TestAlertReceiverKeepsEarliestStartsAt(t *testing.T) {
	env := newAlertRecvTestEnv(t, 0, nil)
	ls := map[string]string{"alertname": "Latency", "namespace": "shop", "rollout": "checkout"}
	env.post(t, alertRecvTestPayload(alertRecvTestAlert{labels: ls, startsAt: alertRecvTestT0}))
	env.post(t, alertRecvTestPayload(alertRecvTestAlert{labels: ls, startsAt: alertRecvTestT0.Add(-time.Minute)}))
	env.post(t, alertRecvTestPayload(alertRecvTestAlert{labels: ls, startsAt: alertRecvTestT0.Add(2 * time.Minute)}))
	got := env.store.Firing(labels.Everything(), env.clock.Now())
	if len(got) != 1 || !got[0].StartsAt.Equal(alertRecvTestT0.Add(-time.Minute)) {
		t.Errorf("Firing = %+v, want one alert starting at %s", got, alertRecvTestT0.Add(-time.Minute))
	}
}

func TestAlertStoreEndsAtExpires(t *testing.T) {
	env := newAlertRecvTestEnv(t, 0, nil)
	env.clock.Set(alertRecvTestT0)
	timed := map[string]string{"alertname": "Timed"}
	open := map[string]string{"alertname": "Open"}
	env.post(t, alertRecvTestPayload(
		alertRecvTestAlert{labels: timed, startsAt: alertRecvTestT0.Add(-time.Minute), endsAt: alertRecvTestT0.Add(5 * time.Minute)},
		alertRecvTestAlert{labels: open, startsAt: alertRecvTestT0.Add(-time.Minute)},
		// Already over when received: never stored.
		alertRecvTestAlert{labels: map[string]string{"alertname": "Stale"}, startsAt: alertRecvTestT0.Add(-time.Hour), endsAt: alertRecvTestT0.Add(-time.Second)},
		// Not started yet (clock skew): stored, not firing yet.
		alertRecvTestAlert{labels: map[string]string{"alertname": "Early"}, startsAt: alertRecvTestT0.Add(30 * time.Second)},
	))
	all := labels.Everything()
	steps := []struct {
		at      time.Duration
		want    []string
		wantLen int
	}{
		{at: 0, want: []string{"Open", "Timed"}, wantLen: 3},
		{at: 30 * time.Second, want: []string{"Open", "Timed", "Early"}, wantLen: 3},
		{at: 5*time.Minute - time.Nanosecond, want: []string{"Open", "Timed", "Early"}, wantLen: 3},
		{at: 5 * time.Minute, want: []string{"Open", "Early"}, wantLen: 2}, // purged
		{at: 24 * time.Hour, want: []string{"Open", "Early"}, wantLen: 2},
	}
	for _, st := range steps {
		got := alertRecvTestNames(env.store.Firing(all, alertRecvTestT0.Add(st.at)))
		if !reflect.DeepEqual(got, st.want) {
			t.Errorf("at +%s firing = %v, want %v", st.at, got, st.want)
		}
		if n := env.store.Len(); n != st.wantLen {
			t.Errorf("at +%s Len = %d, want %d", st.at, n, st.wantLen)
		}
	}

	// A re-send moves endsAt on: the alert fires again until the new end.
	env.clock.Set(alertRecvTestT0.Add(6 * time.Minute))
	env.post(t, alertRecvTestPayload(alertRecvTestAlert{labels: timed, startsAt: alertRecvTestT0.Add(-time.Minute), endsAt: alertRecvTestT0.Add(10 * time.Minute)}))
	env.post(t, alertRecvTestPayload(alertRecvTestAlert{labels: open, startsAt: alertRecvTestT0.Add(-time.Minute), endsAt: alertRecvTestT0.Add(8 * time.Minute)}))
	if got := alertRecvTestNames(env.store.Firing(all, alertRecvTestT0.Add(9*time.Minute))); !reflect.DeepEqual(got, []string{"Timed", "Early"}) {
		t.Errorf("at +9m firing = %v, want [Timed Early]", got)
	}
	if got := env.store.Firing(all, alertRecvTestT0.Add(11*time.Minute)); len(got) != 1 {
		t.Errorf("at +11m firing = %v, want [Early]", alertRecvTestNames(got))
	}
}

func TestAlertSelectorMatching(t *testing.T) {
	env := newAlertRecvTestEnv(t, 0, nil)
	quoted := `disk "full" on node 'a', 100% used`
	longName := strings.Repeat("checkout-", 10) + "v2" // 92 characters: longer than a label value
	at := func(m int) time.Time { return alertRecvTestT0.Add(time.Duration(m) * time.Minute) }
	env.post(t, alertRecvTestPayload(
		alertRecvTestAlert{labels: map[string]string{"alertname": "A", "namespace": "shop", "rollout": "checkout", "severity": "page", "description": quoted}, startsAt: at(0)},
		alertRecvTestAlert{labels: map[string]string{"alertname": "B", "namespace": "shop", "rollout": "cart", "severity": "ticket"}, startsAt: at(0)},
		alertRecvTestAlert{labels: map[string]string{"alertname": "C", "namespace": "other", "rollout": "checkout", "severity": "critical"}, startsAt: at(-1)},
		alertRecvTestAlert{labels: map[string]string{"alertname": "D", "team": "payments", "summary": `He said "roll back"`}, startsAt: at(1)},
		alertRecvTestAlert{labels: map[string]string{"alertname": "E", "namespace": "shop", "rollout": longName}, startsAt: at(2)},
	))
	tests := []struct {
		name      string
		sel       *metav1.LabelSelector
		namespace string
		rollout   string
		want      []string
	}{
		{name: "nil selector: namespace and rollout", namespace: "shop", rollout: "checkout", want: []string{"A"}},
		{name: "empty selector: namespace and rollout", sel: &metav1.LabelSelector{}, namespace: "shop", rollout: "checkout", want: []string{"A"}},
		{name: "default selector, long rollout name", namespace: "shop", rollout: longName, want: []string{"E"}},
		{name: "default selector, other rollout", namespace: "shop", rollout: "cart", want: []string{"B"}},
		{name: "matchLabels", sel: &metav1.LabelSelector{MatchLabels: map[string]string{"rollout": "checkout"}}, want: []string{"C", "A"}},
		{name: "In", sel: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "severity", Operator: metav1.LabelSelectorOpIn, Values: []string{"page", "critical"}},
		}}, want: []string{"C", "A"}},
		{name: "Exists on a label whose value has spaces and quotes", sel: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "description", Operator: metav1.LabelSelectorOpExists},
		}}, want: []string{"A"}},
		{name: "Exists and matchLabels", sel: &metav1.LabelSelector{
			MatchLabels: map[string]string{"team": "payments"},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "summary", Operator: metav1.LabelSelectorOpExists},
			}}, want: []string{"D"}},
		{name: "NotIn and DoesNotExist", sel: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "severity", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"ticket"}},
			{Key: "team", Operator: metav1.LabelSelectorOpDoesNotExist},
		}}, want: []string{"C", "A", "E"}},
		{name: "nothing matches", sel: &metav1.LabelSelector{MatchLabels: map[string]string{"rollout": "nope"}}, want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := AlertSelector(tc.sel, tc.namespace, tc.rollout)
			if err != nil {
				t.Fatal(err)
			}
			got := env.store.Firing(sel, env.clock.Now())
			if names := alertRecvTestNames(got); !reflect.DeepEqual(names, tc.want) {
				t.Errorf("firing = %v, want %v", names, tc.want)
			}
			for _, a := range got {
				if a.Labels["alertname"] == "A" && a.Labels["description"] != quoted {
					t.Errorf("description = %q, want %q", a.Labels["description"], quoted)
				}
			}
		})
	}

	if _, err := AlertSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "severity", Operator: "Bogus"},
	}}, "shop", "checkout"); err == nil {
		t.Error("AlertSelector accepted an unknown operator")
	}
	if got := env.store.Firing(nil, env.clock.Now()); len(got) != 0 {
		t.Errorf("nil selector matched %v", alertRecvTestNames(got))
	}
}

func TestAlertStoreOrdersByStartThenLabels(t *testing.T) {
	env := newAlertRecvTestEnv(t, 0, nil)
	env.post(t, alertRecvTestPayload(
		alertRecvTestAlert{labels: map[string]string{"alertname": "Z", "pod": "b"}, startsAt: alertRecvTestT0},
		alertRecvTestAlert{labels: map[string]string{"alertname": "Z", "pod": "a"}, startsAt: alertRecvTestT0},
		alertRecvTestAlert{labels: map[string]string{"alertname": "Y"}, startsAt: alertRecvTestT0.Add(time.Second)},
		alertRecvTestAlert{labels: map[string]string{"alertname": "X"}, startsAt: alertRecvTestT0.Add(-time.Second)},
	))
	var got []string
	for _, a := range env.store.Firing(labels.Everything(), env.clock.Now()) {
		got = append(got, a.Labels["alertname"]+a.Labels["pod"])
	}
	if want := []string{"X", "Za", "Zb", "Y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

func TestAlertStoreEviction(t *testing.T) {
	if got := NewAlertStore(0).max; got != 10000 {
		t.Errorf("NewAlertStore(0) keeps %d, want 10000", got)
	}
	if got := NewAlertStore(-1).max; got != 10000 {
		t.Errorf("NewAlertStore(-1) keeps %d, want 10000", got)
	}

	env := newAlertRecvTestEnv(t, 3, nil)
	fire := func(names ...string) {
		t.Helper()
		var as []alertRecvTestAlert
		for _, n := range names {
			as = append(as, alertRecvTestAlert{labels: map[string]string{"alertname": n}, startsAt: alertRecvTestT0})
		}
		env.post(t, alertRecvTestPayload(as...))
	}
	firing := func() []string {
		return alertRecvTestNames(env.store.Firing(labels.Everything(), env.clock.Now()))
	}
	fire("a1")
	fire("a2")
	fire("a3", "a4", "a5")
	if got, want := firing(), []string{"a3", "a4", "a5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("firing = %v, want %v", got, want)
	}
	if got := env.store.Len(); got != 3 {
		t.Errorf("Len = %d, want 3", got)
	}
	// A re-sent alert counts as recent: a4 is now the oldest.
	fire("a3")
	fire("a6")
	if got, want := firing(), []string{"a3", "a5", "a6"}; !reflect.DeepEqual(got, want) {
		t.Errorf("firing = %v, want %v", got, want)
	}
	// Expired alerts make room before live ones are evicted.
	env.post(t, alertRecvTestPayload(alertRecvTestAlert{labels: map[string]string{"alertname": "a5"}, startsAt: alertRecvTestT0, endsAt: env.clock.Now().Add(time.Minute)}))
	env.clock.Set(env.clock.Now().Add(2 * time.Minute))
	fire("a7")
	if got, want := firing(), []string{"a3", "a6", "a7"}; !reflect.DeepEqual(got, want) {
		t.Errorf("firing = %v, want %v", got, want)
	}
}

func TestAlertReceiverConcurrent(t *testing.T) {
	env := newAlertRecvTestEnv(t, 0, nil)
	const writers, rounds = 8, 15
	sel, err := AlertSelector(nil, "shop", "checkout")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				ls := map[string]string{"alertname": fmt.Sprintf("W%dR%d", w, r), "namespace": "shop", "rollout": "checkout"}
				status := "firing"
				if r%3 == 2 {
					// Resolve the alert of the previous round.
					ls["alertname"] = fmt.Sprintf("W%dR%d", w, r-1)
					status = "resolved"
				}
				body := alertRecvTestPayload(alertRecvTestAlert{status: status, labels: ls, startsAt: alertRecvTestT0, endsAt: time.Time{}})
				req, err := http.NewRequest(http.MethodPost, env.srv.URL, strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("Authorization", "Bearer "+alertRecvTestToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := env.srv.Client().Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("writer %d round %d: status %d", w, r, resp.StatusCode)
				}
			}
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for i := 0; i < 4; i++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, a := range env.store.Firing(sel, env.clock.Now()) {
					_ = a.Labels["alertname"]
				}
				_ = env.store.Len()
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Per writer: of 15 rounds, 10 fire an alert and 5 resolve one of them.
	if got, want := len(env.store.Firing(sel, env.clock.Now())), writers*5; got != want {
		t.Errorf("firing %d alerts, want %d", got, want)
	}
}

func TestAlertReceiverNeverLogsToken(t *testing.T) {
	wrong := "Bearer wr0ng-Secret-Guess"
	env := newAlertRecvTestEnv(t, 0, nil)
	env.post(t, alertRecvTestFixture)
	env.do(t, http.MethodPost, wrong, "application/json", alertRecvTestFixture)
	env.do(t, http.MethodPost, "", "application/json", alertRecvTestFixture)
	env.do(t, http.MethodPost, "Bearer "+alertRecvTestToken, "application/json", `{"version":"3"}`)

	failing := newAlertRecvTestEnv(t, 0, func(context.Context) ([]byte, error) {
		return nil, errors.New("secret backstop/alertmanager-token has no key \"token\"")
	})
	failing.do(t, http.MethodPost, "Bearer "+alertRecvTestToken, "application/json", alertRecvTestFixture)

	out := env.log.String() + failing.log.String()
	for _, want := range []string{
		`"msg"="Received alerts"`, `"receiver"="backstop"`, `"groupKey"="{}/{severity=\"page\"}:{alertname=\"HighErrorRate\"}"`,
		`"firing"=2`, `"resolved"=0`,
		`"msg"="Rejected alert webhook"`, `"status"=401`, `"status"=400`, `"status"=503`,
		`Failed to read the alert receiver's token`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	for _, secret := range []string{alertRecvTestToken, "wr0ng-Secret-Guess", "Authorization"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
}

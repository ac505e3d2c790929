package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// wait bounds every wait of these tests: a hang fails the test instead of
// timing it out; no test asserts how fast anything is.
const wait = 30 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// receiver is a local HTTP receiver whose answers the test scripts: answer
// gets the number of the request, from 1.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, string(body))
		n := len(rc.bodies)
		rc.mu.Unlock()
		answer(n, w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) got() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.bodies...)
}

// messages are the Message fields of the Webhook bodies received.
func (rc *receiver) messages(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, b := range rc.got() {
		var n Notification
		if err := json.Unmarshal([]byte(b), &n); err != nil {
			t.Fatalf("a body is not a notification: %v\n%s", err, b)
		}
		out = append(out, n.Message)
	}
	return out
}

func status(code int) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// captured is what a Dispatcher under test logged, recorded as Events and
// waited for between attempts.
type captured struct {
	mu     sync.Mutex
	lines  []string
	events []recordedEvent
	sleeps []time.Duration
}

type recordedEvent struct {
	namespace, name string
	uid             types.UID
	kind, reason    string
	action, note    string
}

func (c *captured) Eventf(regarding, _ runtime.Object, eventtype, reason, action, note string, args ...any) {
	obj, _ := meta.Accessor(regarding)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, recordedEvent{obj.GetNamespace(), obj.GetName(), obj.GetUID(), eventtype, reason, action, fmt.Sprintf(note, args...)})
}

func (c *captured) Events() []recordedEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]recordedEvent(nil), c.events...)
}

func (c *captured) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

func (c *captured) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// lineSink is a logr sink that keeps every line, at every verbosity.
type lineSink struct {
	c  *captured
	kv []any
}

func (s lineSink) Init(logr.RuntimeInfo)        {}
func (s lineSink) Enabled(int) bool             { return true }
func (s lineSink) WithName(string) logr.LogSink { return s }
func (s lineSink) WithValues(kv ...any) logr.LogSink {
	return lineSink{c: s.c, kv: append(append([]any(nil), s.kv...), kv...)}
}
func (s lineSink) Info(_ int, msg string, kv ...any) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.lines = append(s.c.lines, fmt.Sprint(msg, append(append([]any(nil), s.kv...), kv...)))
}
func (s lineSink) Error(err error, msg string, kv ...any) {
	s.Info(0, msg+" error="+err.Error(), kv...)
}

// startDispatcher starts a Dispatcher with o (Resolve, workers and queue
// as given), the logs and Events captured, and no real waits between
// attempts. It is stopped when the test ends.
func startDispatcher(t *testing.T, o Options) (*Dispatcher, *captured) {
	t.Helper()
	c := &captured{}
	o.Log = logr.New(lineSink{c: c})
	o.Events = c
	d := New(o)
	d.sleep = func(ctx context.Context, w time.Duration) error {
		c.mu.Lock()
		c.sleeps = append(c.sleeps, w)
		c.mu.Unlock()
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_ = d.Start(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return d, c
}

// to resolves every target to the receiver's URL as a Webhook.
func to(url string) Resolver {
	return func(context.Context, Target) (Endpoint, error) {
		return Endpoint{Type: backstopv1.NotifyWebhook, URL: url}, nil
	}
}

func delivery(target, message string) Delivery {
	n := promoted
	n.Message = message
	return Delivery{Target: Target{Name: target, Type: backstopv1.NotifyWebhook}, Notification: n, RolloutUID: "uid-1"}
}

func counter(t *testing.T, typ, result string) float64 {
	t.Helper()
	var m dto.Metric
	if err := notificationsTotal.WithLabelValues(typ, result).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestServerErrorsAreRetried: a receiver that fails twice with 500 and
// then answers 200 gets three requests and the message is sent once, after
// two waits that double.
func TestServerErrorsAreRetried(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	sent, failed := counter(t, "Webhook", "sent"), counter(t, "Webhook", "failed")
	d, c := startDispatcher(t, Options{Resolve: to(rc.URL), Backoff: time.Second, MaxBackoff: time.Minute})
	d.Send(delivery("audit", "once"))

	eventually(t, "the message to be sent", func() bool { return counter(t, "Webhook", "sent") == sent+1 })
	if got := rc.messages(t); strings.Join(got, ",") != "once,once,once" {
		t.Errorf("receiver got %q; want the message three times", got)
	}
	if got := counter(t, "Webhook", "failed"); got != failed {
		t.Errorf("failed went from %v to %v; want no failure counted", failed, got)
	}
	sleeps := c.Sleeps()
	if len(sleeps) != 2 || sleeps[0] < 500*time.Millisecond || sleeps[0] > time.Second || sleeps[1] < time.Second || sleeps[1] > 2*time.Second {
		t.Errorf("waited %v between attempts; want about 1s then about 2s, jittered down by up to half", sleeps)
	}
	if ev := c.Events(); len(ev) != 0 {
		t.Errorf("Events %+v for a message that was sent; want none", ev)
	}
}

// TestRetryAfterIsHonoured: on 429 and 503 the wait is the one the
// receiver asks for, capped at MaxRetryAfter.
func TestRetryAfterIsHonoured(t *testing.T) {
	tests := []struct {
		code       int
		retryAfter string
		want       time.Duration
	}{
		{http.StatusTooManyRequests, "7", 7 * time.Second},
		{http.StatusServiceUnavailable, "7200", time.Minute},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", tt.retryAfter)
					w.WriteHeader(tt.code)
				}
			})
			sent := counter(t, "Webhook", "sent")
			d, c := startDispatcher(t, Options{Resolve: to(rc.URL), Backoff: time.Second, MaxRetryAfter: time.Minute})
			d.Send(delivery("audit", "later"))
			eventually(t, "the message to be sent", func() bool { return counter(t, "Webhook", "sent") == sent+1 })
			if got := c.Sleeps(); len(got) != 1 || got[0] != tt.want {
				t.Errorf("waited %v; want %v", got, tt.want)
			}
			if got := len(rc.got()); got != 2 {
				t.Errorf("receiver got %d requests; want 2", got)
			}
		})
	}
}

// TestRetryAfterValues: Retry-After in seconds or as an HTTP date; none,
// a past date or garbage fall back to the backoff.
func TestRetryAfterValues(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		"0":                             0,
		"soon":                          0,
		"Wed, 04 Mar 2026 05:06:52 GMT": 45 * time.Second,
		"Wed, 04 Mar 2026 05:00:00 GMT": 0,
		"Thu, 05 Mar 2026 05:06:07 GMT": 2 * time.Minute,
	}
	for v, want := range tests {
		if got := retryAfter(v, now, 2*time.Minute); got != want {
			t.Errorf("retryAfter(%q) = %v; want %v", v, got, want)
		}
	}
}

// TestClientErrorsAreNotRetried: a 400 fails the message at once, with a
// NotificationFailed Event on the Rollout that quotes the answer.
func TestClientErrorsAreNotRetried(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "invalid_payload\n")
	})
	failed := counter(t, "Webhook", "failed")
	d, c := startDispatcher(t, Options{Resolve: to(rc.URL)})
	d.Send(delivery("audit", "rejected"))

	eventually(t, "the failure", func() bool { return counter(t, "Webhook", "failed") == failed+1 })
	if got := len(rc.got()); got != 1 {
		t.Errorf("receiver got %d requests; want 1", got)
	}
	if s := c.Sleeps(); len(s) != 0 {
		t.Errorf("waited %v to try again; want no retry", s)
	}
	ev := c.Events()
	if len(ev) != 1 {
		t.Fatalf("Events = %+v; want one", ev)
	}
	e := ev[0]
	if e.kind != "Warning" || e.reason != ReasonNotificationFailed || e.namespace != "shop" || e.name != "checkout" || e.uid != "uid-1" {
		t.Errorf("Event = %+v; want a Warning NotificationFailed on shop/checkout", e)
	}
	if e.action != "Notify/audit" {
		t.Errorf("Event action = %q; want Notify/audit, so Kubernetes keeps each target's Events apart", e.action)
	}
	if !strings.Contains(e.note, `target "audit"`) || !strings.Contains(e.note, "answered 400 Bad Request: invalid_payload") {
		t.Errorf("Event says %q; want the target and the answer", e.note)
	}
}

// TestHangingReceiverTimesOut: a request the receiver never answers ends
// at the timeout and the message is tried again.
func TestHangingReceiverTimesOut(t *testing.T) {
	rc := newReceiver(t, func(n int, _ http.ResponseWriter, r *http.Request) {
		if n == 1 {
			<-r.Context().Done()
		}
	})
	sent := counter(t, "Webhook", "sent")
	d, c := startDispatcher(t, Options{Resolve: to(rc.URL), Timeout: 200 * time.Millisecond})
	d.Send(delivery("audit", "patience"))

	eventually(t, "the message to be sent", func() bool { return counter(t, "Webhook", "sent") == sent+1 })
	if got := len(rc.got()); got != 2 {
		t.Errorf("receiver got %d requests; want 2", got)
	}
	if !containsLine(c.Lines(), "Retrying a notification", "did not answer within 200ms") {
		t.Errorf("no log line says the first attempt timed out; have %q", c.Lines())
	}
}

func containsLine(lines []string, parts ...string) bool {
	for _, l := range lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestFullQueueDropsTheOldest: while the receiver holds the only worker,
// Send keeps returning; past the queue's size the oldest waiting messages
// are dropped and counted, with one log line, and the newest are posted
// once the receiver answers.
func TestFullQueueDropsTheOldest(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	dropped := counter(t, "Webhook", "dropped")
	d, c := startDispatcher(t, Options{Resolve: to(rc.URL), Workers: 1, QueueSize: 2, Timeout: time.Hour})
	d.Send(delivery("audit", "1"))
	eventually(t, "the receiver to hold the worker", func() bool { return len(rc.got()) == 1 })

	returned := make(chan struct{})
	go func() {
		for i := 2; i <= 50; i++ {
			d.Send(delivery("audit", fmt.Sprint(i)))
		}
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(wait):
		t.Fatal("Send blocked while the receiver held the worker")
	}
	if got := counter(t, "Webhook", "dropped") - dropped; got != 47 {
		t.Errorf("%v messages dropped; want 47 (49 sent, 2 queued)", got)
	}
	var dropLines int
	for _, l := range c.Lines() {
		if strings.Contains(l, "Dropped notifications") {
			dropLines++
		}
	}
	if dropLines != 1 {
		t.Errorf("%d log lines about dropped messages within a minute; want 1", dropLines)
	}

	close(release)
	eventually(t, "the queued messages to be posted", func() bool { return len(rc.got()) == 3 })
	if got := rc.messages(t); strings.Join(got, ",") != "1,49,50" {
		t.Errorf("receiver got %q; want 1, then the two newest: 49, 50", got)
	}
}

// TestStopDrainsNothing: when Start's context ends, the request in flight
// is abandoned and the queued messages are not posted.
func TestStopDrainsNothing(t *testing.T) {
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	sent, failed := counter(t, "Webhook", "sent"), counter(t, "Webhook", "failed")
	d := New(Options{Resolve: to(rc.URL), Workers: 1, Timeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- d.Start(ctx) }()
	for _, m := range []string{"in flight", "queued", "queued too"} {
		d.Send(delivery("audit", m))
	}
	eventually(t, "the first request", func() bool { return len(rc.got()) == 1 })

	cancel()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Start returned %v; want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("Start did not return after its context ended")
	}
	if got := rc.messages(t); len(got) != 1 {
		t.Errorf("receiver got %q; want only the message in flight", got)
	}
	if counter(t, "Webhook", "sent") != sent || counter(t, "Webhook", "failed") != failed {
		t.Errorf("messages abandoned at stop were counted as sent or failed")
	}
}

// TestOneEventPerFailureStreak: failures in a row to one target record
// one Event; after a success, the next failure records another.
func TestOneEventPerFailureStreak(t *testing.T) {
	codes := []int{400, 500, 200, 403}
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(codes[min(n, len(codes))-1]) })
	failed, sent := counter(t, "Webhook", "failed"), counter(t, "Webhook", "sent")
	d, c := startDispatcher(t, Options{Resolve: to(rc.URL), Attempts: 1})
	for _, m := range []string{"a", "b", "c", "d"} {
		d.Send(delivery("audit", m))
	}
	eventually(t, "four messages to be handled", func() bool {
		return counter(t, "Webhook", "failed")-failed == 3 && counter(t, "Webhook", "sent")-sent == 1
	})
	ev := c.Events()
	if len(ev) != 2 {
		t.Fatalf("%d Events; want 2 (one per run of failures): %+v", len(ev), ev)
	}
	if !strings.Contains(ev[0].note, "400") || !strings.Contains(ev[1].note, "403") {
		t.Errorf("Events say %q and %q; want the 400 that started the first run and the 403 of the second", ev[0].note, ev[1].note)
	}
}

// TestResolveErrors: a Secret that cannot be read for now is read again;
// one that is missing fails the message at once.
func TestResolveErrors(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	var mu sync.Mutex
	calls := map[string]int{}
	resolve := func(_ context.Context, tg Target) (Endpoint, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[tg.Name]++
		switch {
		case tg.Name == "missing":
			return Endpoint{}, Permanent(fmt.Errorf(`secret "urls" was not found in namespace "shop"`))
		case calls[tg.Name] == 1:
			return Endpoint{}, fmt.Errorf("the server is currently unable to handle the request")
		}
		return Endpoint{Type: backstopv1.NotifyWebhook, URL: rc.URL}, nil
	}
	failed, sent := counter(t, "Webhook", "failed"), counter(t, "Webhook", "sent")
	d, c := startDispatcher(t, Options{Resolve: resolve})
	d.Send(delivery("missing", "m"))
	d.Send(delivery("flaky", "f"))
	eventually(t, "both messages to be handled", func() bool {
		return counter(t, "Webhook", "failed")-failed == 1 && counter(t, "Webhook", "sent")-sent == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if calls["missing"] != 1 || calls["flaky"] != 2 {
		t.Errorf("resolved %v; want the missing Secret once and the flaky one twice", calls)
	}
	if ev := c.Events(); len(ev) != 1 || !strings.Contains(ev[0].note, `secret "urls" was not found in namespace "shop"`) {
		t.Errorf("Events = %+v; want one saying the Secret is missing", ev)
	}
}

// TestURLNeverAppears: whatever goes wrong, no log line and no Event shows
// the URL or the token in its path, query or user information, even when
// the receiver echoes it.
func TestURLNeverAppears(t *testing.T) {
	const token = "T0KEN-s3cr3t"
	path := "/hooks/" + token + "?sig=" + token
	echo := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "no hook at "+r.URL.RequestURI())
	})
	failing := newReceiver(t, status(http.StatusBadGateway))
	hanging := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	redirect := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/moved/"+token, http.StatusFound)
	})
	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close()
	urls := map[string]string{
		"echo":     echo.URL + path,
		"failing":  failing.URL + path,
		"hanging":  strings.Replace(hanging.URL, "http://", "http://user:"+token+"@", 1) + path,
		"redirect": redirect.URL + path,
		"refused":  refused.URL + path,
		"bad":      "http://bad host" + path,
	}
	resolve := func(_ context.Context, tg Target) (Endpoint, error) {
		return Endpoint{Type: backstopv1.NotifySlack, URL: urls[tg.Name]}, nil
	}
	failed := counter(t, "Slack", "failed")
	d, c := startDispatcher(t, Options{Resolve: resolve, Attempts: 2, Timeout: 100 * time.Millisecond})
	for name := range urls {
		d.Send(Delivery{Target: Target{Name: name, Type: backstopv1.NotifySlack}, Notification: promoted})
	}
	eventually(t, "every message to fail", func() bool { return counter(t, "Slack", "failed")-failed == float64(len(urls)) })

	ev := c.Events()
	if len(ev) != len(urls) {
		t.Errorf("%d Events; want one per target (%d)", len(ev), len(urls))
	}
	for _, e := range ev {
		if strings.Contains(e.note, token) || strings.Contains(e.note, "/hooks/") {
			t.Errorf("an Event shows the URL: %s", e.note)
		}
	}
	lines := c.Lines()
	if !containsLine(lines, "Failed to post a notification") || !containsLine(lines, "Retrying a notification") {
		t.Errorf("the logs have no line about the failures; have %q", lines)
	}
	for _, l := range lines {
		if strings.Contains(l, token) {
			t.Errorf("a log line shows the URL: %s", l)
		}
	}
	for _, want := range []string{"answered 404 Not Found: no hook at [redacted]", "answered 502 Bad Gateway", "did not answer within 100ms",
		"answered 302 Found", "could not connect", "not a valid URL"} {
		if !containsLine(lines, want) {
			t.Errorf("no log line says %q; have %q", want, lines)
		}
	}
}

// TestNotifySelectsTargets: a Rollout's targets get the phases they
// select, before anything is queued; the cluster default gets the phases
// and type its Secret names when each message is sent.
func TestNotifySelectsTargets(t *testing.T) {
	rollbacks := newReceiver(t, status(http.StatusOK))
	all := newReceiver(t, status(http.StatusOK))
	cluster := newReceiver(t, status(http.StatusOK))
	resolve := func(_ context.Context, tg Target) (Endpoint, error) {
		switch tg.Name {
		case "rollbacks":
			return Endpoint{Type: tg.Type, URL: rollbacks.URL, Phases: tg.Phases}, nil
		case "all":
			return Endpoint{Type: tg.Type, URL: all.URL, Phases: tg.Phases}, nil
		}
		return Endpoint{Type: backstopv1.NotifyTeams, URL: cluster.URL,
			Phases: []backstopv1.RolloutPhase{backstopv1.PhaseProgressing, backstopv1.PhaseRolledBack}}, nil
	}
	d, _ := startDispatcher(t, Options{Resolve: resolve, ClusterDefault: &types.NamespacedName{Namespace: "backstop-system", Name: "notify"}})
	ro := rollout(backstopv1.PhaseIdle)
	ro.Spec.Notifications = &backstopv1.NotificationSpec{Targets: []backstopv1.NotificationTarget{
		{Name: "rollbacks", Type: backstopv1.NotifyWebhook, Phases: []backstopv1.RolloutPhase{backstopv1.PhaseRolledBack}},
		{Name: "all", Type: backstopv1.NotifyWebhook},
	}}
	for _, p := range []backstopv1.RolloutPhase{backstopv1.PhaseInitializing, backstopv1.PhaseProgressing, backstopv1.PhaseSucceeded, backstopv1.PhaseRolledBack} {
		n := promoted
		n.Phase, n.Message = p, string(p)
		d.Notify(ro, n)
	}
	eventually(t, "the messages", func() bool {
		return len(all.got()) == 3 && len(rollbacks.got()) == 1 && len(cluster.got()) == 2
	})
	if got := all.messages(t); strings.Join(got, ",") != "Progressing,Succeeded,RolledBack" {
		t.Errorf("a target without phases got %q; want every change but Initializing, in order", got)
	}
	if got := rollbacks.messages(t); strings.Join(got, ",") != "RolledBack" {
		t.Errorf("a target of RolledBack got %q", got)
	}
	for _, b := range cluster.got() {
		if !strings.HasPrefix(b, `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive"`) {
			t.Errorf("the cluster default got %s; want a Teams message", b)
		}
	}
	if got := cluster.got(); !strings.Contains(got[0], "Rollout shop/checkout: Progressing") || !strings.Contains(got[1], "Rollout shop/checkout: RolledBack") {
		t.Errorf("the cluster default got %q; want Progressing then RolledBack", got)
	}
}

// TestBackoffDoublesUpToTheCap: each wait is the base doubled per attempt,
// capped, and jittered down by at most half.
func TestBackoffDoublesUpToTheCap(t *testing.T) {
	d := New(Options{Resolve: to(""), Backoff: time.Second, MaxBackoff: 10 * time.Second})
	for attempt, full := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 9: 10 * time.Second} {
		for range 200 {
			if w := d.backoff(attempt); w < full/2 || w > full {
				t.Fatalf("backoff(%d) = %v; want between %v and %v", attempt, w, full/2, full)
			}
		}
	}
}

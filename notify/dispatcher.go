package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// ReasonNotificationFailed is the reason of the Warning Event recorded on
// a Rollout when a message to one of its targets could not be posted: once
// per target for each run of failures, again only after a success.
const ReasonNotificationFailed = "NotificationFailed"

// Options configure a Dispatcher. Zero values take the defaults given.
type Options struct {
	// Resolve finds a target's URL when its message is sent. Required.
	Resolve Resolver
	// ClusterDefault is the Secret of the target that gets every
	// Rollout's phase changes (--notification-secret); nil for none.
	ClusterDefault *types.NamespacedName
	// Events records NotificationFailed on the Rollout; nil records none.
	Events events.EventRecorder
	// Log gets a line per failed message, never its URL.
	Log logr.Logger
	// Client posts the messages; by default one that follows no
	// redirects.
	Client *http.Client

	// Workers post in parallel (4). Messages to one target about one
	// Rollout go through one worker, in order.
	Workers int
	// QueueSize bounds the messages waiting, over all workers (1024).
	// When a worker's share is full its oldest message is dropped.
	QueueSize int
	// Timeout bounds one request (10s).
	Timeout time.Duration
	// Attempts is how many times a message is tried (5).
	Attempts int
	// Backoff is the wait after the first failed attempt (1s); it
	// doubles after each further one, up to MaxBackoff (30s). Each wait
	// is jittered down by up to half.
	Backoff, MaxBackoff time.Duration
	// MaxRetryAfter caps the wait a receiver asks for with Retry-After
	// on 429 and 503 (2m).
	MaxRetryAfter time.Duration
	// DropLogInterval is the least time between two log lines about
	// dropped messages (1m).
	DropLogInterval time.Duration
}

// Delivery is one message to one target.
type Delivery struct {
	Target       Target
	Notification Notification
	// RolloutUID identifies the Rollout a NotificationFailed Event is
	// recorded on.
	RolloutUID types.UID
}

type job struct {
	Delivery
	queued time.Time
}

// Dispatcher posts notifications beside the state machine: Notify and
// Send queue messages and return at once; workers started by Start post
// them, with retries. A message still queued or being posted when Start's
// context ends is lost: nothing is drained.
type Dispatcher struct {
	o      Options
	client *http.Client
	queues []chan job
	// sleep waits between attempts; tests replace it.
	sleep func(context.Context, time.Duration) error

	sendMu sync.Mutex

	mu          sync.Mutex
	failing     map[string]bool // targets whose last message failed, by streakKey
	lastDropLog time.Time
	dropped     int // since the last log line about it
}

// maxFailing bounds the failure streaks remembered; past it they are
// forgotten, at the cost of one more Event each.
const maxFailing = 4096

// New returns a Dispatcher; its workers run once Start is called.
func New(o Options) *Dispatcher {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = 2 * time.Minute
	}
	if o.DropLogInterval <= 0 {
		o.DropLogInterval = time.Minute
	}
	d := &Dispatcher{o: o, client: o.Client, sleep: sleepCtx, failing: map[string]bool{}}
	if d.client == nil {
		d.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	per := max(1, o.QueueSize/o.Workers)
	for range o.Workers {
		d.queues = append(d.queues, make(chan job, per))
	}
	return d
}

// Notify queues the notification n of ro's phase change for each of ro's
// targets that selects it (the cluster default's phases are checked when
// its Secret is read). It never blocks.
func (d *Dispatcher) Notify(ro *backstopv1.Rollout, n Notification) {
	for _, t := range Targets(ro, d.o.ClusterDefault) {
		if !t.ClusterDefault && !Selects(t.Phases, n.Phase) {
			continue
		}
		d.Send(Delivery{Target: t, Notification: n, RolloutUID: ro.UID})
	}
}

// Send queues a message and returns at once. When the queue is full the
// oldest message waiting in it is dropped.
func (d *Dispatcher) Send(dl Delivery) {
	q := d.queues[d.shard(dl)]
	j := job{Delivery: dl, queued: time.Now()}
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	for {
		select {
		case q <- j:
			return
		default:
		}
		select {
		case old := <-q:
			d.drop(old)
		default:
		}
	}
}

// shard picks the worker of a message: one per target of a Rollout, so
// its messages arrive in order.
func (d *Dispatcher) shard(dl Delivery) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(streakKey(dl)))
	return int(h.Sum32() % uint32(len(d.queues)))
}

func streakKey(dl Delivery) string {
	return dl.Notification.Namespace + "/" + dl.Notification.Rollout + "/" + dl.Target.Name
}

func (d *Dispatcher) drop(j job) {
	notificationsTotal.WithLabelValues(j.Target.typeLabel(), resultDropped).Inc()
	d.mu.Lock()
	d.dropped++
	now := time.Now()
	if now.Sub(d.lastDropLog) < d.o.DropLogInterval {
		d.mu.Unlock()
		return
	}
	n := d.dropped
	d.dropped, d.lastDropLog = 0, now
	d.mu.Unlock()
	d.o.Log.Info("Dropped notifications: the queue was full", "dropped", n, "queueSize", d.o.QueueSize)
}

// Start runs the workers until ctx ends; it implements manager.Runnable.
func (d *Dispatcher) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, q := range d.queues {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-q:
					d.deliver(ctx, j)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// deliver posts one message, trying again after failures that may pass.
func (d *Dispatcher) deliver(ctx context.Context, j job) {
	n, t := j.Notification, j.Target
	log := d.o.Log.WithValues("namespace", n.Namespace, "rollout", n.Rollout, "target", t.Name, "phase", n.Phase)
	typ := t.typeLabel()
	var err error
	attempt := 1
	for ; ; attempt++ {
		var wait time.Duration
		var ep Endpoint
		ep, err = d.o.Resolve(ctx, t)
		if err == nil {
			typ = string(ep.Type)
			if !Selects(ep.Phases, n.Phase) {
				return
			}
			var body []byte
			if body, err = Render(ep.Type, n); err != nil {
				err = Permanent(err)
			} else {
				wait, err = d.post(ctx, ep.URL, body)
			}
		}
		if err == nil {
			notificationsTotal.WithLabelValues(typ, resultSent).Inc()
			deliverySeconds.WithLabelValues(typ).Observe(time.Since(j.queued).Seconds())
			log.V(1).Info("Posted a notification", "type", typ, "attempts", attempt)
			d.setFailing(j.Delivery, false)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if IsPermanent(err) || attempt >= d.o.Attempts {
			break
		}
		if wait <= 0 {
			wait = d.backoff(attempt)
		}
		log.V(1).Info("Retrying a notification", "type", typ, "attempt", attempt, "wait", wait.String(), "error", err.Error())
		if d.sleep(ctx, wait) != nil {
			return
		}
	}
	notificationsTotal.WithLabelValues(typ, resultFailed).Inc()
	log.Error(err, "Failed to post a notification", "type", typ, "attempts", attempt)
	if d.setFailing(j.Delivery, true) && !t.ClusterDefault && d.o.Events != nil {
		ro := &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: n.Namespace, Name: n.Rollout, UID: j.RolloutUID}}
		// The action names the target: Kubernetes merges Events that
		// differ only in their note into one series, which would hide the
		// failures of a second target.
		d.o.Events.Eventf(ro, nil, "Warning", ReasonNotificationFailed, "Notify/"+t.Name,
			"Could not post the phase change to %s to notification target %q (%s) after %d attempt(s): %v", n.Phase, t.Name, typ, attempt, err)
	}
}

// setFailing records whether the last message to a target failed, and
// says whether a run of failures starts.
func (d *Dispatcher) setFailing(dl Delivery, failed bool) (started bool) {
	key := streakKey(dl)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !failed {
		delete(d.failing, key)
		return false
	}
	if d.failing[key] {
		return false
	}
	if len(d.failing) >= maxFailing {
		d.failing = map[string]bool{}
	}
	d.failing[key] = true
	return true
}

// backoff is the wait after the given failed attempt: Backoff doubled
// for each attempt before it, capped at MaxBackoff, less up to half at
// random.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	w := d.o.Backoff
	for i := 1; i < attempt && w < d.o.MaxBackoff; i++ {
		w *= 2
	}
	w = min(w, d.o.MaxBackoff)
	return w - rand.N(w/2+1)
}

// post makes one request. It returns the wait the receiver asked for, and
// an error that never contains the URL; a Permanent one for answers that
// trying again cannot change.
func (d *Dispatcher) post(ctx context.Context, rawURL string, body []byte) (time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return 0, Permanent(errors.New("the address is not a valid URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "backstop")
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, errors.New(redact(d.transportError(ctx, err), rawURL))
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return 0, nil
	}
	msg := "the receiver answered " + resp.Status
	if text := excerpt(head); text != "" {
		msg += ": " + text
	}
	if code >= 300 && code < 400 {
		msg += " (redirects are not followed)"
	}
	err = errors.New(redact(msg, rawURL))
	switch {
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return retryAfter(resp.Header.Get("Retry-After"), time.Now(), d.o.MaxRetryAfter), err
	case code >= 500:
		return 0, err
	}
	return 0, Permanent(err)
}

// transportError says in a few words why a request got no answer, without
// the URL that url.Error carries.
func (d *Dispatcher) transportError(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return "the manager is stopping"
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		return "the request failed: " + err.Error()
	}
	if ue.Timeout() || errors.Is(ue.Err, context.DeadlineExceeded) {
		return fmt.Sprintf("the receiver did not answer within %s", d.o.Timeout)
	}
	var op *net.OpError
	if errors.As(ue.Err, &op) {
		return "could not connect: " + op.Err.Error()
	}
	return "the request failed: " + ue.Err.Error()
}

// retryAfter is the wait a Retry-After header asks for (seconds or an
// HTTP date), at most limit; 0 when there is none.
func retryAfter(v string, now time.Time, limit time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var w time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		w = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		w = t.Sub(now)
	}
	if w <= 0 {
		return 0
	}
	return min(w, limit)
}

// excerpt is the start of a receiver's answer on one line.
func excerpt(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), ""))
	return truncate(strings.Join(strings.Fields(s), " "), 200)
}

// redact removes the URL, and its parts that may carry a credential
// (user information, path, query), from s.
func redact(s, rawURL string) string {
	const mark = "[redacted]"
	parts := []string{rawURL}
	if u, err := url.Parse(rawURL); err == nil {
		parts = append(parts, u.String())
		if u.User != nil {
			parts = append(parts, u.User.String())
		}
		if p := u.EscapedPath(); len(p) > 1 {
			parts = append(parts, p, u.Path)
		}
		if u.RawQuery != "" {
			parts = append(parts, u.RawQuery)
		}
	}
	for _, p := range parts {
		if len(p) > 1 {
			s = strings.ReplaceAll(s, p, mark)
		}
	}
	return s
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

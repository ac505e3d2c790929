// Package hooks makes the HTTP calls of a Rollout's hooks (spec.hooks) and
// judges their answers. A Runner makes each call once, in the background,
// so that the state machine only ever reads answers and never waits on a
// receiver; a rollback in particular never waits on a hook.
package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"backstop.dev/backstop/internal/text"
)

// Result is what an answer means.
type Result string

const (
	// Pass: the receiver answered 2xx.
	Pass Result = "Pass"
	// Fail: the receiver answered with another status.
	Fail Result = "Fail"
	// Inconclusive: every attempt timed out or could not connect.
	Inconclusive Result = "Inconclusive"
)

// Request is one hook call.
type Request struct {
	// URL to POST to. It may carry a token: it never appears in an
	// Answer's message.
	URL string
	// Body is the JSON body.
	Body []byte
	// Timeout bounds each attempt; zero means DefaultTimeout.
	Timeout time.Duration
	// Attempts is how many times a call that times out or cannot connect
	// is made; zero means one.
	Attempts int
	// Backoff is the wait before the second attempt, doubled for each
	// later one up to MaxBackoff; zero means DefaultBackoff.
	Backoff time.Duration
}

// Answer is the outcome of a call.
type Answer struct {
	Result Result
	// Status is the HTTP status of the last answer; 0 when none came.
	Status int
	// Message says what the receiver answered (its status and the start
	// of its body) or why it could not be reached.
	Message string
	// Attempts counts the requests made.
	Attempts int
	// Time is when the call ended.
	Time time.Time
}

// Defaults of a Request.
const (
	DefaultTimeout = 10 * time.Second
	DefaultBackoff = time.Second
	MaxBackoff     = 30 * time.Second
	// maxMessage bounds an Answer's message (the API's MaxLength).
	maxMessage = 1024
	// maxBody is how much of a receiver's body is read.
	maxBody = 64 << 10
)

// Call makes the request, trying again after a time-out or a failure to
// connect, and judges the answer: 2xx passes, any other status fails, and
// no answer after every attempt is inconclusive. It returns early, as
// inconclusive, when ctx ends.
func Call(ctx context.Context, c *http.Client, req Request) Answer {
	attempts := max(req.Attempts, 1)
	wait := req.Backoff
	if wait <= 0 {
		wait = DefaultBackoff
	}
	var a Answer
	for a.Attempts < attempts {
		if a.Attempts > 0 {
			select {
			case <-ctx.Done():
				return ended(a, Inconclusive, 0, a.Message+"; stopped: "+ctx.Err().Error())
			case <-time.After(wait):
			}
			wait = min(2*wait, MaxBackoff)
		}
		a.Attempts++
		status, body, err := post(ctx, c, req)
		switch {
		case err != nil:
			a.Message = fmt.Sprintf("attempt %d of %d: %s", a.Attempts, attempts, err)
			continue
		case status >= 200 && status < 300:
			return ended(a, Pass, status, answered(status, body))
		default:
			return ended(a, Fail, status, answered(status, body))
		}
	}
	return ended(a, Inconclusive, 0, a.Message)
}

func ended(a Answer, r Result, status int, msg string) Answer {
	a.Result, a.Status, a.Message, a.Time = r, status, text.Truncate(msg, maxMessage), time.Now()
	return a
}

// post makes one attempt. Its errors never carry the URL.
func post(ctx context.Context, c *http.Client, req Request) (int, []byte, error) {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return 0, nil, errors.New("the URL does not parse")
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "backstop-hooks")
	resp, err := c.Do(r)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL
		}
		return 0, nil, withoutAddress(err, timeout)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return resp.StatusCode, body, nil
}

// withoutAddress describes a failed request without the URL, host or
// address it went to: a hook's URL may be a credential.
func withoutAddress(err error, timeout time.Duration) error {
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer within %s", timeout)
	case errors.As(err, &dns):
		return errors.New("the host name does not resolve")
	case errors.As(err, &op):
		return fmt.Errorf("%s: %v", op.Op, op.Err)
	}
	return err
}

// answered describes an answer: its status and the start of its body on
// one line.
func answered(status int, body []byte) string {
	msg := fmt.Sprintf("HTTP %d", status)
	if t := strings.Join(strings.Fields(string(body)), " "); t != "" {
		msg += ": " + text.Truncate(t, 200)
	}
	return msg
}

// Runner makes calls in the background, once per key, and keeps their
// answers for a while so that a reconcile whose status write failed finds
// the answer again instead of calling twice.
type Runner struct {
	// Client makes the requests; nil uses a client without a timeout of
	// its own (each Request has one).
	Client *http.Client
	// Done, when set, is called (outside the Runner's lock) when a call has
	// ended, with the key it was started under.
	Done func(key string)
	// Keep is how long an answer is kept after the call ended; zero means
	// DefaultKeep.
	Keep time.Duration

	mu    sync.Mutex
	calls map[string]*call
}

// DefaultKeep is how long a Runner keeps an answer.
const DefaultKeep = 15 * time.Minute

type call struct {
	done   bool
	answer Answer
}

// Start makes the call for key in the background unless one was already
// started for it (and its answer is still kept).
func (r *Runner) Start(ctx context.Context, key string, req Request) {
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[string]*call{}
	}
	r.sweep(time.Now())
	if _, ok := r.calls[key]; ok {
		r.mu.Unlock()
		return
	}
	c := &call{}
	r.calls[key] = c
	r.mu.Unlock()
	client := r.Client
	if client == nil {
		client = &http.Client{}
	}
	go func() {
		a := Call(context.WithoutCancel(ctx), client, req)
		r.mu.Lock()
		c.done, c.answer = true, a
		r.mu.Unlock()
		if r.Done != nil {
			r.Done(key)
		}
	}()
}

// Answer returns the answer of the call started for key; started says a
// call was started for it, done that it has ended.
func (r *Runner) Answer(key string) (a Answer, started, done bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.calls[key]
	if !ok {
		return Answer{}, false, false
	}
	return c.answer, true, c.done
}

// sweep forgets the answers kept longer than Keep. r.mu is held.
func (r *Runner) sweep(now time.Time) {
	keep := r.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	for k, c := range r.calls {
		if c.done && now.Sub(c.answer.Time) > keep {
			delete(r.calls, k)
		}
	}
}

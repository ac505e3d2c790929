package hooks_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"backstop.dev/backstop/hooks"
)

// token is part of every receiver's URL: it must never show in an answer.
const token = "/hook/s3cr3t-t0ken"

func TestCall(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name         string
		handler      http.HandlerFunc
		url          string // instead of the receiver's
		req          hooks.Request
		wantResult   hooks.Result
		wantStatus   int
		wantAttempts int
		wantMessage  string
	}{{
		name: "2xx passes",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, "load test\nstarted")
		},
		wantResult:   hooks.Pass,
		wantStatus:   http.StatusAccepted,
		wantAttempts: 1,
		wantMessage:  "HTTP 202: load test started",
	}, {
		name: "another status fails at once, without another attempt",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "gate closed", http.StatusServiceUnavailable)
		},
		req:          hooks.Request{Attempts: 3},
		wantResult:   hooks.Fail,
		wantStatus:   http.StatusServiceUnavailable,
		wantAttempts: 1,
		wantMessage:  "HTTP 503: gate closed",
	}, {
		name:         "no answer within the timeout is tried again, then inconclusive",
		handler:      func(_ http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body); <-r.Context().Done() },
		req:          hooks.Request{Attempts: 2, Timeout: 50 * time.Millisecond, Backoff: time.Millisecond},
		wantResult:   hooks.Inconclusive,
		wantAttempts: 2,
		wantMessage:  "attempt 2 of 2: no answer within 50ms",
	}, {
		name:         "a receiver that refuses connections is inconclusive",
		url:          closed.URL + token,
		req:          hooks.Request{Attempts: 2, Backoff: time.Millisecond},
		wantResult:   hooks.Inconclusive,
		wantAttempts: 2,
		wantMessage:  "connection refused",
	}, {
		name:         "a long body is cut",
		handler:      func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, strings.Repeat("é", 500)) },
		wantResult:   hooks.Pass,
		wantStatus:   http.StatusOK,
		wantAttempts: 1,
		wantMessage:  "HTTP 200: " + strings.Repeat("é", 98) + "…",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			req.Body = []byte(`{"hook":"load"}`)
			req.URL = tc.url
			if tc.handler != nil {
				srv := httptest.NewServer(tc.handler)
				t.Cleanup(srv.Close)
				req.URL = srv.URL + token
			}
			a := hooks.Call(context.Background(), &http.Client{}, req)
			if a.Result != tc.wantResult || a.Status != tc.wantStatus || a.Attempts != tc.wantAttempts {
				t.Errorf("answer %+v; want %s, status %d after %d attempts", a, tc.wantResult, tc.wantStatus, tc.wantAttempts)
			}
			if !strings.Contains(a.Message, tc.wantMessage) {
				t.Errorf("message %q; want it to contain %q", a.Message, tc.wantMessage)
			}
			if strings.Contains(a.Message, "s3cr3t") || strings.Contains(a.Message, "127.0.0.1") {
				t.Errorf("message %q shows the URL", a.Message)
			}
		})
	}
}

func TestCallPostsTheBody(t *testing.T) {
	var got, contentType string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, contentType = r.Method+" "+string(b), r.Header.Get("Content-Type")
	}))
	t.Cleanup(srv.Close)
	hooks.Call(context.Background(), &http.Client{}, hooks.Request{URL: srv.URL, Body: []byte(`{"hook":"load"}`)})
	if got != `POST {"hook":"load"}` || contentType != "application/json" {
		t.Errorf("receiver got %q (%s); want POST of the JSON body", got, contentType)
	}
}

// TestRunnerCallsOncePerKey: starting a key again while its call runs, or
// after it ended, makes no second request; the answer is kept.
func TestRunnerCallsOncePerKey(t *testing.T) {
	release := make(chan struct{})
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		<-release
	}))
	t.Cleanup(srv.Close)
	done := make(chan string, 1)
	r := &hooks.Runner{Done: func(key string) { done <- key }}
	req := hooks.Request{URL: srv.URL}
	r.Start(context.Background(), "ns/app@abc/load", req)
	if _, started, ended := r.Answer("ns/app@abc/load"); !started || ended {
		t.Fatalf("right after Start: started=%t done=%t; want a running call", started, ended)
	}
	r.Start(context.Background(), "ns/app@abc/load", req)
	close(release)
	if key := <-done; key != "ns/app@abc/load" {
		t.Errorf("Done got key %q", key)
	}
	r.Start(context.Background(), "ns/app@abc/load", req)
	a, started, ended := r.Answer("ns/app@abc/load")
	if !started || !ended || a.Result != hooks.Pass {
		t.Errorf("answer %+v (started=%t done=%t); want a kept Pass", a, started, ended)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("the receiver got %d requests; want 1", n)
	}
	if _, started, _ := r.Answer("ns/app@abc/other"); started {
		t.Errorf("a key never started reports a call")
	}
}

// TestRunnerForgetsOldAnswers: past Keep an answer is dropped, and the
// key may be called again.
func TestRunnerForgetsOldAnswers(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
	t.Cleanup(srv.Close)
	done := make(chan string, 2)
	r := &hooks.Runner{Keep: time.Nanosecond, Done: func(key string) { done <- key }}
	r.Start(context.Background(), "k", hooks.Request{URL: srv.URL})
	<-done
	time.Sleep(time.Millisecond)
	r.Start(context.Background(), "k", hooks.Request{URL: srv.URL})
	<-done
	if n := requests.Load(); n != 2 {
		t.Errorf("the receiver got %d requests; want 2 once the first answer was forgotten", n)
	}
}

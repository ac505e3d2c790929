package loadgen_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"backstop.dev/backstop/test/app"
	"backstop.dev/backstop/test/loadgen"
)

// server starts an HTTP server on 127.0.0.1 that t stops.
func server(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// answer writes status with version in X-App-Version.
func answer(w http.ResponseWriter, status int, version string) {
	w.Header().Set(loadgen.VersionHeader, version)
	w.WriteHeader(status)
	fmt.Fprintln(w, version)
}

func newGenerator(t *testing.T, cfg loadgen.Config) *loadgen.Generator {
	t.Helper()
	g, err := loadgen.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return g
}

// start runs g in the background; the returned function waits for Run and
// fails the test if it does not return within a minute.
func start(t *testing.T, ctx context.Context, g *loadgen.Generator) (wait func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	return func() {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run() = %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("Run did not return")
		}
	}
}

func TestCountsVersionsAndStatuses(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		switch i := n.Add(1); {
		case i%4 == 0:
			answer(w, http.StatusServiceUnavailable, "v2")
		case i%2 == 0:
			answer(w, http.StatusOK, "v2")
		default:
			answer(w, http.StatusOK, "v1")
		}
	})
	g := newGenerator(t, loadgen.Config{URL: srv.URL + "/", Rate: 500, Count: 40})
	start(t, t.Context(), g)()

	tot := g.Totals()
	if tot.Requests != 40 || tot.Failures != 0 || tot.Errors5xx != 10 {
		t.Errorf("totals: requests=%d failures=%d 5xx=%d, want 40, 0, 10", tot.Requests, tot.Failures, tot.Errors5xx)
	}
	if want := map[string]int{"v1": 20, "v2": 20}; !maps.Equal(tot.ByVersion, want) {
		t.Errorf("by version = %v, want %v", tot.ByVersion, want)
	}
	if want := map[int]int{200: 30, 503: 10}; !maps.Equal(tot.ByStatus, want) {
		t.Errorf("by status = %v, want %v", tot.ByStatus, want)
	}
	if got := n.Load(); got != 40 {
		t.Errorf("the server got %d requests, want exactly the count 40", got)
	}
	if res := g.Results(); len(res) != 40 {
		t.Errorf("%d results, want 40", len(res))
	}
	if tot.Started.IsZero() || tot.Stopped.Before(tot.Started) {
		t.Errorf("started %v, stopped %v", tot.Started, tot.Stopped)
	}
	if g.Running() {
		t.Error("Running() after Run returned")
	}
	if err := g.Run(t.Context()); err == nil {
		t.Error("a second Run succeeded, want an error")
	}
}

func TestSendsHostHeader(t *testing.T) {
	t.Parallel()
	var hosts sync.Map
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		hosts.Store(r.Host, true)
		answer(w, http.StatusOK, "v1")
	})
	g := newGenerator(t, loadgen.Config{URL: srv.URL + "/path?q=1", Host: "app.demo.test", Rate: 200, Count: 5})
	start(t, t.Context(), g)()
	var got []string
	hosts.Range(func(k, _ any) bool { got = append(got, k.(string)); return true })
	if len(got) != 1 || got[0] != "app.demo.test" {
		t.Errorf("Host headers seen = %q, want only app.demo.test", got)
	}
}

// TestLast5xxWhenServerRecovers runs traffic against a server that answers
// 500 as v1 until a known time and 200 as v2 from then on.
func TestLast5xxWhenServerRecovers(t *testing.T) {
	t.Parallel()
	// A request is sent before it is handled, so the last 5xx is sent before
	// the flip and the first v2 only shortly before it at the earliest.
	// Slack covers a busy machine holding up the generator or the server.
	const slack = 500 * time.Millisecond
	flip := time.Now().Add(700 * time.Millisecond)
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		if time.Now().Before(flip) {
			answer(w, http.StatusInternalServerError, "v1")
			return
		}
		answer(w, http.StatusOK, "v2")
	})
	g := newGenerator(t, loadgen.Config{URL: srv.URL, Rate: 100})
	ctx, cancel := context.WithCancel(t.Context())
	wait := start(t, ctx, g)
	eventually(t, "20 requests sent after the flip", func() bool { return g.Between(flip, time.Now()).Requests >= 20 })
	cancel()
	wait()

	last, ok := g.Last5xx()
	if !ok {
		t.Fatal("Last5xx() found none")
	}
	if !last.Before(flip) || flip.Sub(last) > slack {
		t.Errorf("last 5xx sent %s before the flip, want within (0, %s]", flip.Sub(last), slack)
	}
	firstV2, ok := g.FirstSeen("v2")
	if !ok {
		t.Fatal("FirstSeen(v2) found none")
	}
	if d := firstV2.Sub(flip); d < -slack || d > slack {
		t.Errorf("v2 first seen %s after the flip, want within ±%s", d, slack)
	}
	if _, ok := g.FirstSeen("v3"); ok {
		t.Error("FirstSeen(v3) found a version that never answered")
	}

	// The same answers, from the raw results.
	var want5xx, wantV2 time.Time
	for _, r := range g.Results() {
		if r.Status >= 500 && r.Sent.After(want5xx) {
			want5xx = r.Sent
		}
		if r.Version == "v2" && (wantV2.IsZero() || r.Sent.Before(wantV2)) {
			wantV2 = r.Sent
		}
	}
	if !last.Equal(want5xx) || !firstV2.Equal(wantV2) {
		t.Errorf("Last5xx() = %s and FirstSeen(v2) = %s, the results say %s and %s", last, firstV2, want5xx, wantV2)
	}

	after := g.Between(flip, time.Now())
	if after.Errors5xx != 0 || after.Requests < 20 || after.ByVersion["v2"] != after.Requests {
		t.Errorf("requests sent after the flip: %+v, want at least 20, all from v2", after)
	}
	before := g.Between(time.Time{}, last.Add(time.Nanosecond))
	if before.Requests == 0 || before.ByVersion["v1"] == 0 || before.Errors5xx != before.ByVersion["v1"] {
		t.Errorf("requests sent up to the last 5xx: %+v, want the v1 ones all 5xx", before)
	}
}

// eventually polls ok until it holds, failing the test after 30s.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSecondsBuckets(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			answer(w, http.StatusBadGateway, "v1")
			return
		}
		answer(w, http.StatusOK, "v1")
	})
	const rate = 50
	g := newGenerator(t, loadgen.Config{URL: srv.URL, Rate: rate, Duration: 2200 * time.Millisecond})
	start(t, t.Context(), g)()

	secs := g.Seconds()
	if len(secs) < 3 || len(secs) > 4 {
		t.Fatalf("%d seconds of traffic over 2.2s, want 3 or 4", len(secs))
	}
	var sum loadgen.Counts
	for i, s := range secs {
		if i > 0 && !s.Start.Equal(secs[i-1].Start.Add(time.Second)) {
			t.Errorf("second %d starts at %s, want one second after %s", i, s.Start, secs[i-1].Start)
		}
		if !s.Start.Equal(s.Start.Truncate(time.Second)) {
			t.Errorf("second %d starts at %s, not on a whole second", i, s.Start)
		}
		if s.Requests > 2*rate {
			t.Errorf("second %d has %d requests at %d/s", i, s.Requests, rate)
		}
		if s.Requests != s.ByVersion["v1"] {
			t.Errorf("second %d: %d requests but %v by version", i, s.Requests, s.ByVersion)
		}
		sum.Requests += s.Requests
		sum.Errors5xx += s.Errors5xx
	}
	// Each request is in the second it was sent in.
	perSecond := map[int64]int{}
	for _, r := range g.Results() {
		perSecond[r.Sent.Unix()]++
	}
	for i, s := range secs {
		if got, want := s.Requests, perSecond[s.Start.Unix()]; got != want {
			t.Errorf("second %d (%s) counts %d requests, %d were sent in it", i, s.Start.Format(time.TimeOnly), got, want)
		}
	}
	tot := g.Totals()
	if sum.Requests != tot.Requests || sum.Errors5xx != tot.Errors5xx {
		t.Errorf("seconds add up to %d requests and %d 5xx, totals say %d and %d",
			sum.Requests, sum.Errors5xx, tot.Requests, tot.Errors5xx)
	}
	if tot.Errors5xx != tot.Requests/3 {
		t.Errorf("%d 5xx in %d requests, want every third", tot.Errors5xx, tot.Requests)
	}
	// Requests are due every 20ms from 0 up to 2.18s.
	if tot.Requests+tot.Skipped != 110 {
		t.Errorf("%d requests sent and %d skipped in 2.2s at %d/s, want 110 in all", tot.Requests, tot.Skipped, rate)
	}
}

// TestConcurrencyBound holds every request at the server: no more than
// Concurrency are ever in flight, and the requests due meanwhile are
// skipped.
func TestConcurrencyBound(t *testing.T) {
	t.Parallel()
	const concurrency = 3
	var inFlight, most atomic.Int64
	release := make(chan struct{})
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		answer(w, http.StatusOK, "v1")
	})
	g := newGenerator(t, loadgen.Config{URL: srv.URL, Rate: 200, Concurrency: concurrency, Duration: 300 * time.Millisecond})
	wait := start(t, t.Context(), g)
	// 60 requests are due in 300ms; all but the first 3 find no free slot.
	const wantSkipped = 300/5 - concurrency
	eventually(t, "the requests due to be skipped", func() bool { return g.Totals().Skipped >= wantSkipped })
	close(release)
	wait()

	if got := most.Load(); got != concurrency {
		t.Errorf("at most %d requests were in flight, want %d", got, concurrency)
	}
	tot := g.Totals()
	if tot.Requests != concurrency || tot.ByStatus[200] != concurrency {
		t.Errorf("%d requests recorded (%v), want the %d that were let through", tot.Requests, tot.ByStatus, concurrency)
	}
	if tot.Skipped != wantSkipped {
		t.Errorf("%d requests skipped, want %d", tot.Skipped, wantSkipped)
	}
}

// TestStopsOnCancel reads the generator while it runs without limit, then
// cancels it: Run returns at once and requests cut short are not recorded.
func TestStopsOnCancel(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > 10 {
			<-r.Context().Done() // hang until the client leaves
			return
		}
		answer(w, http.StatusOK, "v1")
	})
	g := newGenerator(t, loadgen.Config{URL: srv.URL, Rate: 100, Concurrency: 50, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	wait := start(t, ctx, g)

	deadline := time.Now().Add(30 * time.Second)
	for n.Load() < 20 || g.Totals().Requests < 10 {
		// Reads while the generator writes; the race detector checks them.
		_ = g.Totals()
		_ = g.Seconds()
		_ = g.Results()
		_, _ = g.Last5xx()
		_, _ = g.FirstSeen("v1")
		_ = g.Between(time.Time{}, time.Now())
		if time.Now().After(deadline) {
			t.Fatal("the server never got 20 requests")
		}
		time.Sleep(time.Millisecond)
	}
	if !g.Running() {
		t.Error("Running() = false during the run")
	}
	cancel()
	stopped := time.Now()
	wait()
	if took := time.Since(stopped); took > 5*time.Second {
		t.Errorf("Run took %s to return after cancel", took)
	}
	tot := g.Totals()
	if tot.Requests != 10 || tot.Failures != 0 {
		t.Errorf("recorded %d requests, %d failed, want the 10 answered and no failures", tot.Requests, tot.Failures)
	}
	// A request sent before the cancel may still reach the server a little
	// later; after that, nothing more arrives.
	time.Sleep(300 * time.Millisecond)
	sent := n.Load()
	time.Sleep(300 * time.Millisecond)
	if n.Load() != sent {
		t.Error("requests were still sent after Run returned")
	}
}

func TestRecordsFailures(t *testing.T) {
	t.Parallel()
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	})
	g := newGenerator(t, loadgen.Config{URL: srv.URL, Rate: 100, Count: 3, Timeout: 50 * time.Millisecond})
	start(t, t.Context(), g)()
	tot := g.Totals()
	if tot.Requests != 3 || tot.Failures != 3 || len(tot.ByStatus) != 0 {
		t.Errorf("totals %+v, want 3 requests that all failed", tot)
	}
	for _, r := range g.Results() {
		if r.Status != 0 || r.Err == "" || r.Latency < 50*time.Millisecond {
			t.Errorf("result %+v, want status 0, an error and a latency of at least the timeout", r)
		}
	}
	if _, ok := g.Last5xx(); ok {
		t.Error("a request without answer counted as a 5xx")
	}
}

// TestDoesNotFollowRedirects records a redirect to an address outside the
// allowed ranges instead of following it.
func TestDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(loadgen.VersionHeader, "v1")
		http.Redirect(w, r, "http://192.0.2.1/", http.StatusFound)
	})
	g := newGenerator(t, loadgen.Config{URL: srv.URL, Rate: 100, Count: 2})
	start(t, t.Context(), g)()
	if tot := g.Totals(); tot.ByStatus[http.StatusFound] != 2 || tot.Failures != 0 {
		t.Errorf("totals %+v, want two 302 answers", tot)
	}
}

func TestRefusesTargets(t *testing.T) {
	t.Parallel()
	allow := netip.MustParsePrefix("10.99.0.0/24")
	tests := []struct {
		name    string
		url     string
		allow   netip.Prefix
		wantErr string // empty: accepted
	}{
		{name: "loopback", url: "http://127.0.0.1:8080/"},
		{name: "other loopback address", url: "http://127.8.9.10/"},
		{name: "localhost", url: "http://localhost:8080/"},
		{name: "mapped loopback", url: "http://[::ffff:127.0.0.1]:80/"},
		{name: "in the allowed range", url: "http://10.99.0.5:8080/", allow: allow},
		{name: "outside the allowed range", url: "http://10.99.1.5:8080/", allow: allow, wantErr: "refusing"},
		{name: "private address", url: "http://10.1.2.3/", wantErr: "refusing"},
		{name: "public address", url: "http://192.0.2.10/", wantErr: "refusing"},
		{name: "unspecified address", url: "http://0.0.0.0:8080/", wantErr: "refusing"},
		{name: "IPv6 loopback", url: "http://[::1]:8080/", wantErr: "refusing"},
		{name: "name", url: "http://example.com/", wantErr: "not an IP address"},
		{name: "scheme", url: "ftp://127.0.0.1/", wantErr: "not http or https"},
		{name: "relative", url: "/path", wantErr: "not http or https"},
		{name: "range too wide", url: "http://127.0.0.1/", allow: netip.MustParsePrefix("10.0.0.0/8"), wantErr: "wider than a /16"},
		{name: "everything", url: "http://127.0.0.1/", allow: netip.MustParsePrefix("0.0.0.0/0"), wantErr: "wider than a /16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadgen.New(loadgen.Config{URL: tt.url, Rate: 1, Allow: tt.allow})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New(%s) refused: %v", tt.url, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New(%s) error = %v, want one containing %q", tt.url, err, tt.wantErr)
			}
		})
	}
}

func TestRefusesBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  loadgen.Config
	}{
		{name: "no rate", cfg: loadgen.Config{URL: "http://127.0.0.1/"}},
		{name: "negative rate", cfg: loadgen.Config{URL: "http://127.0.0.1/", Rate: -1}},
		{name: "infinite rate", cfg: loadgen.Config{URL: "http://127.0.0.1/", Rate: math.Inf(1)}},
		{name: "NaN rate", cfg: loadgen.Config{URL: "http://127.0.0.1/", Rate: math.NaN()}},
		{name: "negative concurrency", cfg: loadgen.Config{URL: "http://127.0.0.1/", Rate: 1, Concurrency: -1}},
		{name: "negative count", cfg: loadgen.Config{URL: "http://127.0.0.1/", Rate: 1, Count: -1}},
		{name: "negative duration", cfg: loadgen.Config{URL: "http://127.0.0.1/", Rate: 1, Duration: -time.Second}},
		{name: "no URL", cfg: loadgen.Config{Rate: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := loadgen.New(tt.cfg); err == nil {
				t.Errorf("New(%+v) accepted it", tt.cfg)
			}
		})
	}
}

// TestLocalhostIsCheckedWhenDialled sends to localhost: whatever addresses
// the name resolves to, only the loopback ones are dialled.
func TestLocalhostIsCheckedWhenDialled(t *testing.T) {
	t.Parallel()
	srv := server(t, func(w http.ResponseWriter, r *http.Request) { answer(w, http.StatusOK, "v1") })
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	g := newGenerator(t, loadgen.Config{URL: "http://localhost:" + port + "/", Rate: 100, Count: 2})
	start(t, t.Context(), g)()
	if tot := g.Totals(); tot.ByStatus[http.StatusOK] != 2 {
		t.Errorf("totals %+v, want two answers from 127.0.0.1", tot)
	}
}

// TestAgainstDemoApp runs the generator against the real demo application
// as a faulty v3 that fails exactly every fifth request.
func TestAgainstDemoApp(t *testing.T) {
	t.Parallel()
	a, err := app.New(app.Config{Version: "v3", Faults: app.Faults{ErrorEvery: 5, Latency: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	g := newGenerator(t, loadgen.Config{URL: srv.URL, Rate: 200, Count: 50})
	start(t, t.Context(), g)()

	tot := g.Totals()
	if tot.Requests != 50 || tot.Errors5xx != 10 || tot.ByVersion["v3"] != 50 {
		t.Errorf("totals %+v, want 50 requests from v3 of which 10 are 5xx", tot)
	}
	for _, r := range g.Results() {
		if r.Latency < 5*time.Millisecond {
			t.Errorf("a request took %s, less than the app's added latency", r.Latency)
		}
	}
	if app.VersionHeader != loadgen.VersionHeader {
		t.Errorf("the app sets %s, the generator reads %s", app.VersionHeader, loadgen.VersionHeader)
	}
}

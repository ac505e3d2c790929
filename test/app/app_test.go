package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// answer is what a client saw of one request.
type answer struct {
	code    int
	version string
	body    string
	took    time.Duration
}

// get sends one GET to url. It may be called from any goroutine: a failed
// request fails the test and comes back with code 0.
func get(t *testing.T, client *http.Client, url string) answer {
	t.Helper()
	start := time.Now()
	resp, err := client.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return answer{}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("reading the answer of GET %s: %v", url, err)
		return answer{}
	}
	return answer{code: resp.StatusCode, version: resp.Header.Get(VersionHeader), body: string(body), took: time.Since(start)}
}

// getMany sends n GETs to url from workers goroutines.
func getMany(t *testing.T, client *http.Client, url string, n, workers int) []answer {
	t.Helper()
	answers := make([]answer, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				answers[i] = get(t, client, url)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return answers
}

// scrape reads the application's /metrics with the Prometheus text parser.
func scrape(t *testing.T, client *http.Client, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scraping: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// sample finds the metric of family name whose labels are exactly labels.
func sample(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("metric family %s missing; have %v", name, slices.Sorted(maps.Keys(mfs)))
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no %s%v in %v", name, labels, mf.GetMetric())
	return nil
}

func newApp(t *testing.T, cfg Config) *App {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return a
}

// TestVersions drives each version over a real HTTP server on 127.0.0.1 with
// the same faults configured, and checks what clients saw and what /metrics
// says: healthy versions ignore the faults, v3 applies them.
func TestVersions(t *testing.T) {
	t.Parallel()
	const (
		n       = 60
		every   = 4
		latency = 50 * time.Millisecond
	)
	faults := Faults{ErrorRate: 0.9, ErrorEvery: every, Latency: latency}
	tests := []struct {
		version    string
		wantErrors int
		slow       bool
	}{
		{version: "v1", wantErrors: 0},
		{version: "v2", wantErrors: 0},
		{version: "v3", wantErrors: n / every, slow: true},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			t.Parallel()
			a := newApp(t, Config{Version: tt.version, Faults: faults, Seed: 1})
			srv := httptest.NewServer(a.Handler())
			t.Cleanup(srv.Close)
			client := srv.Client()

			answers := getMany(t, client, srv.URL+"/", n, 10)
			codes := map[int]int{}
			for i, ans := range answers {
				codes[ans.code]++
				if ans.version != tt.version {
					t.Errorf("answer %d: %s = %q, want %q", i, VersionHeader, ans.version, tt.version)
				}
				if !strings.Contains(ans.body, tt.version) {
					t.Errorf("answer %d: body %q does not name %s", i, ans.body, tt.version)
				}
				if tt.slow && ans.took < latency {
					t.Errorf("answer %d took %s, want at least the added %s", i, ans.took, latency)
				}
			}
			want := map[int]int{http.StatusOK: n - tt.wantErrors}
			if tt.wantErrors > 0 {
				want[http.StatusInternalServerError] = tt.wantErrors
			}
			if fmt.Sprint(codes) != fmt.Sprint(want) {
				t.Errorf("status codes over %d requests = %v, want %v", n, codes, want)
			}

			mfs := scrape(t, client, srv.URL)
			for code, want := range map[string]int{"200": n - tt.wantErrors, "500": tt.wantErrors} {
				got := sample(t, mfs, "http_requests_total", map[string]string{"code": code, "version": tt.version}).GetCounter().GetValue()
				if got != float64(want) {
					t.Errorf("http_requests_total{code=%q} = %v, want %d", code, got, want)
				}
			}
			if mfs["http_requests_total"].GetType() != dto.MetricType_COUNTER {
				t.Errorf("http_requests_total is a %v, want a counter", mfs["http_requests_total"].GetType())
			}

			h := sample(t, mfs, "http_request_duration_seconds", map[string]string{"version": tt.version}).GetHistogram()
			if h.GetSampleCount() != n {
				t.Errorf("http_request_duration_seconds count = %d, want %d", h.GetSampleCount(), n)
			}
			var bounds []float64
			for _, b := range h.GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
			}
			// The text format ends every histogram with a +Inf bucket.
			if want := append(slices.Clone(DurationBuckets), math.Inf(1)); !slices.Equal(bounds, want) {
				t.Errorf("histogram buckets = %v, want %v", bounds, want)
			}
			mean := time.Duration(h.GetSampleSum() / float64(n) * float64(time.Second))
			if tt.slow && mean < latency {
				t.Errorf("mean observed duration %s, want at least the added %s", mean, latency)
			}
			if !tt.slow && mean >= latency/2 {
				t.Errorf("mean observed duration %s of a healthy version, want well under %s", mean, latency)
			}

			info := sample(t, mfs, "app_info", map[string]string{"version": tt.version})
			if info.GetGauge().GetValue() != 1 {
				t.Errorf("app_info = %v, want 1", info.GetGauge().GetValue())
			}

			health := get(t, client, srv.URL+"/healthz")
			if health.code != http.StatusOK || health.version != tt.version {
				t.Errorf("/healthz answered %d with version %q, want 200 and %q", health.code, health.version, tt.version)
			}
			// Neither /healthz nor /metrics is the application's traffic.
			mfs = scrape(t, client, srv.URL)
			if got := sample(t, mfs, "http_request_duration_seconds", map[string]string{"version": tt.version}).GetHistogram().GetSampleCount(); got != n {
				t.Errorf("after /healthz and /metrics, request count = %d, want still %d", got, n)
			}
		})
	}
}

// failures answers n requests with the handler alone and returns the
// numbers (from 1) of those answered 500.
func failures(t *testing.T, a *App, n int) []int {
	t.Helper()
	var failed []int
	for i := 1; i <= n; i++ {
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		switch rec.Code {
		case http.StatusOK:
		case http.StatusInternalServerError:
			failed = append(failed, i)
		default:
			t.Fatalf("request %d answered %d", i, rec.Code)
		}
	}
	return failed
}

func TestErrorEveryIsExact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		every int
		want  []int
	}{
		{every: 1, want: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{every: 3, want: []int{3, 6, 9, 12}},
		{every: 5, want: []int{5, 10}},
		{every: 13, want: nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.every), func(t *testing.T) {
			t.Parallel()
			a := newApp(t, Config{Version: "v3", Faults: Faults{ErrorRate: 0.5, ErrorEvery: tt.every}})
			if got := failures(t, a, 12); !slices.Equal(got, tt.want) {
				t.Errorf("requests answered 500 = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestErrorRateIsSeeded(t *testing.T) {
	t.Parallel()
	const n = 4000
	tests := []struct {
		rate float64
	}{{rate: 0}, {rate: 0.05}, {rate: 0.3}, {rate: 1}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.rate), func(t *testing.T) {
			t.Parallel()
			cfg := Config{Version: "v3", Faults: Faults{ErrorRate: tt.rate}, Seed: 42}
			first := failures(t, newApp(t, cfg), n)
			if again := failures(t, newApp(t, cfg), n); !slices.Equal(first, again) {
				t.Errorf("the same seed failed different requests")
			}
			got := float64(len(first)) / n
			// Four standard deviations of a binomial share.
			tolerance := 4 * math.Sqrt(tt.rate*(1-tt.rate)/n)
			if math.Abs(got-tt.rate) > tolerance {
				t.Errorf("share of 500s = %.4f, want %.2f ± %.4f", got, tt.rate, tolerance)
			}
			if tt.rate > 0 && tt.rate < 1 {
				cfg.Seed = 43
				if other := failures(t, newApp(t, cfg), n); slices.Equal(first, other) {
					t.Errorf("seeds 42 and 43 failed the same requests")
				}
			}
		})
	}
}

// TestClientGoneIsNotCounted checks that a request whose client leaves
// during the added latency is neither answered nor counted.
func TestClientGoneIsNotCounted(t *testing.T) {
	t.Parallel()
	a := newApp(t, Config{Version: "v3", Faults: Faults{Latency: time.Hour}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil))
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler kept sleeping after its client left")
	}
	mfs, err := a.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetHistogram().GetSampleCount(); c != 0 {
				t.Errorf("observed %d requests, want 0", c)
			}
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no version", cfg: Config{}, want: `unknown version ""`},
		{name: "unknown version", cfg: Config{Version: "v4"}, want: `unknown version "v4"`},
		{name: "rate above 1", cfg: Config{Version: "v3", Faults: Faults{ErrorRate: 1.5}}, want: "outside [0, 1]"},
		{name: "negative rate", cfg: Config{Version: "v1", Faults: Faults{ErrorRate: -0.1}}, want: "outside [0, 1]"},
		{name: "NaN rate", cfg: Config{Version: "v3", Faults: Faults{ErrorRate: math.NaN()}}, want: "outside [0, 1]"},
		{name: "negative error-every", cfg: Config{Version: "v3", Faults: Faults{ErrorEvery: -1}}, want: "negative"},
		{name: "negative latency", cfg: Config{Version: "v3", Faults: Faults{Latency: -time.Second}}, want: "negative"},
		{name: "negative shutdown timeout", cfg: Config{Version: "v1", ShutdownTimeout: -time.Second}, want: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	defaults := Config{Version: "v1", Listen: DefaultListen, ShutdownTimeout: DefaultShutdownTimeout,
		Faults: Faults{ErrorRate: DefaultErrorRate, Latency: DefaultLatency}}
	with := func(change func(*Config)) Config {
		c := defaults
		change(&c)
		return c
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    Config
		wantErr string
	}{
		{name: "defaults", args: []string{"--version=v1"}, want: defaults},
		{
			name: "flags",
			args: []string{"--version=v3", "--listen=10.0.0.7:8080", "--error-rate=0.1", "--error-every=7",
				"--latency=1s", "--seed=9", "--shutdown-timeout=3s"},
			want: Config{Version: "v3", Listen: "10.0.0.7:8080", Seed: 9, ShutdownTimeout: 3 * time.Second,
				Faults: Faults{ErrorRate: 0.1, ErrorEvery: 7, Latency: time.Second}},
		},
		{
			name: "environment",
			env: map[string]string{"APP_VERSION": "v2", "APP_LISTEN": "127.0.0.1:9", "APP_ERROR_RATE": "0.5",
				"APP_ERROR_EVERY": "2", "APP_LATENCY": "10ms", "APP_SEED": "5"},
			want: with(func(c *Config) {
				c.Version, c.Listen, c.Seed = "v2", "127.0.0.1:9", 5
				c.Faults = Faults{ErrorRate: 0.5, ErrorEvery: 2, Latency: 10 * time.Millisecond}
			}),
		},
		{
			name: "flag wins over environment",
			args: []string{"--version=v3", "--latency=1ms"},
			env:  map[string]string{"APP_VERSION": "v2", "APP_LATENCY": "10ms"},
			want: with(func(c *Config) { c.Version, c.Faults.Latency = "v3", time.Millisecond }),
		},
		{name: "version missing", wantErr: "--version (or APP_VERSION) is required"},
		{name: "unknown version", args: []string{"--version=v9"}, wantErr: `unknown version "v9"`},
		{name: "rate out of range", args: []string{"--version=v3", "--error-rate=2"}, wantErr: "outside [0, 1]"},
		{name: "bad environment", env: map[string]string{"APP_LATENCY": "soon"}, wantErr: `APP_LATENCY="soon"`},
		{name: "bad flag", args: []string{"--version=v1", "--latency=soon"}, wantErr: "invalid value"},
		{name: "stray argument", args: []string{"--version=v1", "extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("demo-app", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			got, err := ParseFlags(fs, tt.args, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFlags() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFlags(): %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseFlags() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestServeShutsDownGracefully cancels Serve's context while a slow request
// is in flight: the request is still answered, Serve returns nil, and the
// listener is closed.
func TestServeShutsDownGracefully(t *testing.T) {
	t.Parallel()
	const latency = 300 * time.Millisecond
	a := newApp(t, Config{Version: "v3", Faults: Faults{Latency: latency}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()

	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	answered := make(chan answer, 1)
	go func() {
		resp, err := client.Get(url + "/")
		if err != nil {
			answered <- answer{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		answered <- answer{code: resp.StatusCode, version: resp.Header.Get(VersionHeader), body: string(body)}
	}()
	// Wait until the request is being handled, then ask for shutdown.
	deadline := time.Now().Add(10 * time.Second)
	for a.decided() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the handler")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()

	select {
	case ans := <-answered:
		if ans.code != http.StatusOK || ans.version != "v3" {
			t.Errorf("the request in flight got %d %q (%s), want 200 from v3", ans.code, ans.version, ans.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight was not answered")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve() = %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := client.Get(url + "/healthz"); err == nil {
		t.Error("the server still answered after shutdown")
	}
}

// TestRunFailsOnBadListenAddress checks that Run reports a listen error
// rather than serving nowhere.
func TestRunFailsOnBadListenAddress(t *testing.T) {
	t.Parallel()
	err := Run(t.Context(), Config{Version: "v1", Listen: "127.0.0.1:notaport"})
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("Run() = %v, want a listen error", err)
	}
}

func (a *App) decided() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

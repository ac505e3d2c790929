// Package app is the demo application of the end-to-end stack and of
// `make demo`: an HTTP service whose behaviour comes from its version, so
// that a release from one version to the next is something an SLO can see.
//
//   - v1 and v2 are healthy: every request is answered 200 at once.
//   - v3 is faulty: it answers a share of requests with 500 (Faults.ErrorRate,
//     or exactly every Faults.ErrorEvery-th request) and adds
//     Faults.Latency to every request.
//
// Any other version is refused, so a misspelt manifest fails at start rather
// than serving as something it is not.
//
// The application serves
//
//   - every path except the two below: the application's traffic, answered
//     with a short text naming the version and the header X-App-Version;
//   - /healthz: 200 while the process serves, whatever the version;
//   - /metrics: the Prometheus metrics http_requests_total{code,version},
//     http_request_duration_seconds{version} and app_info{version}, counted
//     over the application's traffic only.
//
// The command test/app/cmd/demo-app runs it from flags (see ParseFlags).
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// VersionHeader is the response header that names the version that answered.
const VersionHeader = "X-App-Version"

// DefaultShutdownTimeout bounds how long Serve waits for requests in flight
// once its context ends.
const DefaultShutdownTimeout = 10 * time.Second

// faulty tells, for each known version, whether it misbehaves.
var faulty = map[string]bool{
	"v1": false,
	"v2": false,
	"v3": true,
}

// Faulty reports whether version is a known faulty version; ok is false for
// an unknown version.
func Faulty(version string) (isFaulty, ok bool) {
	isFaulty, ok = faulty[version]
	return isFaulty, ok
}

// Faults are what a faulty version does wrong. Healthy versions ignore them.
type Faults struct {
	// ErrorRate is the share of requests, from 0 to 1, answered 500. The
	// decision is drawn from an RNG seeded with Config.Seed.
	ErrorRate float64
	// ErrorEvery, when positive, replaces ErrorRate with an exact rule:
	// requests number ErrorEvery, 2*ErrorEvery, ... (counting from 1) are
	// answered 500 and no others.
	ErrorEvery int
	// Latency is added to every request before it is answered.
	Latency time.Duration
}

// Config is one instance of the application.
type Config struct {
	// Version is v1, v2 or v3.
	Version string
	// Listen is the address Run listens on, such as 10.244.0.5:8080.
	Listen string
	// Faults apply when Version is faulty.
	Faults Faults
	// Seed seeds the RNG of Faults.ErrorRate; zero seeds it at random.
	Seed uint64
	// ShutdownTimeout bounds the graceful shutdown; zero means
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Log receives the application's log lines; nil discards them.
	Log *slog.Logger
}

// App is the application: an http.Handler with its own metrics registry.
type App struct {
	version string
	faults  Faults // zero for a healthy version
	log     *slog.Logger

	shutdownTimeout time.Duration

	mu  sync.Mutex // guards n and rng
	n   uint64     // requests decided so far
	rng *rand.Rand

	registry *prometheus.Registry
	metrics  *metrics
	handler  http.Handler
}

// New checks cfg and builds the application.
func New(cfg Config) (*App, error) {
	isFaulty, ok := Faulty(cfg.Version)
	if !ok {
		return nil, fmt.Errorf("unknown version %q: want v1, v2 or v3", cfg.Version)
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, err
	}
	if cfg.ShutdownTimeout < 0 {
		return nil, fmt.Errorf("shutdown timeout %s is negative", cfg.ShutdownTimeout)
	}
	a := &App{
		version:         cfg.Version,
		log:             cfg.Log,
		shutdownTimeout: cfg.ShutdownTimeout,
		registry:        prometheus.NewRegistry(),
	}
	if isFaulty {
		a.faults = cfg.Faults
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.shutdownTimeout == 0 {
		a.shutdownTimeout = DefaultShutdownTimeout
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	a.rng = rand.New(rand.NewPCG(seed, seed))
	a.metrics = newMetrics(a.registry, a.version)

	mux := http.NewServeMux()
	mux.HandleFunc("/", a.serveApp)
	mux.HandleFunc("/healthz", a.serveHealthz)
	mux.Handle("/metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	a.handler = mux
	return a, nil
}

func (f Faults) validate() error {
	switch {
	case math.IsNaN(f.ErrorRate) || f.ErrorRate < 0 || f.ErrorRate > 1:
		return fmt.Errorf("error rate %v is outside [0, 1]", f.ErrorRate)
	case f.ErrorEvery < 0:
		return fmt.Errorf("error-every %d is negative", f.ErrorEvery)
	case f.Latency < 0:
		return fmt.Errorf("latency %s is negative", f.Latency)
	}
	return nil
}

// Version is the version the application serves as.
func (a *App) Version() string { return a.version }

// Faults are the faults the application applies: the configured ones for a
// faulty version, none for a healthy one.
func (a *App) Faults() Faults { return a.faults }

// Handler serves the application's traffic, /healthz and /metrics.
func (a *App) Handler() http.Handler { return a.handler }

// Gatherer gathers the metrics /metrics serves.
func (a *App) Gatherer() prometheus.Gatherer { return a.registry }

// fail decides whether the next request is answered 500.
func (a *App) fail() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	switch {
	case a.faults.ErrorEvery > 0:
		return a.n%uint64(a.faults.ErrorEvery) == 0
	case a.faults.ErrorRate > 0:
		return a.rng.Float64() < a.faults.ErrorRate
	}
	return false
}

func (a *App) serveApp(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	fail := a.fail()
	if a.faults.Latency > 0 {
		t := time.NewTimer(a.faults.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The client left; nobody saw an answer, so nothing is counted.
			t.Stop()
			return
		}
	}
	w.Header().Set(VersionHeader, a.version)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	code := http.StatusOK
	body := "demo app " + a.version + "\n"
	if fail {
		code = http.StatusInternalServerError
		body = "demo app " + a.version + ": injected failure\n"
	}
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
	a.metrics.observe(code, time.Since(start))
}

func (a *App) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set(VersionHeader, a.version)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// Serve serves the application on ln until ctx ends, then shuts down
// gracefully: it stops accepting connections and waits, at most the
// shutdown timeout, for the requests in flight. It returns nil after a
// clean shutdown.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelError),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	a.log.Info("Started serving", "version", a.version, "address", ln.Addr().String(),
		"errorRate", a.faults.ErrorRate, "errorEvery", a.faults.ErrorEvery, "latency", a.faults.Latency.String())

	select {
	case err := <-served:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	a.log.Info("Stopped accepting connections; draining requests in flight", "timeout", a.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	a.log.Info("Stopped serving")
	return nil
}

// Run listens on cfg.Listen and serves the application until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	return a.Serve(ctx, ln)
}

// metrics are the application's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec
	duration prometheus.Observer
	version  string
}

// DurationBuckets are the buckets of http_request_duration_seconds, in
// seconds: fine enough around the usual latency objectives (50ms to 1s)
// for a histogram_quantile or a "share under X" SLO.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2}

func newMetrics(reg prometheus.Registerer, version string) *metrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total",
		Help: "Requests of the application's traffic answered, by status code and version.",
	}, []string{"code", "version"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "http_request_duration_seconds",
		Help:    "Time to answer a request of the application's traffic, by version.",
		Buckets: DurationBuckets,
	}, []string{"version"})
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "app_info",
		Help: "Always 1; its label names the version this process serves as.",
	}, []string{"version"})
	reg.MustRegister(requests, duration, info)

	// Both codes exist from the start, at zero, so that an error ratio is 0
	// rather than an empty result until the first failure.
	for _, code := range []int{http.StatusOK, http.StatusInternalServerError} {
		requests.WithLabelValues(strconv.Itoa(code), version)
	}
	info.WithLabelValues(version).Set(1)
	return &metrics{requests: requests, duration: duration.WithLabelValues(version), version: version}
}

func (m *metrics) observe(code int, took time.Duration) {
	m.requests.WithLabelValues(strconv.Itoa(code), m.version).Inc()
	m.duration.Observe(took.Seconds())
}

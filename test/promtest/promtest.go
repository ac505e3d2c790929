// Package promtest runs a real Prometheus server for a test: the prometheus
// and promtool binaries of the Debian package prometheus (2.42), listening on
// a free port of 127.0.0.1, with its data in the test's temporary directory.
// Tests that claim something works against Prometheus use it rather than a
// fake.
//
// Start a server per test. It scrapes the Targets, evaluates the Rules and
// serves the OpenMetrics history it was given, and it stops when the test
// ends:
//
//	tg := promtest.NewTarget(t)
//	requests := prometheus.NewCounter(prometheus.CounterOpts{Name: "requests_total"})
//	tg.Registry.MustRegister(requests)
//	requests.Add(3)
//
//	prom := promtest.Start(t, promtest.Config{Targets: []string{tg.Addr()}})
//	prom.WaitForScrape(t, "requests_total")
//	client, _ := api.NewClient(api.Config{Address: prom.URL()})
//	// query with v1.NewAPI(client)
//
// # History
//
// Config.OpenMetrics is written into the data directory with `promtool tsdb
// create-blocks-from openmetrics` before Prometheus starts, so a test can
// query a past it did not wait for. Each sample carries its timestamp in
// Unix seconds and the text ends with "# EOF"; a counter's family is named
// without the _total suffix its samples carry:
//
//	now := time.Now().Unix()
//	history := fmt.Sprintf(`# TYPE x counter
//	x_total{a="b"} 1 %d
//	x_total{a="b"} 5 %d
//	# EOF
//	`, now-3600, now-60)
//
// What Prometheus 2.42 does with such blocks, and so the rules for the
// timestamps (Start checks the first two and fails the test otherwise):
//
//   - Every timestamp must be in the past when Start is called. The head
//     accepts only samples newer than the newest block, so a backfilled
//     sample in the future makes Prometheus drop every scraped sample
//     before it, silently.
//   - Keep the history recent, within days. Retention (400 days here) is
//     counted back from the newest block, so blocks more than that before it
//     are deleted at startup (with the default 15 days, a month-old sample
//     next to a recent one is gone).
//   - Recent samples are fine: the blocks are loaded when Prometheus opens
//     its storage, before it reports ready, so even a sample from a few
//     seconds ago, inside the current two-hour head window, is queryable as
//     soon as Start returns. Overlapping blocks are accepted too (2.42
//     always allows them; --storage.tsdb.allow-overlapping-blocks is a
//     hidden no-op there).
//
// The first scrape of the Targets comes about 5 to 6 seconds after Start
// (and after Restart), whatever the ScrapeInterval; use WaitForScrape before
// asserting on scraped series, and run such tests in parallel.
//
// An instant query at time T sees the newest sample at or before T within
// the lookback delta (5 minutes), so query history at the timestamps it was
// written at, or within 5 minutes after them.
//
// # Failures
//
// Start fails the test when the binaries are missing (install the Debian
// package prometheus, or point BACKSTOP_PROMETHEUS and BACKSTOP_PROMTOOL at
// them), when the rule file or the history is invalid, or when Prometheus
// does not become ready within 30 seconds. Prometheus logs to a file in the
// test's temporary directory; when the test fails, its last lines are
// printed with the test's log.
package promtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

const (
	// timeout bounds every wait: Prometheus becoming ready, a query
	// returning samples.
	timeout = 30 * time.Second
	// poll is how often a wait looks again.
	poll = 100 * time.Millisecond
	// requestTimeout bounds one HTTP request to Prometheus.
	requestTimeout = 5 * time.Second
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
	// startAttempts is how often Start tries a new port when the one it
	// picked was taken before Prometheus could listen on it.
	startAttempts = 3
	// logTailLines is how much of the Prometheus log a failed test shows.
	logTailLines = 40
	// retention keeps backfilled blocks: 2.42 counts it back from the
	// newest block.
	retention    = 400 * 24 * time.Hour
	retentionArg = "400d"
	// defaultInterval is the default scrape and evaluation interval.
	defaultInterval = time.Second
)

// Config of a Prometheus server for one test.
type Config struct {
	// Targets are host:port addresses scraped at /metrics (job "test"), every ScrapeInterval.
	Targets []string
	// ScrapeInterval and EvaluationInterval default to 1s.
	ScrapeInterval, EvaluationInterval time.Duration
	// Rules is the content of one Prometheus rule file (groups: ...), for alerting/recording rules; empty for none.
	Rules string
	// OpenMetrics is history loaded before start with `promtool tsdb create-blocks-from openmetrics` (text ending in "# EOF"); empty for none.
	// Its timestamps must be in the past and should be recent (within days); see the package documentation.
	OpenMetrics string
}

// Server is a running Prometheus.
type Server struct {
	bin     string // the prometheus binary
	dir     string // the test's temporary directory: config, rules, log
	dataDir string
	logPath string
	port    int
	blocks  []blockMeta // backfilled from Config.OpenMetrics

	mu   sync.Mutex
	proc *os.Process   // nil when stopped
	done chan struct{} // closed when proc has exited
}

// blockMeta is what promtest reads of a TSDB block's meta.json.
type blockMeta struct {
	ULID    string `json:"ulid"`
	MinTime int64  `json:"minTime"` // milliseconds, inclusive
	MaxTime int64  `json:"maxTime"` // milliseconds, exclusive
}

// errPortTaken is returned by start when another process listened on the
// port first.
var errPortTaken = errors.New("port already in use")

// Start starts Prometheus with cfg and waits until it is ready and serves the
// backfilled history. It fails the test when it cannot, and stops Prometheus
// when the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.ScrapeInterval == 0 {
		cfg.ScrapeInterval = defaultInterval
	}
	if cfg.EvaluationInterval == 0 {
		cfg.EvaluationInterval = defaultInterval
	}
	if cfg.ScrapeInterval < time.Millisecond || cfg.EvaluationInterval < time.Millisecond {
		t.Fatalf("promtest: ScrapeInterval and EvaluationInterval must be at least 1ms, got %s and %s", cfg.ScrapeInterval, cfg.EvaluationInterval)
	}
	s := &Server{bin: binary(t, "BACKSTOP_PROMETHEUS", "prometheus"), dir: t.TempDir()}
	s.dataDir = filepath.Join(s.dir, "data")
	s.logPath = filepath.Join(s.dir, "prometheus.log")
	if err := os.Mkdir(s.dataDir, 0o755); err != nil {
		t.Fatalf("promtest: %v", err)
	}

	rulesPath := ""
	if cfg.Rules != "" {
		rulesPath = filepath.Join(s.dir, "rules.yml")
		writeFile(t, rulesPath, cfg.Rules)
		promtool(t, "checking Config.Rules", "check", "rules", rulesPath)
	}
	writeFile(t, filepath.Join(s.dir, "prometheus.yml"), prometheusConfig(cfg, rulesPath))
	if cfg.OpenMetrics != "" {
		s.backfill(t, cfg.OpenMetrics)
	}

	// Registered before the process starts, so that a failing or panicking
	// test never leaves it behind.
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("promtest: last lines of the Prometheus log %s:\n%s", s.logPath, tail(s.logPath, logTailLines))
		}
	})
	s.killAtDeadline(t)

	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		s.port = freePort(t)
		if err = s.start(); !errors.Is(err, errPortTaken) {
			break
		}
	}
	if err != nil {
		t.Fatalf("promtest: starting %s: %v", s.bin, err)
	}
	s.waitForBackfill(t)
	return s
}

// URL is the server's base URL, http://127.0.0.1:PORT.
func (s *Server) URL() string {
	return "http://" + s.addr()
}

func (s *Server) addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Stop stops Prometheus now: SIGTERM, and SIGKILL when it has not exited
// after 10 seconds. Queries fail with a connection error until Restart.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	signalGroup(s.proc, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopGrace):
		signalGroup(s.proc, syscall.SIGKILL)
		<-s.done
	}
	s.proc = nil
}

// Restart stops Prometheus if it runs and starts it again on the same port
// and data directory, so URL is unchanged and the data it had is kept, and
// waits until it is ready.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("promtest: restarting %s on %s: %v", s.bin, s.addr(), err)
	}
	s.waitForBackfill(t)
}

// WaitForScrape polls the instant query until it returns at least one
// sample, for example after a target started, and fails the test when it
// does not within 30 seconds.
//
// Expect about 5 to 6 seconds after Start or Restart: Prometheus 2.42 hands
// the targets from discovery to the scrape manager on 5-second tickers, and
// no flag shortens them.
func (s *Server) WaitForScrape(t testing.TB, query string) {
	t.Helper()
	promAPI := s.api(t)
	var last string
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		v, _, _, err := promAPI.Query(ctx, query, time.Now())
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case hasSamples(v):
			return
		default:
			last = fmt.Sprintf("no samples: %v", v)
		}
		time.Sleep(poll)
	}
	t.Fatalf("promtest: waiting for %q to return a sample from %s: not within %s (last: %s)", query, s.URL(), timeout, last)
}

// hasSamples reports whether a query result holds at least one sample.
func hasSamples(v model.Value) bool {
	switch v := v.(type) {
	case model.Vector:
		return len(v) > 0
	case model.Matrix:
		return len(v) > 0
	case *model.Scalar, *model.String:
		return true
	}
	return false
}

func (s *Server) api(t testing.TB) v1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: s.URL()})
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	return v1.NewAPI(c)
}

// start starts the process on s.port and waits until it is ready. It
// returns errPortTaken when Prometheus could not listen on the port.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("already running")
	}
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fi, err := log.Stat()
	if err != nil {
		log.Close()
		return err
	}
	from := fi.Size() // where this run's log starts
	fmt.Fprintf(log, "=== promtest: starting %s on %s\n", s.bin, s.addr())

	cmd := exec.Command(s.bin,
		"--config.file="+filepath.Join(s.dir, "prometheus.yml"),
		"--storage.tsdb.path="+s.dataDir,
		"--storage.tsdb.retention.time="+retentionArg,
		"--web.listen-address="+s.addr(),
	)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so that Stop signals everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	s.proc, s.done = cmd.Process, done

	// Requests end when the process does: a foreign listener on the port
	// may accept connections and never answer.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			s.proc = nil
			if bytes.Contains(readFrom(s.logPath, from), []byte("address already in use")) {
				return errPortTaken
			}
			return fmt.Errorf("prometheus exited before it was ready (%s); see its log %s", cmd.ProcessState, s.logPath)
		default:
		}
		if s.ready(ctx) {
			return nil
		}
		time.Sleep(poll)
	}
	signalGroup(s.proc, syscall.SIGKILL)
	<-done
	s.proc = nil
	return fmt.Errorf("prometheus was not ready within %s; see its log %s", timeout, s.logPath)
}

// ready reports whether /-/ready answers 200 and the server answering is
// this one (its data directory is ours), not another that took the port.
func (s *Server) ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/-/ready", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	c, err := api.NewClient(api.Config{Address: s.URL()})
	if err != nil {
		return false
	}
	flags, err := v1.NewAPI(c).Flags(ctx)
	return err == nil && flags["storage.tsdb.path"] == s.dataDir
}

// killAtDeadline kills Prometheus just before the test binary's -timeout
// ends it, which skips the cleanups.
func (s *Server) killAtDeadline(t testing.TB) {
	d, ok := t.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return
	}
	deadline, ok := d.Deadline()
	if !ok {
		return
	}
	timer := time.AfterFunc(time.Until(deadline)-time.Second, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.proc != nil {
			signalGroup(s.proc, syscall.SIGKILL)
		}
	})
	t.Cleanup(func() { timer.Stop() })
}

func signalGroup(p *os.Process, sig syscall.Signal) {
	_ = syscall.Kill(-p.Pid, sig)
}

// backfill writes history into the data directory as blocks and checks that
// Prometheus will keep and serve them.
func (s *Server) backfill(t testing.TB, history string) {
	t.Helper()
	path := filepath.Join(s.dir, "history.om")
	writeFile(t, path, history)
	promtool(t, "loading Config.OpenMetrics", "tsdb", "create-blocks-from", "openmetrics", "--quiet", path, s.dataDir)

	entries, err := os.ReadDir(s.dataDir)
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(s.dataDir, e.Name(), "meta.json"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatalf("promtest: reading the backfilled blocks: %v", err)
		}
		var m blockMeta
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("promtest: reading the backfilled block %s: %v", e.Name(), err)
		}
		s.blocks = append(s.blocks, m)
	}
	if len(s.blocks) == 0 {
		t.Fatalf("promtest: Config.OpenMetrics holds no samples")
	}

	newest, oldest := s.blocks[0], s.blocks[0]
	for _, b := range s.blocks {
		if b.MaxTime > newest.MaxTime {
			newest = b
		}
		if b.MaxTime < oldest.MaxTime {
			oldest = b
		}
	}
	last := time.UnixMilli(newest.MaxTime - 1)
	if now := time.Now(); last.After(now) {
		t.Fatalf("promtest: Config.OpenMetrics has a sample at %s, after now (%s): Prometheus would drop every scraped sample before it; use timestamps in the past",
			last.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if span := time.Duration(newest.MaxTime-oldest.MaxTime) * time.Millisecond; span > retention {
		t.Fatalf("promtest: Config.OpenMetrics spans %s, more than the retention of %s: Prometheus would delete its oldest blocks; keep the history within days",
			span, retentionArg)
	}
}

// waitForBackfill waits until every backfilled block answers a series query
// over its time range.
func (s *Server) waitForBackfill(t testing.TB) {
	t.Helper()
	if len(s.blocks) == 0 {
		return
	}
	promAPI := s.api(t)
	for _, b := range s.blocks {
		start, end := time.UnixMilli(b.MinTime), time.UnixMilli(b.MaxTime-1)
		var last string
		deadline := time.Now().Add(timeout)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			series, _, _, err := promAPI.Series(ctx, []string{`{__name__=~".+"}`}, start, end)
			cancel()
			if err == nil && len(series) > 0 {
				break
			}
			last = fmt.Sprintf("%d series, error %v", len(series), err)
			if _, err := os.Stat(filepath.Join(s.dataDir, b.ULID)); errors.Is(err, os.ErrNotExist) {
				t.Fatalf("promtest: Prometheus deleted the backfilled block %s (%s to %s); is it beyond the retention of %s?",
					b.ULID, start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), retentionArg)
			}
			if time.Now().After(deadline) {
				t.Fatalf("promtest: waiting for the backfilled block %s (%s to %s) to be queryable: not within %s (last: %s)",
					b.ULID, start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), timeout, last)
			}
			time.Sleep(poll)
		}
	}
}

// prometheusConfig is the configuration file for cfg, with the rule file at
// rulesPath ("" for none).
func prometheusConfig(cfg Config, rulesPath string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n",
		duration(cfg.ScrapeInterval), duration(cfg.ScrapeInterval), duration(cfg.EvaluationInterval))
	if rulesPath != "" {
		fmt.Fprintf(&b, "rule_files:\n  - %s\n", strconv.Quote(rulesPath))
	}
	if len(cfg.Targets) > 0 {
		b.WriteString("scrape_configs:\n  - job_name: test\n    static_configs:\n      - targets:\n")
		for _, target := range cfg.Targets {
			fmt.Fprintf(&b, "          - %s\n", strconv.Quote(target))
		}
	}
	return b.String()
}

// duration formats d as a Prometheus duration, which has no fractions.
func duration(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// binary finds a program: the path in the environment variable env, else
// name in PATH.
func binary(t testing.TB, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("promtest: %s=%s: %v; install the Debian package prometheus (apt-get install prometheus), or set %s to its path", env, p, err, env)
		}
		return path
	}
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("promtest: %s not found in PATH: install the Debian package prometheus (apt-get install prometheus), or set %s to its path", name, env)
	}
	return path
}

// promtool runs promtool with args and fails the test with its output when it
// fails.
func promtool(t testing.TB, what string, args ...string) {
	t.Helper()
	bin := binary(t, "BACKSTOP_PROMTOOL", "promtool")
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtest: %s: %s %s: %v\n%s", what, bin, strings.Join(args, " "), err, out)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatalf("promtest: %v", err)
	}
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("promtest: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// readFrom returns the file's content from offset on.
func readFrom(path string, offset int64) []byte {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return nil
	}
	return b[offset:]
}

// tail returns the last n lines of the file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Target is a real HTTP server on 127.0.0.1 exposing a client_golang registry at /metrics.
type Target struct {
	// Registry is what the target exposes; register collectors in it.
	Registry *prometheus.Registry

	srv *httptest.Server
}

// NewTarget starts a target with an empty registry and closes it when the
// test ends.
func NewTarget(t testing.TB) *Target {
	t.Helper()
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("promtest: starting a target: %v", err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: mux}}
	srv.Start()
	t.Cleanup(srv.Close)
	return &Target{Registry: reg, srv: srv}
}

// Addr is the target's host:port, for Config.Targets.
func (tg *Target) Addr() string {
	return tg.srv.Listener.Addr().String()
}

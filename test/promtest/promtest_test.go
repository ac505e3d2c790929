package promtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

func TestStartScrapesTarget(t *testing.T) {
	t.Parallel()
	tg := NewTarget(t)
	x := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "A counter the test increments."})
	tg.Registry.MustRegister(x)
	x.Add(3)

	s := Start(t, Config{Targets: []string{tg.Addr()}})
	s.WaitForScrape(t, "x_total")
	x.Add(4)

	promAPI := newAPI(t, s)
	eventually(t, timeout, "x_total to be scraped as 7", func() error {
		v, err := query(promAPI, "x_total", time.Now())
		if err != nil {
			return err
		}
		want := model.Metric{"__name__": "x_total", "job": "test", "instance": model.LabelValue(tg.Addr())}
		if len(v) != 1 || !v[0].Metric.Equal(want) || v[0].Value != 7 {
			return fmt.Errorf("got %v, want %v => 7", v, want)
		}
		return nil
	})
}

func TestStartLoadsOpenMetricsHistory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		age  time.Duration
	}{
		{"days ago", 3 * 24 * time.Hour},
		{"hours ago", 5 * time.Hour},
		{"seconds ago, inside the head window", 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			at := time.Now().Add(-tc.age).Truncate(time.Second)
			before := at.Add(-time.Minute)
			s := Start(t, Config{OpenMetrics: fmt.Sprintf(`# HELP x A counter.
# TYPE x counter
x_total{a="b"} 1 %d
x_total{a="b"} 42 %d
x_total{a="c"} 9 %d
# EOF
`, before.Unix(), at.Unix(), before.Unix())})

			promAPI := newAPI(t, s)
			for _, want := range []struct {
				at    time.Time
				value model.SampleValue
			}{{before, 1}, {at.Add(-time.Second), 1}, {at, 42}, {at.Add(4 * time.Minute), 42}} {
				v, err := query(promAPI, `x_total{a="b"}`, want.at)
				if err != nil {
					t.Fatalf("querying at %s: %v", want.at, err)
				}
				if len(v) != 1 || v[0].Value != want.value {
					t.Errorf(`x_total{a="b"} at %s = %v, want %v`, want.at, v, want.value)
				}
			}
		})
	}
}

func TestStartEvaluatesRules(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	s := Start(t, Config{EvaluationInterval: interval, Rules: `
groups:
  - name: backstop
    rules:
      - alert: BackstopTestFiring
        expr: vector(1)
        for: 0s
        labels:
          namespace: ns
          rollout: r
      - alert: BackstopTestQuiet
        expr: vector(0) > 0
        for: 0s
`})

	promAPI := newAPI(t, s)
	// The first evaluation comes up to two intervals after Start; the rest is
	// slack for a loaded machine.
	eventually(t, 10*interval, "the alert BackstopTestFiring to fire", func() error {
		v, err := query(promAPI, `ALERTS{alertstate="firing"}`, time.Now())
		if err != nil {
			return err
		}
		want := model.Metric{"__name__": "ALERTS", "alertname": "BackstopTestFiring", "alertstate": "firing", "namespace": "ns", "rollout": "r"}
		if len(v) != 1 || !v[0].Metric.Equal(want) || v[0].Value != 1 {
			return fmt.Errorf("got %v, want %v => 1", v, want)
		}
		return nil
	})
}

func TestStopAndRestart(t *testing.T) {
	t.Parallel()
	tg := NewTarget(t)
	x := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "A counter the test increments."})
	tg.Registry.MustRegister(x)
	x.Add(5)
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	s := Start(t, Config{
		Targets:     []string{tg.Addr()},
		OpenMetrics: fmt.Sprintf("# TYPE h counter\nh_total 11 %d\n# EOF\n", past.Unix()),
	})
	s.WaitForScrape(t, "x_total")
	promAPI := newAPI(t, s)
	scraped := time.Now()
	mustQueryValue(t, promAPI, "x_total", scraped, 5)

	s.Stop()
	s.Stop() // idempotent
	if _, err := query(promAPI, "x_total", time.Now()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("query after Stop: got error %v, want connection refused", err)
	}

	url := s.URL()
	x.Add(1) // scraped after the restart, never before it
	s.Restart(t)
	if s.URL() != url {
		t.Errorf("URL after Restart = %s, want %s", s.URL(), url)
	}
	mustQueryValue(t, promAPI, "x_total", scraped, 5)
	mustQueryValue(t, promAPI, "h_total", past, 11)
	eventually(t, timeout, "x_total to be scraped as 6 after the restart", func() error {
		v, err := query(promAPI, "x_total", time.Now())
		if err != nil {
			return err
		}
		if len(v) != 1 || v[0].Value != 6 {
			return fmt.Errorf("got %v, want 6", v)
		}
		return nil
	})
}

func TestStartFailsClearly(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
		cfg   Config
		want  string
	}{{
		name: "prometheus missing",
		setup: func(t *testing.T) {
			t.Setenv("BACKSTOP_PROMETHEUS", "")
			t.Setenv("PATH", t.TempDir())
		},
		want: "install the Debian package prometheus",
	}, {
		name: "history in the future",
		cfg:  Config{OpenMetrics: fmt.Sprintf("# TYPE x counter\nx_total 1 %d\n# EOF\n", time.Now().Add(time.Hour).Unix())},
		want: "after now",
	}, {
		name: "invalid rules",
		cfg:  Config{Rules: "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: vector((\n"},
		want: "checking Config.Rules",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			got := startFailure(t, tc.cfg)
			if !strings.Contains(got, tc.want) {
				t.Errorf("Start failed with %q, want a message containing %q", got, tc.want)
			}
		})
	}
}

// fatalTB records the message of a Fatal call and ends the goroutine, as
// testing.T does, without failing the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

// startFailure calls Start and returns its failure message, failing the test
// when Start succeeds.
func startFailure(t *testing.T, cfg Config) string {
	t.Helper()
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f, cfg)
	}()
	<-done
	if f.msg == "" {
		t.Fatal("Start did not fail")
	}
	return f.msg
}

func newAPI(t testing.TB, s *Server) v1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: s.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return v1.NewAPI(c)
}

// query runs an instant query at ts and returns its vector.
func query(promAPI v1.API, q string, ts time.Time) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	v, _, _, err := promAPI.Query(ctx, q, ts)
	if err != nil {
		return nil, err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("%s returned a %s, want a vector", q, v.Type())
	}
	return vec, nil
}

func mustQueryValue(t testing.TB, promAPI v1.API, q string, ts time.Time, want model.SampleValue) {
	t.Helper()
	v, err := query(promAPI, q, ts)
	if err != nil {
		t.Fatalf("querying %s at %s: %v", q, ts, err)
	}
	if len(v) != 1 || v[0].Value != want {
		t.Fatalf("%s at %s = %v, want %v", q, ts, v, want)
	}
}

// eventually polls check until it returns nil, and fails the test with its
// last error when it does not within limit.
func eventually(t testing.TB, limit time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s: %v", what, limit, err)
		}
		time.Sleep(poll)
	}
}

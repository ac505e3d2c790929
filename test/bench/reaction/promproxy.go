package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// promAnswer is one instant query the manager sent and what came back.
type promAnswer struct {
	query    string
	sent     time.Time
	answered time.Time // the answer was written back to the manager
	// value is the single sample of the answer; NaN when there was none.
	value float64
}

// promRecorder stands between the manager and Prometheus for the bench's
// Rollout (its spec.analysis.prometheus.address) and records each instant
// query with the time it was answered and the value it returned: the
// moment the manager learnt what its checks decide on. It costs one more
// loopback hop per query.
type promRecorder struct {
	// URL is the address to give the Rollout.
	URL string

	target string
	client *http.Client
	srv    *http.Server

	mu      sync.Mutex
	answers []promAnswer
}

// startPromRecorder serves on a free port of 127.0.0.1, forwarding to the
// Prometheus at target.
func startPromRecorder(target string) (*promRecorder, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &promRecorder{URL: "http://" + l.Addr().String(), target: strings.TrimSuffix(target, "/"),
		client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8}}}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

// Close stops serving.
func (p *promRecorder) Close() { _ = p.srv.Close() }

func (p *promRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sent := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	params := r.URL.Query()
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(string(body)); err == nil {
			for k, v := range form {
				params[k] = append(params[k], v...)
			}
		}
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for _, h := range []string{"Content-Type", "Accept", "User-Agent"} {
		if v := r.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	resp, err := p.client.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if !strings.HasSuffix(r.URL.Path, "/api/v1/query") || params.Get("query") == "" {
		return
	}
	a := promAnswer{query: params.Get("query"), sent: sent, answered: time.Now(), value: sample(answer)}
	p.mu.Lock()
	p.answers = append(p.answers, a)
	p.mu.Unlock()
}

// sample is the value of an instant query's answer holding one sample;
// NaN otherwise.
func sample(answer []byte) float64 {
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if json.Unmarshal(answer, &r) != nil || len(r.Data.Result) != 1 {
		return math.NaN()
	}
	s, ok := r.Data.Result[0].Value[1].(string)
	if !ok {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// since returns the answers written back at or after t, oldest first.
func (p *promRecorder) since(t time.Time) []promAnswer {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []promAnswer
	for _, a := range p.answers {
		if !a.answered.Before(t) {
			out = append(out, a)
		}
	}
	return out
}

// firstAbove is the first time from from to to, in steps of step, at which
// query evaluates above bound on the Prometheus at base: when a check
// evaluated then would have failed. ok is false when it never does.
func firstAbove(ctx context.Context, base, query string, bound float64, from, to time.Time, step time.Duration) (time.Time, bool, error) {
	points, err := queryRange(ctx, base, query, from, to, step)
	if err != nil {
		return time.Time{}, false, err
	}
	for _, p := range points {
		if !math.IsNaN(p.value) && p.value > bound {
			return p.at, true, nil
		}
	}
	return time.Time{}, false, nil
}

// firstPresent is the first time from from to to, in steps of step, at
// which query has a value.
func firstPresent(ctx context.Context, base, query string, from, to time.Time, step time.Duration) (time.Time, bool, error) {
	points, err := queryRange(ctx, base, query, from, to, step)
	if err != nil || len(points) == 0 {
		return time.Time{}, false, err
	}
	return points[0].at, true, nil
}

type point struct {
	at    time.Time
	value float64
}

// queryRange evaluates query from from to to on the Prometheus at base and
// returns the points of its single series, oldest first.
func queryRange(ctx context.Context, base, query string, from, to time.Time, step time.Duration) ([]point, error) {
	params := url.Values{
		"query": {query},
		"start": {strconv.FormatFloat(float64(from.UnixMilli())/1000, 'f', 3, 64)},
		"end":   {strconv.FormatFloat(float64(to.UnixMilli())/1000, 'f', 3, 64)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', 3, 64)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/api/v1/query_range?"+params.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query_range %s: %w", query, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query_range %s: %s", query, r.Error)
	}
	if len(r.Data.Result) > 1 {
		return nil, fmt.Errorf("query_range %s: %d series, want one", query, len(r.Data.Result))
	}
	var out []point
	for _, res := range r.Data.Result {
		for _, v := range res.Values {
			ts, ok := v[0].(float64)
			s, ok2 := v[1].(string)
			if !ok || !ok2 {
				continue
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				continue
			}
			out = append(out, point{at: time.UnixMilli(int64(math.Round(ts * 1000))), value: f})
		}
	}
	return out, nil
}

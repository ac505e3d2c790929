// Package loadgen sends steady HTTP traffic to one URL and records what came
// back, so that an end-to-end test (or `make demo`) can say what users saw
// during a release: which version answered, when the last 5xx was, when a
// version was first seen.
//
// A Generator sends GET requests at a fixed rate, with at most Concurrency
// in flight, optionally with a Host header (the gateway routes by it), until
// its Duration has passed, Count requests have been sent, or its context
// ends. Each request is recorded with the time it was sent, its status, the
// version that answered (the X-App-Version header) and its latency. Every
// read (Totals, Seconds, Results, Last5xx, FirstSeen, Between) is safe while
// the generator runs.
//
// Traffic goes only to loopback (127.0.0.0/8) or to the one range in
// Config.Allow, such as the addresses of network namespaces a test created:
// New refuses any other target, and every connection is checked again when
// it is dialled. Redirects are recorded, never followed, and no proxy is
// used.
//
//	g, err := loadgen.New(loadgen.Config{URL: "http://127.0.0.1:8000/", Host: "app.demo", Rate: 20})
//	go g.Run(ctx)
//	// ... later
//	last, ok := g.Last5xx()
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// VersionHeader is the response header that names the version that answered
// (the demo application in test/app sets it).
const VersionHeader = "X-App-Version"

// Defaults of Config.
const (
	DefaultConcurrency = 16
	DefaultTimeout     = 2 * time.Second
)

// Narrowest ranges Config.Allow may be: a prefix shorter than these is
// refused so that a typo cannot open a wide part of the network.
const (
	minAllowBitsIPv4 = 16
	minAllowBitsIPv6 = 64
)

// loopback is where traffic may always go.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// Config is one run of traffic.
type Config struct {
	// URL is the http or https URL requested. Its host must be an IP
	// address in 127.0.0.0/8 or in Allow, or "localhost".
	URL string
	// Host, if set, is sent as the Host header instead of the URL's host.
	Host string
	// Rate is the number of requests sent per second.
	Rate float64
	// Concurrency bounds the requests in flight; 0 means DefaultConcurrency.
	// Request i (from 0) is due i/Rate seconds after the start and is sent then, or
	// at once if the generator was held up; one that is due while
	// Concurrency requests are in flight is skipped and counted in
	// Totals.Skipped rather than sent later.
	Concurrency int
	// Duration stops sending after this long: the requests due before it
	// are sent, about Duration*Rate of them. 0 means no limit. Requests in
	// flight at the end are still awaited and recorded.
	Duration time.Duration
	// Count stops sending after this many requests; 0 means no limit.
	Count int
	// Timeout bounds each request; 0 means DefaultTimeout. A request that
	// times out is recorded as a failure.
	Timeout time.Duration
	// Allow is the one range, besides 127.0.0.0/8, that traffic may go to;
	// the zero Prefix allows none. It must be at least a /16 (IPv4) or a
	// /64 (IPv6).
	Allow netip.Prefix
}

// Result is one request.
type Result struct {
	// Sent is when the request was sent.
	Sent time.Time
	// Status is the HTTP status, or 0 when no answer came (see Err).
	Status int
	// Version is the X-App-Version header of the answer.
	Version string
	// Latency is the time from sending to the end of the answer's body.
	Latency time.Duration
	// Err says why no answer came; it is empty when one did.
	Err string
}

// Generator sends the traffic of one Config and records it.
type Generator struct {
	cfg    Config
	url    string
	client *http.Client
	ran    atomic.Bool
	rec    recorder
}

// New checks cfg, refusing a target outside 127.0.0.0/8 and cfg.Allow, and
// returns a Generator ready to Run.
func New(cfg Config) (*Generator, error) {
	if !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 1) {
		return nil, fmt.Errorf("rate %v is not a positive number of requests per second", cfg.Rate)
	}
	if cfg.Concurrency < 0 || cfg.Count < 0 || cfg.Duration < 0 || cfg.Timeout < 0 {
		return nil, errors.New("concurrency, count, duration and timeout must not be negative")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if err := checkAllow(cfg.Allow); err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", cfg.URL, err)
	}
	if err := checkTarget(u, cfg.Allow); err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: dialGuard(cfg.Allow)}
	transport := &http.Transport{
		Proxy:               nil, // never send the traffic through a proxy
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: cfg.Concurrency,
		IdleConnTimeout:     30 * time.Second,
	}
	client := &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return &Generator{cfg: cfg, url: u.String(), client: client, rec: newRecorder()}, nil
}

func checkAllow(allow netip.Prefix) error {
	if allow == (netip.Prefix{}) {
		return nil
	}
	if !allow.IsValid() {
		return fmt.Errorf("allowed range %v is not valid", allow)
	}
	minBits := minAllowBitsIPv6
	if allow.Addr().Unmap().Is4() {
		minBits = minAllowBitsIPv4
	}
	if allow.Bits() < minBits {
		return fmt.Errorf("allowed range %v is wider than a /%d", allow, minBits)
	}
	return nil
}

// allowed reports whether traffic may go to addr.
func allowed(addr netip.Addr, allow netip.Prefix) bool {
	addr = addr.Unmap()
	return loopback.Contains(addr) || (allow.IsValid() && allow.Masked().Contains(addr))
}

// describeAllowed names where traffic may go, for an error message.
func describeAllowed(allow netip.Prefix) string {
	if !allow.IsValid() {
		return loopback.String()
	}
	return loopback.String() + " and " + allow.String()
}

// checkTarget refuses a URL that is not http(s) or whose host is neither
// "localhost" nor an allowed address.
func checkTarget(u *url.URL, allow netip.Prefix) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("target %q: scheme %q is not http or https", u, u.Scheme)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil // resolved at dial time, where dialGuard checks the address
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("target %q: host %q is not an IP address or localhost; refusing to send traffic to a name", u, host)
	}
	if !allowed(addr, allow) {
		return fmt.Errorf("target %q: %s is outside %s; refusing to send traffic there", u, addr, describeAllowed(allow))
	}
	return nil
}

// dialGuard returns a net.Dialer Control function that refuses to connect
// to any address traffic may not go to, whatever the URL said.
func dialGuard(allow netip.Prefix) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("refusing to dial %s %q: %w", network, address, err)
		}
		if !allowed(ap.Addr(), allow) {
			return fmt.Errorf("refusing to dial %s %s: outside %s", network, address, describeAllowed(allow))
		}
		return nil
	}
}

// Run sends the traffic and returns when it has stopped: after Duration,
// after Count requests, or when ctx ends, whichever comes first. It waits
// for the requests in flight, except that those cut short by ctx are
// dropped, not recorded, since no answer was awaited. It returns nil when
// the run ended by any of these; a Generator runs once.
func (g *Generator) Run(ctx context.Context) error {
	if !g.ran.CompareAndSwap(false, true) {
		return errors.New("loadgen: the generator has already run")
	}
	start := g.rec.begin()
	defer g.rec.end()

	timer := time.NewTimer(0)
	defer timer.Stop()
	slots := make(chan struct{}, g.cfg.Concurrency)
	var wg sync.WaitGroup
	defer g.client.CloseIdleConnections() // after the requests in flight
	defer wg.Wait()

	for i, sent := 0, 0; g.cfg.Count == 0 || sent < g.cfg.Count; i++ {
		// Request i is due at a fixed time, so the rate holds even when
		// this loop was held up: a late request is sent at once.
		after := time.Duration(float64(i) * float64(time.Second) / g.cfg.Rate)
		if g.cfg.Duration > 0 && after >= g.cfg.Duration {
			break
		}
		if wait := time.Until(start.Add(after)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return nil
		}
		select {
		case slots <- struct{}{}:
			sent++
			wg.Go(func() {
				defer func() { <-slots }()
				g.send(ctx)
			})
		default:
			g.rec.skip()
		}
	}
	return nil
}

// send sends one request and records it, unless ctx ended before the
// answer came.
func (g *Generator) send(ctx context.Context) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url, nil)
	if err != nil {
		panic(err) // the URL was checked by New
	}
	if g.cfg.Host != "" {
		req.Host = g.cfg.Host
	}
	r := Result{Sent: time.Now()}
	resp, err := g.client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.Status = resp.StatusCode
		r.Version = resp.Header.Get(VersionHeader)
	}
	r.Latency = time.Since(r.Sent)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.Status, r.Version, r.Err = 0, "", err.Error()
	}
	g.rec.add(r)
}

// Totals counts every request recorded so far.
func (g *Generator) Totals() Totals { return g.rec.totals() }

// Seconds counts the recorded requests by the wall-clock second they were
// sent in, from the first such second to the last, empty seconds included.
func (g *Generator) Seconds() []Second { return g.rec.seconds() }

// Results returns every recorded request, in the order they finished.
func (g *Generator) Results() []Result { return g.rec.results() }

// Last5xx returns when the last request answered with a 5xx status was
// sent; ok is false if none was.
func (g *Generator) Last5xx() (sent time.Time, ok bool) { return g.rec.last5xx() }

// FirstSeen returns when the first request answered by version was sent;
// ok is false if version has not answered.
func (g *Generator) FirstSeen(version string) (sent time.Time, ok bool) {
	return g.rec.firstSeen(version)
}

// Between counts the recorded requests sent at or after from and before to.
func (g *Generator) Between(from, to time.Time) Counts { return g.rec.between(from, to) }

// Running reports whether Run has started and not yet returned.
func (g *Generator) Running() bool { return g.rec.running() }

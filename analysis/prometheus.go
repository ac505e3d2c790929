package analysis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
)

// DefaultQueryTimeout applies to a Prometheus source that sets no timeout.
const DefaultQueryTimeout = 10 * time.Second

// Source is a Prometheus-compatible HTTP API with its credentials.
type Source struct {
	// Address is the base URL.
	Address string
	// Timeout of one query.
	Timeout time.Duration
	// Secret holds the credentials: "token", or "username" and "password";
	// and optionally "ca.crt", "tls.crt" and "tls.key". Nil for none.
	Secret *corev1.Secret
}

// key identifies a client: a changed Secret gives a new one.
func (s Source) key() string {
	k := s.Address + "\x00" + s.Timeout.String()
	if s.Secret != nil {
		k += "\x00" + s.Secret.Namespace + "/" + s.Secret.Name + "@" + s.Secret.ResourceVersion + "/" + string(s.Secret.UID)
	}
	return k
}

// promClient is a client of one Source.
type promClient struct {
	api     promv1.API
	timeout time.Duration
	key     string
}

// clients keeps one client per source, so connections are reused.
type clients struct {
	mu sync.Mutex
	m  map[string]*promClient
}

func (c *clients) get(src Source) (*promClient, error) {
	key := src.key()
	c.mu.Lock()
	defer c.mu.Unlock()
	if pc, ok := c.m[key]; ok {
		return pc, nil
	}
	pc, err := newPromClient(src)
	if err != nil {
		return nil, err
	}
	if c.m == nil || len(c.m) >= 256 {
		// Old Secret versions leave clients behind: start afresh now and
		// then rather than grow without bound.
		c.m = map[string]*promClient{}
	}
	c.m[key] = pc
	return pc, nil
}

func newPromClient(src Source) (*promClient, error) {
	timeout := src.Timeout
	if timeout <= 0 {
		timeout = DefaultQueryTimeout
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	var rt http.RoundTripper = transport
	if s := src.Secret; s != nil {
		tlsConfig, err := secretTLS(s)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = tlsConfig
		switch {
		case len(s.Data["token"]) > 0:
			rt = authRoundTripper{next: transport, header: "Bearer " + strings.TrimSpace(string(s.Data["token"]))}
		case len(s.Data["username"]) > 0:
			rt = authRoundTripper{next: transport, user: string(s.Data["username"]), password: string(s.Data["password"])}
		case len(s.Data["password"]) > 0:
			return nil, fmt.Errorf("secret %q has a password but no username", s.Name)
		}
	}
	c, err := api.NewClient(api.Config{Address: src.Address, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus address %q: %w", redactURL(src.Address), err)
	}
	return &promClient{api: promv1.NewAPI(c), timeout: timeout, key: src.key()}, nil
}

// secretTLS builds the TLS settings of a Secret: its CA replaces the system
// roots, and its certificate and key authenticate the client.
func secretTLS(s *corev1.Secret) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := s.Data["ca.crt"]; len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("secret %q: ca.crt holds no PEM certificate", s.Name)
		}
		cfg.RootCAs = pool
	}
	crt, key := s.Data["tls.crt"], s.Data["tls.key"]
	if (len(crt) > 0) != (len(key) > 0) {
		return nil, fmt.Errorf("secret %q: tls.crt and tls.key go together", s.Name)
	}
	if len(crt) > 0 {
		pair, err := tls.X509KeyPair(crt, key)
		if err != nil {
			// The error of X509KeyPair names no key material.
			return nil, fmt.Errorf("secret %q: tls.crt and tls.key: %w", s.Name, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// authRoundTripper adds credentials to each request.
type authRoundTripper struct {
	next           http.RoundTripper
	header         string
	user, password string
}

func (a authRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	if a.header != "" {
		req.Header.Set("Authorization", a.header)
	} else {
		req.SetBasicAuth(a.user, a.password)
	}
	return a.next.RoundTrip(req)
}

// redactURL hides the user information of a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// reuseWithin is how long an answer is reused for an identical query to the
// same source, for checks evaluated every interval: half of it. Many
// Rollouts asking the same at about the same moment make one query, and a
// check never gets its own last answer again, since it is next evaluated a
// whole interval later.
func reuseWithin(interval time.Duration) time.Duration { return interval / 2 }

// queryCache sends identical queries to the same source once within their
// freshness, and once at a time.
type queryCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
	flight  singleflight.Group
}

type cacheEntry struct {
	at    time.Time
	value model.Value
}

// maxCacheEntries bounds the cache; past it, stale entries go first, then
// everything.
const maxCacheEntries = 4096

// query evaluates q at time at. A result of the same query on the same source
// evaluated at most fresh earlier is reused.
func (qc *queryCache) query(ctx context.Context, pc *promClient, q string, at time.Time, fresh time.Duration) (model.Value, error) {
	key := pc.key + "\x00" + q
	qc.mu.Lock()
	if e, ok := qc.entries[key]; ok && !at.Before(e.at) && at.Sub(e.at) < fresh {
		qc.mu.Unlock()
		queriesDeduplicated.Inc()
		return e.value, nil
	}
	qc.mu.Unlock()

	v, err, shared := qc.flight.Do(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pc.timeout)
		defer cancel()
		val, _, _, err := pc.api.Query(ctx, q, at, promv1.WithTimeout(pc.timeout))
		if err != nil {
			queriesSent.WithLabelValues("error").Inc()
			return nil, queryError(err, pc.timeout)
		}
		queriesSent.WithLabelValues("ok").Inc()
		qc.store(key, cacheEntry{at: at, value: val})
		return val, nil
	})
	if shared {
		queriesDeduplicated.Inc()
	}
	if err != nil {
		return nil, err
	}
	return v.(model.Value), nil
}

func (qc *queryCache) store(key string, e cacheEntry) {
	qc.mu.Lock()
	defer qc.mu.Unlock()
	if qc.entries == nil {
		qc.entries = map[string]cacheEntry{}
	}
	if len(qc.entries) >= maxCacheEntries {
		for k, old := range qc.entries {
			if e.at.Sub(old.at) > time.Hour {
				delete(qc.entries, k)
			}
		}
		if len(qc.entries) >= maxCacheEntries {
			qc.entries = map[string]cacheEntry{}
		}
	}
	qc.entries[key] = e
}

// queryError says in a few words why a query failed, without the request's
// URL (it could carry user information).
func queryError(err error, timeout time.Duration) error {
	var ue *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("prometheus did not answer within %s", timeout)
	case errors.As(err, &ue):
		var opErr *net.OpError
		if errors.As(ue.Err, &opErr) {
			return fmt.Errorf("prometheus is unreachable: %v", opErr.Err)
		}
		return fmt.Errorf("prometheus is unreachable: %v", ue.Err)
	}
	var pe *promv1.Error
	if errors.As(err, &pe) {
		return fmt.Errorf("prometheus answered %s: %s", pe.Type, pe.Msg)
	}
	return fmt.Errorf("prometheus query failed: %v", err)
}

// single reads one number from an instant query's result. The reason is
// empty when the value is usable, else it says why the result is
// inconclusive.
func single(v model.Value) (value float64, reason string) {
	switch r := v.(type) {
	case model.Vector:
		switch len(r) {
		case 0:
			return 0, "the query returned no data"
		case 1:
			value = float64(r[0].Value)
		default:
			return 0, fmt.Sprintf("the query returned %d series where one is expected (for example %s and %s); aggregate it with sum or max",
				len(r), r[0].Metric, r[1].Metric)
		}
	case *model.Scalar:
		value = float64(r.Value)
	case model.Matrix:
		return 0, "the query returned a range vector where one number is expected"
	default:
		return 0, fmt.Sprintf("the query returned a %s where one number is expected", v.Type())
	}
	switch {
	case math.IsNaN(value):
		return 0, "the query returned NaN (often a division by zero: no traffic yet)"
	case math.IsInf(value, 0):
		return 0, fmt.Sprintf("the query returned %v", value)
	}
	return value, ""
}

package analysis

import (
	"container/list"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Alert is a firing alert as Backstop matches it.
type Alert struct {
	Labels   map[string]string
	StartsAt time.Time
	Source   string // "Alertmanager" or "Prometheus"
}

const (
	// alertRecvSource is the Source of the alerts the webhook stores.
	alertRecvSource = "Alertmanager"
	// alertRecvDefaultMax is the store's capacity when NewAlertStore is given
	// no positive maximum.
	alertRecvDefaultMax = 10000
	// alertRecvMaxBody is the largest webhook body accepted.
	alertRecvMaxBody = 1 << 20
	// alertRecvVersion is the only webhook payload version understood.
	alertRecvVersion = "4"
)

// AlertStore holds the alerts Alertmanager reported as firing. Safe for
// concurrent use.
//
// An alert is identified by its label set, the way Alertmanager identifies it.
// It is firing from its startsAt until Alertmanager reports it resolved, or
// until its endsAt when endsAt is set and in the past. The store keeps at most
// max alerts: beyond that the alert least recently received is evicted first.
// Expired alerts are removed lazily, when the store is read or full.
type AlertStore struct {
	max int

	mu    sync.Mutex
	byKey map[model.Fingerprint]*list.Element
	// order holds *alertRecvEntry, least recently received first.
	order *list.List
}

// alertRecvEntry is one stored alert.
type alertRecvEntry struct {
	key    model.Fingerprint
	labels map[string]string
	// sortKey is the canonical form of labels, to order alerts
	// deterministically.
	sortKey  string
	startsAt time.Time
	// endsAt is zero while Alertmanager has not set an end.
	endsAt time.Time
}

func (e *alertRecvEntry) expired(now time.Time) bool {
	return !e.endsAt.IsZero() && !e.endsAt.After(now)
}

// NewAlertStore returns an empty store that keeps at most max alerts (oldest
// evicted first); max <= 0 means 10000.
func NewAlertStore(max int) *AlertStore {
	if max <= 0 {
		max = alertRecvDefaultMax
	}
	return &AlertStore{
		max:   max,
		byKey: make(map[model.Fingerprint]*list.Element),
		order: list.New(),
	}
}

// Firing returns the alerts firing at now that match sel, sorted by StartsAt
// then labels. A nil sel matches nothing. The returned alerts are copies.
func (s *AlertStore) Firing(sel labels.Selector, now time.Time) []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hits []*alertRecvEntry
	for el := s.order.Front(); el != nil; {
		next := el.Next()
		e := el.Value.(*alertRecvEntry)
		switch {
		case e.expired(now):
			s.removeLocked(el)
		case sel != nil && !e.startsAt.After(now) && sel.Matches(labels.Set(e.labels)):
			hits = append(hits, e)
		}
		el = next
	}
	sort.Slice(hits, func(i, j int) bool {
		if !hits[i].startsAt.Equal(hits[j].startsAt) {
			return hits[i].startsAt.Before(hits[j].startsAt)
		}
		return hits[i].sortKey < hits[j].sortKey
	})
	out := make([]Alert, 0, len(hits))
	for _, e := range hits {
		ls := make(map[string]string, len(e.labels))
		for k, v := range e.labels {
			ls[k] = v
		}
		out = append(out, Alert{Labels: ls, StartsAt: e.startsAt, Source: alertRecvSource})
	}
	return out
}

// Len returns the number of alerts held, counting expired alerts not yet
// purged.
func (s *AlertStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

// apply records a validated webhook's alerts in one step: firing alerts are
// inserted or refreshed, resolved (or already ended) alerts removed.
func (s *AlertStore) apply(alerts []alertRecvAlert, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range alerts {
		a := &alerts[i]
		key := a.labelSet().Fingerprint()
		el, ok := s.byKey[key]
		if a.Status == string(model.AlertResolved) || (!a.EndsAt.IsZero() && !a.EndsAt.After(now)) {
			if ok {
				s.removeLocked(el)
			}
			continue
		}
		startsAt := a.StartsAt
		if startsAt.IsZero() {
			startsAt = now
		}
		if ok {
			e := el.Value.(*alertRecvEntry)
			if startsAt.Before(e.startsAt) {
				e.startsAt = startsAt
			}
			e.endsAt = a.EndsAt
			s.order.MoveToBack(el)
			continue
		}
		s.makeRoomLocked(now)
		e := &alertRecvEntry{
			key:      key,
			labels:   a.Labels,
			sortKey:  alertRecvSortKey(a.Labels),
			startsAt: startsAt,
			endsAt:   a.EndsAt,
		}
		s.byKey[key] = s.order.PushBack(e)
	}
}

// makeRoomLocked frees a place for one more alert: expired alerts go first,
// then the least recently received ones.
func (s *AlertStore) makeRoomLocked(now time.Time) {
	if s.order.Len() < s.max {
		return
	}
	for el := s.order.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*alertRecvEntry).expired(now) {
			s.removeLocked(el)
		}
		el = next
	}
	for s.order.Len() >= s.max {
		s.removeLocked(s.order.Front())
	}
}

func (s *AlertStore) removeLocked(el *list.Element) {
	delete(s.byKey, el.Value.(*alertRecvEntry).key)
	s.order.Remove(el)
}

// alertRecvSortKey is a canonical, unambiguous form of a label set.
func alertRecvSortKey(ls map[string]string) string {
	names := make([]string, 0, len(ls))
	for k := range ls {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k)
		b.WriteByte(model.SeparatorByte)
		b.WriteString(ls[k])
		b.WriteByte(model.SeparatorByte)
	}
	return b.String()
}

// alertRecvPayload is the body of an Alertmanager webhook, version 4.
type alertRecvPayload struct {
	Version         string           `json:"version"`
	GroupKey        string           `json:"groupKey"`
	TruncatedAlerts int              `json:"truncatedAlerts"`
	Status          string           `json:"status"`
	Receiver        string           `json:"receiver"`
	Alerts          []alertRecvAlert `json:"alerts"`
}

// alertRecvAlert is one alert of a webhook; annotations, generatorURL and
// fingerprint are not needed and not kept (alerts are keyed by their labels,
// which is what Alertmanager's fingerprint hashes).
type alertRecvAlert struct {
	Status   string            `json:"status"`
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
	EndsAt   time.Time         `json:"endsAt"`
}

func (a *alertRecvAlert) labelSet() model.LabelSet {
	ls := make(model.LabelSet, len(a.Labels))
	for k, v := range a.Labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

// AlertReceiver is the http.Handler of the Alertmanager webhook. It accepts
// version 4 payloads POSTed with "Authorization: Bearer <token>".
type AlertReceiver struct {
	Store *AlertStore
	// Token returns the expected bearer token (from a Secret). An error or an
	// empty token rejects every request (fail closed) with 503 and a message
	// saying the receiver has no token configured. Surrounding whitespace,
	// such as the trailing newline of a file turned into a Secret, is ignored.
	Token func(ctx context.Context) ([]byte, error)
	Log   logr.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ServeHTTP handles one webhook. It never logs nor echoes the token or the
// request's Authorization header.
func (r *AlertReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	log := r.Log.WithValues("remoteAddr", req.RemoteAddr)
	reject := func(code int, reason string) {
		log.Info("Rejected alert webhook", "status", code, "reason", reason)
		http.Error(w, reason, code)
	}

	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reject(http.StatusMethodNotAllowed, "method "+req.Method+" not allowed, use POST")
		return
	}
	if r.Store == nil {
		reject(http.StatusServiceUnavailable, "alert receiver has no store configured")
		return
	}
	if code, reason := r.authorize(req, log); code != 0 {
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", "Bearer")
		}
		reject(code, reason)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			reject(http.StatusUnsupportedMediaType, "content type must be application/json")
			return
		}
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, alertRecvMaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			reject(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", alertRecvMaxBody))
			return
		}
		reject(http.StatusBadRequest, "reading request body: "+err.Error())
		return
	}
	p, err := alertRecvDecode(body)
	if err != nil {
		reject(http.StatusBadRequest, err.Error())
		return
	}

	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	r.Store.apply(p.Alerts, now)

	firing := 0
	for i := range p.Alerts {
		if p.Alerts[i].Status == string(model.AlertFiring) {
			firing++
		}
	}
	log.V(1).Info("Received alerts", "receiver", p.Receiver, "groupKey", p.GroupKey,
		"groupStatus", p.Status, "firing", firing, "resolved", len(p.Alerts)-firing,
		"truncated", p.TruncatedAlerts, "stored", r.Store.Len())

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, "{\"accepted\":%d}\n", len(p.Alerts))
}

// authorize checks the bearer token; it returns 0 when the request may
// proceed, else the status code and reason to reply with.
func (r *AlertReceiver) authorize(req *http.Request, log logr.Logger) (int, string) {
	const noToken = "alert receiver has no token configured"
	if r.Token == nil {
		return http.StatusServiceUnavailable, noToken
	}
	want, err := r.Token(req.Context())
	if err != nil {
		log.Error(err, "Failed to read the alert receiver's token")
		return http.StatusServiceUnavailable, noToken
	}
	want = []byte(strings.TrimSpace(string(want)))
	if len(want) == 0 {
		return http.StatusServiceUnavailable, noToken
	}
	scheme, got, ok := strings.Cut(strings.TrimSpace(req.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return http.StatusUnauthorized, "missing bearer token"
	}
	// Hash both sides so that the comparison takes the same time whatever
	// the lengths.
	g, wt := sha256.Sum256([]byte(strings.TrimSpace(got))), sha256.Sum256(want)
	if subtle.ConstantTimeCompare(g[:], wt[:]) != 1 {
		return http.StatusUnauthorized, "invalid bearer token"
	}
	return 0, ""
}

// alertRecvDecode parses and validates a webhook body.
func alertRecvDecode(body []byte) (*alertRecvPayload, error) {
	var p alertRecvPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("malformed Alertmanager webhook JSON: %w", err)
	}
	if p.Version != alertRecvVersion {
		return nil, fmt.Errorf("unsupported Alertmanager webhook version %q, want %q", p.Version, alertRecvVersion)
	}
	for i := range p.Alerts {
		a := &p.Alerts[i]
		if len(a.Labels) == 0 {
			return nil, fmt.Errorf("alerts[%d] has no labels", i)
		}
		switch a.Status {
		case string(model.AlertFiring), string(model.AlertResolved):
		default:
			return nil, fmt.Errorf("alerts[%d] has status %q, want %q or %q", i, a.Status, model.AlertFiring, model.AlertResolved)
		}
	}
	return &p, nil
}

// AlertSelector returns the selector of the alerts that concern a Rollout.
// A nil or empty sel selects the alerts labelled namespace=<namespace> and
// rollout=<name>; any other is converted with metav1.LabelSelectorAsSelector.
// Alert label values may be any string: match them with labels.Set.
func AlertSelector(sel *metav1.LabelSelector, namespace, name string) (labels.Selector, error) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		// Not validated: a Rollout name may be longer than a label value.
		return labels.SelectorFromValidatedSet(labels.Set{"namespace": namespace, "rollout": name}), nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("alert selector: %w", err)
	}
	return s, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"backstop.dev/backstop/analysis"
)

// AlertReceiverPath is where the manager receives Alertmanager webhooks.
const AlertReceiverPath = "/alertmanager"

// tokenTTL is how long the receiver's token is kept before the Secret is
// read again, so a rotated token takes effect within it.
const tokenTTL = 30 * time.Second

// alertReceiver is the Alertmanager webhook endpoint: it runs on the leader,
// the replica that acts on the alerts it stores.
type alertReceiver struct {
	addr    string
	handler http.Handler
	log     logr.Logger
}

// newAlertReceiver builds the receiver of --alert-receiver-address, with the
// bearer token of the Secret --alert-receiver-secret (namespace/name, key
// "token"). wake is called after each accepted webhook.
func newAlertReceiver(addr, secret string, reader client.Reader, store *analysis.AlertStore, log logr.Logger, wake func(context.Context) error) (*alertReceiver, error) {
	ns, name, ok := strings.Cut(secret, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("--alert-receiver-secret must be namespace/name, not %q", secret)
	}
	tokens := &secretToken{reader: reader, key: types.NamespacedName{Namespace: ns, Name: name}}
	recv := &analysis.AlertReceiver{Store: store, Token: tokens.get, Log: log}
	mux := http.NewServeMux()
	mux.Handle(AlertReceiverPath, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		recv.ServeHTTP(sw, req)
		if sw.status == http.StatusOK {
			if err := wake(req.Context()); err != nil {
				log.Error(err, "Failed to wake the running releases after an alert")
			}
		}
	}))
	return &alertReceiver{addr: addr, handler: mux, log: log}, nil
}

// Start implements manager.Runnable.
func (a *alertReceiver) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return fmt.Errorf("alert receiver: %w", err)
	}
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	a.log.Info("Started the Alertmanager receiver", "address", ln.Addr().String(), "path", AlertReceiverPath)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

var _ manager.Runnable = (*alertReceiver)(nil)

// secretToken reads the receiver's token from a Secret, at most once per
// tokenTTL.
type secretToken struct {
	reader client.Reader
	key    types.NamespacedName

	mu    sync.Mutex
	token []byte
	read  time.Time
}

func (s *secretToken) get(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != nil && time.Since(s.read) < tokenTTL {
		return s.token, nil
	}
	var secret corev1.Secret
	if err := s.reader.Get(ctx, s.key, &secret); err != nil {
		return nil, fmt.Errorf("reading the receiver's token from Secret %s: %w", s.key, err)
	}
	token := []byte(strings.TrimSpace(string(secret.Data["token"])))
	if len(token) == 0 {
		return nil, fmt.Errorf("secret %s has no key \"token\"", s.key)
	}
	s.token, s.read = token, time.Now()
	return token, nil
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

package analysis_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestPrometheusTLSAndBasicAuth: a Prometheus behind a TLS gateway with its
// own CA, which demands a client certificate and basic auth. Each part of
// the Secret is needed, and a Secret that lacks one is inconclusive with a
// reason, never a pass.
func TestPrometheusTLSAndBasicAuth(t *testing.T) {
	prom := startHistory(t)
	ca := newCA(t)
	serverCert := ca.issue(t, "prometheus", x509.ExtKeyUsageServerAuth)
	clientCert := ca.issue(t, "backstop", x509.ExtKeyUsageClientAuth)
	target, _ := url.Parse(prom)
	proxy := httputil.NewSingleHostReverseProxy(target)
	gateway := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "backstop" || pass != "pa55word" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	gateway.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverCert.pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
		MinVersion:   tls.VersionTLS12,
	}
	gateway.StartTLS()
	defer gateway.Close()

	full := map[string][]byte{
		"username": []byte("backstop"), "password": []byte("pa55word"),
		"ca.crt": ca.pem, "tls.crt": clientCert.certPEM, "tls.key": clientCert.keyPEM,
	}
	without := func(keys ...string) map[string][]byte {
		out := map[string][]byte{}
		for k, v := range full {
			out[k] = v
		}
		for _, k := range keys {
			delete(out, k)
		}
		return out
	}
	ns := env.Namespace(t)
	for _, tc := range []struct {
		name        string
		data        map[string][]byte
		want        backstopv1.Verdict
		wantMessage string
	}{
		{"CA, client certificate and basic auth", full, backstopv1.VerdictPass, ""},
		{"no CA: the server's certificate is unknown", without("ca.crt"), backstopv1.VerdictInconclusive, "unreachable"},
		{"no client certificate", without("tls.crt", "tls.key"), backstopv1.VerdictInconclusive, "unreachable"},
		{"a wrong password", func() map[string][]byte { d := without(); d["password"] = []byte("guess"); return d }(), backstopv1.VerdictInconclusive, "prometheus"},
		{"a certificate without its key", without("tls.key"), backstopv1.VerdictInconclusive, "tls.crt and tls.key go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "prom-"}, Data: tc.data}
			if err := env.Client.Create(context.Background(), secret); err != nil {
				t.Fatal(err)
			}
			ro := shop(gateway.URL, backstopv1.Check{Name: "latency", CheckSpec: backstopv1.CheckSpec{Query: `max(latency_seconds{deployment="{{.Canary}}"})`, Max: dec("1")}})
			ro.Namespace = ns
			ro.Spec.Analysis.Prometheus.SecretRef = &backstopv1.LocalObjectReference{Name: secret.Name}
			a := &analysis.Analyzer{Client: env.Client, Secrets: env.Client}
			if _, err := a.Analyze(context.Background(), ro, historyEnd); err != nil {
				t.Fatal(err)
			}
			res := checkResult(t, ro, "latency")
			t.Logf("%s: %s", res.Verdict, res.Message)
			if res.Verdict != tc.want || !strings.Contains(res.Message, tc.wantMessage) {
				t.Errorf("result %+v; want %s with a message containing %q", res, tc.want, tc.wantMessage)
			}
			for _, secretValue := range []string{"pa55word", "guess", "PRIVATE KEY"} {
				if strings.Contains(res.Message, secretValue) || strings.Contains(res.Value, secretValue) {
					t.Errorf("status shows %q: %+v", secretValue, res)
				}
			}
		})
	}
}

// testCA is a certificate authority for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

type testCert struct {
	pair            tls.Certificate
	certPEM, keyPEM []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

// issue signs a certificate for 127.0.0.1 with the given usage.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{pair: pair, certPEM: certPEM, keyPEM: keyPEM}
}

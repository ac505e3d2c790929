// Package testenv starts the real control plane the tests run against: etcd
// and kube-apiserver built from their upstream Go modules into bin/, with the
// Backstop CRDs and the Gateway API CRDs of the gateway-api module installed.
//
// Start it once per package in TestMain and give each test its own namespace.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Timeout bounds every wait in the tests: long enough for a loaded 2-core
// machine, short enough that a hang fails the test rather than CI.
const Timeout = 30 * time.Second

// Poll is how often an eventual assertion looks again.
const Poll = 100 * time.Millisecond

// Env is a running control plane.
type Env struct {
	env *envtest.Environment

	// Config reaches the apiserver as a cluster admin.
	Config *rest.Config
	// Client is a cluster-admin client with the Backstop and Gateway API types.
	Client client.Client
	// Scheme knows core, Backstop and Gateway API types.
	Scheme *k8sruntime.Scheme
	// Kubeconfig is the path of a kubeconfig file for the admin user.
	Kubeconfig string
	// Kubectl is the path of the kubectl built with the control plane.
	Kubectl string

	dir string
}

// NewScheme returns a scheme with the core, Backstop and Gateway API types.
func NewScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(gwapiv1.Install(s))
	utilruntime.Must(backstopv1.AddToScheme(s))
	return s
}

// RepoRoot is the root of the Backstop repository.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// binaries the control plane needs, relative to the assets folder.
var binaries = []string{"etcd", "kube-apiserver", "kubectl"}

// assets returns the folder with the control plane binaries, building them
// with make when they are missing (as `make test` does before running go
// test), under a lock so that packages tested in parallel build them once.
func assets() (string, error) {
	dir := os.Getenv("BACKSTOP_TEST_ASSETS")
	if dir != "" {
		return dir, nil
	}
	root := RepoRoot()
	dir = filepath.Join(root, "bin")
	if haveAll(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if haveAll(dir) {
		return dir, nil
	}
	fmt.Fprintln(os.Stderr, "testenv: the control plane binaries are missing from bin/; building them with make")
	targets := []string{"-C", root}
	for _, b := range binaries {
		targets = append(targets, filepath.Join("bin", b))
	}
	cmd := exec.Command("make", targets...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the control plane with make: %w", err)
	}
	return dir, nil
}

func haveAll(dir string) bool {
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return false
		}
	}
	return true
}

// GatewayAPICRDs is the folder of the standard-channel Gateway API CRDs in
// the gateway-api module the product is built with.
func GatewayAPICRDs() (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
	cmd.Dir = RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating the gateway-api module: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard"), nil
}

// Options change the control plane Start makes.
type Options struct {
	// APIServerArgs are kube-apiserver flags set on top of envtest's, by
	// name without dashes, such as "token-auth-file".
	APIServerArgs map[string]string
	// CRDDirs are more folders of CRDs to install.
	CRDDirs []string
}

// Start starts etcd and kube-apiserver and installs the CRDs.
func Start() (*Env, error) { return StartWith(Options{}) }

// StartWith starts etcd and kube-apiserver as opts say and installs the
// CRDs.
func StartWith(opts Options) (*Env, error) {
	bin, err := assets()
	if err != nil {
		return nil, err
	}
	gw, err := GatewayAPICRDs()
	if err != nil {
		return nil, err
	}
	scheme := NewScheme()
	e := &Env{
		env: &envtest.Environment{
			BinaryAssetsDirectory:    bin,
			Scheme:                   scheme,
			CRDDirectoryPaths:        append([]string{filepath.Join(RepoRoot(), "config", "crd", "bases"), gw}, opts.CRDDirs...),
			ErrorIfCRDPathMissing:    true,
			ControlPlaneStartTimeout: 90 * time.Second,
			ControlPlaneStopTimeout:  30 * time.Second,
		},
		Scheme:  scheme,
		Kubectl: filepath.Join(bin, "kubectl"),
	}
	if len(opts.APIServerArgs) > 0 {
		args := e.env.ControlPlane.GetAPIServer().Configure()
		for k, v := range opts.APIServerArgs {
			args.Set(k, v)
		}
	}
	cfg, err := e.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane from %s: %w", bin, err)
	}
	e.Config = cfg
	if e.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		e.Stop()
		return nil, err
	}
	if e.dir, err = os.MkdirTemp("", "backstop-testenv-"); err != nil {
		e.Stop()
		return nil, err
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, e.env.KubeConfig, 0o600); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

// CertDir is the folder of the apiserver's certificates: its serving CA
// (apiserver.crt) and the service account signing key (sa-signer.key), for
// a kube-controller-manager.
func (e *Env) CertDir() string { return e.env.ControlPlane.APIServer.CertDir }

// Host is the apiserver's URL.
func (e *Env) Host() string { return e.Config.Host }

// Stop stops the control plane and removes its files.
func (e *Env) Stop() {
	if err := e.env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stopping the control plane:", err)
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

// Main runs a package's tests against a control plane started for them, and
// exits with their result. Use it as the body of TestMain.
func Main(m *testing.M, env **Env) {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	e.Stop()
	os.Exit(code)
}

var namespaceSeq atomic.Int64

// Namespace creates a namespace for one test and deletes it when the test
// ends, so tests in a package do not see each other's objects.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", namespaceSeq.Add(1), sanitize(t.Name()))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = e.Client.Delete(context.Background(), ns) })
	return name
}

// sanitize turns a test name into a DNS label fragment.
func sanitize(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 40 {
		out = strings.Trim(out[:40], "-")
	}
	return out
}

// KubectlCmd returns a kubectl command against the control plane.
func (e *Env) KubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.Kubectl, append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	cmd.Dir = RepoRoot()
	return cmd
}

// Eventually polls ok every Poll until it holds, and fails the test with
// what was awaited when it does not within Timeout.
func Eventually(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(Poll)
	}
	t.Fatalf("waiting for %s: not within %s", what, Timeout)
}

//go:build e2e

package fluxsource_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"backstop.dev/backstop/test/fluxsource"
	"backstop.dev/backstop/test/gittest"
	"backstop.dev/backstop/test/proc"
	"backstop.dev/backstop/test/testenv"
)

// Shared by the tests: one control plane, one fluxsource.Controller and one
// kustomize-controller per package.
var (
	env *testenv.Env
	// artifactDir is the Controller's ArtifactDir.
	artifactDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dirs, err := testenv.FluxCRDs()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fluxsource:", err)
		return 1
	}
	if env, err = testenv.StartWith(testenv.Options{CRDDirs: dirs}); err != nil {
		fmt.Fprintln(os.Stderr, "fluxsource:", err)
		return 1
	}
	defer env.Stop()
	tmp, err := os.MkdirTemp("", "fluxsource-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fluxsource:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	artifactDir = filepath.Join(tmp, "artifacts")

	// The stand-in's log goes to a file, printed when a test fails.
	sourceLog, err := os.Create(filepath.Join(tmp, "fluxsource.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fluxsource:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &fluxsource.Controller{
		Client:      env.Client,
		ArtifactDir: artifactDir,
		Addr:        "127.0.0.1:0",
		Poll:        time.Second,
		Log:         funcr.New(func(prefix, args string) { fmt.Fprintln(sourceLog, time.Now().Format(time.TimeOnly), prefix, args) }, funcr.Options{}),
	}
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			fmt.Fprintln(os.Stderr, "fluxsource:", err)
		}
	}()

	kc, err := startKustomizeController(tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fluxsource:", err)
		return 1
	}
	defer kc.Stop()

	code := m.Run()
	if code != 0 {
		for _, f := range []string{sourceLog.Name(), kc.Log()} {
			b, _ := os.ReadFile(f)
			fmt.Fprintf(os.Stderr, "--- %s\n%s\n", filepath.Base(f), b)
		}
	}
	return code
}

// startKustomizeController starts the real kustomize-controller, built into
// bin/ by `make bin/kustomize-controller`, against the control plane, logging
// to dir/kustomize-controller.log.
func startKustomizeController(dir string) (*proc.Process, error) {
	bin := filepath.Join(testenv.RepoRoot(), "bin", "kustomize-controller")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kustomize-controller is not built; run make bin/kustomize-controller: %w", err)
	}
	health, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	return proc.Start(dir, "kustomize-controller", bin, []string{
		"--metrics-addr=0", // off
		"--health-addr=" + health,
		"--events-addr=", // events go to the apiserver only
		"--log-encoding=console",
		"--watch-all-namespaces=true",
		"--no-remote-bases=true",
		"--concurrent=4",
	}, "KUBECONFIG="+env.Kubeconfig, "RUNTIME_NAMESPACE=flux-system")
}

const (
	gitUser     = "flux"
	gitPassword = "pw-7c1f0e93" // never to appear in a status
	branch      = "main"
)

// fleet starts a git server with the repository "fleet" holding files as its
// first commit, and returns the server, a working clone and the commit.
func fleet(t *testing.T, files map[string]string) (*gittest.Server, *gittest.Work, string) {
	t.Helper()
	srv := gittest.NewServer(t, gittest.Options{Username: gitUser, Password: gitPassword})
	srv.CreateRepo(t, "fleet", branch)
	w := srv.Clone(t, "fleet")
	for p, c := range files {
		w.Write(t, p, c)
	}
	sha := w.Commit(t, "Add the demo app")
	w.Push(t)
	return srv, w, sha
}

func configMap(name, greeting string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  greeting: %s\n", name, greeting)
}

func kustomization(resources ...string) string {
	return "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " + strings.Join(resources, "\n- ") + "\n"
}

// createSecret creates a basic-auth Secret for the git server.
func createSecret(t *testing.T, ns, name, username, password string) {
	t.Helper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string][]byte{"username": []byte(username), "password": []byte(password)},
	}
	if err := env.Client.Create(context.Background(), s); err != nil {
		t.Fatalf("creating Secret %s: %v", name, err)
	}
}

// createGitRepository creates a GitRepository with spec.
func createGitRepository(t *testing.T, ns, name string, spec map[string]any) {
	t.Helper()
	create(t, "source.toolkit.fluxcd.io/v1", "GitRepository", ns, name, spec)
}

func create(t *testing.T, apiVersion, kind, ns, name string, spec map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion,
		"kind":       kind,
		"metadata":   map[string]any{"namespace": ns, "name": name},
		"spec":       spec,
	}}
	if err := env.Client.Create(context.Background(), u); err != nil {
		t.Fatalf("creating %s %s: %v", kind, name, err)
	}
	// The git server stops with the test: stop reconciling from it.
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), u) })
}

func get(ns, name, apiVersion, kind string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u)
	return u, err
}

// condition returns the condition t of u's status.
func condition(u *unstructured.Unstructured, t string) *metav1.Condition {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var conds []metav1.Condition
	for _, r := range raw {
		var c metav1.Condition
		if m, ok := r.(map[string]any); ok && runtime.DefaultUnstructuredConverter.FromUnstructured(m, &c) == nil {
			conds = append(conds, c)
		}
	}
	return apimeta.FindStatusCondition(conds, t)
}

// eventually polls check until it returns nil, failing the test with its
// last error when it does not within testenv.Timeout.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(testenv.Timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s: %v", what, testenv.Timeout, err)
		}
		time.Sleep(testenv.Poll)
	}
}

// gitRepositoryMustBeReady waits for the GitRepository to be Ready with the
// artifact of the commit, as source-controller would leave it.
func gitRepositoryMustBeReady(t *testing.T, ns, name, commit string) {
	t.Helper()
	want := branch + "@sha1:" + commit
	eventually(t, "GitRepository "+name+" Ready at "+want, func() error {
		u, err := get(ns, name, "source.toolkit.fluxcd.io/v1", "GitRepository")
		if err != nil {
			return err
		}
		ready := condition(u, "Ready")
		if ready == nil || ready.Status != metav1.ConditionTrue {
			return fmt.Errorf("Ready is %+v", ready)
		}
		if ready.Reason != "Succeeded" || ready.ObservedGeneration != u.GetGeneration() {
			return fmt.Errorf("Ready is %+v at generation %d", ready, u.GetGeneration())
		}
		if want := fmt.Sprintf("stored artifact for revision '%s'", want); ready.Message != want {
			return fmt.Errorf("Ready says %q, want %q", ready.Message, want)
		}
		if c := condition(u, "ArtifactInStorage"); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("ArtifactInStorage is %+v", c)
		}
		if g, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration"); g != u.GetGeneration() {
			return fmt.Errorf("observedGeneration %d, want %d", g, u.GetGeneration())
		}
		art := map[string]string{}
		for _, f := range []string{"revision", "path", "url", "digest", "lastUpdateTime"} {
			art[f], _, _ = unstructured.NestedString(u.Object, "status", "artifact", f)
		}
		if size, _, _ := unstructured.NestedInt64(u.Object, "status", "artifact", "size"); size <= 0 {
			return fmt.Errorf("artifact size %d", size)
		}
		if art["revision"] != want {
			return fmt.Errorf("artifact revision %q, want %q", art["revision"], want)
		}
		path := "gitrepository/" + ns + "/" + name + "/" + commit + ".tar.gz"
		if art["path"] != path || !strings.HasPrefix(art["url"], "http://127.0.0.1:") || !strings.HasSuffix(art["url"], "/"+path) {
			return fmt.Errorf("artifact path %q url %q, want path %q", art["path"], art["url"], path)
		}
		if !strings.HasPrefix(art["digest"], "sha256:") || art["lastUpdateTime"] == "" {
			return fmt.Errorf("artifact %v lacks a digest or lastUpdateTime", art)
		}
		return nil
	})
}

// kustomizationMustBeApplied waits for the Flux Kustomization to be Ready
// with the commit applied.
func kustomizationMustBeApplied(t *testing.T, ns, name, commit string) {
	t.Helper()
	want := branch + "@sha1:" + commit
	eventually(t, "Kustomization "+name+" applied at "+want, func() error {
		u, err := get(ns, name, "kustomize.toolkit.fluxcd.io/v1", "Kustomization")
		if err != nil {
			return err
		}
		got, _, _ := unstructured.NestedString(u.Object, "status", "lastAppliedRevision")
		ready := condition(u, "Ready")
		if got != want || ready == nil || ready.Status != metav1.ConditionTrue {
			return fmt.Errorf("lastAppliedRevision %q, Ready %+v", got, ready)
		}
		return nil
	})
}

// configMapMustHave waits for the ConfigMap, applied by the Kustomization
// ks, to hold greeting.
func configMapMustHave(t *testing.T, ns, name, ks, greeting string) {
	t.Helper()
	eventually(t, "ConfigMap "+name+" with greeting "+greeting, func() error {
		var cm corev1.ConfigMap
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
			return err
		}
		if cm.Labels["kustomize.toolkit.fluxcd.io/name"] != ks || cm.Labels["kustomize.toolkit.fluxcd.io/namespace"] != ns {
			return fmt.Errorf("labels %v name no Kustomization %s/%s", cm.Labels, ns, ks)
		}
		if cm.Data["greeting"] != greeting {
			return fmt.Errorf("greeting %q", cm.Data["greeting"])
		}
		return nil
	})
}

// TestKustomizeControllerAppliesFromGit runs the real kustomize-controller
// on what the stand-in fetched from a real git server, and follows a push.
func TestKustomizeControllerAppliesFromGit(t *testing.T) {
	ns := env.Namespace(t)
	_, w, first := fleet(t, map[string]string{
		"apps/demo/kustomization.yaml": kustomization("configmap.yaml", "extra.yaml"),
		"apps/demo/configmap.yaml":     configMap("demo", "hello"),
		"apps/demo/extra.yaml":         configMap("extra", "bye"),
		"README.md":                    "# Fleet\n",
	})
	srvURL := gittestURL(t, w)
	createSecret(t, ns, "git-auth", gitUser, gitPassword)
	createGitRepository(t, ns, "fleet", map[string]any{
		"url":       srvURL,
		"interval":  "1m",
		"ref":       map[string]any{"branch": branch},
		"secretRef": map[string]any{"name": "git-auth"},
	})
	create(t, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", ns, "demo", map[string]any{
		"interval":        "10m",
		"path":            "./apps/demo",
		"prune":           true,
		"targetNamespace": ns,
		"timeout":         "30s",
		"sourceRef":       map[string]any{"kind": "GitRepository", "name": "fleet"},
	})

	gitRepositoryMustBeReady(t, ns, "fleet", first)
	configMapMustHave(t, ns, "demo", "demo", "hello")
	configMapMustHave(t, ns, "extra", "demo", "bye")
	kustomizationMustBeApplied(t, ns, "demo", first)

	w.Write(t, "apps/demo/configmap.yaml", configMap("demo", "hello-again"))
	w.Write(t, "apps/demo/kustomization.yaml", kustomization("configmap.yaml"))
	w.Remove(t, "apps/demo/extra.yaml")
	second := w.Commit(t, "Change the greeting, drop extra")
	pushed := time.Now()
	w.Push(t)

	configMapMustHave(t, ns, "demo", "demo", "hello-again")
	t.Logf("The change was applied %s after the push", time.Since(pushed).Round(10*time.Millisecond))
	gitRepositoryMustBeReady(t, ns, "fleet", second)
	kustomizationMustBeApplied(t, ns, "demo", second)
	eventually(t, "ConfigMap extra pruned", func() error {
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "extra"}, &corev1.ConfigMap{})
		if err == nil {
			return errors.New("still there")
		}
		return client.IgnoreNotFound(err)
	})
	// The artifacts of the two last commits are kept, as Flux keeps two.
	for _, c := range []string{first, second} {
		if _, err := os.Stat(filepath.Join(artifactDir, "gitrepository", ns, "fleet", c+".tar.gz")); err != nil {
			t.Errorf("artifact of %s: %v", c, err)
		}
	}
}

// gittestURL is the URL the working clone was cloned from.
func gittestURL(t *testing.T, w *gittest.Work) string {
	t.Helper()
	return strings.TrimSpace(gittest.Git(t, w.Dir, "remote", "get-url", "origin"))
}

// TestFailuresMakeTheGitRepositoryNotReady checks the status of each
// failure, and that no credential is in it.
func TestFailuresMakeTheGitRepositoryNotReady(t *testing.T) {
	ns := env.Namespace(t)
	_, w, _ := fleet(t, map[string]string{"apps/demo/configmap.yaml": configMap("demo", "hello")})
	url := gittestURL(t, w)
	createSecret(t, ns, "right", gitUser, gitPassword)
	createSecret(t, ns, "wrong", gitUser, "not-"+gitPassword)

	tests := []struct {
		name       string
		spec       map[string]any
		condition  string
		wantReason string
		wantIn     string
	}{{
		name:       "wrong-password",
		spec:       map[string]any{"url": url, "interval": "1m", "ref": map[string]any{"branch": branch}, "secretRef": map[string]any{"name": "wrong"}},
		condition:  "FetchFailed",
		wantReason: "GitOperationFailed",
		wantIn:     "authentication required", // git http-backend answers 401 to a wrong password too
	}, {
		name:       "no-credentials",
		spec:       map[string]any{"url": url, "interval": "1m", "ref": map[string]any{"branch": branch}},
		condition:  "FetchFailed",
		wantReason: "GitOperationFailed",
		wantIn:     "authentication required",
	}, {
		name:       "missing-secret",
		spec:       map[string]any{"url": url, "interval": "1m", "ref": map[string]any{"branch": branch}, "secretRef": map[string]any{"name": "missing"}},
		condition:  "FetchFailed",
		wantReason: "AuthenticationFailed",
		wantIn:     "failed to get secret '" + ns + "/missing'",
	}, {
		name:       "unknown-branch",
		spec:       map[string]any{"url": url, "interval": "1m", "ref": map[string]any{"branch": "nope"}, "secretRef": map[string]any{"name": "right"}},
		condition:  "FetchFailed",
		wantReason: "GitOperationFailed",
		wantIn:     `couldn't find remote ref "refs/heads/nope"`,
	}, {
		name:       "default-branch-is-master",
		spec:       map[string]any{"url": url, "interval": "1m", "secretRef": map[string]any{"name": "right"}},
		condition:  "FetchFailed",
		wantReason: "GitOperationFailed",
		wantIn:     `couldn't find remote ref "refs/heads/master"`,
	}, {
		name:       "tag",
		spec:       map[string]any{"url": url, "interval": "1m", "ref": map[string]any{"tag": "v1"}, "secretRef": map[string]any{"name": "right"}},
		condition:  "FetchFailed",
		wantReason: "UnsupportedSpec",
		wantIn:     "does not support spec.ref.tag",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			createGitRepository(t, ns, tt.name, tt.spec)
			eventually(t, "GitRepository "+tt.name+" not Ready with reason "+tt.wantReason, func() error {
				u, err := get(ns, tt.name, "source.toolkit.fluxcd.io/v1", "GitRepository")
				if err != nil {
					return err
				}
				ready, failed := condition(u, "Ready"), condition(u, tt.condition)
				if ready == nil || failed == nil {
					return fmt.Errorf("Ready %+v, %s %+v", ready, tt.condition, failed)
				}
				if ready.Status != metav1.ConditionFalse || ready.Reason != tt.wantReason || ready.ObservedGeneration != u.GetGeneration() {
					return fmt.Errorf("Ready is %+v", ready)
				}
				if failed.Status != metav1.ConditionTrue || failed.Reason != tt.wantReason || failed.Message != ready.Message {
					return fmt.Errorf("%s is %+v, Ready %+v", tt.condition, failed, ready)
				}
				if !strings.Contains(ready.Message, tt.wantIn) {
					return fmt.Errorf("Ready says %q, want it to say %q", ready.Message, tt.wantIn)
				}
				if strings.Contains(ready.Message, gitPassword) {
					t.Fatalf("Ready holds the password: %q", ready.Message)
				}
				return nil
			})
		})
	}
}

// TestRecoversWhenTheSecretIsFixed checks that a failing GitRepository
// becomes Ready once its Secret holds the right password.
func TestRecoversWhenTheSecretIsFixed(t *testing.T) {
	ns := env.Namespace(t)
	_, w, commit := fleet(t, map[string]string{"apps/demo/configmap.yaml": configMap("demo", "hello")})
	createSecret(t, ns, "git-auth", gitUser, "wrong")
	createGitRepository(t, ns, "fleet", map[string]any{
		"url": gittestURL(t, w), "interval": "1m", "ref": map[string]any{"branch": branch}, "secretRef": map[string]any{"name": "git-auth"},
	})
	eventually(t, "Ready False", func() error {
		u, err := get(ns, "fleet", "source.toolkit.fluxcd.io/v1", "GitRepository")
		if err != nil {
			return err
		}
		if c := condition(u, "Ready"); c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("Ready is %+v", c)
		}
		return nil
	})
	s := &corev1.Secret{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "git-auth"}, s); err != nil {
		t.Fatal(err)
	}
	s.Data["password"] = []byte(gitPassword)
	if err := env.Client.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	gitRepositoryMustBeReady(t, ns, "fleet", commit)
	u, err := get(ns, "fleet", "source.toolkit.fluxcd.io/v1", "GitRepository")
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(u, "FetchFailed"); c != nil {
		t.Errorf("FetchFailed is left: %+v", c)
	}
}

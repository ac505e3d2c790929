package gittest

import (
	"crypto/rand"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const (
	user     = "backstop"
	password = "pa55-word-in-no-log"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, Options{Username: user, Password: password})
	srv.CreateRepo(t, "org/app", "trunk")

	alice := srv.Clone(t, "org/app")
	alice.Write(t, "deploy/app.yaml", "replicas: 1\n")
	alice.Write(t, "README", "app\n")
	first := alice.Commit(t, "Add the app")
	if len(first) != 40 {
		t.Fatalf("Commit returned %q, want a full SHA", first)
	}
	alice.Push(t)
	if got := srv.Pushes(); got != 1 {
		t.Errorf("Pushes() after the first push = %d, want 1", got)
	}

	// The empty repository's HEAD named the branch.
	if got := Git(t, srv.Dir("org/app"), "rev-parse", "refs/heads/trunk"); got != first {
		t.Errorf("trunk in the bare repository = %q, want %q", got, first)
	}
	if got := Git(t, srv.Dir("org/app"), "log", "-1", "--format=%an <%ae>|%s"); got != "Test Person <person@example.com>|Add the app" {
		t.Errorf("git log in the bare repository = %q", got)
	}

	bob := srv.Clone(t, "org/app")
	if got := Git(t, bob.Dir, "rev-parse", "HEAD"); got != first {
		t.Errorf("bob's clone is at %q, want %q", got, first)
	}
	bob.Remove(t, "README")
	bob.Write(t, "deploy/app.yaml", "replicas: 2\n")
	second := bob.Commit(t, "Scale the app")
	bob.Push(t)
	if got := srv.Pushes(); got != 2 {
		t.Errorf("Pushes() after the second push = %d, want 2", got)
	}

	alice.Pull(t)
	if got := Git(t, alice.Dir, "rev-parse", "HEAD"); got != second {
		t.Errorf("alice after Pull is at %q, want %q", got, second)
	}
	if b, err := os.ReadFile(filepath.Join(alice.Dir, "deploy", "app.yaml")); err != nil || string(b) != "replicas: 2\n" {
		t.Errorf("deploy/app.yaml after Pull = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(alice.Dir, "README")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("README after Pull: %v, want it removed", err)
	}
	if got := Git(t, srv.Dir("org/app"), "log", "--format=%s", "trunk"); got != "Scale the app\nAdd the app" {
		t.Errorf("git log in the bare repository = %q", got)
	}

	// Fetching counts no push, and the credential helper serves plain git
	// commands in the working tree too.
	Git(t, alice.Dir, "fetch", "--quiet", "origin")
	if got := srv.Pushes(); got != 2 {
		t.Errorf("Pushes() after a fetch = %d, want 2", got)
	}
}

func TestLargePush(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, Options{Username: user, Password: password})
	srv.CreateRepo(t, "app", "main")
	w := srv.Clone(t, "app")
	// Incompressible and larger than http.postBuffer, so git sends the pack
	// chunked.
	b := make([]byte, 3<<20)
	_, _ = rand.Read(b)
	w.Write(t, "blob", string(b))
	sha := w.Commit(t, "Add a large file")
	w.Push(t)
	if got := Git(t, srv.Dir("app"), "rev-parse", "main"); got != sha {
		t.Errorf("main in the bare repository = %q, want %q", got, sha)
	}
	if got := srv.Pushes(); got != 1 {
		t.Errorf("Pushes() = %d, want 1", got)
	}
}

func TestNoAuth(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, Options{})
	srv.CreateRepo(t, "app", "")
	w := srv.Clone(t, "app")
	w.Write(t, "a", "a\n")
	sha := w.Commit(t, "Add a")
	w.Push(t)
	if got := Git(t, srv.Dir("app"), "rev-parse", "main"); got != sha {
		t.Errorf("main in the bare repository = %q, want %q", got, sha)
	}
	if got := srv.Pushes(); got != 1 {
		t.Errorf("Pushes() = %d, want 1", got)
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, Options{Username: user, Password: password})
	srv.CreateRepo(t, "app", "main")

	wrong := "not-" + password
	_, err := srv.clone(t, "app", user, wrong)
	if err == nil {
		t.Fatal("clone with a wrong password succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "Authentication failed") {
		t.Errorf("clone with a wrong password failed with %q, want it to mention authentication", msg)
	}
	for _, secret := range []string{password, wrong} {
		if strings.Contains(msg, secret) {
			t.Errorf("the error holds the password %q: %s", secret, msg)
		}
	}

	_, err = srv.clone(t, "app", "", "")
	if err == nil {
		t.Fatal("clone without credentials succeeded")
	}

	// A push refused by auth counts no push.
	w := srv.Clone(t, "app")
	w.Write(t, "a", "a\n")
	w.Commit(t, "Add a")
	Git(t, w.Dir, "config", "credential.helper", "")
	Git(t, w.Dir, "config", "--add", "credential.helper", "!f() { echo username=x; echo password=y; }; f")
	if _, err := run(t, w.Dir, "push", "origin", "HEAD"); err == nil || !strings.Contains(err.Error(), "Authentication failed") {
		t.Errorf("push with a wrong password: %v, want an authentication failure", err)
	}
	if got := srv.Pushes(); got != 0 {
		t.Errorf("Pushes() = %d, want 0", got)
	}
}

func TestChallenge(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, Options{Username: user, Password: password})
	srv.CreateRepo(t, "app", "main")
	url := srv.URL("app") + "/info/refs?service=git-upload-pack"

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="git"` {
		t.Errorf("without credentials: %s, WWW-Authenticate %q; want 401 with a basic auth challenge", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}

	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-git-upload-pack-advertisement" {
		t.Errorf("with credentials: %s, Content-Type %q; want a smart HTTP advertisement", resp.Status, resp.Header.Get("Content-Type"))
	}
}

func TestStopStart(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, Options{Username: user, Password: password})
	srv.CreateRepo(t, "app", "main")
	w := srv.Clone(t, "app")
	w.Write(t, "a", "a\n")
	w.Commit(t, "Add a")
	w.Push(t)
	url := srv.URL("app")

	srv.Stop()
	srv.Stop() // idempotent
	if _, err := srv.clone(t, "app", user, password); err == nil || !strings.Contains(err.Error(), "Failed to connect") {
		t.Errorf("clone while stopped: %v, want a connection failure", err)
	}
	if _, err := http.Get(url + "/info/refs"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET while stopped: %v, want connection refused", err)
	}

	srv.Start(t)
	srv.Start(t) // idempotent
	if got := srv.URL("app"); got != url {
		t.Errorf("URL after Start = %q, want %q", got, url)
	}
	w.Write(t, "b", "b\n")
	sha := w.Commit(t, "Add b")
	w.Push(t)
	other := srv.Clone(t, "app")
	if got := Git(t, other.Dir, "rev-parse", "HEAD"); got != sha {
		t.Errorf("clone after Start is at %q, want %q", got, sha)
	}
	if got := srv.Pushes(); got != 2 {
		t.Errorf("Pushes() = %d, want 2", got)
	}
}

func TestHermetic(t *testing.T) {
	// Not parallel: it sets the environment.
	t.Setenv("GIT_AUTHOR_NAME", "Someone Else")
	t.Setenv("GIT_DIR", "/nonexistent")
	t.Setenv("HOME", t.TempDir())
	writeFile(t, filepath.Join(os.Getenv("HOME"), ".gitconfig"), "[user]\n\tname = Developer\n[init]\n\tdefaultBranch = dev\n")

	dir := t.TempDir()
	Git(t, dir, "init", "--quiet")
	if got := Git(t, dir, "symbolic-ref", "HEAD"); got != "refs/heads/main" {
		t.Errorf("HEAD of a new repository = %q, want refs/heads/main", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Git(t, dir, "add", "a")
	Git(t, dir, "commit", "--quiet", "-m", "Add a")
	if got := Git(t, dir, "log", "-1", "--format=%an <%ae>"); got != "Test Person <person@example.com>" {
		t.Errorf("author = %q, want Test Person <person@example.com>", got)
	}
}

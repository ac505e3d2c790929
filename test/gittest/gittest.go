// Package gittest runs a real Git server for a test: `git http-backend` (the
// smart HTTP protocol of the git CLI, fetch and push) behind net/http/cgi,
// with basic auth, listening on a free port of 127.0.0.1, over a directory of
// bare repositories in the test's temporary directory. Tests that claim
// something works against Git use it rather than a fake. ServeSSH serves the
// same repositories over SSH too (see ssh.go), with public-key auth and
// host keys checked against known_hosts.
//
// Start a server per test, create the repositories it serves, and make
// commits in a working clone as a person would:
//
//	srv := gittest.NewServer(t, gittest.Options{Username: "backstop", Password: "s3cret"})
//	srv.CreateRepo(t, "app", "main")
//
//	w := srv.Clone(t, "app")
//	w.Write(t, "deploy/app.yaml", "replicas: 1\n")
//	good := w.Commit(t, "Add the app")
//	w.Write(t, "deploy/app.yaml", "replicas: 0\n")
//	bad := w.Commit(t, "Break the app")
//	w.Push(t)
//
//	// the code under test clones srv.URL("app") with basic auth
//	// (backstop, s3cret), reverts bad and pushes
//
//	if srv.Pushes() != 2 { ... }
//	w.Pull(t)
//	log := gittest.Git(t, srv.Dir("app"), "log", "--format=%s", "main")
//
// Stop makes the server refuse connections and Start serves again on the
// same port, for a Git server that is down when the code under test needs
// it. The server stops when the test ends.
//
// # Git
//
// Git runs the git CLI (2.28 or newer) found in PATH hermetically: the
// developer's configuration (~/.gitconfig, /etc/gitconfig) and the GIT_*
// variables of the environment are ignored, HOME is a temporary directory
// per test holding the identity "Test Person <person@example.com>",
// init.defaultBranch=main and protocol.version=2, prompts are disabled and
// messages are in English (LC_ALL=C), so tests may assert on them.
//
// A Work's repository has a credential helper in its local configuration
// that answers with the server's credentials, read from a file of the
// Work's directory, so Git(t, w.Dir, "fetch") works too; the password never
// appears in a URL, a command line or a log.
//
// # Failures
//
// Every function fails the test when it cannot do its job; a git command
// that fails fails the test with its standard error. When a test fails, what
// git http-backend wrote to its standard error is printed with the test's
// log.
package gittest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// realm is the basic auth realm of the server.
	realm = "git"
	// listenTimeout bounds how long Start tries to listen on the port again.
	listenTimeout = 2 * time.Second
	// poll is how often Start tries again.
	poll = 50 * time.Millisecond
	// flushPkt is the body of git's probe request before a large push.
	flushPkt = "0000"
	// maxBody bounds a chunked request body, which is read into memory.
	maxBody = 256 << 20
	// gitConfig is the global configuration of every hermetic git command.
	gitConfig = `[user]
	name = Test Person
	email = person@example.com
[init]
	defaultBranch = main
[protocol]
	version = 2
[advice]
	detachedHead = false
[commit]
	gpgSign = false
[tag]
	gpgSign = false
`
)

// Options of a server.
type Options struct {
	// Username and Password are demanded with basic auth on every request when Username is set.
	Username, Password string
}

// Server is a git smart-HTTP server over a directory of bare repositories.
type Server struct {
	opts    Options
	root    string // GIT_PROJECT_ROOT: the bare repositories
	home    string // HOME of git http-backend and of Git
	addr    string // 127.0.0.1:PORT, kept across Stop and Start
	backend cgi.Handler
	log     *syncBuffer // git http-backend's standard error, the HTTP server's errors
	pushes  atomic.Int64

	mu       sync.Mutex
	srv      *http.Server    // nil when stopped
	inflight *sync.WaitGroup // requests of srv
}

// NewServer starts a server on a free port of 127.0.0.1 with no
// repositories, and stops it when the test ends.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("gittest: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() && s.log.Len() > 0 {
			t.Logf("gittest: the server's log (git's standard error, refused requests):\n%s", s.log.String())
		}
	})
	return s
}

// Open starts a server outside a test, for a program such as the demo: its
// repositories and files go in dir, and the caller stops it with Stop.
func Open(dir string, opts Options) (*Server, error) {
	s := &Server{
		opts: opts,
		root: filepath.Join(dir, "repos"),
		home: filepath.Join(dir, "home"),
		log:  &syncBuffer{},
	}
	for _, d := range []string{s.root, s.home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(s.home, ".gitconfig"), []byte(gitConfig), 0o644); err != nil {
		return nil, err
	}
	backend, err := findHTTPBackend()
	if err != nil {
		return nil, err
	}
	s.backend = cgi.Handler{
		Path: backend,
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.root,
			"GIT_HTTP_EXPORT_ALL=1",
			"HOME=" + s.home,
			"XDG_CONFIG_HOME=" + filepath.Join(s.home, ".config"),
			"GIT_CONFIG_NOSYSTEM=1",
			"LC_ALL=C",
		},
		Logger: log.New(s.log, "gittest: ", 0),
		Stderr: s.log,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting a git server: %w", err)
	}
	s.addr = l.Addr().String()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serve(l)
	return s, nil
}

// Log is what the server logged: git's standard error and refused
// requests.
func (s *Server) Log() string { return s.log.String() }

// URL is the clone URL of the repository, http://127.0.0.1:PORT/<repo>.git,
// without credentials.
func (s *Server) URL(repo string) string {
	return "http://" + s.addr + "/" + repo + ".git"
}

// Dir is the path of the bare repository, for `git -C` checks with Git.
func (s *Server) Dir(repo string) string {
	return filepath.Join(s.root, filepath.FromSlash(repo)+".git")
}

// CreateRepo creates an empty bare repository, whose HEAD is the (still
// unborn) branch, "main" when empty, and which accepts pushes. A repo may
// have slashes: "org/app" is served at URL("org/app").
func (s *Server) CreateRepo(t testing.TB, repo string, branch string) {
	t.Helper()
	if err := s.Create(repo, branch); err != nil {
		t.Fatalf("gittest: %v", err)
	}
}

// Create is CreateRepo outside a test.
func (s *Server) Create(repo, branch string) error {
	if repo == "" || !filepath.IsLocal(filepath.FromSlash(repo)) || path.Clean(repo) != repo {
		return fmt.Errorf("repository name %q: want a clean relative path such as \"app\" or \"org/app\"", repo)
	}
	if branch == "" {
		branch = "main"
	}
	dir := s.Dir(repo)
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("repository %q exists already", repo)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if _, err := runIn(s.home, "", "init", "--quiet", "--bare", "--initial-branch="+branch, dir); err != nil {
		return err
	}
	// git http-backend enables receive-pack by itself only when REMOTE_USER
	// is set, which it is not without Options.Username.
	_, err := runIn(s.home, dir, "config", "http.receivepack", "true")
	return err
}

// Git runs the git CLI in dir as Git does, outside a test, with the
// server's home (identity "Test Person").
func (s *Server) Git(dir string, args ...string) (string, error) {
	return runIn(s.home, dir, args...)
}

// Stop stops serving: it closes the listener and every connection and waits
// for the requests in flight to end, so that later requests fail to
// connect. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	_ = s.srv.Close()
	s.inflight.Wait()
	s.srv, s.inflight = nil, nil
}

// Start serves again on the same port, so URL is unchanged. It fails the
// test when another process took the port meanwhile. Starting a running
// server does nothing.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	var l net.Listener
	var err error
	deadline := time.Now().Add(listenTimeout)
	for {
		if l, err = net.Listen("tcp", s.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(poll)
	}
	if err != nil {
		t.Fatalf("gittest: starting the git server again on %s: %v", s.addr, err)
	}
	s.serve(l)
}

// Pushes is how many pushes the server received: git-receive-pack POSTs
// (the requests that send a push) answered with status 200, not counting the
// probe git sends before a large push, and, over SSH, runs of git
// receive-pack that exited 0 after the client sent ref updates rather than
// a bare flush packet. A push that git refuses in the protocol,
// for example a ref update that is not a fast-forward, is answered with 200
// too and so counted; a push refused by auth, or with nothing to send, is
// not.
func (s *Server) Pushes() int {
	return int(s.pushes.Load())
}

// serve serves on l until Stop. s.mu is held.
func (s *Server) serve(l net.Listener) {
	inflight := &sync.WaitGroup{}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inflight.Add(1)
			defer inflight.Done()
			s.serveHTTP(w, r)
		}),
		ErrorLog:          log.New(s.log, "gittest: ", 0),
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.srv, s.inflight = srv, inflight
	go func() { _ = srv.Serve(l) }()
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	backend := s.backend
	if s.opts.Username != "" {
		user, password, ok := r.BasicAuth()
		if !ok || !equal(user, s.opts.Username) || !equal(password, s.opts.Password) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.Env = append(backend.Env[:len(backend.Env):len(backend.Env)], "REMOTE_USER="+user)
	}
	if len(r.TransferEncoding) > 0 {
		// net/http/cgi refuses chunked bodies, which git sends for a push
		// larger than http.postBuffer (1 MiB): hand it the body whole.
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil || len(body) > maxBody {
			http.Error(w, "reading the request body: too large or broken", http.StatusBadRequest)
			return
		}
		r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(body)), int64(len(body)), nil
	}
	push := r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack")
	if push && r.ContentLength == int64(len(flushPkt)) {
		// Before a push larger than http.postBuffer, git probes with a bare
		// flush packet, which is no push.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		push = string(body) != flushPkt
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	rec := &statusRecorder{ResponseWriter: w}
	backend.ServeHTTP(rec, r)
	if push && rec.status() == http.StatusOK {
		s.pushes.Add(1)
	}
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// statusRecorder remembers the status of a response.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

func (r *statusRecorder) Unwrap() http.ResponseWriter {
	return r.ResponseWriter
}

// Work is a working clone for a test to make commits as a person would (git CLI).
type Work struct {
	// Dir is the working tree.
	Dir string
}

// Clone clones the repository into a new temporary directory, with the
// server's credentials given by a credential helper. An empty repository
// clones too: its branch is born by the first Commit and Push.
func (s *Server) Clone(t testing.TB, repo string) *Work {
	t.Helper()
	w, err := s.clone(t, repo, s.opts.Username, s.opts.Password)
	if err != nil {
		t.Fatalf("gittest: %v", err)
	}
	return w
}

// clone clones the repository with the credentials username and password
// (none when username is empty).
func (s *Server) clone(t testing.TB, repo, username, password string) (*Work, error) {
	t.Helper()
	parent := t.TempDir()
	w := &Work{Dir: filepath.Join(parent, "work")}
	args := []string{"clone", "--quiet"}
	if username != "" {
		// The helper prints the file's lines (username=, password=) for
		// "get" and ignores "store" and "erase".
		creds := filepath.Join(parent, "credentials")
		if err := os.WriteFile(creds, []byte("username="+username+"\npassword="+password+"\n"), 0o600); err != nil {
			t.Fatalf("gittest: %v", err)
		}
		helper := `!f() { test "$1" = get && cat ` + shellQuote(creds) + `; }; f`
		args = append(args, "--config", "credential.helper="+helper)
	}
	args = append(args, s.URL(repo), w.Dir)
	if _, err := run(t, "", args...); err != nil {
		return nil, err
	}
	return w, nil
}

// Write writes content to the file at path, slash-separated and relative to
// Dir, creating its directories.
func (w *Work) Write(t testing.TB, path, content string) {
	t.Helper()
	p := w.path(t, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatalf("gittest: %v", err)
	}
	writeFile(t, p, content)
}

// Remove removes the file or directory at path, slash-separated and relative
// to Dir. It fails the test when there is none.
func (w *Work) Remove(t testing.TB, path string) {
	t.Helper()
	p := w.path(t, path)
	if _, err := os.Lstat(p); err != nil {
		t.Fatalf("gittest: removing %s: %v", path, err)
	}
	if err := os.RemoveAll(p); err != nil {
		t.Fatalf("gittest: %v", err)
	}
}

// Commit stages every change (git add -A) and commits it with the message,
// as Test Person <person@example.com>, and returns the commit's full SHA. It
// fails the test when there is nothing to commit.
func (w *Work) Commit(t testing.TB, message string) string {
	t.Helper()
	Git(t, w.Dir, "add", "-A")
	Git(t, w.Dir, "commit", "--quiet", "-m", message)
	return Git(t, w.Dir, "rev-parse", "HEAD")
}

// Push pushes the current branch to the branch of the same name of origin
// (git push origin HEAD).
func (w *Work) Push(t testing.TB) {
	t.Helper()
	Git(t, w.Dir, "push", "--quiet", "origin", "HEAD")
}

// Pull fetches origin and fast-forwards the current branch (git pull
// --ff-only), for example to a revert pushed by the code under test.
func (w *Work) Pull(t testing.TB) {
	t.Helper()
	Git(t, w.Dir, "pull", "--quiet", "--ff-only")
}

func (w *Work) path(t testing.TB, path string) string {
	t.Helper()
	p := filepath.FromSlash(path)
	if !filepath.IsLocal(p) {
		t.Fatalf("gittest: path %q is not inside the working tree", path)
	}
	return filepath.Join(w.Dir, p)
}

// Git runs git -C dir args... hermetically (see the package documentation)
// and returns its standard output without surrounding white space. With an
// empty dir it runs in the current directory, without -C. It fails the test
// with git's standard error when git fails.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := run(t, dir, args...)
	if err != nil {
		t.Fatalf("gittest: %v", err)
	}
	return out
}

// run runs git like Git and returns an error holding git's standard error
// when it fails.
func run(t testing.TB, dir string, args ...string) (string, error) {
	t.Helper()
	return runIn(home(t), dir, args...)
}

// gitTimeout bounds one git command: a command that hangs (a lock left by a
// killed process, a server that stopped answering) fails the test with
// what it ran instead of holding it until the test binary's timeout.
const gitTimeout = 5 * time.Minute

// runIn runs git in dir with the given home.
func runIn(home, dir string, args ...string) (string, error) {
	all := args
	if dir != "" {
		all = append([]string{"-C", dir}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", all...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = env(home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("git %s (in %q) did not end within %s\n%s", strings.Join(args, " "), dir, gitTimeout, strings.TrimSpace(stderr.String()))
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("git %s (in %q): %v\n%s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
		}
		return "", fmt.Errorf("running git %s: %w; install git (2.28 or newer)", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(stdout.String()), nil
}

// env is the environment of a hermetic git with the home directory home:
// the process's, without any GIT_* variable, with no system or user
// configuration but home's .gitconfig.
func env(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "GIT_"), k == "HOME", k == "XDG_CONFIG_HOME", k == "SSH_ASKPASS", k == "LC_ALL", k == "LANGUAGE":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	)
}

var (
	homesMu sync.Mutex
	homes   = map[testing.TB]string{}
)

// home is the test's HOME for git, with the global configuration gitConfig.
func home(t testing.TB) string {
	t.Helper()
	homesMu.Lock()
	defer homesMu.Unlock()
	if h, ok := homes[t]; ok {
		return h
	}
	h := t.TempDir()
	writeFile(t, filepath.Join(h, ".gitconfig"), gitConfig)
	homes[t] = h
	t.Cleanup(func() {
		homesMu.Lock()
		defer homesMu.Unlock()
		delete(homes, t)
	})
	return h
}

var (
	backendOnce sync.Once
	backendPath string
	backendErr  error
)

// httpBackend finds git-http-backend in git's exec path.
func findHTTPBackend() (string, error) {
	backendOnce.Do(func() {
		out, err := exec.Command("git", "--exec-path").Output()
		if err != nil {
			backendErr = fmt.Errorf("running git --exec-path: %v; install git (2.28 or newer)", err)
			return
		}
		p := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
		if _, err := os.Stat(p); err != nil {
			backendErr = fmt.Errorf("git-http-backend: %v; install git (the Debian package git has it)", err)
			return
		}
		backendPath = p
	})
	return backendPath, backendErr
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatalf("gittest: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

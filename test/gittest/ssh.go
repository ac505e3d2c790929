package gittest

// The SSH side of the server: the git CLI behind golang.org/x/crypto/ssh, as
// a Git host serves ssh:// URLs.
//
// ServeSSH serves the server's bare repositories over SSH too, on another
// free port of 127.0.0.1, with public-key auth only, for the user "git":
//
//	srv := gittest.NewServer(t, gittest.Options{})
//	srv.CreateRepo(t, "app", "main")
//	key, pub := gittest.NewSSHKey(t, "passphrase") // a PEM, as a Secret holds it
//	ssrv := srv.ServeSSH(t, gittest.SSHOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
//
//	// the code under test clones ssrv.URL("app") with key and its
//	// passphrase, and checks the host key against ssrv.KnownHosts()
//
// Each server has fresh host keys, by default an ed25519 and an ECDSA one as
// OpenSSH's sshd offers several; KnownHosts gives known_hosts lines for
// [127.0.0.1]:PORT. The server runs `git upload-pack` and `git receive-pack`
// for the exec requests `git-upload-pack '<path>'` and
// `git-receive-pack '<path>'` (git's quoting, or a bare path), with the
// GIT_PROTOCOL of an "env" request (git asks for protocol v2 so), and
// refuses every other command and every path outside the repositories. A
// push over SSH counts in Pushes like one over HTTP. Refused keys, refused
// commands and what git wrote to its standard error are in the log printed
// when the test fails. The SSH server closes its connections and waits for
// them when the test ends; Stop and Start concern the HTTP server only.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

const (
	// sshUser is the only user the SSH server lets in.
	sshUser = "git"
	// handshakeTimeout bounds an SSH handshake, auth included.
	handshakeTimeout = 10 * time.Second
	// waitDelay bounds how long a git command's output is waited for after
	// it ends or is killed.
	waitDelay = 5 * time.Second
	// exitFatal is the exit status of a refused command, as git's die().
	exitFatal = 128
)

// defaultHostKeyTypes are the host keys of an SSH server by default.
var defaultHostKeyTypes = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256}

// SSHOptions of an SSH server.
type SSHOptions struct {
	// AuthorizedKeys may log in as the user "git"; every other key and user
	// is refused.
	AuthorizedKeys []ssh.PublicKey
	// HostKeyTypes are the types of the server's host keys, each generated
	// afresh: ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256 or ssh.KeyAlgoRSA.
	// Default ed25519 and ECDSA.
	HostKeyTypes []string
}

// SSHServer serves the bare repositories of a Server over SSH.
type SSHServer struct {
	s        *Server
	opts     SSHOptions
	addr     string // 127.0.0.1:PORT
	hostKeys []ssh.Signer
	config   *ssh.ServerConfig
	env      []string // of every git command
	l        net.Listener
	ctx      context.Context // cancelled when the server closes, killing git commands
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the accept loop, connections, sessions and commands

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// ServeSSH serves the server's repositories over SSH on a free port of
// 127.0.0.1 (see the package documentation), until the test ends.
func (s *Server) ServeSSH(t testing.TB, opts SSHOptions) *SSHServer {
	t.Helper()
	types := opts.HostKeyTypes
	if len(types) == 0 {
		types = defaultHostKeyTypes
	}
	ss := &SSHServer{s: s, opts: opts, env: env(home(t)), conns: map[net.Conn]struct{}{}}
	ss.config = &ssh.ServerConfig{PublicKeyCallback: ss.authorize}
	for _, typ := range types {
		signer := newHostKey(t, typ)
		ss.config.AddHostKey(signer)
		ss.hostKeys = append(ss.hostKeys, signer)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gittest: starting an SSH server: %v", err)
	}
	ss.l, ss.addr = l, l.Addr().String()
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
	t.Cleanup(ss.close)
	ss.wg.Go(ss.accept)
	return ss
}

// URL is the clone URL of the repository,
// ssh://git@127.0.0.1:PORT/<repo>.git.
func (ss *SSHServer) URL(repo string) string {
	return "ssh://" + sshUser + "@" + ss.addr + "/" + repo + ".git"
}

// Addr is the server's address, 127.0.0.1:PORT, for known_hosts lines of
// other keys (knownhosts.Normalize(Addr()) is [127.0.0.1]:PORT).
func (ss *SSHServer) Addr() string {
	return ss.addr
}

// HostKeys are the server's public host keys, in the order of
// SSHOptions.HostKeyTypes.
func (ss *SSHServer) HostKeys() []ssh.PublicKey {
	keys := make([]ssh.PublicKey, len(ss.hostKeys))
	for i, k := range ss.hostKeys {
		keys[i] = k.PublicKey()
	}
	return keys
}

// KnownHosts is a known_hosts file that knows the server: a line for
// [127.0.0.1]:PORT per host key of one of keyTypes (ssh.KeyAlgoED25519...),
// or per host key when no type is given.
func (ss *SSHServer) KnownHosts(keyTypes ...string) []byte {
	var b bytes.Buffer
	for _, k := range ss.HostKeys() {
		if len(keyTypes) == 0 || slices.Contains(keyTypes, k.Type()) {
			b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(ss.addr)}, k) + "\n")
		}
	}
	return b.Bytes()
}

// NewSSHKey generates an ed25519 key pair for a client. private is the
// private key in OpenSSH's PEM format ("OPENSSH PRIVATE KEY", as ssh-keygen
// writes it), encrypted with passphrase unless it is empty.
func NewSSHKey(t testing.TB, passphrase string) (private []byte, public ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("gittest: %v", err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "gittest")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "gittest", []byte(passphrase))
	}
	if err != nil {
		t.Fatalf("gittest: %v", err)
	}
	public, err = ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("gittest: %v", err)
	}
	return pem.EncodeToMemory(block), public
}

// Clone clones the repository over SSH into a new temporary directory, with
// the OpenSSH client (ssh in PATH) logging in with key, a private key
// without passphrase, and checking the server's host key against
// KnownHosts. The Work's core.sshCommand keeps both, so Push and Pull go
// over SSH too.
func (ss *SSHServer) Clone(t testing.TB, repo string, key []byte) *Work {
	t.Helper()
	w, err := ss.clone(t, repo, key, ss.KnownHosts())
	if err != nil {
		t.Fatalf("gittest: %v", err)
	}
	return w
}

// clone clones the repository with key, checking the host key against
// knownHosts.
func (ss *SSHServer) clone(t testing.TB, repo string, key, knownHosts []byte) (*Work, error) {
	t.Helper()
	parent := t.TempDir()
	w := &Work{Dir: filepath.Join(parent, "work")}
	id, hosts := filepath.Join(parent, "id"), filepath.Join(parent, "known_hosts")
	// ssh refuses a private key that others may read.
	if err := os.WriteFile(id, key, 0o600); err != nil {
		t.Fatalf("gittest: %v", err)
	}
	writeFile(t, hosts, string(knownHosts))
	// No configuration, agent or prompt of the developer's: only this key
	// and these host keys.
	command := "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none" +
		" -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR" +
		" -o UserKnownHostsFile=" + shellQuote(hosts) + " -i " + shellQuote(id)
	if _, err := run(t, "", "clone", "--quiet", "--config", "core.sshCommand="+command, ss.URL(repo), w.Dir); err != nil {
		return nil, err
	}
	return w, nil
}

// close stops the server: it closes the listener and every connection,
// kills the git commands still running and waits for every goroutine.
func (ss *SSHServer) close() {
	ss.mu.Lock()
	ss.closed = true
	conns := ss.conns
	ss.conns = nil
	ss.mu.Unlock()
	_ = ss.l.Close()
	for c := range conns {
		_ = c.Close()
	}
	ss.cancel()
	ss.wg.Wait()
}

func (ss *SSHServer) accept() {
	for {
		c, err := ss.l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				ss.logf("accepting a connection: %v", err)
			}
			return
		}
		ss.mu.Lock()
		closed := ss.closed
		if !closed {
			ss.conns[c] = struct{}{}
		}
		ss.mu.Unlock()
		if closed {
			_ = c.Close()
			return
		}
		ss.wg.Go(func() {
			defer ss.forget(c)
			ss.serveConn(c)
		})
	}
}

// forget closes a connection that ended and stops tracking it.
func (ss *SSHServer) forget(c net.Conn) {
	_ = c.Close()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.conns, c)
}

func (ss *SSHServer) serveConn(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(c, ss.config)
	if err != nil {
		ss.logf("refused a connection from %s: %v", c.RemoteAddr(), err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer conn.Close()
	ss.wg.Go(func() { ssh.DiscardRequests(reqs) })
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions are served")
			continue
		}
		ss.wg.Go(func() { ss.serveSession(nc) })
	}
}

// authorize lets the user git in with one of the authorized keys.
func (ss *SSHServer) authorize(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	if meta.User() == sshUser && slices.ContainsFunc(ss.opts.AuthorizedKeys, func(k ssh.PublicKey) bool {
		return bytes.Equal(k.Marshal(), key.Marshal())
	}) {
		return nil, nil
	}
	ss.logf("refused the key %s %s of the user %q", key.Type(), ssh.FingerprintSHA256(key), meta.User())
	return nil, fmt.Errorf("the key is not authorized for the user %q", meta.User())
}

// serveSession serves a session's requests: "env" GIT_PROTOCOL, then one
// "exec"; it refuses the others.
func (ss *SSHServer) serveSession(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		ss.logf("accepting a session: %v", err)
		return
	}
	var protocol string
	started := false
	for req := range reqs {
		ok := false
		switch {
		case req.Type == "env" && !started:
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) == nil && kv.Name == "GIT_PROTOCOL" {
				protocol, ok = kv.Value, true
			}
		case req.Type == "exec" && !started:
			var cmd struct{ Command string }
			if ssh.Unmarshal(req.Payload, &cmd) != nil {
				break
			}
			// Reply before the command's output and exit status.
			started = true
			if req.WantReply {
				_ = req.Reply(true, nil)
			}
			ss.wg.Go(func() { ss.exec(ch, cmd.Command, protocol) })
			continue
		}
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
	}
	if !started {
		_ = ch.Close()
	}
}

// exec runs the command of an exec request with the session's channel as
// its standard input and output, sends its exit status and closes the
// channel.
func (ss *SSHServer) exec(ch ssh.Channel, command, protocol string) {
	defer ch.Close()
	service, repo, err := parseCommand(command)
	if err != nil {
		ss.logf("refused the command %q: %v", command, err)
		fmt.Fprintf(ch.Stderr(), "gittest: refused the command %q: %v\n", command, err)
		exit(ch, exitFatal)
		return
	}
	cmd := exec.CommandContext(ss.ctx, "git", service, filepath.Join(ss.s.root, filepath.FromSlash(repo)))
	cmd.Env = ss.env
	if protocol != "" {
		cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)], "GIT_PROTOCOL="+protocol)
	}
	cmd.Stdout = ch
	cmd.Stderr = io.MultiWriter(ss.s.log, ch.Stderr())
	cmd.WaitDelay = waitDelay
	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		ss.logf("running git %s: %v", service, err)
		exit(ch, exitFatal)
		return
	}
	// Not cmd.Stdin, which Wait would wait for: a client may keep its side
	// open until the command ends.
	var sent prefix
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(stdin, io.TeeReader(ch, &sent))
		_ = stdin.Close()
	}()
	status := exitStatus(cmd.Wait())
	if status != 0 {
		ss.logf("git %s %q exited with status %d", service, repo, status)
	}
	// A client with nothing to push sends a flush packet only.
	if service == "receive-pack" && status == 0 && sent.push() {
		ss.s.pushes.Add(1)
	}
	exit(ch, status)
	_ = ch.Close()
	<-copied
}

// exit ends the channel's output and sends the exit status.
func exit(ch ssh.Channel, status int) {
	_ = ch.CloseWrite()
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
}

// exitStatus is the exit status of a command that ended with err.
func exitStatus(err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return exit.ExitCode()
	}
	return exitFatal
}

// parseCommand parses the command of an exec request, as git sends it:
// git-upload-pack or git-receive-pack and the repository's path, quoted for
// sh or bare, absolute (ssh://host/app.git) or not (host:app.git). It returns
// the git subcommand and the path relative to the repositories.
func parseCommand(command string) (service, repo string, err error) {
	name, arg, _ := strings.Cut(command, " ")
	switch name {
	case "git-upload-pack", "git-receive-pack":
	default:
		return "", "", errors.New("want git-upload-pack or git-receive-pack")
	}
	p, err := dequote(arg)
	if err != nil {
		return "", "", err
	}
	p = strings.TrimPrefix(p, "/")
	if p == "" || path.Clean(p) != p || !filepath.IsLocal(filepath.FromSlash(p)) {
		return "", "", errors.New("the path is not that of a repository of the server")
	}
	return strings.TrimPrefix(name, "git-"), p, nil
}

// dequote undoes git's sq_quote of one argument: the argument in single
// quotes, where each single quote or exclamation mark closes the quotes,
// comes escaped with a backslash and opens them again:
//
//	'/it'\''s.git' is /it's.git
//
// An argument without quotes is taken as is when it holds nothing a shell
// would interpret.
func dequote(s string) (string, error) {
	if !strings.HasPrefix(s, "'") {
		if s == "" || strings.ContainsAny(s, " \t\n'\"\\$`;&|<>*?!~(){}[]") {
			return "", errors.New("want one path, quoted as git quotes it")
		}
		return s, nil
	}
	var b strings.Builder
	for {
		end := strings.IndexByte(s[1:], '\'')
		if end < 0 {
			return "", errors.New("unterminated quote")
		}
		b.WriteString(s[1 : 1+end])
		s = s[2+end:]
		switch {
		case s == "":
			return b.String(), nil
		case len(s) >= 3 && s[0] == '\\' && (s[1] == '\'' || s[1] == '!') && s[2] == '\'':
			b.WriteByte(s[1])
			s = s[2:]
		default:
			return "", errors.New("want one path, quoted as git quotes it")
		}
	}
}

// prefix keeps the first bytes of what a client sends, to tell a push from
// a flush packet.
type prefix struct {
	mu sync.Mutex
	b  []byte
}

func (p *prefix) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(flushPkt) - len(p.b); n > 0 {
		p.b = append(p.b, b[:min(n, len(b))]...)
	}
	return len(b), nil
}

func (p *prefix) push() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.b) == len(flushPkt) && string(p.b) != flushPkt
}

func (ss *SSHServer) logf(format string, args ...any) {
	fmt.Fprintf(ss.s.log, "gittest: ssh: "+format+"\n", args...)
}

// newHostKey generates a host key of the type.
func newHostKey(t testing.TB, typ string) ssh.Signer {
	t.Helper()
	var key any
	var err error
	switch typ {
	case ssh.KeyAlgoED25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case ssh.KeyAlgoECDSA256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ssh.KeyAlgoRSA:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("gittest: host key type %q: want %s, %s or %s", typ, ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSA)
	}
	if err != nil {
		t.Fatalf("gittest: generating a host key: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatalf("gittest: %v", err)
	}
	return signer
}

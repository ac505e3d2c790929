package gittest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestSSHRoundTrip(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, Options{Username: user, Password: password})
	srv.CreateRepo(t, "org/app", "main")
	key, pub := NewSSHKey(t, "")
	ssrv := srv.ServeSSH(t, SSHOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	if got, want := ssrv.URL("org/app"), "ssh://git@"+ssrv.addr+"/org/app.git"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}

	alice := ssrv.Clone(t, "org/app", key)
	alice.Write(t, "deploy/app.yaml", "replicas: 1\n")
	first := alice.Commit(t, "Add the app")
	alice.Push(t)
	if got := srv.Pushes(); got != 1 {
		t.Errorf("Pushes() after a push over SSH = %d, want 1", got)
	}
	if got := Git(t, srv.Dir("org/app"), "rev-parse", "main"); got != first {
		t.Errorf("main in the bare repository = %q, want %q", got, first)
	}

	// HTTP and SSH serve the same repositories.
	bob := srv.Clone(t, "org/app")
	bob.Write(t, "deploy/app.yaml", "replicas: 2\n")
	second := bob.Commit(t, "Scale the app")
	bob.Push(t)
	alice.Pull(t)
	if got := Git(t, alice.Dir, "rev-parse", "HEAD"); got != second {
		t.Errorf("alice after Pull over SSH is at %q, want %q", got, second)
	}

	// A push with nothing to send and a fetch count no push.
	Git(t, alice.Dir, "push", "--quiet", "origin", "HEAD")
	Git(t, alice.Dir, "fetch", "--quiet", "origin")
	if got := srv.Pushes(); got != 2 {
		t.Errorf("Pushes() = %d, want 2", got)
	}
}

// TestSSHHostKeyTypes: the OpenSSH client logs in whichever host key its
// known_hosts has.
func TestSSHHostKeyTypes(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, Options{})
	srv.CreateRepo(t, "app", "main")
	key, pub := NewSSHKey(t, "")
	for _, types := range [][]string{
		{ssh.KeyAlgoED25519},
		{ssh.KeyAlgoECDSA256},
		{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSA},
	} {
		ssrv := srv.ServeSSH(t, SSHOptions{AuthorizedKeys: []ssh.PublicKey{pub}, HostKeyTypes: types})
		var got []string
		for _, k := range ssrv.HostKeys() {
			got = append(got, k.Type())
		}
		if strings.Join(got, " ") != strings.Join(types, " ") {
			t.Errorf("HostKeys() are of types %q, want %q", got, types)
		}
		for _, typ := range types {
			if lines := strings.Count(string(ssrv.KnownHosts(typ)), "\n"); lines != 1 {
				t.Errorf("KnownHosts(%q) has %d lines, want 1", typ, lines)
			}
			if _, err := ssrv.clone(t, "app", key, ssrv.KnownHosts(typ)); err != nil {
				t.Errorf("clone knowing the %s host key: %v", typ, err)
			}
		}
	}
}

func TestSSHRefused(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, Options{})
	srv.CreateRepo(t, "app", "main")
	key, pub := NewSSHKey(t, "")
	ssrv := srv.ServeSSH(t, SSHOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	other := srv.ServeSSH(t, SSHOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	wrong, _ := NewSSHKey(t, "")

	cases := []struct {
		name       string
		key        []byte
		knownHosts []byte
		want       string
	}{
		{name: "a key not authorized", key: wrong, knownHosts: ssrv.KnownHosts(), want: "Permission denied (publickey)"},
		{name: "the host key of another server", key: key, knownHosts: []byte(knownhosts.Line([]string{knownhosts.Normalize(ssrv.addr)}, other.HostKeys()[0]) + "\n"), want: "Host key verification failed"},
		{name: "no known host", key: key, knownHosts: nil, want: "Host key verification failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ssrv.clone(t, "app", tc.key, tc.knownHosts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("clone: %v, want an error with %q", err, tc.want)
			}
		})
	}

	// Another user than git is refused with the authorized key too.
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"root", "backstop"} {
		config := &ssh.ClientConfig{User: u, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(ssrv.HostKeys()[0]), Timeout: 10 * time.Second}
		if c, err := ssh.Dial("tcp", ssrv.addr, config); err == nil {
			c.Close()
			t.Errorf("the user %q logged in", u)
		}
	}
	if !strings.Contains(srv.log.String(), `gittest: ssh: refused the key ssh-ed25519 SHA256:`) {
		t.Errorf("the log does not tell the keys refused:\n%s", srv.log.String())
	}
}

// TestSSHCommands speaks to the server as git does, with an SSH client.
func TestSSHCommands(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, Options{})
	srv.CreateRepo(t, "app", "main")
	key, pub := NewSSHKey(t, "")
	ssrv := srv.ServeSSH(t, SSHOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	callback, err := knownHostsCallback(t, ssrv.KnownHosts())
	if err != nil {
		t.Fatal(err)
	}
	client, err := ssh.Dial("tcp", ssrv.addr, &ssh.ClientConfig{User: "git", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: callback, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	cases := []struct {
		name       string
		command    string
		protocol   string // GIT_PROTOCOL
		wantStatus int
		wantOut    string // what stdout starts with
		wantErr    string // what stderr holds
	}{
		{name: "upload-pack, quoted", command: "git-upload-pack '/app.git'", wantOut: "0000"},
		{name: "upload-pack, scp-like", command: "git-upload-pack 'app.git'", wantOut: "0000"},
		{name: "upload-pack, bare", command: "git-upload-pack /app.git", wantOut: "0000"},
		{name: "upload-pack, protocol v2", command: "git-upload-pack '/app.git'", protocol: "version=2", wantOut: "000eversion 2\n"},
		{name: "receive-pack", command: "git-receive-pack '/app.git'", wantOut: "00"},
		{name: "an unknown repository", command: "git-upload-pack '/nope.git'", wantStatus: 128, wantErr: "does not appear to be a git repository"},
		{name: "another command", command: "sh -c 'cat /etc/passwd'", wantStatus: 128, wantErr: "want git-upload-pack or git-receive-pack"},
		{name: "git upload-pack", command: "git upload-pack '/app.git'", wantStatus: 128, wantErr: "want git-upload-pack or git-receive-pack"},
		{name: "a path above the root", command: "git-upload-pack '/../repos/app.git'", wantStatus: 128, wantErr: "not that of a repository"},
		{name: "an absolute path", command: "git-upload-pack '//etc'", wantStatus: 128, wantErr: "not that of a repository"},
		{name: "two arguments", command: "git-upload-pack '/app.git' '/app.git'", wantStatus: 128, wantErr: "quoted as git quotes it"},
		{name: "a command in a bare path", command: "git-upload-pack /app.git;id", wantStatus: 128, wantErr: "quoted as git quotes it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sess, err := client.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			if tc.protocol != "" {
				if err := sess.Setenv("GIT_PROTOCOL", tc.protocol); err != nil {
					t.Fatalf("env GIT_PROTOCOL: %v", err)
				}
			}
			var stdout, stderr bytes.Buffer
			// A flush packet ends the conversation after the advertisement.
			sess.Stdin, sess.Stdout, sess.Stderr = strings.NewReader(flushPkt), &stdout, &stderr
			err = sess.Run(tc.command)
			status := 0
			var exit *ssh.ExitError
			if errors.As(err, &exit) {
				status = exit.ExitStatus()
			} else if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if status != tc.wantStatus {
				t.Errorf("exit status %d, want %d; stderr: %s", status, tc.wantStatus, stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), tc.wantOut) {
				t.Errorf("stdout %q, want it to start with %q", stdout.String(), tc.wantOut)
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("stderr %q, want it to hold %q", stderr.String(), tc.wantErr)
			}
		})
	}

	// Other variables than GIT_PROTOCOL are refused.
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Setenv("GIT_DIR", "/etc"); err == nil {
		t.Error("env GIT_DIR was accepted")
	}
	// A flush packet to git receive-pack is no push.
	if got := srv.Pushes(); got != 0 {
		t.Errorf("Pushes() = %d, want 0", got)
	}
}

func TestParseCommand(t *testing.T) {
	cases := []struct {
		command, service, repo string
	}{
		{command: "git-upload-pack '/app.git'", service: "upload-pack", repo: "app.git"},
		{command: "git-receive-pack '/org/app.git'", service: "receive-pack", repo: "org/app.git"},
		{command: "git-receive-pack 'org/app.git'", service: "receive-pack", repo: "org/app.git"},
		{command: "git-upload-pack /org/app.git", service: "upload-pack", repo: "org/app.git"},
		{command: `git-upload-pack '/it'\''s.git'`, service: "upload-pack", repo: "it's.git"},
		{command: `git-upload-pack '/wow'\!'.git'`, service: "upload-pack", repo: "wow!.git"},
		{command: "git-upload-pack '/a b.git'", service: "upload-pack", repo: "a b.git"},
		{command: "git-upload-pack"},
		{command: "git-upload-pack ''"},
		{command: "git-upload-pack '/'"},
		{command: "git-upload-pack '/app.git"},
		{command: "git-upload-pack '/app.git'x"},
		{command: "git-upload-pack '/app.git' x"},
		{command: "git-upload-pack /a b.git"},
		{command: "git-upload-pack $(id)"},
		{command: "git-upload-pack '/../app.git'"},
		{command: "git-upload-pack '/org/../app.git'"},
		{command: "git-upload-pack '//app.git'"},
		{command: "git-upload-pack '/app.git/'"},
		{command: "git-upload-archive '/app.git'"},
		{command: "scp -t /tmp"},
	}
	for _, tc := range cases {
		service, repo, err := parseCommand(tc.command)
		if tc.service == "" {
			if err == nil {
				t.Errorf("parseCommand(%q) = %q, %q; want an error", tc.command, service, repo)
			}
			continue
		}
		if err != nil || service != tc.service || repo != tc.repo {
			t.Errorf("parseCommand(%q) = %q, %q, %v; want %q, %q", tc.command, service, repo, err, tc.service, tc.repo)
		}
	}
}

func TestNewSSHKey(t *testing.T) {
	t.Parallel()
	key, pub := NewSSHKey(t, "s3cret")
	if !bytes.HasPrefix(key, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n")) {
		t.Errorf("the key is not in OpenSSH's format:\n%s", key)
	}
	var missing *ssh.PassphraseMissingError
	if _, err := ssh.ParsePrivateKey(key); !errors.As(err, &missing) {
		t.Errorf("parsing the key without its passphrase: %v, want a PassphraseMissingError", err)
	}
	signer, err := ssh.ParsePrivateKeyWithPassphrase(key, []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(signer.PublicKey().Marshal(), pub.Marshal()) || pub.Type() != ssh.KeyAlgoED25519 {
		t.Errorf("the public key %s does not match the private key", ssh.FingerprintSHA256(pub))
	}
	plain, _ := NewSSHKey(t, "")
	if _, err := ssh.ParsePrivateKey(plain); err != nil {
		t.Errorf("a key without passphrase: %v", err)
	}
}

// knownHostsCallback checks host keys against a known_hosts file's content.
func knownHostsCallback(t *testing.T, content []byte) (ssh.HostKeyCallback, error) {
	t.Helper()
	file := t.TempDir() + "/known_hosts"
	writeFile(t, file, string(content))
	return knownhosts.New(file)
}

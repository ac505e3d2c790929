package revert_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"backstop.dev/backstop/revert"
)

func TestIsSSH(t *testing.T) {
	for url, want := range map[string]bool{
		"ssh://git@git.example.com/org/repo.git":  true,
		"git@git.example.com:org/repo.git":        true,
		"https://git.example.com/org/repo.git":    false,
		"https://user@git.example.com/org/repo":   false,
		"http://127.0.0.1:8080/repo.git":          false,
		"file:///srv/git/repo.git":                false,
		"git.example.com:org/repo.git":            false,
		"ssh://git.example.com:2222/org/repo.git": true,
	} {
		if got := revert.IsSSH(url); got != want {
			t.Errorf("IsSSH(%q) = %v; want %v", url, got, want)
		}
	}
}

func TestHTTPAuth(t *testing.T) {
	cases := []struct {
		name     string
		data     map[string][]byte
		want     *githttp.BasicAuth
		wantErr  string
		wantNone bool
	}{
		{name: "user and password", data: map[string][]byte{"username": []byte("bot"), "password": []byte("pw")}, want: &githttp.BasicAuth{Username: "bot", Password: "pw"}},
		{name: "a token alone", data: map[string][]byte{"token": []byte("ghp_x\n")}, want: &githttp.BasicAuth{Username: "git", Password: "ghp_x"}},
		{name: "a token with a user", data: map[string][]byte{"username": []byte("oauth2"), "token": []byte("glpat")}, want: &githttp.BasicAuth{Username: "oauth2", Password: "glpat"}},
		{name: "token and password", data: map[string][]byte{"token": []byte("a"), "password": []byte("b")}, wantErr: `both "token" and "password"`},
		{name: "a user without password", data: map[string][]byte{"username": []byte("bot")}, wantErr: `needs both "username" and "password"`},
		{name: "no credentials", data: nil, wantNone: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := revert.Auth("https://git.example.com/org/repo.git", tc.data, false)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Auth: %v; want an error containing %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case tc.wantNone:
				if got != nil {
					t.Errorf("Auth = %v; want none", got)
				}
			default:
				if b, ok := got.(*githttp.BasicAuth); !ok || *b != *tc.want {
					t.Errorf("Auth = %#v; want %#v", got, tc.want)
				}
			}
		})
	}
}

// sshKey is a private key in the PEM form a Secret holds, encrypted with
// passphrase when one is given.
func sshKey(t *testing.T, passphrase string) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

func hostKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestSSHAuth: the identity and its passphrase are used, and the server's
// host key is checked against known_hosts; without known_hosts SSH is
// refused unless the user opts out.
func TestSSHAuth(t *testing.T) {
	const repo = "ssh://git@127.0.0.1:2222/org/repo.git"
	known, other := hostKey(t), hostKey(t)
	knownHosts := []byte(knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:2222")}, known) + "\n")
	addr := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 2222}

	auth, err := revert.Auth(repo, map[string][]byte{"identity": sshKey(t, ""), "known_hosts": knownHosts}, false)
	if err != nil {
		t.Fatal(err)
	}
	keys := auth.(*gitssh.PublicKeys)
	if keys.User != "git" {
		t.Errorf("user %q; want git", keys.User)
	}
	if err := keys.HostKeyCallback("127.0.0.1:2222", addr, known); err != nil {
		t.Errorf("the known host key was refused: %v", err)
	}
	if err := keys.HostKeyCallback("127.0.0.1:2222", addr, other); err == nil {
		t.Error("an unknown host key was accepted")
	}

	encrypted := sshKey(t, "s3cret")
	if _, err := revert.Auth(repo, map[string][]byte{"identity": encrypted, "password": []byte("s3cret"), "known_hosts": knownHosts}, false); err != nil {
		t.Errorf("an encrypted key with its passphrase: %v", err)
	}
	_, err = revert.Auth(repo, map[string][]byte{"identity": encrypted, "known_hosts": knownHosts}, false)
	if err == nil || strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), string(encrypted[40:60])) {
		t.Errorf("an encrypted key without its passphrase: %v; want an error that shows no key", err)
	}

	if _, err := revert.Auth(repo, map[string][]byte{"identity": sshKey(t, "")}, false); !errors.Is(err, revert.ErrNoKnownHosts) {
		t.Errorf("without known_hosts: %v; want ErrNoKnownHosts", err)
	}
	if _, err := revert.Auth(repo, map[string][]byte{"identity": sshKey(t, "")}, true); err != nil {
		t.Errorf("without known_hosts, opted out: %v", err)
	}
	if _, err := revert.Auth("deploy@git.example.com:org/repo.git", map[string][]byte{"known_hosts": knownHosts}, false); err == nil || !strings.Contains(err.Error(), `no "identity"`) {
		t.Errorf("without identity: %v", err)
	}
	scp, err := revert.Auth("deploy@git.example.com:org/repo.git", map[string][]byte{"identity": sshKey(t, ""), "known_hosts": knownHosts}, false)
	if err != nil || scp.(*gitssh.PublicKeys).User != "deploy" {
		t.Errorf("scp-like URL: %v, %v; want the user deploy", scp, err)
	}
}

func TestScrub(t *testing.T) {
	for in, want := range map[string]string{
		`pushing to https://bot:ghp_secret@git.example.com/org/repo.git: rejected`: `pushing to https://git.example.com/org/repo.git: rejected`,
		`ssh://git@127.0.0.1:2222/org/repo.git`:                                    `ssh://127.0.0.1:2222/org/repo.git`,
		`no URL here`:                                                              `no URL here`,
	} {
		if got := revert.Scrub(in); got != want {
			t.Errorf("Scrub(%q) = %q; want %q", in, got, want)
		}
	}
}

// publicKey is a fresh public key of the type (ssh.KeyAlgoED25519,
// ssh.KeyAlgoECDSA256 or ssh.KeyAlgoRSA).
func publicKey(t *testing.T, typ string) ssh.PublicKey {
	t.Helper()
	var pub any
	switch typ {
	case ssh.KeyAlgoED25519:
		return hostKey(t)
	case ssh.KeyAlgoECDSA256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	case ssh.KeyAlgoRSA:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestSSHHostKeyAlgorithms: the client asks first for the host key
// algorithms of the keys known_hosts has for the server, as OpenSSH does, so
// a server known by one of its several host keys is not taken for an
// impostor.
func TestSSHHostKeyAlgorithms(t *testing.T) {
	ed, ec, rsaKey := publicKey(t, ssh.KeyAlgoED25519), publicKey(t, ssh.KeyAlgoECDSA256), publicKey(t, ssh.KeyAlgoRSA)
	line := func(host string, key ssh.PublicKey) string {
		return knownhosts.Line([]string{knownhosts.Normalize(host)}, key) + "\n"
	}
	cases := []struct {
		name       string
		url        string
		knownHosts string
		want       []string // the first algorithms
	}{
		{name: "an ed25519 key", url: "ssh://git@127.0.0.1:2222/org/repo.git", knownHosts: line("127.0.0.1:2222", ed), want: []string{ssh.KeyAlgoED25519}},
		{name: "an ECDSA key", url: "ssh://git@127.0.0.1:2222/org/repo.git", knownHosts: line("127.0.0.1:2222", ec), want: []string{ssh.KeyAlgoECDSA256}},
		{name: "an RSA key", url: "ssh://git@127.0.0.1:2222/org/repo.git", knownHosts: line("127.0.0.1:2222", rsaKey), want: []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
		{name: "two keys", url: "ssh://git@127.0.0.1:2222/org/repo.git", knownHosts: line("127.0.0.1:2222", ed) + line("127.0.0.1:2222", ec), want: []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256}},
		{name: "port 22 of an scp-like URL", url: "git@git.example.com:org/repo.git", knownHosts: line("git.example.com:22", ed), want: []string{ssh.KeyAlgoED25519}},
		{name: "a hashed host", url: "ssh://git@git.example.com/org/repo.git", knownHosts: knownhosts.HashHostname("git.example.com") + " " + string(ssh.MarshalAuthorizedKey(ed)), want: []string{ssh.KeyAlgoED25519}},
		{name: "a certificate authority", url: "ssh://git@git.example.com/org/repo.git", knownHosts: "@cert-authority *.example.com " + string(ssh.MarshalAuthorizedKey(ed)), want: []string{ssh.CertAlgoED25519v01}},
		{name: "another port of the host", url: "ssh://git@127.0.0.1:2222/org/repo.git", knownHosts: line("127.0.0.1:22", ed)},
		{name: "another host", url: "ssh://git@127.0.0.1:2222/org/repo.git", knownHosts: line("git.example.com:2222", ed)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			auth, err := revert.Auth(tc.url, map[string][]byte{"identity": sshKey(t, ""), "known_hosts": []byte(tc.knownHosts)}, false)
			if err != nil {
				t.Fatal(err)
			}
			got := auth.(*gitssh.PublicKeys).HostKeyAlgorithms
			if tc.want == nil {
				if got != nil {
					t.Errorf("HostKeyAlgorithms = %q; want none (the client's defaults) for a host not known", got)
				}
				return
			}
			if len(got) < len(tc.want) || !slices.Equal(got[:len(tc.want)], tc.want) {
				t.Errorf("HostKeyAlgorithms = %q; want it to start with %q", got, tc.want)
			}
			// The others follow, once each, for a server that changed keys to
			// be told apart from an unknown one.
			for _, a := range ssh.SupportedAlgorithms().HostKeys {
				if n := slices.Index(got, a); n < 0 || slices.Index(got[n+1:], a) >= 0 {
					t.Errorf("HostKeyAlgorithms = %q; want %s once", got, a)
				}
			}
		})
	}
}

// TestSSHHostKeyErrors: a refused host key says whether the server's key
// changed or the server is unknown.
func TestSSHHostKeyErrors(t *testing.T) {
	const repo = "ssh://git@127.0.0.1:2222/org/repo.git"
	known, other := hostKey(t), hostKey(t)
	addr := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 2222}
	cases := []struct {
		name       string
		knownHosts string
		want       string
	}{
		{name: "another key", knownHosts: knownhosts.Line([]string{"[127.0.0.1]:2222"}, known), want: `the host key of the SSH server 127.0.0.1:2222 (ssh-ed25519 ` + ssh.FingerprintSHA256(other) + `) does not match the Secret's "known_hosts"`},
		{name: "another host", knownHosts: knownhosts.Line([]string{"git.example.com"}, known), want: `the SSH server 127.0.0.1:2222 is not in the Secret's "known_hosts"`},
		{name: "a revoked key", knownHosts: "@revoked * " + string(ssh.MarshalAuthorizedKey(other)), want: "knownhosts: key is revoked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			auth, err := revert.Auth(repo, map[string][]byte{"identity": sshKey(t, ""), "known_hosts": []byte(tc.knownHosts + "\n")}, false)
			if err != nil {
				t.Fatal(err)
			}
			err = auth.(*gitssh.PublicKeys).HostKeyCallback("127.0.0.1:2222", addr, other)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("HostKeyCallback: %v; want an error with %q", err, tc.want)
			}
		})
	}

	_, err := revert.Auth(repo, map[string][]byte{"identity": sshKey(t, ""), "known_hosts": []byte("[127.0.0.1]:2222 ssh-ed25519 not-base64\n")}, false)
	if err == nil || !strings.Contains(err.Error(), `the Secret's "known_hosts" does not parse`) || strings.Contains(err.Error(), "backstop-known-hosts-") {
		t.Errorf("a known_hosts that does not parse: %v; want an error naming the Secret's key, not a file", err)
	}
}

func TestBearerToken(t *testing.T) {
	auth, err := revert.Auth("https://git.example/shop/fleet.git", map[string][]byte{"bearerToken": []byte("eyJ.token\n")}, false)
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := auth.(*githttp.TokenAuth); !ok || tok.Token != "eyJ.token" {
		t.Fatalf("Auth = %#v, want a bearer token", auth)
	}
	_, err = revert.Auth("https://git.example/shop/fleet.git", map[string][]byte{"bearerToken": []byte("eyJ.token"), "password": []byte("hunter22")}, false)
	if err == nil || strings.Contains(err.Error(), "hunter22") || strings.Contains(err.Error(), "eyJ") {
		t.Fatalf("a bearer token and a password: err = %v, want one naming the keys only", err)
	}
}

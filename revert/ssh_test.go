package revert_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"backstop.dev/backstop/revert"
	"backstop.dev/backstop/test/gittest"
)

const (
	sshRepo       = "shop/config"
	sshManifest   = "apps/app/deployment.yaml"
	sshPassphrase = "correct-horse-battery"
)

// TestRevertOverSSH reverts over SSH against a real SSH server that offers,
// as OpenSSH does, an ed25519 and an ECDSA host key: the key and its
// passphrase come from a Secret and the host key is checked against the
// Secret's known_hosts, which must be there unless the user opts out.
func TestRevertOverSSH(t *testing.T) {
	t.Parallel()
	srv := gittest.NewServer(t, gittest.Options{})
	key, pub := gittest.NewSSHKey(t, sshPassphrase)
	ssrv := srv.ServeSSH(t, gittest.SSHOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	// Another server, with other host keys.
	other := srv.ServeSSH(t, gittest.SSHOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	wrongKey, _ := gittest.NewSSHKey(t, "")
	// The other server's keys under the name of ssrv, [127.0.0.1]:PORT.
	var impostor strings.Builder
	for _, k := range other.HostKeys() {
		impostor.WriteString(knownhosts.Line([]string{knownhosts.Normalize(ssrv.Addr())}, k) + "\n")
	}

	cases := []struct {
		name       string
		identity   []byte
		passphrase string
		knownHosts []byte
		insecure   bool // insecureIgnoreHostKey
		wantErr    string
		wantIs     error
	}{
		{name: "a key with its passphrase, every host key known", identity: key, passphrase: sshPassphrase, knownHosts: ssrv.KnownHosts()},
		{name: "the ed25519 host key known only", identity: key, passphrase: sshPassphrase, knownHosts: ssrv.KnownHosts(ssh.KeyAlgoED25519)},
		{name: "the ECDSA host key known only", identity: key, passphrase: sshPassphrase, knownHosts: ssrv.KnownHosts(ssh.KeyAlgoECDSA256)},
		{name: "no known_hosts, opted out", identity: key, passphrase: sshPassphrase, insecure: true},
		{name: "a key not authorized", identity: wrongKey, knownHosts: ssrv.KnownHosts(), wantErr: "unable to authenticate"},
		{name: "the host keys of another server", identity: key, passphrase: sshPassphrase, knownHosts: []byte(impostor.String()), wantErr: "does not match"},
		{name: "an unknown host", identity: key, passphrase: sshPassphrase, knownHosts: other.KnownHosts(), wantErr: "is not in the Secret's \"known_hosts\""},
		{name: "no known_hosts", identity: key, passphrase: sshPassphrase, wantIs: revert.ErrNoKnownHosts},
		{name: "a wrong passphrase", identity: key, passphrase: "not-" + sshPassphrase, knownHosts: ssrv.KnownHosts(), wantErr: `"identity" is not a usable SSH private key`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := fmt.Sprintf("%s-%d", sshRepo, i)
			srv.CreateRepo(t, repo, "main")
			w := srv.Clone(t, repo)
			w.Write(t, sshManifest, "image: shop/app:v1\n")
			w.Commit(t, "Deploy app v1")
			w.Write(t, sshManifest, "image: shop/app:v2\n")
			bad := w.Commit(t, "Deploy app v2")
			w.Push(t)
			pushes := srv.Pushes()

			data := map[string][]byte{revert.SecretIdentity: tc.identity}
			if tc.passphrase != "" {
				data[revert.SecretPassword] = []byte(tc.passphrase)
			}
			if tc.knownHosts != nil {
				data[revert.SecretKnownHosts] = tc.knownHosts
			}
			res, err := revertOverSSH(t, ssrv.URL(repo), data, tc.insecure, bad)

			if tc.wantErr == "" && tc.wantIs == nil {
				if err != nil {
					t.Fatalf("Revert: %v", err)
				}
				if got := gittest.Git(t, srv.Dir(repo), "log", "--format=%s", "main"); got != "Revert \"Deploy app v2\"\nDeploy app v2\nDeploy app v1" {
					t.Errorf("git log of main:\n%s", got)
				}
				if head := gittest.Git(t, srv.Dir(repo), "rev-parse", "main"); head != res.SHA {
					t.Errorf("main is at %s, want the revert %s", head, res.SHA)
				}
				if got := gittest.Git(t, srv.Dir(repo), "show", "main:"+sshManifest); got != "image: shop/app:v1" {
					t.Errorf("%s after the revert: %q", sshManifest, got)
				}
				// The SSH server counts a push once git-receive-pack has
				// exited, which may be just after the client has its answer.
				for end := time.Now().Add(5 * time.Second); srv.Pushes() == pushes && time.Now().Before(end); {
					time.Sleep(10 * time.Millisecond)
				}
				if got := srv.Pushes() - pushes; got != 1 {
					t.Errorf("%d pushes, want 1", got)
				}
				return
			}

			switch {
			case err == nil:
				t.Fatal("Revert succeeded; want an error")
			case tc.wantIs != nil && !errors.Is(err, tc.wantIs):
				t.Errorf("error %q; want %v", err, tc.wantIs)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error %q; want it to say %q", err, tc.wantErr)
			}
			if secret := keyMaterial(err.Error(), data); secret != "" {
				t.Errorf("error %q holds key material %q", err, secret)
			}
			if head := gittest.Git(t, srv.Dir(repo), "rev-parse", "main"); head != bad {
				t.Errorf("main moved to %s", head)
			}
			if got := srv.Pushes() - pushes; got != 0 {
				t.Errorf("%d pushes, want none", got)
			}
		})
	}
}

// revertOverSSH reverts bad on main of the repository at url with the
// credentials of a Secret's data.
func revertOverSSH(t *testing.T, url string, data map[string][]byte, insecure bool, bad string) (revert.Result, error) {
	t.Helper()
	auth, err := revert.Auth(url, data, insecure)
	if err != nil {
		return revert.Result{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return (&revert.Reverter{}).Revert(ctx, revert.Request{
		URL:     url,
		Branch:  "main",
		Auth:    auth,
		Commits: []string{bad},
		Release: "shop/app@" + bad[:10],
		Rollout: "shop/app",
		Reason:  `check "error-rate" = 0.12 > 0.05`,
		Author:  object.Signature{Name: "Backstop", Email: "backstop@example.com"},
	})
}

// pemLine matches the lines of a PEM's body.
var pemLine = regexp.MustCompile(`(?m)^[A-Za-z0-9+/=]{16,}$`)

// keyMaterial returns a piece of the identity or its passphrase that msg
// holds, or "".
func keyMaterial(msg string, data map[string][]byte) string {
	if p := string(data[revert.SecretPassword]); p != "" && strings.Contains(msg, p) {
		return p
	}
	if strings.Contains(msg, "PRIVATE KEY") {
		return "PRIVATE KEY"
	}
	for _, line := range pemLine.FindAllString(string(data[revert.SecretIdentity]), -1) {
		for i := 0; i+16 <= len(line); i += 8 {
			if strings.Contains(msg, line[i:i+16]) {
				return line[i : i+16]
			}
		}
	}
	return ""
}

package revert

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
)

// The keys of a Git credentials Secret.
const (
	SecretUsername = "username"
	SecretPassword = "password"
	SecretToken    = "token"
	// SecretBearerToken is sent as "Authorization: Bearer", as Flux sends
	// its "bearerToken"; "token" is sent as a basic-auth password, which
	// most Git hosts take for a personal access token.
	SecretBearerToken = "bearerToken"
	SecretIdentity    = "identity"
	SecretKnownHosts  = "known_hosts"
)

// ErrNoKnownHosts says an SSH source has no known_hosts to check the
// server's host key against.
var ErrNoKnownHosts = errors.New("the Secret has no known_hosts: the SSH server's host key cannot be verified")

// IsSSH says whether a repository URL is reached over SSH: ssh:// or the
// scp-like user@host:path.
func IsSSH(repoURL string) bool {
	if strings.HasPrefix(repoURL, "ssh://") {
		return true
	}
	if strings.Contains(repoURL, "://") {
		return false
	}
	at, colon := strings.Index(repoURL, "@"), strings.Index(repoURL, ":")
	return at > 0 && colon > at
}

// Auth builds the credentials for repoURL from a Secret's data.
//
// Over HTTP(S): "username" and "password", or "token" alone (sent as the
// password, with the username "git" unless one is given). Over SSH:
// "identity" (a PEM private key), with "password" as its passphrase when it
// is encrypted, and "known_hosts", against which the server's host key is
// verified. Without known_hosts the SSH source is refused, unless
// insecureIgnoreHostKey is set. No data means no credentials (nil).
//
// Errors name the Secret's keys, never their values.
func Auth(repoURL string, data map[string][]byte, insecureIgnoreHostKey bool) (transport.AuthMethod, error) {
	if IsSSH(repoURL) {
		return sshAuth(repoURL, data, insecureIgnoreHostKey)
	}
	user, pass, token := string(data[SecretUsername]), string(data[SecretPassword]), string(data[SecretToken])
	bearer := strings.TrimSpace(string(data[SecretBearerToken]))
	switch {
	case token != "" && pass != "":
		return nil, fmt.Errorf("the Secret has both %q and %q: keep one", SecretToken, SecretPassword)
	case bearer != "" && (token != "" || pass != ""):
		return nil, fmt.Errorf("the Secret has %q and also %q or %q: keep one", SecretBearerToken, SecretToken, SecretPassword)
	case bearer != "":
		return &githttp.TokenAuth{Token: bearer}, nil
	case token != "":
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: strings.TrimSpace(token)}, nil
	case user != "" || pass != "":
		if user == "" || pass == "" {
			return nil, fmt.Errorf("the Secret needs both %q and %q for HTTP", SecretUsername, SecretPassword)
		}
		return &githttp.BasicAuth{Username: user, Password: pass}, nil
	}
	return nil, nil
}

func sshAuth(repoURL string, data map[string][]byte, insecureIgnoreHostKey bool) (transport.AuthMethod, error) {
	identity := data[SecretIdentity]
	if len(identity) == 0 {
		return nil, fmt.Errorf("the Secret has no %q (an SSH private key) for the SSH URL", SecretIdentity)
	}
	user := sshUser(repoURL)
	keys, err := gitssh.NewPublicKeys(user, identity, string(data[SecretPassword]))
	if err != nil {
		// The parser's errors describe the key's format, not its content.
		return nil, fmt.Errorf("the Secret's %q is not a usable SSH private key: %v", SecretIdentity, scrubKeyError(err))
	}
	switch hosts := data[SecretKnownHosts]; {
	case len(hosts) > 0:
		cb, algorithms, err := knownHosts(hosts, sshAddr(repoURL))
		if err != nil {
			return nil, err
		}
		keys.HostKeyCallback, keys.HostKeyAlgorithms = cb, algorithms
	case insecureIgnoreHostKey:
		keys.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // the user opted out explicitly
	default:
		return nil, ErrNoKnownHosts
	}
	return keys, nil
}

// sshUser is the user of an SSH URL, "git" when it names none.
func sshUser(repoURL string) string {
	if strings.HasPrefix(repoURL, "ssh://") {
		if u, err := url.Parse(repoURL); err == nil && u.User != nil && u.User.Username() != "" {
			return u.User.Username()
		}
		return "git"
	}
	if at := strings.Index(repoURL, "@"); at > 0 {
		return repoURL[:at]
	}
	return "git"
}

// sshAddr is the host:port an SSH URL connects to, port 22 unless it names
// one.
func sshAddr(repoURL string) string {
	ep, err := transport.NewEndpoint(repoURL)
	if err != nil {
		return ""
	}
	port := ep.Port
	if port <= 0 {
		port = gitssh.DefaultPort
	}
	return net.JoinHostPort(ep.Host, strconv.Itoa(port))
}

// knownHosts checks host keys against known_hosts lines (plain or hashed,
// with ports as [host]:port, @cert-authority and @revoked) and returns the
// host key algorithms to ask addr for: first those of the keys known for
// addr, as OpenSSH does. Otherwise the client asks for an ECDSA key before
// an ed25519 one, and a server known by its ed25519 key only, which offers
// both, fails as a key mismatch. It returns no algorithms (the client's
// defaults) when addr is not known.
func knownHosts(hosts []byte, addr string) (ssh.HostKeyCallback, []string, error) {
	f, err := os.CreateTemp("", "backstop-known-hosts-")
	if err != nil {
		return nil, nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(hosts); err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := f.Close(); err != nil {
		return nil, nil, err
	}
	db, err := knownhosts.NewDB(f.Name())
	if err != nil {
		return nil, nil, fmt.Errorf("the Secret's %q does not parse: %v", SecretKnownHosts, strings.ReplaceAll(err.Error(), f.Name(), SecretKnownHosts))
	}
	var algorithms []string
	if known := db.HostKeyAlgorithms(addr); len(known) > 0 {
		algorithms = known
		for _, a := range ssh.SupportedAlgorithms().HostKeys {
			if !slices.Contains(known, a) {
				algorithms = append(algorithms, a)
			}
		}
	}
	return checkHostKey(db.HostKeyCallback()), algorithms, nil
}

// checkHostKey wraps a known_hosts callback with errors that say what is
// wrong: the server's key is not the one known, or the server is not known
// at all. They show the key the server offered, which is public.
func checkHostKey(cb ssh.HostKeyCallback) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		switch {
		case err == nil:
			return nil
		case knownhosts.IsHostKeyChanged(err):
			return fmt.Errorf("the host key of the SSH server %s (%s %s) does not match the Secret's %q: the server's key changed, or another server answers: %w",
				hostname, key.Type(), ssh.FingerprintSHA256(key), SecretKnownHosts, err)
		case knownhosts.IsHostUnknown(err):
			return fmt.Errorf("the SSH server %s is not in the Secret's %q: its host key (%s %s) is not known: %w",
				hostname, SecretKnownHosts, key.Type(), ssh.FingerprintSHA256(key), err)
		}
		return fmt.Errorf("the host key of the SSH server %s (%s %s): %w", hostname, key.Type(), ssh.FingerprintSHA256(key), err)
	}
}

// scrubKeyError keeps a key parsing error from quoting the key.
func scrubKeyError(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "PRIVATE KEY") || len(msg) > 200 {
		return "it does not parse"
	}
	return msg
}

// urlUserInfo matches the user information of URLs in text.
var urlUserInfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@`)

// Scrub removes the user information (user names, passwords and tokens) of
// every URL in s, so an error can be shown in status, Events and logs.
func Scrub(s string) string {
	return urlUserInfo.ReplaceAllString(s, "${1}")
}

package revert

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// signerEmail is the principal of the test keys in allowed signers files.
const signerEmail = "backstop@example.com"

// sshKeygen runs ssh-keygen with stdin and returns its standard output, and
// an error holding its standard error when it fails.
func sshKeygen(t *testing.T, stdin []byte, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen is needed to check SSH signatures (install openssh-client): %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New("ssh-keygen " + strings.Join(args, " ") + ": " + err.Error() + "\n" + stderr.String())
	}
	// -Y verify reports on standard error.
	return stdout.String() + stderr.String(), nil
}

// generateSSHKey makes a key with ssh-keygen, encrypted with passphrase
// unless it is empty, and returns the private key file and the public key
// line.
func generateSSHKey(t *testing.T, passphrase string, args ...string) (private, public []byte) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "key")
	args = append([]string{"-q", "-C", signerEmail, "-N", passphrase, "-f", file}, args...)
	if _, err := sshKeygen(t, nil, args...); err != nil {
		t.Fatal(err)
	}
	private, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	public, err = os.ReadFile(file + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return private, public
}

// allowedSigners writes an allowed signers file (gpg.ssh.allowedSignersFile,
// ssh-keygen -Y verify -f) trusting the public key for signerEmail.
func allowedSigners(t *testing.T, public []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "allowed_signers")
	if err := os.WriteFile(file, []byte(signerEmail+" "+strings.TrimSpace(string(public))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// verifySSHSIG runs ssh-keygen -Y verify on a signature of message in the
// namespace, trusting the public key.
func verifySSHSIG(t *testing.T, public, sig, message []byte, namespace string) (string, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "message.sig")
	if err := os.WriteFile(file, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	return sshKeygen(t, message, "-Y", "verify", "-f", allowedSigners(t, public), "-I", signerEmail, "-n", namespace, "-s", file)
}

// decodeSSHSIG checks the armor of an SSH signature as ssh-keygen writes
// it and returns the blob.
func decodeSSHSIG(t *testing.T, armored []byte) sshsigBlob {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(armored), "\n"), "\n")
	if len(lines) < 3 || lines[0] != "-----BEGIN SSH SIGNATURE-----" || lines[len(lines)-1] != "-----END SSH SIGNATURE-----" {
		t.Fatalf("armor:\n%s", armored)
	}
	body := lines[1 : len(lines)-1]
	for i, l := range body {
		if len(l) > 70 || (i < len(body)-1 && len(l) != 70) {
			t.Errorf("base64 line %d has %d columns; want 70 but the last", i+1, len(l))
		}
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Join(body, ""))
	if err != nil {
		t.Fatal(err)
	}
	var blob sshsigBlob
	if err := ssh.Unmarshal(raw, &blob); err != nil {
		t.Fatalf("the signature blob does not parse: %v", err)
	}
	return blob
}

// TestSSHSignerVerifiesWithSSHKeygen: for each key type and file format
// ssh-keygen makes, the key from a Secret signs in the SSHSIG format that
// `ssh-keygen -Y verify` accepts in the "git" namespace, and rejects for
// another message or namespace. RSA keys sign with rsa-sha2-512.
func TestSSHSignerVerifiesWithSSHKeygen(t *testing.T) {
	message := []byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor Backstop <backstop@example.com> 1800000000 +0000\n\nRevert\n")
	for _, tc := range []struct {
		name       string
		passphrase string
		keygen     []string
		format     string // of the inner signature
	}{
		{name: "ed25519", keygen: []string{"-t", "ed25519"}, format: ssh.KeyAlgoED25519},
		{name: "ed25519 encrypted", passphrase: "sesame", keygen: []string{"-t", "ed25519"}, format: ssh.KeyAlgoED25519},
		{name: "ecdsa p256", keygen: []string{"-t", "ecdsa", "-b", "256"}, format: ssh.KeyAlgoECDSA256},
		{name: "ecdsa p384 PEM", keygen: []string{"-t", "ecdsa", "-b", "384", "-m", "PEM"}, format: ssh.KeyAlgoECDSA384},
		{name: "ecdsa p521 PKCS8", keygen: []string{"-t", "ecdsa", "-b", "521", "-m", "PKCS8"}, format: ssh.KeyAlgoECDSA521},
		{name: "rsa 3072", keygen: []string{"-t", "rsa", "-b", "3072"}, format: ssh.KeyAlgoRSASHA512},
		{name: "rsa 2048 PEM encrypted", passphrase: "sesame", keygen: []string{"-t", "rsa", "-b", "2048", "-m", "PEM"}, format: ssh.KeyAlgoRSASHA512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			private, public := generateSSHKey(t, tc.passphrase, tc.keygen...)
			key, err := SSHSigningKey(map[string][]byte{"identity": private, "passphrase": []byte(tc.passphrase + "\n")})
			if err != nil {
				t.Fatal(err)
			}
			want, _, _, _, err := ssh.ParseAuthorizedKey(public)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key.Key.PublicKey().Marshal(), want.Marshal()) {
				t.Fatal("the signer's public key is not the key's")
			}

			sig, err := key.Sign(bytes.NewReader(message))
			if err != nil {
				t.Fatal(err)
			}
			blob := decodeSSHSIG(t, sig)
			if string(blob.Magic[:]) != "SSHSIG" || blob.Version != 1 || blob.Namespace != "git" || blob.Reserved != "" || blob.HashAlgorithm != "sha512" {
				t.Errorf("blob: magic %q, version %d, namespace %q, reserved %q, hash %q; want SSHSIG, 1, git, \"\", sha512",
					blob.Magic[:], blob.Version, blob.Namespace, blob.Reserved, blob.HashAlgorithm)
			}
			if !bytes.Equal(blob.PublicKey, want.Marshal()) {
				t.Error("the blob's public key is not the key's")
			}
			var inner ssh.Signature
			if err := ssh.Unmarshal(blob.Signature, &inner); err != nil {
				t.Fatal(err)
			}
			if inner.Format != tc.format {
				t.Errorf("signature algorithm %s; want %s", inner.Format, tc.format)
			}

			out, err := verifySSHSIG(t, public, sig, message, "git")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, `Good "git" signature for `+signerEmail) {
				t.Errorf("ssh-keygen -Y verify:\n%s", out)
			}
			altered := bytes.Replace(message, []byte("Revert"), []byte("Revort"), 1)
			if out, err := verifySSHSIG(t, public, sig, altered, "git"); err == nil {
				t.Errorf("the signature verifies for an altered message:\n%s", out)
			}
			if out, err := verifySSHSIG(t, public, sig, message, "file"); err == nil {
				t.Errorf("the signature verifies in the namespace \"file\":\n%s", out)
			}
		})
	}
}

// TestSSHSignerMatchesSSHKeygen: ed25519 signatures are deterministic, so
// the signature is byte for byte what `ssh-keygen -Y sign -n git` writes.
func TestSSHSignerMatchesSSHKeygen(t *testing.T) {
	private, _ := generateSSHKey(t, "", "-t", "ed25519")
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, private, 0o600); err != nil {
		t.Fatal(err)
	}
	// Long enough that the armor has several lines.
	message := []byte(strings.Repeat("Revert \"Deploy app v2\"\n", 50))
	want, err := sshKeygen(t, message, "-Y", "sign", "-n", "git", "-f", file)
	if err != nil {
		t.Fatal(err)
	}
	key, err := SSHSigningKey(map[string][]byte{"identity": private})
	if err != nil {
		t.Fatal(err)
	}
	got, err := key.Sign(bytes.NewReader(message))
	if err != nil {
		t.Fatal(err)
	}
	// sshKeygen appends ssh-keygen's standard error ("Signing data on
	// standard input") to its output.
	if !strings.HasPrefix(want, string(got)) {
		t.Errorf("signature:\n%s\nssh-keygen -Y sign:\n%s", got, want)
	}
}

// TestSSHSigningKeyErrors: a Secret without a usable private key is refused
// with an error that names the Secret's keys and quotes no secret.
func TestSSHSigningKeyErrors(t *testing.T) {
	encrypted, public := generateSSHKey(t, "sesame-Pa55", "-t", "ed25519")
	_, ecdsaPublic := generateSSHKey(t, "", "-t", "ecdsa")
	pemPublic, err := sshKeygen(t, nil, "-e", "-m", "PKCS8", "-f", writeTemp(t, "key.pub", ecdsaPublic))
	if err != nil {
		t.Fatal(err)
	}
	rfc4716, err := sshKeygen(t, nil, "-e", "-f", writeTemp(t, "key.pub", public))
	if err != nil {
		t.Fatal(err)
	}
	// x/crypto/ssh parses DSA keys in PEM only.
	dsa, _ := generateSSHKey(t, "", "-t", "dsa", "-m", "PEM")

	for _, tc := range []struct {
		name string
		data map[string][]byte
		want string
	}{
		{name: "no identity", data: map[string][]byte{"passphrase": []byte("sesame-Pa55")}, want: `no "identity"`},
		{name: "empty identity", data: map[string][]byte{"identity": []byte("\n")}, want: `no "identity"`},
		{name: "public key line", data: map[string][]byte{"identity": public}, want: `"identity" holds a public key only`},
		{name: "PEM public key", data: map[string][]byte{"identity": []byte(pemPublic)}, want: `"identity" holds a public key only`},
		{name: "RFC 4716 public key", data: map[string][]byte{"identity": []byte(rfc4716)}, want: `"identity" holds a public key only`},
		{name: "not a key", data: map[string][]byte{"identity": []byte("hunter2-not-a-key")}, want: `"identity" is not an OpenSSH or PEM private key`},
		{name: "truncated key", data: map[string][]byte{"identity": encrypted[:len(encrypted)/2]}, want: `"identity" is not an OpenSSH or PEM private key`},
		{name: "no passphrase", data: map[string][]byte{"identity": encrypted}, want: `encrypted and the Secret has no "passphrase"`},
		{name: "empty passphrase", data: map[string][]byte{"identity": encrypted, "passphrase": []byte("\n")}, want: `encrypted and the Secret has no "passphrase"`},
		{name: "wrong passphrase", data: map[string][]byte{"identity": encrypted, "passphrase": []byte("wrong-Pa55")}, want: `"passphrase" does not decrypt its "identity"`},
		{name: "DSA key", data: map[string][]byte{"identity": dsa}, want: `is a ssh-dss key: use an ed25519, ECDSA or RSA key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SSHSigningKey(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want one with %q", err, tc.want)
			}
			msg := err.Error()
			secrets := []string{"sesame", "wrong-Pa55", "hunter2", "PRIVATE KEY", "PUBLIC KEY"}
			for _, key := range [][]byte{encrypted, public, ecdsaPublic, []byte(pemPublic), []byte(rfc4716), dsa} {
				for _, f := range strings.Fields(string(key)) {
					if len(f) >= 16 && !strings.HasPrefix(f, "-----") {
						secrets = append(secrets, f[:16])
					}
				}
			}
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("error %q quotes the Secret (%q)", msg, s)
				}
			}
		})
	}

	if _, err := (SSHSigner{}).Sign(strings.NewReader("message")); err == nil {
		t.Error("a signer without a key signed")
	}
}

// writeTemp writes data to a file of a temporary directory and returns its
// path.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// gitFails runs git hermetically in dir, like gittest.Git, and returns its
// output; it fails the test when git succeeds.
func gitFails(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitStdin(t, dir, nil, args...)
	if err == nil {
		t.Fatalf("git %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// gitStdin runs git hermetically (no user or system configuration, no GIT_*
// variables) with stdin and returns its output.
func gitStdin(t *testing.T, dir string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "GIT_") && k != "HOME" && k != "XDG_CONFIG_HOME" && k != "LC_ALL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	home := t.TempDir()
	cmd.Env = append(cmd.Env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C")
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestRevertSignedSSH: with an encrypted SSH key from a Secret, the revert
// commit carries an SSH signature that `git verify-commit` accepts with the
// key in gpg.ssh.allowedSignersFile; the same signature over an altered
// commit, or checked against another key, does not verify.
func TestRevertSignedSSH(t *testing.T) {
	private, public := generateSSHKey(t, "sesame", "-t", "ed25519")
	key, err := SSHSigningKey(map[string][]byte{"identity": private, "passphrase": []byte("sesame\n")})
	if err != nil {
		t.Fatal(err)
	}

	f := newFixture(t)
	req := f.request(f.bad)
	req.Signer = key
	res := revert(t, &Reverter{}, req)

	trusted := allowedSigners(t, public)
	withSigners := func(allowed string, args ...string) []string {
		return append([]string{"-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile=" + allowed}, args...)
	}
	f.git(t, withSigners(trusted, "verify-commit", res.SHA)...)
	if got := f.git(t, withSigners(trusted, "log", "-1", "--format=%G? %GS", res.SHA)...); got != "G "+signerEmail {
		t.Errorf("signature status %q; want a good signature (G) by %s", got, signerEmail)
	}
	if raw := f.git(t, "cat-file", "commit", res.SHA); !strings.Contains(raw, "\ngpgsig -----BEGIN SSH SIGNATURE-----\n") {
		t.Errorf("the revert commit has no SSH signature header:\n%s", raw)
	}

	// The signed commit with another message, written by git.
	raw := f.git(t, "cat-file", "commit", res.SHA) + "\n"
	altered := strings.Replace(raw, "Revert", "Revort", 1)
	if altered == raw {
		t.Fatalf("the revert commit's message has no \"Revert\":\n%s", raw)
	}
	out, err := gitStdin(t, f.s.Dir(repoName), []byte(altered), "hash-object", "-t", "commit", "-w", "--stdin")
	if err != nil {
		t.Fatalf("git hash-object: %v\n%s", err, out)
	}
	forged := strings.TrimSpace(out)
	if out := gitFails(t, f.s.Dir(repoName), withSigners(trusted, "verify-commit", forged)...); !strings.Contains(out, "Could not verify signature") {
		t.Errorf("git verify-commit of an altered commit:\n%s", out)
	}

	_, other := generateSSHKey(t, "", "-t", "ed25519")
	if out := gitFails(t, f.s.Dir(repoName), withSigners(allowedSigners(t, other), "verify-commit", res.SHA)...); !strings.Contains(out, "No principal matched") {
		t.Errorf("git verify-commit trusting another key:\n%s", out)
	}
}

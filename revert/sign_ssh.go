package revert

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"
)

// The SSHSIG format of OpenSSH (PROTOCOL.sshsig) as git uses it with
// gpg.format=ssh.
const (
	sshsigMagic     = "SSHSIG"
	sshsigVersion   = 1
	sshsigNamespace = "git"    // git signs and verifies commits in this namespace
	sshsigHash      = "sha512" // what ssh-keygen -Y sign uses
	sshsigBegin     = "-----BEGIN SSH SIGNATURE-----"
	sshsigEnd       = "-----END SSH SIGNATURE-----"
	sshsigColumns   = 70 // ssh-keygen wraps the base64 at 70 columns
)

// SSHSigner signs with an SSH private key: the signature is what
// `ssh-keygen -Y sign -n git` writes, and what git writes with
// gpg.format=ssh; `git verify-commit` checks it against
// gpg.ssh.allowedSignersFile. RSA keys sign with rsa-sha2-512.
type SSHSigner struct {
	Key ssh.Signer
}

// sshsigBlob is the SSHSIG signature blob.
type sshsigBlob struct {
	Magic         [6]byte
	Version       uint32
	PublicKey     []byte
	Namespace     string
	Reserved      string
	HashAlgorithm string
	Signature     []byte
}

// sshsigSigned is the data an SSHSIG signature signs.
type sshsigSigned struct {
	Magic         [6]byte
	Namespace     string
	Reserved      string
	HashAlgorithm string
	Hash          []byte
}

// Sign implements Signer with an armored SSHSIG signature in the "git"
// namespace over the SHA-512 of message.
func (s SSHSigner) Sign(message io.Reader) ([]byte, error) {
	if s.Key == nil {
		return nil, errors.New("signing with the SSH key failed: there is no key")
	}
	h := sha512.New()
	if _, err := io.Copy(h, message); err != nil {
		return nil, err
	}
	var magic [6]byte
	copy(magic[:], sshsigMagic)
	signed := ssh.Marshal(sshsigSigned{
		Magic:         magic,
		Namespace:     sshsigNamespace,
		HashAlgorithm: sshsigHash,
		Hash:          h.Sum(nil),
	})
	sig, err := sshSign(s.Key, signed)
	if err != nil {
		return nil, err
	}
	blob := ssh.Marshal(sshsigBlob{
		Magic:         magic,
		Version:       sshsigVersion,
		PublicKey:     s.Key.PublicKey().Marshal(),
		Namespace:     sshsigNamespace,
		HashAlgorithm: sshsigHash,
		Signature:     ssh.Marshal(sig),
	})
	return armorSSHSIG(blob), nil
}

// sshSign signs data with the key's algorithm, rsa-sha2-512 for RSA keys
// (never ssh-rsa, which is SHA-1).
func sshSign(key ssh.Signer, data []byte) (*ssh.Signature, error) {
	if key.PublicKey().Type() != ssh.KeyAlgoRSA {
		sig, err := key.Sign(rand.Reader, data)
		if err != nil {
			return nil, fmt.Errorf("signing with the SSH key failed: %w", err)
		}
		return sig, nil
	}
	as, ok := key.(ssh.AlgorithmSigner)
	if !ok {
		return nil, errors.New("signing with the SSH key failed: the RSA key cannot sign with rsa-sha2-512")
	}
	sig, err := as.SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSASHA512)
	if err != nil {
		return nil, fmt.Errorf("signing with the SSH key failed: %w", err)
	}
	if sig.Format != ssh.KeyAlgoRSASHA512 {
		return nil, fmt.Errorf("signing with the SSH key failed: the RSA key signed with %s, not %s", sig.Format, ssh.KeyAlgoRSASHA512)
	}
	return sig, nil
}

// armorSSHSIG armors a signature blob as ssh-keygen does.
func armorSSHSIG(blob []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString(blob)
	var out bytes.Buffer
	out.WriteString(sshsigBegin + "\n")
	for len(b64) > sshsigColumns {
		out.WriteString(b64[:sshsigColumns] + "\n")
		b64 = b64[sshsigColumns:]
	}
	out.WriteString(b64 + "\n")
	out.WriteString(sshsigEnd + "\n")
	return out.Bytes()
}

// sshSigningKeyTypes are the key types SSHSigningKey accepts: those of
// `ssh-keygen -Y` without a security key. DSA is refused (SHA-1, and gone
// from OpenSSH).
var sshSigningKeyTypes = map[string]bool{
	ssh.KeyAlgoED25519:  true,
	ssh.KeyAlgoECDSA256: true,
	ssh.KeyAlgoECDSA384: true,
	ssh.KeyAlgoECDSA521: true,
	ssh.KeyAlgoRSA:      true,
}

// SSHSigningKey reads the SSH private key that signs revert commits from a
// Secret's data: an OpenSSH or PEM private key (ed25519, ECDSA or RSA) in
// "identity", decrypted with "passphrase" when it is encrypted. Errors name
// the keys, never their values.
func SSHSigningKey(data map[string][]byte) (SSHSigner, error) {
	identity := data[SecretIdentity]
	if len(bytes.TrimSpace(identity)) == 0 {
		return SSHSigner{}, fmt.Errorf("the signing Secret has no %q (an OpenSSH or PEM private key)", SecretIdentity)
	}
	if isPublicKey(identity) {
		return SSHSigner{}, fmt.Errorf("the signing Secret's %q holds a public key only", SecretIdentity)
	}
	key, err := ssh.ParsePrivateKey(identity)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		pass := bytes.TrimRight(data[SecretPassphrase], "\r\n")
		if len(pass) == 0 {
			return SSHSigner{}, fmt.Errorf("the signing key is encrypted and the Secret has no %q", SecretPassphrase)
		}
		key, err = ssh.ParsePrivateKeyWithPassphrase(identity, pass)
		if err != nil {
			// The error may be a wrong passphrase or a key that does not
			// parse once decrypted; neither is worth quoting.
			return SSHSigner{}, fmt.Errorf("the signing Secret's %q does not decrypt its %q", SecretPassphrase, SecretIdentity)
		}
	}
	if err != nil {
		return SSHSigner{}, fmt.Errorf("the signing Secret's %q is not an OpenSSH or PEM private key: %v", SecretIdentity, scrubKeyError(err))
	}
	if t := key.PublicKey().Type(); !sshSigningKeyTypes[t] {
		return SSHSigner{}, fmt.Errorf("the signing Secret's %q is a %s key: use an ed25519, ECDSA or RSA key", SecretIdentity, t)
	}
	return SSHSigner{Key: key}, nil
}

// isPublicKey says whether data is a public key rather than a private one:
// an authorized_keys line (a .pub file), a PEM public key or an RFC 4716
// public key (ssh-keygen -e).
func isPublicKey(data []byte) bool {
	if _, _, _, _, err := ssh.ParseAuthorizedKey(data); err == nil {
		return true
	}
	if block, _ := pem.Decode(data); block != nil {
		return block.Type == "PUBLIC KEY" || block.Type == "RSA PUBLIC KEY"
	}
	return bytes.HasPrefix(bytes.TrimSpace(data), []byte("---- BEGIN SSH2 PUBLIC KEY ----"))
}

package revert

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

// The keys of a signing Secret.
const (
	SecretSigningKey = "git.asc"
	SecretPassphrase = "passphrase"
)

// Signer signs a Git object: message is the encoded object without its
// signature header, and Sign returns the armored signature git stores in
// the gpgsig header. It is go-git's git.Signer.
type Signer interface {
	Sign(message io.Reader) ([]byte, error)
}

// OpenPGPSigner signs with an OpenPGP private key.
type OpenPGPSigner struct {
	Entity *openpgp.Entity
}

// Sign implements Signer with an armored detached signature.
func (s OpenPGPSigner) Sign(message io.Reader) ([]byte, error) {
	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&sig, s.Entity, message, nil); err != nil {
		return nil, errors.New("signing with the OpenPGP key failed")
	}
	return sig.Bytes(), nil
}

// SigningKey reads the OpenPGP private key that signs revert commits from a
// Secret's data: an armored key in "git.asc", decrypted with "passphrase"
// when it is encrypted. Errors name the keys, never their values.
func SigningKey(data map[string][]byte) (OpenPGPSigner, error) {
	armored := data[SecretSigningKey]
	if len(armored) == 0 {
		return OpenPGPSigner{}, fmt.Errorf("the signing Secret has no %q (an armored OpenPGP private key)", SecretSigningKey)
	}
	list, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armored))
	if err != nil || len(list) == 0 {
		return OpenPGPSigner{}, fmt.Errorf("the signing Secret's %q is not an armored OpenPGP key", SecretSigningKey)
	}
	e := list[0]
	if e.PrivateKey == nil {
		return OpenPGPSigner{}, fmt.Errorf("the signing Secret's %q holds a public key only", SecretSigningKey)
	}
	if e.PrivateKey.Encrypted {
		pass := bytes.TrimRight(data[SecretPassphrase], "\r\n")
		if len(pass) == 0 {
			return OpenPGPSigner{}, fmt.Errorf("the signing key is encrypted and the Secret has no %q", SecretPassphrase)
		}
		if err := e.DecryptPrivateKeys(pass); err != nil {
			return OpenPGPSigner{}, fmt.Errorf("the signing Secret's %q does not decrypt its key", SecretPassphrase)
		}
	}
	return OpenPGPSigner{Entity: e}, nil
}

// sign adds a signature over the commit as git signs it: the encoded commit
// without the signature header.
func sign(c *object.Commit, signer Signer) error {
	obj := memory.NewStorage().NewEncodedObject()
	if err := c.EncodeWithoutSignature(obj); err != nil {
		return err
	}
	r, err := obj.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	sig, err := signer.Sign(r)
	if err != nil {
		return fmt.Errorf("signing the revert commit: %w", err)
	}
	c.PGPSignature = string(sig)
	return nil
}

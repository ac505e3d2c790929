package revert

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

// The keys of a signing Secret.
const (
	SecretSigningKey = "git.asc"
	SecretPassphrase = "passphrase"
)

// SigningKey reads the OpenPGP private key that signs revert commits from a
// Secret's data: an armored key in "git.asc", decrypted with "passphrase"
// when it is encrypted. Errors name the keys, never their values.
func SigningKey(data map[string][]byte) (*openpgp.Entity, error) {
	armored := data[SecretSigningKey]
	if len(armored) == 0 {
		return nil, fmt.Errorf("the signing Secret has no %q (an armored OpenPGP private key)", SecretSigningKey)
	}
	list, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armored))
	if err != nil || len(list) == 0 {
		return nil, fmt.Errorf("the signing Secret's %q is not an armored OpenPGP key", SecretSigningKey)
	}
	e := list[0]
	if e.PrivateKey == nil {
		return nil, fmt.Errorf("the signing Secret's %q holds a public key only", SecretSigningKey)
	}
	if e.PrivateKey.Encrypted {
		pass := bytes.TrimRight(data[SecretPassphrase], "\r\n")
		if len(pass) == 0 {
			return nil, fmt.Errorf("the signing key is encrypted and the Secret has no %q", SecretPassphrase)
		}
		if err := e.DecryptPrivateKeys(pass); err != nil {
			return nil, fmt.Errorf("the signing Secret's %q does not decrypt its key", SecretPassphrase)
		}
	}
	return e, nil
}

// sign adds an OpenPGP signature over the commit as git signs it: the
// encoded commit without the signature header.
func sign(c *object.Commit, key *openpgp.Entity) error {
	obj := memory.NewStorage().NewEncodedObject()
	if err := c.EncodeWithoutSignature(obj); err != nil {
		return err
	}
	r, err := obj.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&sig, key, r, nil); err != nil {
		return errors.New("signing the revert commit failed")
	}
	c.PGPSignature = sig.String()
	return nil
}

package bootstrap

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Key comments, so a key found on a host or in a provider's console can be
// traced back to crabbox-runner.
const (
	clientKeyComment = "crabbox"
	hostKeyComment   = "crabbox-host"
)

// NewCredentials generates a lease's ed25519 client key pair and, when
// withHostKey is set, a host key pair to install on the host. With a seed
// the keys are derived from it (the same seed gives the same keys, so a
// restarted server can reach a host it created before); without one they
// are random.
func (b *Bootstrapper) NewCredentials(seed []byte, withHostKey bool) (*provisioner.Credentials, error) {
	pub, priv, err := newKeyPair(derive(seed, "client"), clientKeyComment)
	if err != nil {
		return nil, err
	}
	c := &provisioner.Credentials{ClientPublicKey: pub, ClientPrivatePEM: priv}
	if withHostKey {
		pub, priv, err := newKeyPair(derive(seed, "host"), hostKeyComment)
		if err != nil {
			return nil, err
		}
		c.HostKey = &provisioner.HostKeyPair{PublicKey: pub, PrivatePEM: priv}
	}
	return c, nil
}

// derive returns the ed25519 seed for one purpose, or nil for a random key.
func derive(seed []byte, purpose string) []byte {
	if seed == nil {
		return nil
	}
	m := hmac.New(sha256.New, seed)
	m.Write([]byte("crabbox-runner ssh key\x00" + purpose))
	return m.Sum(nil)
}

// newKeyPair returns an ed25519 public key in authorized_keys format and its
// private key as OpenSSH PEM, from a 32-byte seed or at random.
func newKeyPair(seed []byte, comment string) (string, []byte, error) {
	var priv ed25519.PrivateKey
	if seed != nil {
		priv = ed25519.NewKeyFromSeed(seed)
	} else {
		var err error
		if _, priv, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return "", nil, fmt.Errorf("bootstrap: generating a key: %w", err)
		}
	}
	pub := priv.Public().(ed25519.PublicKey)
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", nil, fmt.Errorf("bootstrap: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", nil, fmt.Errorf("bootstrap: %w", err)
	}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment
	return authorized, pem.EncodeToMemory(block), nil
}

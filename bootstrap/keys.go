package bootstrap

import (
	"crypto/ed25519"
	"crypto/rand"
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
// withHostKey is set, a host key pair to install on the host.
func (b *Bootstrapper) NewCredentials(withHostKey bool) (*provisioner.Credentials, error) {
	pub, priv, err := newKeyPair(clientKeyComment)
	if err != nil {
		return nil, err
	}
	c := &provisioner.Credentials{ClientPublicKey: pub, ClientPrivatePEM: priv}
	if withHostKey {
		pub, priv, err := newKeyPair(hostKeyComment)
		if err != nil {
			return nil, err
		}
		c.HostKey = &provisioner.HostKeyPair{PublicKey: pub, PrivatePEM: priv}
	}
	return c, nil
}

// newKeyPair returns an ed25519 public key in authorized_keys format and its
// private key as OpenSSH PEM.
func newKeyPair(comment string) (string, []byte, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("bootstrap: generating a key: %w", err)
	}
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

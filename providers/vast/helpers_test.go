package vast_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// a100 is the class most tests rent: it fits two of vasttest's default
// offers, A100 PCIE (201) and A100 SXM4 (202), and none of the traps.
var a100 = provisioner.Class{
	Name:            "a100",
	GPU:             provisioner.GPURequirement{Name: "A100", Count: 1, MinMemoryGB: 40},
	MaxPricePerHour: 2.00,
	MinReliability:  0.95,
	VerifiedOnly:    true,
	DirectSSH:       true,
	DiskGB:          40,
}

func requireSSHD(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("/usr/sbin/sshd missing in CI: install openssh-server")
		}
		t.Skip("/usr/sbin/sshd missing: install openssh-server")
	}
}

func newFake(t *testing.T, opts vasttest.Options) *vasttest.Server {
	t.Helper()
	requireSSHD(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s := vasttest.New(opts)
	t.Cleanup(s.Close)
	return s
}

// fastRetry keeps retry tests quick; the policy is the same, only shorter.
var fastRetry = vast.Retry{MaxRetries: 5, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxElapsed: 10 * time.Second}

func newProvider(t *testing.T, fake *vasttest.Server, mutate ...func(*vast.Config)) *vast.Provider {
	t.Helper()
	cfg := vast.Config{
		APIKey:             fake.APIKey(),
		APIURL:             fake.URL(),
		MinRequestInterval: -1,
		Retry:              fastRetry,
		SSHUser:            currentUser(t),
		Timeout:            10 * time.Second,
		// Short: tests poll fast and count searches one by one; the
		// shared listing and search have tests of their own.
		StatusTTL:    5 * time.Millisecond,
		SearchTTL:    -1,
		CreateLookup: 300 * time.Millisecond,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := vast.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func currentUser(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}

// lockedBuffer is a log sink several goroutines write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// leaseKey is a lease's client key pair.
type leaseKey struct {
	signer     ssh.Signer
	authorized string
}

func newLeaseKey(t *testing.T) leaseKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return leaseKey{signer: signer, authorized: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " lease"}
}

func marker(deployment, lease string) provisioner.Marker {
	return provisioner.Marker{Deployment: deployment, LeaseID: lease, Expires: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
}

// create rents the class's cheapest offer for a lease and destroys it at
// the end of the test.
func create(t *testing.T, p *vast.Provider, class provisioner.Class, m provisioner.Marker, key leaseKey) *provisioner.Instance {
	t.Helper()
	offers, err := p.Offers(context.Background(), class)
	if err != nil || len(offers) == 0 {
		t.Fatalf("Offers: %d, %v", len(offers), err)
	}
	inst, err := p.Create(context.Background(), provisioner.CreateRequest{
		Offer: offers[0], Class: class, Marker: m, SSHPublicKey: key.authorized, OnStart: "echo started > \"$HOME/onstart.txt\"",
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = p.Destroy(context.Background(), inst) })
	return inst
}

// waitStatus polls Get until the instance reaches the status.
func waitStatus(t *testing.T, p *vast.Provider, id string, want provisioner.InstanceStatus) *provisioner.Instance {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		inst, err := p.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if inst.Status == want {
			return inst
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s is %s (%s), want %s", id, inst.Status, inst.StatusMessage, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sshRun logs in to the endpoint with the key and runs a command, trusting
// whatever host key is offered (the tests pin nothing).
func sshRun(t *testing.T, ep provisioner.Endpoint, key leaseKey, cmd string) (string, error) {
	t.Helper()
	c, err := ssh.Dial("tcp", ep.Addr(), &ssh.ClientConfig{
		User:            ep.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key.signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

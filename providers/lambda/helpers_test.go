package lambda_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// requireTool skips a test when a tool is missing locally, and fails it in
// CI, where scripts/test.sh installs every tool.
func requireTool(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing in CI: install %s", path, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s)", path, pkg)
	}
}

// fastRetry keeps retried tests quick.
var fastRetry = lambda.RetryPolicy{InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond, MaxElapsedTime: 5 * time.Second}

// logBuffer collects a provider's logs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newProvider returns a provider on the fake with fast limits, logging into
// logs when given.
func newProvider(t *testing.T, fake *lambdatest.Server, logs *logBuffer, tune ...func(*lambda.Options)) *lambda.Provider {
	t.Helper()
	opts := lambda.Options{
		APIURL: fake.URL(), APIKey: fake.APIKey(),
		MinRequestInterval: -1, LaunchInterval: -1, Retry: fastRetry,
		SSHUser: lambdatest.CurrentUser(), SSHAddress: fake.SSHAddress,
		OffersCacheTTL: -1, KeyRetryInterval: 20 * time.Millisecond,
	}
	if logs != nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, f := range tune {
		f(&opts)
	}
	p, err := lambda.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// a100 is a class that fits gpu_1x_a100_sxm4 only in the default catalogue.
var a100 = provisioner.Class{
	Name:      "a100",
	Labels:    []string{"self-hosted", "a100"},
	GPU:       provisioner.GPURequirement{Name: "A100", Count: 1, MinMemoryGB: 40},
	Providers: []string{"lambda"},
}

// keyPair returns an ed25519 key in authorized_keys format and its PEM.
func keyPair(t *testing.T, comment string) (string, []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment, pem.EncodeToMemory(block)
}

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

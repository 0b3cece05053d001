package bootstrap_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
)

const runnerVersion = "2.330.0"

// fakeRunSh stands in for the runner: it proves what it was given, without
// putting the JIT config on any command line, and keeps running.
const fakeRunSh = `#!/bin/bash
printf '%s' "$ACTIONS_RUNNER_INPUT_JITCONFIG" | sha256sum | cut -d' ' -f1 > jit.sha256
printf '%s\n' "${RUNNER_ALLOW_RUNASROOT-unset}" > allow-root
echo "fake runner: listening for jobs"
exec sleep 600
`

// fakeInstallDeps counts its runs, per host.
const fakeInstallDeps = `#!/bin/sh
echo ran >> "$CRABBOX_HOST_ROOT/installdependencies.runs"
`

// tarball builds a runner tarball with the given run.sh.
func tarball(t *testing.T, runSh string) (data []byte, sum string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name, body string
	}{
		{"run.sh", runSh},
		{"bin/installdependencies.sh", fakeInstallDeps},
		{"config.sh", "#!/bin/sh\nexit 0\n"},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o755, Size: int64(len(f.body)), ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(h[:])
}

// tarballServer serves body at the runner's release path for any arch. A
// nil body makes requests hang until the client goes away or the test ends.
type tarballServer struct {
	*httptest.Server
	requests atomic.Int32
	arrived  chan struct{} // one value per request
}

func serveTarball(t *testing.T, body []byte) *tarballServer {
	t.Helper()
	s := &tarballServer{arrived: make(chan struct{}, 100)}
	release := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.arrived <- struct{}{}
		if !strings.HasPrefix(r.URL.Path, "/v"+runnerVersion+"/actions-runner-linux-") ||
			!strings.HasSuffix(r.URL.Path, "-"+runnerVersion+".tar.gz") {
			http.NotFound(w, r)
			return
		}
		if body == nil {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(release) })
	return s
}

func (s *tarballServer) urlTemplate() string {
	return s.URL + "/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"
}

// logBuffer collects slog output for the secrets checks.
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

type env struct {
	p    *local.Provider
	logs *logBuffer
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

func newEnv(t *testing.T, behavior func(int, provisioner.CreateRequest) local.Behavior) *env {
	t.Helper()
	requireSSHD(t)
	p, err := local.New(local.Options{Dir: t.TempDir(), Behavior: behavior})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing the local provider: %v", err)
		}
	})
	return &env{p: p, logs: &logBuffer{}}
}

func (e *env) bootstrapper(t *testing.T, url, sum string) *bootstrap.Bootstrapper {
	t.Helper()
	b, err := bootstrap.New(bootstrap.Config{
		RunnerURL:      url,
		RunnerVersion:  runnerVersion,
		RunnerSHA256:   sum,
		ConnectTimeout: 10 * time.Second,
		CommandTimeout: 2 * time.Minute,
		Logger:         slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// host creates a local instance for the credentials and waits until it runs.
func (e *env) host(t *testing.T, creds *provisioner.Credentials) *provisioner.Instance {
	t.Helper()
	return e.hostWith(t, creds, "")
}

// hostWith is host with the create's onstart script (none when empty).
func (e *env) hostWith(t *testing.T, creds *provisioner.Credentials, onStart string) *provisioner.Instance {
	t.Helper()
	ctx := context.Background()
	offers, err := e.p.Offers(ctx, provisioner.Class{GPU: provisioner.GPURequirement{Name: "A100"}})
	if err != nil || len(offers) == 0 {
		t.Fatalf("offers: %v", err)
	}
	inst, err := e.p.Create(ctx, provisioner.CreateRequest{
		Offer:        offers[0],
		Marker:       provisioner.Marker{Deployment: "test", LeaseID: "l1", Expires: time.Now().Add(time.Hour)},
		SSHPublicKey: creds.ClientPublicKey,
		HostKey:      creds.HostKey,
		OnStart:      onStart,
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := e.p.Get(ctx, inst.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == provisioner.InstanceRunning {
			return got
		}
		if got.Status == provisioner.InstanceFailed || time.Now().After(deadline) {
			t.Fatalf("host %s: %s %s", got.ID, got.Status, got.StatusMessage)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) runnerDir(inst *provisioner.Instance, name string) string {
	return filepath.Join(e.p.HostRoot(inst.ID), "crabbox", "runners", name)
}

func newCreds(t *testing.T, b *bootstrap.Bootstrapper) *provisioner.Credentials {
	t.Helper()
	c, err := b.NewCredentials(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newJIT(t *testing.T, name string) *provisioner.JITConfig {
	t.Helper()
	raw := make([]byte, 96)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return &provisioner.JITConfig{RunnerID: 42, RunnerName: name, Encoded: base64.StdEncoding.EncodeToString(raw)}
}

func request(inst *provisioner.Instance, creds *provisioner.Credentials, jit *provisioner.JITConfig, checkGPU bool) provisioner.BootstrapRequest {
	return provisioner.BootstrapRequest{
		ProbeRequest: provisioner.ProbeRequest{Endpoint: inst.SSH, Credentials: creds, KnownHostKey: creds.HostKey.PublicKey},
		JIT:          jit,
		CheckGPU:     checkGPU,
	}
}

// waitFile polls for a file the fake runner writes.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && bytes.HasSuffix(b, []byte("\n")) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertNoSecrets fails if any secret shows up in any text.
func assertNoSecrets(t *testing.T, texts []string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		// A line of a PEM key is as telling as the whole key.
		needles := []string{s}
		for _, line := range strings.Split(s, "\n") {
			if len(line) > 20 && !strings.HasPrefix(line, "-----") {
				needles = append(needles, line)
			}
		}
		for i, text := range texts {
			for _, n := range needles {
				if strings.Contains(text, n) {
					t.Errorf("text %d contains a secret: %q", i, text)
				}
			}
		}
	}
}

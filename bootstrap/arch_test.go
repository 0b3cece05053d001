package bootstrap_test

import (
	"context"
	"errors"
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

// archRunSh records which architecture's tarball it came from and the
// umask it was started with, then keeps running.
func archRunSh(arch string) string {
	return `#!/bin/bash
echo ` + arch + ` > tarball-arch
umask > umask
echo "fake runner: listening for jobs"
exec sleep 600
`
}

// archServer serves each architecture's tarball at its own path, as the
// runner's releases do, and counts the downloads of each.
type archServer struct {
	*httptest.Server
	mu   sync.Mutex
	gets map[string]int
}

func serveArchTarballs(t *testing.T, bodies map[string][]byte) *archServer {
	t.Helper()
	s := &archServer{gets: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for arch, body := range bodies {
			if r.URL.Path == "/v"+runnerVersion+"/actions-runner-linux-"+arch+"-"+runnerVersion+".tar.gz" {
				s.mu.Lock()
				s.gets[arch]++
				s.mu.Unlock()
				_, _ = w.Write(body)
				return
			}
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *archServer) downloads(arch string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets[arch]
}

func (s *archServer) urlTemplate() string {
	return s.URL + "/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"
}

// machines gives the seq'th host (from 1) the uname -m of machines[seq-1].
func machines(m ...string) func(int, provisioner.CreateRequest) local.Behavior {
	return func(seq int, _ provisioner.CreateRequest) local.Behavior {
		if seq <= len(m) {
			return local.Behavior{Machine: m[seq-1]}
		}
		return local.Behavior{}
	}
}

type archFixture struct {
	e          *env
	srv        *archServer
	sumX, sumA string
}

func newArchFixture(t *testing.T, hosts ...string) *archFixture {
	t.Helper()
	x64, sumX := tarball(t, archRunSh("x64"))
	arm64, sumA := tarball(t, archRunSh("arm64"))
	return &archFixture{
		e:    newEnv(t, machines(hosts...)),
		srv:  serveArchTarballs(t, map[string][]byte{"x64": x64, "arm64": arm64}),
		sumX: sumX, sumA: sumA,
	}
}

func (f *archFixture) bootstrapper(t *testing.T, cfg bootstrap.Config) *bootstrap.Bootstrapper {
	t.Helper()
	cfg.RunnerURL, cfg.ConnectTimeout, cfg.CommandTimeout = f.srv.urlTemplate(), 10*time.Second, 2*time.Minute
	if cfg.RunnerVersion == "" && cfg.Resolve == nil {
		cfg.RunnerVersion = runnerVersion
	}
	b, err := bootstrap.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// boot bootstraps a new host with b and returns the result and the
// runner's directory.
func (f *archFixture) boot(t *testing.T, b *bootstrap.Bootstrapper, name string) (*provisioner.BootstrapResult, string, error) {
	t.Helper()
	creds := newCreds(t, b)
	inst := f.e.host(t, creds)
	req := request(inst, creds, newJIT(t, name), false)
	req.Scope = provisioner.Scope{Org: "acme"}
	res, err := b.Bootstrap(context.Background(), req)
	return res, f.e.runnerDir(inst, name), err
}

// An arm64 host (uname -m aarch64, as Lambda's GH200) installs the arm64
// tarball with the arm64 checksum; an x86_64 host the x64 one.
func TestBootstrapInstallsTheTarballOfTheHostsArchitecture(t *testing.T) {
	t.Parallel()
	f := newArchFixture(t, "aarch64", "x86_64", "arm64")
	b := f.bootstrapper(t, bootstrap.Config{RunnerChecksums: map[string]string{"x64": f.sumX, "arm64": f.sumA}})
	for _, tc := range []struct{ name, arch, sum string }{
		{"r-arm", "arm64", f.sumA}, {"r-x64", "x64", f.sumX}, {"r-arm2", "arm64", f.sumA},
	} {
		res, dir, err := f.boot(t, b, tc.name)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if res.Arch != tc.arch || res.RunnerSHA256 != tc.sum || res.RunnerVersion != runnerVersion {
			t.Errorf("%s: result %+v, want arch %s with sha256 %s", tc.name, res, tc.arch, tc.sum)
		}
		if got := strings.TrimSpace(waitFile(t, filepath.Join(dir, "tarball-arch"))); got != tc.arch {
			t.Errorf("%s: the %s tarball was installed on a %s host", tc.name, got, tc.arch)
		}
	}
	// Each host downloaded its own architecture's tarball, and only that.
	if f.srv.downloads("arm64") != 2 || f.srv.downloads("x64") != 1 {
		t.Errorf("downloads: arm64 %d, x64 %d; want 2 and 1", f.srv.downloads("arm64"), f.srv.downloads("x64"))
	}
}

// The runner and its jobs start with umask 022, while the host script's
// own files stay private.
func TestBootstrapRunnerUmaskAndPrivateFiles(t *testing.T) {
	t.Parallel()
	f := newArchFixture(t)
	b := f.bootstrapper(t, bootstrap.Config{RunnerChecksums: map[string]string{"x64": f.sumX, "arm64": f.sumA}})
	_, dir, err := f.boot(t, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(waitFile(t, filepath.Join(dir, "umask"))); got != "0022" {
		t.Errorf("the runner started with umask %s, want 0022", got)
	}
	root := filepath.Dir(filepath.Dir(dir)) // …/crabbox
	for path, want := range map[string]os.FileMode{
		filepath.Join(root, ".crabbox"):            0o700,
		filepath.Join(root, ".crabbox", "host.sh"): 0o700,
		filepath.Join(root, "cache"):               0o700,
		filepath.Join(root, "runners"):             0o700,
		dir:                                        0o700,
		filepath.Join(dir, "runner.log"):           0o600,
		filepath.Join(dir, "runner.pid"):           0o600,
	} {
		st, err := os.Stat(path)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}
}

// No checksum for the host's architecture and nothing to ask: the host
// gets no runner, and downloads nothing.
func TestBootstrapRefusesAnArchitectureWithoutAChecksum(t *testing.T) {
	t.Parallel()
	f := newArchFixture(t, "aarch64", "riscv64")
	b := f.bootstrapper(t, bootstrap.Config{RunnerSHA256: f.sumX})
	_, _, err := f.boot(t, b, "r1")
	if !errors.Is(err, bootstrap.ErrRunnerRelease) || !strings.Contains(err.Error(), "arm64") {
		t.Fatalf("err = %v, want ErrRunnerRelease naming arm64", err)
	}
	// A machine no runner is built for fails before any download.
	if _, _, err = f.boot(t, b, "r2"); err == nil || !strings.Contains(err.Error(), "unsupported machine architecture: riscv64") {
		t.Fatalf("riscv64 host: %v", err)
	}
	if n := f.srv.downloads("arm64") + f.srv.downloads("x64"); n != 0 {
		t.Errorf("%d downloads", n)
	}
}

// A mix-up (the x64 checksum given as arm64's) stops the install at the
// checksum; and a tarball of the wrong architecture that did verify would
// not start (githubtest's listener checks uname -m, see the serve tests).
func TestBootstrapCatchesAChecksumMixUp(t *testing.T) {
	t.Parallel()
	f := newArchFixture(t, "aarch64")
	b := f.bootstrapper(t, bootstrap.Config{RunnerChecksums: map[string]string{"x64": f.sumX, "arm64": f.sumX}})
	if _, _, err := f.boot(t, b, "r1"); !errors.Is(err, bootstrap.ErrRunnerChecksum) {
		t.Fatalf("err = %v, want ErrRunnerChecksum", err)
	}
}

// Without a configured checksum for the host's architecture, Resolve (in
// serve: GitHub's runners/downloads) names it; with runner.version pinned
// its answer must be of that version, and is asked once per architecture.
func TestBootstrapResolvesAMissingChecksum(t *testing.T) {
	t.Parallel()
	f := newArchFixture(t, "aarch64", "aarch64", "aarch64")
	var calls atomic.Int32
	version := runnerVersion
	resolve := func(ctx context.Context, scope provisioner.Scope, arch string) (bootstrap.Release, error) {
		calls.Add(1)
		if scope.Org != "acme" || arch != "arm64" {
			t.Errorf("Resolve(%v, %s)", scope, arch)
		}
		return bootstrap.Release{Version: version, URL: "https://github.example/ignored.tar.gz", SHA256: strings.ToUpper(f.sumA)}, nil
	}
	b := f.bootstrapper(t, bootstrap.Config{RunnerVersion: runnerVersion, RunnerSHA256: f.sumX, Resolve: resolve})
	for _, name := range []string{"r1", "r2"} {
		res, dir, err := f.boot(t, b, name)
		if err != nil {
			t.Fatal(err)
		}
		if res.Arch != "arm64" || res.RunnerSHA256 != f.sumA {
			t.Errorf("result %+v", res)
		}
		if got := strings.TrimSpace(waitFile(t, filepath.Join(dir, "tarball-arch"))); got != "arm64" {
			t.Errorf("installed %s", got)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("Resolve called %d times, want 1 (cached)", calls.Load())
	}

	// GitHub offers another version than the pinned one: no install.
	version = "2.331.0"
	b2 := f.bootstrapper(t, bootstrap.Config{RunnerVersion: runnerVersion, RunnerSHA256: f.sumX, Resolve: resolve})
	_, _, err := f.boot(t, b2, "r3")
	if !errors.Is(err, bootstrap.ErrRunnerRelease) || !strings.Contains(err.Error(), "2.331.0") {
		t.Fatalf("err = %v, want ErrRunnerRelease naming 2.331.0", err)
	}
}

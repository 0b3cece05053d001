package bootstrap_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/bootstrap"
	"github.com/crabbox/crabbox-runner/internal/fakegpu"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestProbeVerifiesTheInjectedHostKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	b := e.bootstrapper(t, "https://example.com/{version}/{arch}.tar.gz", strings.Repeat("a", 64))
	creds := newCreds(t, b)
	inst := e.host(t, creds)

	key, err := b.Probe(context.Background(), provisioner.ProbeRequest{
		Endpoint: inst.SSH, Credentials: creds, KnownHostKey: creds.HostKey.PublicKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(creds.HostKey.PublicKey, key+" ") {
		t.Errorf("Probe returned %q, want the injected %q", key, creds.HostKey.PublicKey)
	}
}

func TestProbeHostKeyMismatchAndTrustOnFirstUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(int, provisioner.CreateRequest) local.Behavior { return local.Behavior{IgnoreHostKey: true} })
	b := e.bootstrapper(t, "https://example.com/{version}/{arch}.tar.gz", strings.Repeat("a", 64))
	creds := newCreds(t, b)
	inst := e.host(t, creds)
	ctx := context.Background()

	_, err := b.Probe(ctx, provisioner.ProbeRequest{Endpoint: inst.SSH, Credentials: creds, KnownHostKey: creds.HostKey.PublicKey})
	if !errors.Is(err, provisioner.ErrHostKeyMismatch) {
		t.Fatalf("Probe with the wrong pinned key = %v, want ErrHostKeyMismatch", err)
	}

	seen, err := b.Probe(ctx, provisioner.ProbeRequest{Endpoint: inst.SSH, Credentials: creds})
	if err != nil {
		t.Fatalf("Probe on first use: %v", err)
	}
	if seen == "" || strings.HasPrefix(creds.HostKey.PublicKey, seen) {
		t.Fatalf("first use returned %q, want the host's own key", seen)
	}
	// The key seen first is the one to pin.
	if _, err := b.Probe(ctx, provisioner.ProbeRequest{Endpoint: inst.SSH, Credentials: creds, KnownHostKey: seen}); err != nil {
		t.Errorf("Probe with the pinned key: %v", err)
	}
	_, err = b.Bootstrap(ctx, request(inst, creds, newJIT(t, "r1"), false))
	if !errors.Is(err, provisioner.ErrHostKeyMismatch) {
		t.Errorf("Bootstrap with the wrong pinned key = %v, want ErrHostKeyMismatch", err)
	}
}

func TestBootstrapStartsTheRunnerDetachedWithTheJITConfigOnStdin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	body, sum := tarball(t, fakeRunSh)
	srv := serveTarball(t, body)
	b := e.bootstrapper(t, srv.urlTemplate(), sum)
	creds := newCreds(t, b)
	inst := e.host(t, creds)
	ctx := context.Background()
	jit := newJIT(t, "crabbox-r1")

	res, err := b.Bootstrap(ctx, request(inst, creds, jit, true))
	if err != nil {
		t.Fatal(err)
	}
	if res.GPUInfo != "1× NVIDIA A100 PCIE (40960 MiB), driver 550.54.15, CUDA 12.4" || res.GPU == nil || len(res.GPU.GPUs) != 1 ||
		res.GPU.GPUs[0].BusID != "00000000:4F:00.0" || res.GPU.GPUs[0].Health.UncorrectedECC != 0 {
		t.Errorf("GPUInfo = %q, report %+v", res.GPUInfo, res.GPU)
	}
	if !strings.HasPrefix(creds.HostKey.PublicKey, res.HostKey+" ") {
		t.Errorf("HostKey = %q, want the injected key", res.HostKey)
	}

	dir := e.runnerDir(inst, jit.RunnerName)
	want := sha256.Sum256([]byte(jit.Encoded))
	if got := strings.TrimSpace(waitFile(t, filepath.Join(dir, "jit.sha256"))); got != hex.EncodeToString(want[:]) {
		t.Errorf("the runner got a JIT config with sha256 %s, want %x", got, want)
	}
	wantRoot := "unset"
	if os.Geteuid() == 0 {
		wantRoot = "1"
	}
	if got := strings.TrimSpace(waitFile(t, filepath.Join(dir, "allow-root"))); got != wantRoot {
		t.Errorf("RUNNER_ALLOW_RUNASROOT = %q, want %q", got, wantRoot)
	}

	// Another connection has come and gone since the bootstrap's; the
	// runner must still be there, leading a session of its own.
	if _, err := b.Probe(ctx, request(inst, creds, nil, false).ProbeRequest); err != nil {
		t.Fatal(err)
	}
	pidText, err := os.ReadFile(filepath.Join(dir, "runner.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatal(err)
	}
	state, session := procState(t, pid)
	if state == "Z" || state == "" {
		t.Fatalf("runner process %d is not running (state %q)", pid, state)
	}
	if session != pid {
		t.Errorf("runner process %d is in session %d, want its own (setsid)", pid, session)
	}

	assertNotInCmdlines(t, jit.Encoded)
	log, err := os.ReadFile(filepath.Join(dir, "runner.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "listening for jobs") {
		t.Errorf("runner.log = %q", log)
	}
	assertNoSecrets(t, []string{string(log), e.logs.String()}, jit.Encoded, string(creds.ClientPrivatePEM), string(creds.HostKey.PrivatePEM))

	// A second runner on the same host reuses the cached tarball and the
	// installed dependencies.
	jit2 := newJIT(t, "crabbox-r2")
	if _, err := b.Bootstrap(ctx, request(inst, creds, jit2, false)); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(e.runnerDir(inst, jit2.RunnerName), "jit.sha256"))
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("tarball downloaded %d times, want once", n)
	}
	runs, err := os.ReadFile(filepath.Join(e.p.HostRoot(inst.ID), "installdependencies.runs"))
	if err != nil || strings.Count(string(runs), "ran") != 1 {
		if os.Geteuid() == 0 {
			t.Errorf("installdependencies.sh ran %q times (%v), want once", runs, err)
		}
	}

	// Bootstrapping the same runner name again replaces the earlier one.
	jit3 := newJIT(t, "crabbox-r1")
	if _, err := b.Bootstrap(ctx, request(inst, creds, jit3, false)); err != nil {
		t.Fatal(err)
	}
	if state, _ := procState(t, pid); state != "" && state != "Z" {
		t.Errorf("the replaced runner %d is still running", pid)
	}
}

func TestBootstrapRefusesATarballWithTheWrongChecksum(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	body, _ := tarball(t, fakeRunSh)
	srv := serveTarball(t, body)
	wrong := strings.Repeat("0", 64)
	b := e.bootstrapper(t, srv.urlTemplate(), wrong)
	creds := newCreds(t, b)
	inst := e.host(t, creds)

	_, err := b.Bootstrap(context.Background(), request(inst, creds, newJIT(t, "r1"), false))
	if !errors.Is(err, bootstrap.ErrRunnerChecksum) {
		t.Fatalf("err = %v, want ErrRunnerChecksum", err)
	}
	if !strings.Contains(err.Error(), "expected sha256 "+wrong) || !strings.Contains(err.Error(), "install") {
		t.Errorf("error does not say what was expected in which phase: %v", err)
	}
	if _, statErr := os.Stat(e.runnerDir(inst, "r1")); !os.IsNotExist(statErr) {
		t.Errorf("a runner directory was created from an unverified tarball: %v", statErr)
	}
}

func TestBootstrapGPUCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(int, provisioner.CreateRequest) local.Behavior { return local.Behavior{BrokenGPU: true} })
	body, sum := tarball(t, fakeRunSh)
	srv := serveTarball(t, body)
	b := e.bootstrapper(t, srv.urlTemplate(), sum)
	creds := newCreds(t, b)
	inst := e.host(t, creds)
	ctx := context.Background()

	_, err := b.Bootstrap(ctx, request(inst, creds, newJIT(t, "r1"), true))
	if !errors.Is(err, provisioner.ErrGPUCheck) {
		t.Fatalf("err = %v, want ErrGPUCheck", err)
	}
	if !strings.Contains(err.Error(), "couldn't communicate with the NVIDIA driver") {
		t.Errorf("error lacks nvidia-smi's output: %v", err)
	}
	if srv.requests.Load() != 0 {
		t.Error("the runner was downloaded to a host whose GPU check failed")
	}

	res, err := b.Bootstrap(ctx, request(inst, creds, newJIT(t, "r2"), false))
	if err != nil {
		t.Fatalf("Bootstrap without GPU check: %v", err)
	}
	if res.GPUInfo != "" {
		t.Errorf("GPUInfo = %q without a GPU check", res.GPUInfo)
	}
}

// TestBootstrapReadyJudgesBeforeInstall: with Ready, the host's GPU report
// reaches the judge before anything is installed; a judge's error ends the
// bootstrap as it is, with nothing downloaded; a JIT config it returns is
// the one the runner starts with.
func TestBootstrapReadyJudgesBeforeInstall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(int, provisioner.CreateRequest) local.Behavior {
		return local.Behavior{GPUFault: fakegpu.ECCErrors}
	})
	body, sum := tarball(t, fakeRunSh)
	srv := serveTarball(t, body)
	b := e.bootstrapper(t, srv.urlTemplate(), sum)
	creds := newCreds(t, b)
	inst := e.host(t, creds)
	ctx := context.Background()

	refused := errors.New("refused by the judge")
	req := request(inst, creds, &provisioner.JITConfig{RunnerName: "r1"}, true)
	var seen *provisioner.GPUReport
	req.Ready = func(_ context.Context, res *provisioner.BootstrapResult) (*provisioner.JITConfig, error) {
		seen = res.GPU
		return nil, refused
	}
	if _, err := b.Bootstrap(ctx, req); !errors.Is(err, refused) {
		t.Fatalf("err = %v, want the judge's", err)
	}
	if seen == nil || len(seen.GPUs) != 1 || seen.GPUs[0].Health.UncorrectedECC != 4 {
		t.Fatalf("the judge saw %+v", seen)
	}
	if srv.requests.Load() != 0 {
		t.Error("the runner was downloaded before the judge said yes")
	}

	jit := newJIT(t, "r2")
	req = request(inst, creds, &provisioner.JITConfig{RunnerName: "r2"}, true)
	req.Ready = func(context.Context, *provisioner.BootstrapResult) (*provisioner.JITConfig, error) { return jit, nil }
	if _, err := b.Bootstrap(ctx, req); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte(jit.Encoded))
	if got := strings.TrimSpace(waitFile(t, filepath.Join(e.runnerDir(inst, "r2"), "jit.sha256"))); got != hex.EncodeToString(want[:]) {
		t.Errorf("the runner started with a JIT config of sha256 %s, want the judge's %x", got, want)
	}
}

func TestBootstrapReportsARunnerThatExitsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	// The runner prints its input before dying: the error must still not
	// carry the JIT config.
	body, sum := tarball(t, "#!/bin/bash\necho \"got $ACTIONS_RUNNER_INPUT_JITCONFIG\"\necho 'libicu: not found'\nexit 0\n")
	srv := serveTarball(t, body)
	b := e.bootstrapper(t, srv.urlTemplate(), sum)
	creds := newCreds(t, b)
	inst := e.host(t, creds)
	jit := newJIT(t, "r1")

	_, err := b.Bootstrap(context.Background(), request(inst, creds, jit, false))
	if !errors.Is(err, bootstrap.ErrRunnerStart) {
		t.Fatalf("err = %v, want ErrRunnerStart", err)
	}
	if !strings.Contains(err.Error(), "libicu: not found") || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("error lacks the runner's last words: %v", err)
	}
	assertNoSecrets(t, []string{err.Error(), e.logs.String()}, jit.Encoded)
}

// A JIT runner can connect, take a job at once and finish it before the
// start check is over; that is a runner that started, not one that died.
func TestBootstrapAcceptsARunnerThatFinishedAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	body, sum := tarball(t, `#!/bin/bash
echo 'Connected to GitHub'
echo '2026-11-23 01:02:48Z: Listening for Jobs'
echo 'Running job: build'
echo 'Job build completed with result: Succeeded'
exit 0
`)
	srv := serveTarball(t, body)
	b := e.bootstrapper(t, srv.urlTemplate(), sum)
	creds := newCreds(t, b)
	inst := e.host(t, creds)
	if _, err := b.Bootstrap(context.Background(), request(inst, creds, newJIT(t, "r1"), false)); err != nil {
		t.Fatalf("Bootstrap of a runner that already ran its job: %v", err)
	}
}

func TestBootstrapCancellationClosesTheConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	srv := serveTarball(t, nil) // downloads hang
	_, sum := tarball(t, fakeRunSh)
	b := e.bootstrapper(t, srv.urlTemplate(), sum)
	creds := newCreds(t, b)
	inst := e.host(t, creds)

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-srv.arrived
		cancel()
	}()
	_, err := b.Bootstrap(ctx, request(inst, creds, newJIT(t, "r1"), false))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestBootstrapPhaseTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	srv := serveTarball(t, nil)
	_, sum := tarball(t, fakeRunSh)
	b, err := bootstrap.New(bootstrap.Config{
		RunnerURL: srv.urlTemplate(), RunnerVersion: runnerVersion, RunnerSHA256: sum,
		CommandTimeout: 1, // every phase times out, the upload first
	})
	if err != nil {
		t.Fatal(err)
	}
	creds := newCreds(t, b)
	inst := e.host(t, creds)
	_, err = b.Bootstrap(context.Background(), request(inst, creds, newJIT(t, "r1"), false))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a phase timeout", err)
	}
}

func TestSecretsStayOutOfErrorsAndLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(seq int, _ provisioner.CreateRequest) local.Behavior {
		return local.Behavior{BrokenGPU: seq == 1, IgnoreHostKey: seq == 2}
	})
	body, sum := tarball(t, fakeRunSh)
	srv := serveTarball(t, body)
	good := e.bootstrapper(t, srv.urlTemplate(), sum)
	bad := e.bootstrapper(t, srv.urlTemplate(), strings.Repeat("f", 64))
	ctx := context.Background()
	var texts []string
	var secrets []string
	try := func(b *bootstrap.Bootstrapper, inst *provisioner.Instance, creds *provisioner.Credentials, checkGPU bool) {
		jit := newJIT(t, "r1")
		secrets = append(secrets, jit.Encoded, string(creds.ClientPrivatePEM), string(creds.HostKey.PrivatePEM))
		if _, err := b.Bootstrap(ctx, request(inst, creds, jit, checkGPU)); err != nil {
			texts = append(texts, err.Error())
		}
	}
	c1, c2, c3 := newCreds(t, good), newCreds(t, good), newCreds(t, good)
	h1, h2, h3 := e.host(t, c1), e.host(t, c2), e.host(t, c3)
	try(good, h1, c1, true) // broken GPU
	try(good, h2, c2, true) // host key mismatch
	try(bad, h3, c3, true)  // checksum
	try(good, h3, c3, true) // success
	if len(texts) != 3 {
		t.Fatalf("want 3 failures, got %d: %q", len(texts), texts)
	}
	// A key the host does not accept.
	other := newCreds(t, good)
	other.HostKey = c3.HostKey
	secrets = append(secrets, string(other.ClientPrivatePEM))
	if _, err := good.Probe(ctx, request(h3, other, nil, false).ProbeRequest); err == nil {
		t.Error("Probe with an unauthorized client key succeeded")
	} else {
		texts = append(texts, err.Error())
	}
	texts = append(texts, e.logs.String())
	if !strings.Contains(e.logs.String(), "phase=gpu-check") {
		t.Errorf("the log does not name the failing phase:\n%s", e.logs.String())
	}
	assertNoSecrets(t, texts, secrets...)
}

// procState reads a process's state and session id; state is empty when
// the process is gone.
func procState(t *testing.T, pid int) (state string, session int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	session, _ = strconv.Atoi(f[3])
	return f[0], session
}

// assertNotInCmdlines scans every process's command line for the secret.
func assertNotInCmdlines(t *testing.T, secret string) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	scanned := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		scanned++
		if strings.Contains(string(b), secret) {
			t.Errorf("process %s has the JIT config on its command line: %q", e.Name(), b)
		}
	}
	if scanned == 0 {
		t.Fatal("no process command lines could be read")
	}
}

// The bootstrapper dials only the address the provisioner checked: a name
// would be looked up a second time, and DNS could answer differently.
func TestDialRefusesHostNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	b := e.bootstrapper(t, "https://example.com/{version}/{arch}.tar.gz", strings.Repeat("a", 64))
	creds := newCreds(t, b)
	inst := e.host(t, creds)
	ep := inst.SSH
	ep.Host = "localhost"
	_, err := b.Probe(context.Background(), provisioner.ProbeRequest{Endpoint: ep, Credentials: creds, KnownHostKey: creds.HostKey.PublicKey})
	if err == nil || !strings.Contains(err.Error(), "is not an IP address") {
		t.Fatalf("Probe of %s: %v", ep.Addr(), err)
	}
	named := *inst
	named.SSH = ep
	_, err = b.Bootstrap(context.Background(), request(&named, creds, newJIT(t, "r1"), false))
	if err == nil || !strings.Contains(err.Error(), "is not an IP address") {
		t.Fatalf("Bootstrap of %s: %v", ep.Addr(), err)
	}
}

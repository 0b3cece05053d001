package githubtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the fake runner's run.sh from the tarball with bash, as a
// host would, against an in-process server.

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runnerProcess is run.sh running in its own process group.
type runnerProcess struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
	err    error // set when exited is closed
}

// installRunner extracts the fake runner tarball into a fresh directory.
func installRunner(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "base64", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the fake runner needs %s: %v", tool, err)
		}
	}
	tgz, _, err := RunnerTarball("2.330.0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	untar(t, tgz, dir)
	return dir
}

// startRunner runs bash run.sh args… in dir with extra environment.
func startRunner(t *testing.T, dir string, env []string, args ...string) *runnerProcess {
	t.Helper()
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ACTIONS_RUNNER_INPUT_JITCONFIG=") && !strings.HasPrefix(kv, "RUNNER_ALLOW_RUNASROOT=") {
			base = append(base, kv)
		}
	}
	cmd := exec.Command("bash", append([]string{filepath.Join(dir, "run.sh")}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(base, "FAKE_RUNNER_POLL_INTERVAL=0.1"), env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &runnerProcess{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group we started
			<-p.exited
		}
		t.Logf("run.sh output:\n%s", out.String())
	})
	return p
}

func (p *runnerProcess) wait(ctx context.Context, t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("run.sh: %v (it should exit 0)", p.err)
		}
	case <-ctx.Done():
		t.Fatalf("run.sh did not exit; output:\n%s", p.out.String())
	}
}

func TestRunShTakesAJobAndExits(t *testing.T) {
	tests := []struct {
		name       string
		viaFlag    bool
		exit       string
		conclusion string
	}{
		{"config in env, job succeeds", false, "0", "success"},
		{"config as --jitconfig, job fails", true, "7", "failure"},
	}
	s := newTestServer(t, Options{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t)
			dir := installRunner(t)
			label := "lease-" + itoa(int64(i))
			rn := register(t, s, "/orgs/acme", "runsh-"+label, "self-hosted", label)

			env := []string{"RUNNER_ALLOW_RUNASROOT=1"}
			var args []string
			if tt.viaFlag {
				args = []string{"--jitconfig", rn.Encoded}
			} else {
				env = append(env, "ACTIONS_RUNNER_INPUT_JITCONFIG="+rn.Encoded)
			}
			p := startRunner(t, dir, env, args...)

			if _, err := s.WaitRunners(ctx, func(rs []Runner) bool {
				for _, r := range rs {
					if r.ID == rn.ID && r.Status == "online" {
						return true
					}
				}
				return false
			}); err != nil {
				t.Fatalf("runner never came online: %v\n%s", err, p.out.String())
			}
			for _, f := range []string{".runner", ".credentials", ".credentials_rsaparams"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("run.sh should have written %s: %v", f, err)
				}
			}

			id := s.QueueJob(JobSpec{
				Repo: "acme/app", Org: "acme", Labels: []string{"self-hosted", label},
				Script: "echo \"job says hi from $RUNNER_NAME\"\nenv > env.txt\ntouch marker\nexit " + tt.exit,
			})
			j, err := s.WaitJob(ctx, id, StatusCompleted)
			if err != nil {
				t.Fatalf("%v\n%s", err, p.out.String())
			}
			if j.Conclusion != tt.conclusion || j.RunnerID != rn.ID {
				t.Errorf("job = %+v, want conclusion %s on runner %d", j, tt.conclusion, rn.ID)
			}
			p.wait(ctx, t)

			out := p.out.String()
			for _, want := range []string{"connected", "running job " + itoa(id), "job " + itoa(id) + " done exit=" + tt.exit,
				"job says hi from runsh-" + label, "exiting"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			envDump, err := os.ReadFile(filepath.Join(dir, "_work", "env.txt"))
			if err != nil {
				t.Fatalf("the job did not run in _work: %v", err)
			}
			for what, secret := range map[string]string{"token": rn.Token, "JIT config": rn.Encoded} {
				if strings.Contains(out, secret) {
					t.Errorf("run.sh printed the %s", what)
				}
				if strings.Contains(string(envDump), secret) {
					t.Errorf("the job's environment holds the %s", what)
				}
			}
			if strings.Contains(string(envDump), "ACTIONS_RUNNER_INPUT_JITCONFIG") {
				t.Error("ACTIONS_RUNNER_INPUT_JITCONFIG must be unset before jobs run")
			}
			for _, f := range []string{".runner", ".credentials"} {
				if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s should be gone after the job (%v)", f, err)
				}
			}
		})
	}
}

func TestRunShExitsWhenItsRunnerIsDeleted(t *testing.T) {
	s := newTestServer(t, Options{})
	ctx := ctxFor(t)
	dir := installRunner(t)
	rn := register(t, s, "/repos/acme/app", "doomed", "gpu")
	p := startRunner(t, dir, []string{"RUNNER_ALLOW_RUNASROOT=1", "ACTIONS_RUNNER_INPUT_JITCONFIG=" + rn.Encoded})
	if _, err := s.WaitRunners(ctx, func(rs []Runner) bool { return len(rs) == 1 && rs[0].Status == "online" }); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "DELETE", s.URL()+"/repos/acme/app/actions/runners/"+itoa(rn.ID), "Bearer "+testToken, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	p.wait(ctx, t)
	if out := p.out.String(); !strings.Contains(out, "no longer exists") {
		t.Errorf("output lacks the reason:\n%s", out)
	}
}

func TestRunShRefusesRootWithoutOptIn(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the check only applies to root")
	}
	s := newTestServer(t, Options{})
	dir := installRunner(t)
	rn := register(t, s, "/orgs/acme", "root", "gpu")
	p := startRunner(t, dir, []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + rn.Encoded})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatal("run.sh did not exit")
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", p.err)
	}
	if !strings.Contains(p.out.String(), "Must not run with sudo") {
		t.Errorf("output: %s", p.out.String())
	}
	if rs := s.Runners(); rs[0].Status != "offline" {
		t.Error("the refused runner must not connect")
	}
}

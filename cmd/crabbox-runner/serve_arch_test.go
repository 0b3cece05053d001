package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/lambda"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// startServeArch runs serve on the fake Lambda with two classes: a100
// (x86-64 hosts) and gh200 (gpu_1x_gh200, whose hosts answer uname -m with
// aarch64), and the given runner.sha256 block.
func startServeArch(t *testing.T, fake *lambdatest.Server, sha256 string) *lambdaE2E {
	t.Helper()
	requireSSHDForServe(t)
	dir := t.TempDir()
	e := newServeE2E(t)
	e.dbPath = filepath.Join(dir, "serve.db")
	cfgPath := filepath.Join(dir, "crabbox-runner.yaml")
	cfg := fmt.Sprintf(`deployment: e2e
database_url: sqlite:%s
log: {level: debug, format: json}
runner:
  version: "2.330.0"
  url: %s
%s
providers:
  lambda: {ssh_user: %s, min_request_interval: 5ms, allow_private_endpoints: true}
classes:
  - name: a100
    labels: [self-hosted, linux, x64, crabbox, a100]
    gpu: {name: A100, count: 1, min_memory_gb: 40}
    providers: [lambda]
    max_price_per_hour: 2.50
    boot_timeout: 5m
    idle_timeout: 5m
    max_lifetime: 30m
  - name: gh200
    labels: [self-hosted, linux, arm64, crabbox, gh200]
    gpu: {name: GH200, count: 1}
    providers: [lambda]
    max_price_per_hour: 2.50
    boot_timeout: 5m
    idle_timeout: 5m
    max_lifetime: 30m
`, e.dbPath, e.gh.TarballURLTemplate(), sha256, lambdatest.CurrentUser())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CRABBOX_CONFIG":         cfgPath,
		"CRABBOX_WEBHOOK_SECRET": testSecret,
		"CRABBOX_GITHUB_TOKEN":   testToken,
		"CRABBOX_GITHUB_API_URL": e.gh.URL(),
		"LAMBDA_API_KEY":         fake.APIKey(),
		"CRABBOX_LAMBDA_API_URL": fake.URL(),
	}
	addr := freeAddr(t)
	e.url = "http://" + addr
	lambdaHook = func(o *lambda.Options) {
		o.SSHAddress = fake.SSHAddress
		o.LaunchInterval = 50 * time.Millisecond
		o.Retry = lambda.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond}
	}
	serveHook = func(o *appOptions) {
		o.Tune = func(c *provisioner.Config) {
			c.PollInterval = 100 * time.Millisecond
			c.QueuePollInterval = 50 * time.Millisecond
			c.GitHub = spyGitHub{c.GitHub, e.spy}
			c.Bootstrapper = spyBootstrapper{c.Bootstrapper, e.spy}
		}
	}
	t.Cleanup(func() { serveHook, lambdaHook = nil, nil })
	e.runServe(addr, env)
	return &lambdaE2E{e2e: e, lambda: fake}
}

func requireSSHDForServe(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("/usr/sbin/sshd missing in CI: install openssh-server")
		}
		t.Skip("/usr/sbin/sshd missing: install openssh-server")
	}
}

// archJobScript passes only on a host that uname -m names machine, with
// the umask real runners give their jobs, whose runner came from the
// tarball of arch with checksum sum: host.sh caches each verified tarball
// as runner-<version>-<arch>-<first 16 digits of its sha256>.
func archJobScript(machine, arch, sum string) string {
	return `m=$(uname -m); u=$(umask); echo "machine $m umask $u"; ` +
		`[ "$m" = "` + machine + `" ] || { echo "wrong machine: $m" >&2; exit 1; }; ` +
		`[ "$u" = "0022" ] || { echo "job step umask $u, want 0022" >&2; exit 1; }; ` +
		`ls "$CRABBOX_HOST_ROOT/crabbox/cache" | grep -qx 'runner-2.330.0-` + arch + `-` + sum[:16] + `' || ` +
		`{ echo "installed: $(ls "$CRABBOX_HOST_ROOT/crabbox/cache")" >&2; exit 1; }`
}

// A Lambda GH200 (arm64) class works end to end through serve: its host
// gets the arm64 runner with the arm64 checksum, the A100 host the x64
// runner with the x64 one, and each job step runs on its machine with
// umask 022. Once with both checksums configured, once with only x64's,
// arm64's then coming from GitHub's runners/downloads endpoint.
func TestServeArm64HostGetsTheArm64Runner(t *testing.T) {
	_, sumX, err := githubtest.RunnerTarballFor("2.330.0", "x64")
	if err != nil {
		t.Fatal(err)
	}
	_, sumA, err := githubtest.RunnerTarballFor("2.330.0", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, sha256 string }{
		{"both configured", fmt.Sprintf("  sha256: {x64: %q, arm64: %q}", sumX, sumA)},
		{"arm64 from GitHub", fmt.Sprintf("  sha256: %q", sumX)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := lambdatest.New(t, lambdatest.Options{APIKey: testLambdaKey, BootDelay: 100 * time.Millisecond})
			e := startServeArch(t, fake, tc.sha256)
			arm := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "gh200"},
				Name: "arm", Script: archJobScript("aarch64", "arm64", sumA)})
			x64 := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "a100"},
				Name: "x64", Script: archJobScript("x86_64", "x64", sumX)})
			for _, id := range []int64{arm, x64} {
				// Generous: SSH sessions on a loaded test machine can take
				// tens of seconds each.
				ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
				job, err := e.gh.WaitJob(ctx, id, githubtest.StatusCompleted)
				cancel()
				if err != nil {
					t.Fatalf("job %d: %v\n%s", id, err, tail(e.logs.String(), 40))
				}
				if job.Conclusion != "success" {
					t.Fatalf("job %d (%s): %s\n%s", id, job.Name, job.Conclusion, tail(e.logs.String(), 40))
				}
			}
			e.waitFor("instances terminated, runners removed", 60*time.Second, func() bool {
				return len(fake.Live()) == 0 && len(e.gh.Runners()) == 0
			})
			byJob := map[int64]*provisioner.Lease{}
			for _, l := range e.leases() {
				byJob[l.BoundJobID] = l
			}
			for _, want := range []struct {
				job   int64
				offer string
			}{{arm, "gpu_1x_gh200@us-east-3"}, {x64, "gpu_1x_a100_sxm4"}} {
				l := byJob[want.job]
				if l == nil {
					t.Fatalf("no lease took job %d", want.job)
				}
				if !strings.HasPrefix(l.OfferID, want.offer) {
					t.Errorf("job %d ran on %s, want %s", want.job, l.OfferID, want.offer)
				}
			}
			if v := fake.Violations(); len(v) != 0 {
				t.Fatalf("requests outside Lambda's OpenAPI document: %q", v)
			}
		})
	}
}

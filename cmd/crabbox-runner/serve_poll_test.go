package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/local"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// pollInterval stands for poll mode's default minute in these tests; the
// background ceiling's window is scaled with it (60 requests a "minute").
const pollInterval = time.Second

// startPollServe runs `crabbox-runner serve` in poll mode against a fake
// GitHub that delivers no webhook at all: no webhook secret is set, and
// every delivery the fake makes is dropped before it leaves.
func startPollServe(t *testing.T, repos int) *e2e {
	t.Helper()
	dir := t.TempDir()
	e := &e2e{t: t, logs: &syncBuffer{}, spy: &secretSpy{}, token: testToken, exit: make(chan int, 1)}
	e.gh = githubtest.New(githubtest.Options{Tokens: []string{testToken}, OnlineTimeout: 5 * time.Second,
		OnEvent: func(ev githubtest.Event) { t.Logf("github: %s", ev) }})
	t.Cleanup(e.gh.Close)
	e.gh.SetDropDeliveries(func(githubtest.Delivery) bool { return true })
	var names []string
	for i := range repos {
		names = append(names, fmt.Sprintf("acme/repo%02d", i))
	}
	if len(names) > 0 {
		e.gh.AddRepos(names...)
	}
	hosts, err := local.New(local.Options{Dir: filepath.Join(dir, "hosts"), GPUName: "NVIDIA A100-SXM4-80GB"})
	if err != nil {
		t.Fatal(err)
	}
	e.hosts = hosts
	t.Cleanup(func() { hosts.Close() })
	_, sum, err := githubtest.RunnerTarball("2.330.0")
	if err != nil {
		t.Fatal(err)
	}
	e.dbPath = filepath.Join(dir, "serve.db")
	cfgPath := filepath.Join(dir, "crabbox-runner.yaml")
	cfg := fmt.Sprintf(`deployment: e2e
database_url: sqlite:%s
log: {level: debug, format: json}
github:
  mode: poll
  poll_interval: %s
  scopes: [acme]
reconcile: {gc_interval: -1s}
runner:
  version: "2.330.0"
  url: %s
  sha256: %q
providers:
  local: {dir: %s}
classes:
  - name: a100
    labels: [self-hosted, linux, x64, crabbox, a100]
    gpu: {name: A100, count: 1, min_memory_gb: 40}
    providers: [local]
    max_price_per_hour: 2.50
    boot_timeout: 5m
    idle_timeout: 5m
    max_lifetime: 30m
`, e.dbPath, pollInterval, e.gh.TarballURLTemplate(), sum, filepath.Join(dir, "hosts"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CRABBOX_CONFIG":         cfgPath,
		"CRABBOX_GITHUB_TOKEN":   testToken,
		"CRABBOX_GITHUB_API_URL": e.gh.URL(),
	}
	e.cfgPath, e.env = cfgPath, env
	addr := freeAddr(t)
	e.url = "http://" + addr
	serveHook = func(o *appOptions) {
		o.Providers = map[string]provisioner.Provider{"local": hosts}
		o.Tune = func(c *provisioner.Config) {
			c.PollInterval = 100 * time.Millisecond
			c.QueuePollInterval = 50 * time.Millisecond
		}
		o.TuneGitHub = func(c *github.Config) { c.BackgroundWindow = pollInterval }
	}
	t.Cleanup(func() { serveHook = nil })
	e.runServe(addr, env)
	return e
}

// TestServePollMode: no webhook ever arrives. The reconcile scan finds the
// queued job within one poll interval and leases for it; the runner comes
// online and takes the job; the scan sees the job start and complete; the
// host is destroyed. Idle passes cost two run listings per repository.
func TestServePollMode(t *testing.T) {
	const repos = 5
	e := startPollServe(t, repos)

	// Idle: let a few passes run, then count what a pass costs.
	time.Sleep(3 * pollInterval)
	e.gh.ResetRequestStats()
	time.Sleep(5 * pollInterval)
	idle := e.gh.RequestStats()
	perPass := float64(idle.Total.Total()) / 5
	t.Logf("idle: %.1f requests a pass (%d counted, %d not modified) for %d repositories", perPass,
		idle.Total.Counted, idle.Total.NotModified, repos)
	// Two run listings per repository, and now and then the repository
	// list; a pass may straddle the window, so allow one pass more.
	if max := float64(6*(2*repos+1)) / 5; perPass > max {
		t.Errorf("idle poll pass sent %.1f requests, want at most %.1f: %v", perPass, max, idle.ByEndpoint)
	}
	for ep, c := range idle.ByEndpoint {
		if strings.Contains(ep, "/jobs") && c.Total() > 0 {
			t.Errorf("idle passes listed jobs: %s %+v", ep, c)
		}
	}

	queuedAt := time.Now()
	id := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/repo03", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: `echo trained`})
	e.waitFor("a lease for the job", 10*pollInterval, func() bool { return len(e.leases()) == 1 })
	latency := time.Since(queuedAt)
	t.Logf("queued → lease: %s (poll interval %s)", latency.Round(10*time.Millisecond), pollInterval)
	// One interval, plus the pass itself and this test's 50 ms look.
	if latency > pollInterval+700*time.Millisecond {
		t.Errorf("queued → lease took %s, more than one poll interval (%s)", latency, pollInterval)
	}

	// The host's bootstrap is slow on a loaded machine: wait longer than
	// waitJob does.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	job, err := e.gh.WaitJob(ctx, id, githubtest.StatusCompleted)
	if err != nil {
		t.Fatalf("job %d: %v\nserve log:\n%s", id, err, tail(e.logs.String(), 40))
	}
	if job.Conclusion != "success" || !strings.HasPrefix(job.RunnerName, "crabbox-e2e-") {
		t.Fatalf("job: conclusion %q runner %q", job.Conclusion, job.RunnerName)
	}
	e.waitClean()
	e.waitFor("lease released", 30*time.Second, func() bool {
		ls := e.leases()
		return len(ls) == 1 && ls[0].State == provisioner.StateReleased
	})
	e.stop()

	l := e.leases()[0]
	if l.BoundJobID != id || l.RunnerName != job.RunnerName || l.BusySince.IsZero() {
		t.Errorf("lease %+v: the scan should have told it busy with job %d", l, id)
	}
	if e.hosts.Created() != 1 || e.hosts.Destroyed() != 1 {
		t.Fatalf("hosts created %d destroyed %d", e.hosts.Created(), e.hosts.Destroyed())
	}
	for _, d := range e.gh.Deliveries() {
		if d.StatusCode != 0 {
			t.Errorf("delivery %s %s reached serve (%d); poll mode must do without", d.Event, d.Action, d.StatusCode)
		}
	}
	logs := e.logs.String()
	for _, must := range []string{`"action":"in_progress"`, `"action":"completed"`, "POST /webhook refuses every delivery"} {
		if !strings.Contains(logs, must) {
			t.Errorf("logs lack %s", must)
		}
	}
	if strings.Contains(logs, testToken) {
		t.Error("the token reached the logs")
	}
}

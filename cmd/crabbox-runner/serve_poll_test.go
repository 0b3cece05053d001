package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// reconcileSetup is a serve against a fake GitHub whose org acme holds
// repos repositories, for the reconcile's cost and poll mode.
type reconcileSetup struct {
	poll  bool // github.mode: poll, no webhook secret, every delivery dropped
	app   bool // a GitHub App installed on acme (else a token with scopes [acme])
	repos int
}

// requestLog notes when the fake answered each API request.
type requestLog struct {
	mu    sync.Mutex
	times []time.Time
	lines []string
}

func (r *requestLog) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if !strings.HasPrefix(line, "fake github: ") || strings.Contains(line, " /_fake/") {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.times = append(r.times, time.Now())
	r.lines = append(r.lines, line)
}

// maxIn is the most requests answered in any span of length d since from.
func (r *requestLog) maxIn(from time.Time, d time.Duration) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	best, lo := 0, 0
	var ts []time.Time
	for _, t := range r.times {
		if !t.Before(from) {
			ts = append(ts, t)
		}
	}
	for hi := range ts {
		for ts[hi].Sub(ts[lo]) >= d {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// startReconcileServe runs `crabbox-runner serve` with the reconcile (or
// poll) pass every pollInterval and the background ceiling's window scaled
// to it: a second stands for a minute.
func startReconcileServe(t *testing.T, rs reconcileSetup) (*e2e, *requestLog) {
	t.Helper()
	dir := t.TempDir()
	reqs := &requestLog{}
	e := &e2e{t: t, logs: &syncBuffer{}, spy: &secretSpy{}, token: testToken, secret: testSecret, exit: make(chan int, 1)}
	opts := githubtest.Options{Tokens: []string{testToken}, OnlineTimeout: 5 * time.Second, Logf: reqs.logf,
		OnEvent: func(ev githubtest.Event) { t.Logf("github: %s", ev) },
		// GitHub's limits on the scaled clock: the primary window (an
		// hour) is 60 poll intervals, and the secondary limit's 900
		// points a minute are 900 points an interval.
		RateLimits: githubtest.RateLimits{Window: 60 * pollInterval, PointsPerMinute: 900 * int(time.Minute/pollInterval)}}
	env := map[string]string{"CRABBOX_GITHUB_TOKEN": testToken}
	ghSection := "{scopes: [acme]}"
	if rs.app {
		key, keyPEM := doctorAppKey(t)
		opts.AppID, opts.AppPublicKey, opts.Installations = doctorAppID, &key.PublicKey, map[string]int64{"acme": 11}
		env = map[string]string{"CRABBOX_GITHUB_APP_ID": fmt.Sprint(doctorAppID), "CRABBOX_GITHUB_APP_PRIVATE_KEY": keyPEM}
		ghSection = "{}"
	}
	if rs.poll {
		ghSection = fmt.Sprintf("{mode: poll, poll_interval: %s, scopes: [acme]}", pollInterval)
	} else {
		env["CRABBOX_WEBHOOK_SECRET"] = testSecret
	}
	e.gh = githubtest.New(opts)
	t.Cleanup(e.gh.Close)
	if rs.poll {
		e.gh.SetDropDeliveries(func(githubtest.Delivery) bool { return true })
	}
	var names []string
	for i := range rs.repos {
		names = append(names, fmt.Sprintf("acme/repo%04d", i))
	}
	if len(names) > 0 {
		e.gh.AddRepos(names...)
	}
	hosts, err := local.New(local.Options{Dir: filepath.Join(dir, "hosts")})
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
github: %s
reconcile: {interval: %s, gc_interval: -1s}
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
`, e.dbPath, ghSection, pollInterval, e.gh.TarballURLTemplate(), sum, filepath.Join(dir, "hosts"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env["CRABBOX_CONFIG"] = cfgPath
	env["CRABBOX_GITHUB_API_URL"] = e.gh.URL()
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
	return e, reqs
}

// TestServePollMode: no webhook ever arrives. The reconcile scan finds the
// queued job within one poll interval and leases for it; the runner comes
// online and takes the job; the scan sees the job start and complete; the
// host is destroyed. Idle passes cost two run listings per repository.
func TestServePollMode(t *testing.T) {
	const repos = 5
	e, _ := startReconcileServe(t, reconcileSetup{poll: true, repos: repos})

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
	id := e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/repo0003", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		// The job outlasts a few poll intervals, as real jobs do, so a
		// pass sees it in progress (a job that ends between two passes is
		// seen completed only, and its lease never busy).
		Name: "train", Script: `sleep 4; echo trained`})
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
	e.waitReleased()
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

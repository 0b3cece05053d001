package main

// GitHub's request budget through serve (issue 13): what a burst of jobs
// costs in counted requests, and a budget that runs out in the middle of
// one. The tests assert the rules; the figures they log go to
// docs/benchmarks.md ("GitHub request budget (#13)"). CRABBOX_BUDGET_JOBS
// sets the burst's size (the figures use 100).

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func budgetJobs(t *testing.T, def int) int {
	if v := os.Getenv("CRABBOX_BUDGET_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("CRABBOX_BUDGET_JOBS=%q", v)
		}
		return n
	}
	return def
}

// jobTime is how long each job runs: CRABBOX_BUDGET_JOB_TIME, 5 s by
// default (a job that ends at once finishes before its in_progress webhook
// is read, which no real job does).
func jobTime(t *testing.T) time.Duration {
	if v := os.Getenv("CRABBOX_BUDGET_JOB_TIME"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CRABBOX_BUDGET_JOB_TIME=%q", v)
		}
		return d
	}
	return 5 * time.Second
}

// queueBurst queues one job in each of n repositories of acme.
func (e *e2e) queueBurst(n int, script string) []int64 {
	var ids []int64
	for i := range n {
		ids = append(ids, e.gh.QueueJob(githubtest.JobSpec{Repo: fmt.Sprintf("acme/repo-%03d", i), Org: "acme",
			Labels: []string{"self-hosted", "crabbox", "A100"}, Name: "train", Script: script}))
	}
	return ids
}

func (e *e2e) waitJobs(ids []int64, within time.Duration) []githubtest.Job {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	out := make([]githubtest.Job, len(ids))
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = e.gh.WaitJob(ctx, id, githubtest.StatusCompleted)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			e.t.Fatalf("job %d: %v\nserve log:\n%s", ids[i], err, tail(e.logs.String(), 40))
		}
	}
	return out
}

// endpointTable renders RequestStats per endpoint, most counted first.
func endpointTable(st githubtest.RequestStats, jobs int) string {
	keys := make([]string, 0, len(st.ByEndpoint))
	for k := range st.ByEndpoint {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if d := st.ByEndpoint[b].Counted - st.ByEndpoint[a].Counted; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "| endpoint | counted | per job | 304 | refused | free |\n|---|---|---|---|---|---|\n")
	for _, k := range keys {
		c := st.ByEndpoint[k]
		fmt.Fprintf(&b, "| `%s` | %d | %.2f | %d | %d | %d |\n", k, c.Counted, float64(c.Counted)/float64(jobs), c.NotModified, c.Refused, c.Uncounted)
	}
	c := st.Total
	fmt.Fprintf(&b, "| all | %d | %.2f | %d | %d | %d |\n", c.Counted, float64(c.Counted)/float64(jobs), c.NotModified, c.Refused, c.Uncounted)
	return b.String()
}

// jobServingEndpoints are the calls a job costs (registration, runner
// checks, removal); the rest is the reconcile pass, part E's figure.
func jobServing(endpoint string) bool {
	return strings.Contains(endpoint, "/actions/runners")
}

// TestServeGitHubBudgetBurst: a burst of jobs in as many repositories
// costs at most 3 counted requests per job on top of idle, and nothing is
// refused.
func TestServeGitHubBudgetBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("a burst through serve")
	}
	n := budgetJobs(t, 20)
	hosts := newMemHosts()
	hosts.runners.jobTime = jobTime(t)
	e := startServeWith(t, budgetSetup(hosts, githubtest.RateLimits{}))
	t.Cleanup(hosts.runners.killAll)
	var repos []string
	for i := range n {
		repos = append(repos, fmt.Sprintf("acme/repo-%03d", i))
	}
	e.gh.AddRepos(repos...)

	// Idle: what serve spends while nothing happens.
	const idleFor = 10 * time.Second
	e.gh.ResetRequestStats()
	time.Sleep(idleFor)
	idle := e.gh.RequestStats()

	e.gh.ResetRequestStats()
	start := time.Now()
	ids := e.queueBurst(n, "echo trained")
	jobs := e.waitJobs(ids, 5*time.Minute)
	served := time.Since(start)
	waitMemClean(e, hosts)
	elapsed := time.Since(start)
	st := e.gh.RequestStats()

	idlePerSec := float64(idle.Total.Counted) / idleFor.Seconds()
	onTop := float64(st.Total.Counted) - idlePerSec*elapsed.Seconds()
	serving := 0
	for k, c := range st.ByEndpoint {
		if jobServing(k) {
			serving += c.Counted
		}
	}
	t.Logf("burst of %d jobs in %d repositories: all completed in %s, clean in %s; idle %d counted in %s",
		n, n, served.Round(time.Millisecond), elapsed.Round(time.Millisecond), idle.Total.Counted, idleFor)
	t.Logf("counted %d (%.2f a job), on top of idle %.0f (%.2f a job); job-serving endpoints %d (%.2f a job); 304s %d; refused %d\n%s",
		st.Total.Counted, float64(st.Total.Counted)/float64(n), onTop, onTop/float64(n), serving, float64(serving)/float64(n),
		st.Total.NotModified, st.Total.Refused, endpointTable(st, n))

	reasons := map[string]int{}
	for _, l := range e.leases() {
		reasons[l.ReleaseReason]++
	}
	t.Logf("%d leases for %d jobs, released because: %v", len(e.leases()), n, reasons)
	for _, j := range jobs {
		if j.Conclusion != "success" {
			t.Errorf("job %d: %s", j.ID, j.Conclusion)
		}
	}
	if st.Total.Refused != 0 {
		t.Errorf("%d requests refused by GitHub", st.Total.Refused)
	}
	if perJob := onTop / float64(n); perJob > 3 {
		t.Errorf("%.2f counted requests per job on top of idle, want at most 3", perJob)
	}
	if hosts.live() != 0 {
		t.Errorf("%d hosts left running", hosts.live())
	}
}

func budgetSetup(hosts *memHosts, rl githubtest.RateLimits) serveSetup {
	return serveSetup{
		ghOpts:      githubtest.Options{OnEvent: func(githubtest.Event) {}, RateLimits: rl},
		bootTimeout: "180s",
		hosts:       hosts,
		bootstrapper: func(real provisioner.Bootstrapper) provisioner.Bootstrapper {
			hosts.runners.Bootstrapper = real
			return hosts.runners
		},
	}
}

// waitMemClean waits until every host is destroyed and every lease released.
func waitMemClean(e *e2e, hosts *memHosts) {
	e.t.Helper()
	e.waitFor("every host destroyed and lease released", 2*time.Minute, func() bool {
		if hosts.live() != 0 {
			return false
		}
		for _, l := range e.leases() {
			if l.State != provisioner.StateReleased {
				return false
			}
		}
		return true
	})
}

// TestServeGitHubBudgetExhaustion: the budget runs out in the middle of a
// burst. No job is lost, every job is served within a minute of the reset,
// GitHub answers fewer than 10 requests 403 while exhausted, no host is
// rented that could not be registered before the reset (serve stops
// renting while the budget left is spoken for, before GitHub says 0), and
// none is left running.
func TestServeGitHubBudgetExhaustion(t *testing.T) {
	if testing.Short() {
		t.Skip("a burst through serve across a rate-limit reset")
	}
	n := budgetJobs(t, 12)
	const window = 40 * time.Second
	hosts := newMemHosts()
	hosts.runners.jobTime = jobTime(t)
	e := startServeWith(t, budgetSetup(hosts, githubtest.RateLimits{Token: 2000, Window: window}))
	t.Cleanup(hosts.runners.killAll)
	var repos []string
	for i := range n {
		repos = append(repos, fmt.Sprintf("acme/repo-%03d", i))
	}
	e.gh.AddRepos(repos...)

	// Enough budget left for about half the burst.
	e.gh.ResetRequestStats()
	e.gh.SetRateRemaining("token:1", n/2)
	_, reset := e.gh.RateWindow("token:1")
	if time.Until(reset) < 15*time.Second {
		// Too close to a reset to run out before it: take the next window.
		time.Sleep(time.Until(reset) + 100*time.Millisecond)
		e.gh.SetRateRemaining("token:1", n/2)
		_, reset = e.gh.RateWindow("token:1")
	}
	start := time.Now()
	ids := e.queueBurst(n, "echo trained")

	// Just before the reset: the leases that could not be registered in
	// this window have no host.
	time.Sleep(time.Until(reset) - 500*time.Millisecond)
	createdBeforeReset := hosts.createdCount()
	before := e.gh.RequestStats()
	jitBeforeReset := before.ByEndpoint["POST /orgs/{org}/actions/runners/generate-jitconfig"].Counted
	refusedBeforeReset := before.Total.Refused

	jobs := e.waitJobs(ids, window+3*time.Minute)
	waitMemClean(e, hosts)
	st := e.gh.RequestStats()

	var late []time.Duration
	for _, j := range jobs {
		if j.Conclusion != "success" {
			t.Errorf("job %d: %s", j.ID, j.Conclusion)
		}
		if j.StartedAt.After(reset) {
			late = append(late, j.StartedAt.Sub(reset))
		}
	}
	slices.Sort(late)
	t.Logf("exhaustion: %d jobs with %d requests left, reset %s after the burst began; before the reset %d hosts rented and %d runners registered, "+
		"%d requests refused (403/429); in all %d refused; %d jobs served after the reset, the last %s after it; %d hosts in all",
		n, n/2, reset.Sub(start).Round(time.Millisecond), createdBeforeReset, jitBeforeReset, refusedBeforeReset, st.Total.Refused,
		len(late), lastOr(late).Round(time.Millisecond), hosts.createdCount())
	t.Logf("requests\n%s", endpointTable(st, n))

	if createdBeforeReset > jitBeforeReset {
		t.Errorf("%d hosts rented before the reset but only %d runners registered: hosts waited, billed, for GitHub", createdBeforeReset, jitBeforeReset)
	}
	if refusedBeforeReset >= 10 {
		t.Errorf("%d requests answered 403/429 while the budget was out, want fewer than 10", refusedBeforeReset)
	}
	if len(late) == 0 || createdBeforeReset >= n {
		t.Error("every job was served before the reset: the budget did not run out mid-burst")
	}
	if d := lastOr(late); d > time.Minute {
		t.Errorf("the last job was served %s after the reset, want within a minute", d)
	}
	if hosts.live() != 0 {
		t.Errorf("%d hosts left running", hosts.live())
	}
	if got := hosts.createdCount(); got > n+n/4 {
		t.Errorf("%d hosts for %d jobs", got, n)
	}
}

func lastOr(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)-1]
}

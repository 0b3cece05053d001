package main

import (
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
)

// The reconcile's cost in GitHub requests (issue 13), through serve, with
// time scaled: a pass every second stands for a pass every minute, and the
// background ceiling's window is a second. CRABBOX_COST_MINUTES sets how
// many scaled minutes to measure (default 10; docs/benchmarks.md has 30).

func costMinutes(t *testing.T) int {
	if v := os.Getenv("CRABBOX_COST_MINUTES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CRABBOX_COST_MINUTES=%q", v)
		}
		return n
	}
	return 10
}

// costTable is the per-endpoint counts, busiest first.
func costTable(st githubtest.RequestStats) string {
	type row struct {
		ep string
		c  githubtest.RequestCounts
	}
	var rows []row
	for ep, c := range st.ByEndpoint {
		rows = append(rows, row{ep, c})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].c.Total() > rows[j].c.Total() })
	var b strings.Builder
	for _, r := range rows {
		b.WriteString("  " + r.ep + ": total " + strconv.Itoa(r.c.Total()) + ", counted " + strconv.Itoa(r.c.Counted) +
			", 304 " + strconv.Itoa(r.c.NotModified) + ", refused " + strconv.Itoa(r.c.Refused) + "\n")
	}
	return b.String()
}

// measureIdle lets serve settle for a few passes, then counts what the
// fake answered over minutes scaled minutes.
func measureIdle(t *testing.T, e *e2e, reqs *requestLog, minutes int) (githubtest.RequestStats, int) {
	time.Sleep(3 * pollInterval) // the first passes read everything once
	e.gh.ResetRequestStats()
	from := time.Now()
	time.Sleep(time.Duration(minutes) * pollInterval)
	st := e.gh.RequestStats()
	return st, reqs.maxIn(from, pollInterval)
}

// TestReconcileCostIdleOrgWebhookMode: an App installed on an org of 1,000
// repositories, webhooks arriving, nothing happening. The reconcile looks
// at no repository (none is hot; the delivery log covers lost webhooks):
// at most 250 counted requests an hour and never more than 60 in any
// minute, 304s included.
func TestReconcileCostIdleOrgWebhookMode(t *testing.T) {
	minutes := costMinutes(t)
	e, reqs := startReconcileServe(t, reconcileSetup{app: true, repos: 1000})
	st, peak := measureIdle(t, e, reqs, minutes)
	perHour := float64(st.Total.Counted) * 60 / float64(minutes)
	t.Logf("webhook mode, idle org of 1,000 repositories, %d scaled minutes: %d requests (%d counted, %d 304, %d refused); "+
		"%.0f counted an hour; at most %d in any minute\n%s",
		minutes, st.Total.Total(), st.Total.Counted, st.Total.NotModified, st.Total.Refused, perHour, peak, costTable(st))
	if perHour > 250 {
		t.Errorf("%.0f counted requests an hour, want at most 250", perHour)
	}
	if peak > 60 {
		t.Errorf("%d requests in one minute, want at most 60", peak)
	}
	for ep, c := range st.ByEndpoint {
		if strings.Contains(ep, "/actions/runs") && c.Total() > 0 {
			t.Errorf("an idle org's runs were listed: %s %+v", ep, c)
		}
	}
	e.stop()
}

// TestReconcileCostPollMode: poll mode, an org of 20 repositories, a
// token. Idle, every repository's runs are listed every interval, nearly
// all answered 304: at most 250 counted an hour, at most 60 requests in
// any minute. Then a job: its lease within one poll interval.
func TestReconcileCostPollMode(t *testing.T) {
	minutes := costMinutes(t)
	e, reqs := startReconcileServe(t, reconcileSetup{poll: true, repos: 20})
	st, peak := measureIdle(t, e, reqs, minutes)
	perHour := float64(st.Total.Counted) * 60 / float64(minutes)
	t.Logf("poll mode, idle org of 20 repositories, %d scaled minutes: %d requests (%d counted, %d 304, %d refused); "+
		"%.0f counted an hour; at most %d in any minute\n%s",
		minutes, st.Total.Total(), st.Total.Counted, st.Total.NotModified, st.Total.Refused, perHour, peak, costTable(st))
	if perHour > 250 {
		t.Errorf("%.0f counted requests an hour, want at most 250", perHour)
	}
	if peak > 60 {
		t.Errorf("%d requests in one minute, want at most 60", peak)
	}
	runs := st.ByEndpoint["GET /repos/{owner}/{repo}/actions/runs"]
	if want := 2 * 20 * minutes; runs.Total() < want*8/10 {
		t.Errorf("%d run listings in %d passes, want about %d: some repositories were not polled", runs.Total(), minutes, want)
	}

	queuedAt := time.Now()
	e.gh.QueueJob(githubtest.JobSpec{Repo: "acme/repo0017", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"}, Name: "train"})
	e.waitFor("a lease for the job", 10*pollInterval, func() bool { return len(e.leases()) == 1 })
	latency := time.Since(queuedAt)
	t.Logf("poll mode: queued → lease %s (poll interval %s)", latency.Round(10*time.Millisecond), pollInterval)
	if latency > pollInterval+700*time.Millisecond {
		t.Errorf("queued → lease took %s, more than one poll interval", latency)
	}
	e.stop()
}

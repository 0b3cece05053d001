package github_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// total counts the requests the recorder saw whose "METHOD /path" starts
// with prefix.
func (r *recorder) total(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, got := range r.requests {
		if strings.HasPrefix(got, prefix) {
			n++
		}
	}
	return n
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

// api counts the recorded requests that are not for an installation token.
func (r *recorder) api() int {
	return r.total("GET ") + r.total("DELETE ") + r.total("POST ") - r.total("POST /app/installations/")
}

func actions(evs []provisioner.JobEvent) string {
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%d:%s", ev.JobID, ev.Action))
	}
	return strings.Join(out, " ")
}

// TestScanReportsChangesOnly follows one job through a scan of its
// repository: queued, taken by a runner, completed, each reported once,
// and a scan with nothing new costs the two run listings only.
func TestScanReportsChangesOnly(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			fake, c, rec := m.setup(t)
			ctx := ctxFor(t)
			labels := []string{"self-hosted", "gpu"}
			scope := provisioner.Scope{Org: "acme"}
			if m.name == "app" {
				scope.InstallationID = 11
			}
			id := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: labels, Name: "train"})
			hot := []string{"acme/app"}

			evs, err := c.ScanJobs(ctx, scope, hot, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(evs); got != fmt.Sprintf("%d:queued", id) {
				t.Fatalf("first scan = %s", got)
			}
			ev := evs[0]
			if ev.Org != "acme" || ev.Repo != "acme/app" || ev.RunAttempt != 1 || ev.Visibility != provisioner.VisibilityPrivate ||
				ev.InstallationID != scope.InstallationID || ev.Name != "train" {
				t.Errorf("event = %+v", ev)
			}

			rec.reset()
			evs, err = c.ScanJobs(ctx, scope, hot, false)
			if err != nil || len(evs) != 0 {
				t.Fatalf("unchanged scan = %s, %v", actions(evs), err)
			}
			if n := rec.api(); n != 2 {
				t.Errorf("unchanged scan sent %d requests, want the 2 run listings: %v", n, rec.requests)
			}

			// A runner takes the job: in_progress, with its name.
			jit, err := c.GenerateJITConfig(ctx, scope, "crabbox-e2e-1", labels)
			if err != nil {
				t.Fatal(err)
			}
			pollOnce(t, fake, jit)
			rec.reset()
			evs, err = c.ScanJobs(ctx, scope, hot, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(evs); got != fmt.Sprintf("%d:in_progress", id) || evs[0].RunnerName != "crabbox-e2e-1" {
				t.Fatalf("scan after the runner took the job = %s %+v", got, evs)
			}
			if n := rec.total("GET /repos/acme/app/actions/runs/"); n != 1 {
				t.Errorf("%d job listings, want 1 (the changed run)", n)
			}

			// It ends: the run leaves both listings; one last look says how.
			if err := fake.CancelJob(id); err != nil {
				t.Fatal(err)
			}
			evs, err = c.ScanJobs(ctx, scope, hot, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(evs); got != fmt.Sprintf("%d:completed", id) || evs[0].Conclusion != "cancelled" {
				t.Fatalf("scan after completion = %s %+v", got, evs)
			}
			rec.reset()
			if evs, err = c.ScanJobs(ctx, scope, hot, false); err != nil || len(evs) != 0 {
				t.Fatalf("scan after that = %s, %v", actions(evs), err)
			}
			if n := rec.api(); n != 2 {
				t.Errorf("idle scan sent %d requests, want 2", n)
			}
		})
	}
}

// TestScanNarrowsToHotRepositories: without walk, only the hot
// repositories are looked at, whatever the org holds; with walk, the rest
// is walked within the background ceiling and the walk resumes where it
// stopped.
func TestScanNarrowsToHotRepositories(t *testing.T) {
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}})
	t.Cleanup(fake.Close)
	rec := &recorder{}
	const ceiling = 20
	c, err := github.New(github.Config{APIURL: fake.URL(), Token: testToken, HTTPClient: &http.Client{Transport: rec},
		JITPerMinute: -1, BackgroundPerMinute: ceiling, BackgroundWindow: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	var repos []string
	for i := range 50 {
		repos = append(repos, fmt.Sprintf("acme/r%02d", i))
	}
	fake.AddRepos(repos...)
	late := fake.QueueJob(githubtest.JobSpec{Repo: "acme/r45", Org: "acme", Labels: []string{"gpu"}})
	scope := provisioner.Scope{Org: "acme"}

	evs, err := c.ScanJobs(ctx, scope, []string{"acme/r03", "other/x"}, false)
	if err != nil || len(evs) != 0 {
		t.Fatalf("hot scan = %s, %v", actions(evs), err)
	}
	if n, want := rec.api(), 2; n != want {
		t.Errorf("hot scan of one repository sent %d requests, want %d: %v", n, want, rec.requests)
	}
	if n := rec.total("GET /orgs/acme/repos"); n != 0 {
		t.Errorf("the repositories were listed %d times without a walk", n)
	}

	// The walk: at most the ceiling in any window, a reserve left free,
	// and every repository reached within a few windows.
	found := false
	for pass := range 12 {
		time.Sleep(time.Second) // a window has passed
		rec.reset()
		evs, err := c.ScanJobs(ctx, scope, nil, true)
		if err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		if n := rec.api(); n > ceiling-ceiling/4+1 {
			t.Fatalf("pass %d sent %d requests; the ceiling is %d with a quarter kept free", pass, n, ceiling)
		}
		t.Logf("pass %d: %d requests, %s", pass, rec.api(), actions(evs))
		if actions(evs) == fmt.Sprintf("%d:queued", late) {
			found = true
			t.Logf("found the job in r45 on pass %d", pass)
			break
		}
	}
	if !found {
		t.Fatal("the walk never reached acme/r45")
	}
}

// TestBackgroundCeilingDefers: background calls over the ceiling are not
// sent and are provisioner.ErrDeferred; job-serving calls still go.
func TestBackgroundCeilingDefers(t *testing.T) {
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}})
	t.Cleanup(fake.Close)
	rec := &recorder{}
	c, err := github.New(github.Config{APIURL: fake.URL(), Token: testToken, HTTPClient: &http.Client{Transport: rec},
		JITPerMinute: -1, BackgroundPerMinute: 3, BackgroundWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	fake.AddRepos("acme/a", "acme/b")
	scope := provisioner.Scope{Org: "acme"}
	if _, err := c.ScanJobs(ctx, scope, []string{"acme/a"}, false); err != nil {
		t.Fatal(err)
	}
	_, err = c.ScanJobs(ctx, scope, []string{"acme/b"}, false)
	if !errors.Is(err, provisioner.ErrDeferred) {
		t.Fatalf("scan over the ceiling = %v, want ErrDeferred", err)
	}
	if n := rec.api(); n != 3 {
		t.Errorf("%d requests sent, want the 3 the ceiling allows", n)
	}
	if _, err := c.JobStatus(ctx, scope, "acme/a", 1); !errors.Is(err, provisioner.ErrDeferred) {
		t.Errorf("JobStatus over the ceiling = %v, want ErrDeferred", err)
	}
	// Serving a job is never held back.
	if _, err := c.GenerateJITConfig(ctx, scope, "crabbox-x-1", []string{"gpu"}); err != nil {
		t.Errorf("GenerateJITConfig over the background ceiling: %v", err)
	}
	if _, err := c.Runner(ctx, scope, 1); err != nil {
		t.Errorf("Runner over the background ceiling: %v", err)
	}
}

// TestDeliveriesSweepResumes: the sweep reads down to the newest delivery
// it read before, not three days of them every pass; a failed delivery is
// redelivered once, and a later sweep that finds it delivered forgets it.
func TestDeliveriesSweepResumes(t *testing.T) {
	fake, c, rec := modes[1].setup(t)
	ctx := ctxFor(t)
	rc, url := newReceiver(t)
	fake.SetWebhook(url, []byte("secret"))
	since := time.Now().Add(-time.Hour)

	// 150 deliveries: two pages of 100.
	for range 150 {
		fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	}
	if _, err := fake.WaitDeliveries(ctx, 150); err != nil {
		t.Fatal(err)
	}
	n, err := c.RedeliverFailed(ctx, since)
	if err != nil || n != 0 {
		t.Fatalf("first sweep: %d, %v", n, err)
	}
	if got := rec.count("GET /app/hook/deliveries"); got != 2 {
		t.Errorf("first sweep read %d pages, want 2", got)
	}

	// Nothing new: one page, the top one.
	rec.reset()
	if n, err := c.RedeliverFailed(ctx, since); err != nil || n != 0 {
		t.Fatalf("idle sweep: %d, %v", n, err)
	}
	if got := rec.count("GET /app/hook/deliveries"); got != 1 {
		t.Errorf("idle sweep read %d pages, want 1", got)
	}

	// One lost, one fine: the lost one is redelivered, once.
	fake.SetDropDeliveries(func(d githubtest.Delivery) bool { return !d.Redelivery && d.Action == "queued" && d.JobID%2 == 0 })
	a := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	b := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	ds, err := fake.WaitDeliveries(ctx, 152)
	if err != nil {
		t.Fatal(err)
	}
	lost := ds[150]
	if lost.JobID%2 != 0 {
		lost = ds[151]
	}
	rec.reset()
	if n, err := c.RedeliverFailed(ctx, since); err != nil || n != 1 {
		t.Fatalf("sweep after a loss: %d redelivered, %v; want 1 (jobs %d %d)", n, err, a, b)
	}
	if got := rec.count("GET /app/hook/deliveries"); got != 1 {
		t.Errorf("sweep after a loss read %d pages, want 1", got)
	}
	if _, err := fake.WaitDeliveries(ctx, 153); err != nil {
		t.Fatal(err)
	}
	if got := rc.got(lost.GUID); got != 1 {
		t.Errorf("the lost delivery reached the receiver %d times after the sweep, want 1", got)
	}
	if n, err := c.RedeliverFailed(ctx, since); err != nil || n != 0 {
		t.Errorf("sweep after the redelivery: %d, %v; want nothing to do", n, err)
	}
}

// TestScanForgetsButStillSeesTheEnd: every so often the scan forgets what
// it saw and reports every job again; a run that ended across that moment
// is still looked at once more, so its completion is not lost.
func TestScanForgetsButStillSeesTheEnd(t *testing.T) {
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}})
	t.Cleanup(fake.Close)
	c, err := github.New(github.Config{APIURL: fake.URL(), Token: testToken, JITPerMinute: -1,
		BackgroundPerMinute: 1000, BackgroundWindow: 10 * time.Millisecond}) // forgets after 300 ms
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	scope := provisioner.Scope{Org: "acme"}
	hot := []string{"acme/app"}
	id := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	if evs, err := c.ScanJobs(ctx, scope, hot, false); err != nil || actions(evs) != fmt.Sprintf("%d:queued", id) {
		t.Fatalf("first scan = %s, %v", actions(evs), err)
	}
	time.Sleep(400 * time.Millisecond)
	if err := fake.CancelJob(id); err != nil {
		t.Fatal(err)
	}
	if evs, err := c.ScanJobs(ctx, scope, hot, false); err != nil || actions(evs) != fmt.Sprintf("%d:completed", id) {
		t.Fatalf("scan after forgetting = %s, %v; want the completion", actions(evs), err)
	}
	// Still queued after forgetting: reported again (harmless repeat).
	again := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	if evs, err := c.ScanJobs(ctx, scope, hot, false); err != nil || actions(evs) != fmt.Sprintf("%d:queued", again) {
		t.Fatalf("scan = %s, %v", actions(evs), err)
	}
	time.Sleep(400 * time.Millisecond)
	if evs, err := c.ScanJobs(ctx, scope, hot, false); err != nil || actions(evs) != fmt.Sprintf("%d:queued", again) {
		t.Fatalf("scan after forgetting = %s, %v; want the queued job reported again", actions(evs), err)
	}
}

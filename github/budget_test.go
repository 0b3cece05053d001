package github_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// obs records what the budget tells its Observer.
type obs struct {
	mu       sync.Mutex
	requests map[string]int // "endpoint outcome"
	refused  map[string]int // "credential endpoint reason"
	rate     map[string][2]int
}

func newObs() *obs {
	return &obs{requests: map[string]int{}, refused: map[string]int{}, rate: map[string][2]int{}}
}

func (o *obs) Request(endpoint, outcome string) {
	o.mu.Lock()
	o.requests[endpoint+" "+outcome]++
	o.mu.Unlock()
}

func (o *obs) Rate(cred string, limit, remaining int, reset time.Time) {
	o.mu.Lock()
	o.rate[cred] = [2]int{limit, remaining}
	o.mu.Unlock()
}

func (o *obs) Refused(cred, endpoint, reason string) {
	o.mu.Lock()
	o.refused[cred+" "+endpoint+" "+reason]++
	o.mu.Unlock()
}

func (o *obs) get(m map[string]int, k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return m[k]
}

func budgetClient(t *testing.T, rl githubtest.RateLimits, cfg github.Config) (*githubtest.Server, *github.Client, *obs, *recorder) {
	t.Helper()
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}, Logf: t.Logf, RateLimits: rl})
	t.Cleanup(fake.Close)
	o := newObs()
	rec := &recorder{}
	cfg.APIURL, cfg.Token, cfg.HTTPClient, cfg.Observer = fake.URL(), testToken, &http.Client{Transport: rec}, o
	if cfg.JITPerMinute == 0 {
		cfg.JITPerMinute = -1
	}
	c, err := github.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fake, c, o, rec
}

func TestBudgetCountsAndConditionalRequests(t *testing.T) {
	fake, c, o, _ := budgetClient(t, githubtest.RateLimits{}, github.Config{})
	ctx := ctxFor(t)
	repo := provisioner.Scope{Repo: "acme/app"}
	jit, err := c.GenerateJITConfig(ctx, repo, "r-1", []string{"gpu"})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := c.JobStatus(ctx, repo, "acme/app", 1); !errors.Is(err, provisioner.ErrNotFound) {
			t.Fatalf("JobStatus: %v", err)
		}
	}
	// Direct GETs of one runner: the first is a 200, the rest 304s.
	fake.ResetRequestStats()
	for range 4 {
		if _, err := c.RunnerByName(ctx, repo, "r-1"); err != nil {
			t.Fatal(err)
		}
	}
	st := fake.RequestStats().ByEndpoint["GET /repos/{owner}/{repo}/actions/runners"]
	if st.Counted != 1 || st.NotModified != 3 {
		t.Errorf("fake saw %+v, want 1 counted and 3 not modified", st)
	}
	if got := o.get(o.requests, "GET /repos/{owner}/{repo}/actions/runners not_modified"); got != 3 {
		t.Errorf("observer saw %d not_modified, want 3: %v", got, o.requests)
	}
	if got := o.get(o.requests, "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig ok"); got != 1 {
		t.Errorf("observer saw %d JIT ok: %v", got, o.requests)
	}
	if got := o.get(o.requests, "GET /repos/{owner}/{repo}/actions/jobs/{job_id} client_error"); got != 5 {
		t.Errorf("observer saw %d job 404s: %v", got, o.requests)
	}
	if r := o.rate["token"]; r[0] != 5000 || r[1] <= 0 || r[1] >= 5000 {
		t.Errorf("rate of the token: %v", r)
	}
	// The runner's change gives a full answer again.
	if err := c.RemoveRunner(ctx, repo, jit.RunnerID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunnerByName(ctx, repo, "r-1"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("after removal: %v", err)
	}
}

func TestBudgetExhaustedRefusesLocallyUntilReset(t *testing.T) {
	fake, c, o, rec := budgetClient(t, githubtest.RateLimits{Token: 4, Window: 3 * time.Second}, github.Config{})
	ctx := ctxFor(t)
	org := provisioner.Scope{Org: "acme"}
	for i := range 4 {
		if _, err := c.GenerateJITConfig(ctx, org, fmt.Sprintf("r-%d", i), []string{"gpu"}); err != nil {
			t.Fatalf("registration %d: %v", i, err)
		}
	}
	// The fourth answer said 0 remaining: nothing more goes out, the
	// registration that serves a job included, and the error says until
	// when. go-github's own check is not what refuses it.
	sent := len(rec.requests)
	_, err := c.GenerateJITConfig(ctx, org, "r-late", []string{"gpu"})
	until, ok := provisioner.RetryAt(err)
	if !errors.Is(err, provisioner.ErrRateLimited) || !ok || until.Before(time.Now()) {
		t.Fatalf("exhausted: %v (until %v)", err, until)
	}
	if len(rec.requests) != sent || fake.RequestStats().Total.Refused != 0 {
		t.Errorf("a request went out while exhausted: %d sent, fake refused %d", len(rec.requests)-sent, fake.RequestStats().Total.Refused)
	}
	if w := c.RegistrationWait(ctx, org); w <= 0 || w > 4*time.Second {
		t.Errorf("RegistrationWait = %v, want until the reset", w)
	}
	if o.get(o.refused, "token POST /orgs/{org}/actions/runners/generate-jitconfig exhausted") != 1 {
		t.Errorf("refusals %v", o.refused)
	}
	// After the reset it goes on.
	time.Sleep(time.Until(until) + 50*time.Millisecond)
	if c.RegistrationWait(ctx, org) != 0 {
		t.Error("RegistrationWait after the reset")
	}
	if _, err := c.GenerateJITConfig(ctx, org, "r-late", []string{"gpu"}); err != nil {
		t.Fatalf("after the reset: %v", err)
	}
}

func TestBudgetReserveDefersBackgroundCalls(t *testing.T) {
	var logs []string
	var mu sync.Mutex
	fake, c, o, _ := budgetClient(t, githubtest.RateLimits{Token: 100}, github.Config{Logf: func(f string, a ...any) {
		mu.Lock()
		logs = append(logs, fmt.Sprintf(f, a...))
		mu.Unlock()
	}})
	fake.AddRepos("acme/a")
	ctx := ctxFor(t)
	org := provisioner.Scope{Org: "acme"}
	if _, err := c.QueuedJobs(ctx, org); err != nil {
		t.Fatal(err)
	}
	fake.SetRateRemaining("token:1", 10)
	// One call to learn it: 9 left, under the 10% reserve.
	if _, err := c.GenerateJITConfig(ctx, org, "r-1", []string{"gpu"}); err != nil {
		t.Fatal(err)
	}
	before := fake.RequestStats().Total.Total()
	for range 3 {
		_, err := c.QueuedJobs(ctx, org)
		if !errors.Is(err, provisioner.ErrDeferred) || errors.Is(err, provisioner.ErrRateLimited) {
			t.Fatalf("QueuedJobs under the reserve: %v", err)
		}
	}
	if _, err := c.ListRunners(ctx, org); !errors.Is(err, provisioner.ErrDeferred) {
		t.Fatalf("ListRunners (gc) under the reserve: %v", err)
	}
	if got := fake.RequestStats().Total.Total(); got != before {
		t.Errorf("%d background requests went out under the reserve", got-before)
	}
	// Calls that serve jobs go on.
	if _, err := c.GenerateJITConfig(ctx, org, "r-2", []string{"gpu"}); err != nil {
		t.Fatalf("JIT under the reserve: %v", err)
	}
	if _, err := c.Runner(ctx, org, 1); err != nil {
		t.Fatalf("Runner under the reserve: %v", err)
	}
	if err := c.RemoveRunner(ctx, org, 1); err != nil {
		t.Fatalf("RemoveRunner under the reserve: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logs) != 1 || !strings.Contains(logs[0], "deferred") {
		t.Errorf("logged %q, want one line about the deferral", logs)
	}
	if o.get(o.refused, "token GET /orgs/{org}/repos reserve") != 3 {
		t.Errorf("refusals %v", o.refused)
	}
}

func TestBudgetBacksOffAfterSecondaryLimits(t *testing.T) {
	fake, c, o, rec := budgetClient(t, githubtest.RateLimits{}, github.Config{})
	ctx := ctxFor(t)
	org := provisioner.Scope{Org: "acme"}

	// With retry-after: not one request before it has passed.
	fake.TripSecondaryLimit(1, http.StatusTooManyRequests, 2*time.Second)
	if _, err := c.GenerateJITConfig(ctx, org, "r-1", []string{"gpu"}); err == nil {
		t.Fatal("a secondary limit went unnoticed")
	}
	sent := len(rec.requests)
	_, err := c.GenerateJITConfig(ctx, org, "r-1", []string{"gpu"})
	until, _ := provisioner.RetryAt(err)
	if !errors.Is(err, provisioner.ErrRateLimited) || time.Until(until) > 2*time.Second || len(rec.requests) != sent {
		t.Fatalf("during retry-after: %v (until %v), %d sent", err, until, len(rec.requests)-sent)
	}
	if w := c.RegistrationWait(ctx, org); w <= 0 {
		t.Errorf("RegistrationWait during a back-off: %v", w)
	}
	if o.get(o.requests, "POST /orgs/{org}/actions/runners/generate-jitconfig secondary_limited") != 1 {
		t.Errorf("requests %v", o.requests)
	}
	time.Sleep(time.Until(until) + 50*time.Millisecond)
	if _, err := c.GenerateJITConfig(ctx, org, "r-1", []string{"gpu"}); err != nil {
		t.Fatalf("after retry-after: %v", err)
	}

	// Without retry-after: at least a minute, then doubling.
	fake.TripSecondaryLimit(1, http.StatusForbidden, -1)
	start := time.Now()
	if _, err := c.GenerateJITConfig(ctx, org, "r-2", []string{"gpu"}); err == nil {
		t.Fatal("a secondary limit went unnoticed")
	}
	_, err = c.GenerateJITConfig(ctx, org, "r-2", []string{"gpu"})
	until, _ = provisioner.RetryAt(err)
	if !errors.Is(err, provisioner.ErrRateLimited) || until.Sub(start) < time.Minute {
		t.Fatalf("without retry-after: %v (until %v)", err, until)
	}
}

// stub answers every request with status and headers.
type stub struct {
	status int
	header http.Header
	body   string
}

func (s stub) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: s.status, Status: http.StatusText(s.status), Header: s.header.Clone(),
		Body: io.NopCloser(strings.NewReader(s.body)), Request: req}, nil
}

func TestBudgetToleratesOddRateHeaders(t *testing.T) {
	var logs []string
	h := http.Header{"Content-Type": {"application/json"}, "X-Ratelimit-Limit": {"5000"}, "X-Ratelimit-Remaining": {"lots"}, "X-Ratelimit-Reset": {"soon"}}
	c, err := github.New(github.Config{APIURL: "https://api.github.com", Token: testToken,
		HTTPClient: &http.Client{Transport: stub{status: 200, header: h, body: `{"id": 5, "name": "r", "status": "online"}`}},
		Logf:       func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r, err := c.RunnerByName(ctxFor(t), provisioner.Scope{Org: "acme"}, "r"); err == nil && r == nil {
			t.Fatal("nil runner")
		}
	}
	if c.RegistrationWait(ctxFor(t), provisioner.Scope{Org: "acme"}) != 0 {
		t.Error("odd headers made the budget wait")
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "odd rate-limit headers") || strings.Contains(logs[0], testToken) {
		t.Errorf("logs %q, want one clear line", logs)
	}
}

func TestBudgetHonoursPollInterval(t *testing.T) {
	n := 0
	var mu sync.Mutex
	tr := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		mu.Lock()
		n++
		mu.Unlock()
		h := http.Header{"Content-Type": {"application/json"}, "Etag": {`"x"`}, "X-Poll-Interval": {"60"}}
		return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(`{"total_count": 0, "runners": []}`)), Request: req}, nil
	})
	c, err := github.New(github.Config{APIURL: "https://api.github.com", Token: testToken, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.ListRunners(ctxFor(t), provisioner.Scope{Org: "acme"}); err != nil {
			t.Fatal(err)
		}
	}
	if n != 1 {
		t.Errorf("%d requests within x-poll-interval, want 1", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRunnerChecksShareOneListing: many leases asking after their runners
// at once cost one listing, not a GET each.
func TestRunnerChecksShareOneListing(t *testing.T) {
	fake, c, _, _ := budgetClient(t, githubtest.RateLimits{}, github.Config{})
	ctx := ctxFor(t)
	org := provisioner.Scope{Org: "acme"}
	var ids []int64
	for i := range 20 {
		jit, err := c.GenerateJITConfig(ctx, org, fmt.Sprintf("r-%d", i), []string{"gpu"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, jit.RunnerID)
	}
	fake.ResetRequestStats()
	for round := range 3 {
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := c.Runner(ctx, org, id)
				if err != nil || r.ID != id || r.Status != "offline" {
					t.Errorf("round %d: runner %d: %+v, %v", round, id, r, err)
				}
			}()
		}
		wg.Wait()
		time.Sleep(2100 * time.Millisecond)
	}
	st := fake.RequestStats()
	if c := st.ByEndpoint["GET /orgs/{org}/actions/runners"]; c.Counted != 1 || c.Total() > 3 {
		t.Errorf("listings: %+v, want 1 counted (then 304s)", c)
	}
	if c := st.ByEndpoint["GET /orgs/{org}/actions/runners/{runner_id}"]; c.Total() != 0 {
		t.Errorf("%d GETs of single runners", c.Total())
	}
	// A removed runner is gone, without a GET of its own.
	if err := c.RemoveRunner(ctx, org, ids[0]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	if _, err := c.Runner(ctx, org, ids[0]); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("removed runner: %v", err)
	}
	if c := fake.RequestStats().ByEndpoint["GET /orgs/{org}/actions/runners/{runner_id}"]; c.Total() != 0 {
		t.Errorf("%d GETs of single runners", c.Total())
	}
	// One this process did not register (a restart) is confirmed by a GET.
	if _, err := c.Runner(ctx, org, 999999); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("unknown runner: %v", err)
	}
	if c := fake.RequestStats().ByEndpoint["GET /orgs/{org}/actions/runners/{runner_id}"]; c.Total() != 1 {
		t.Errorf("%d GETs of single runners, want the one confirmation", c.Total())
	}
}

// TestRegistrationWaitHoldsRoomForGrantedLeases: the leases let through
// hold room for their registrations, and an old budget is read with the
// free GET /rate_limit first.
func TestRegistrationWaitHoldsRoomForGrantedLeases(t *testing.T) {
	fake, c, _, _ := budgetClient(t, githubtest.RateLimits{Token: 100}, github.Config{})
	ctx := ctxFor(t)
	org := provisioner.Scope{Org: "acme"}
	fake.SetRateRemaining("token:1", 5)
	if w := c.RegistrationWait(ctx, org); w != 0 {
		t.Fatalf("first lease waits %v", w)
	}
	if w := c.RegistrationWait(ctx, org); w != 0 {
		t.Fatalf("second lease waits %v", w)
	}
	// 5 left, two registrations of 2 spoken for: a third would not fit.
	if w := c.RegistrationWait(ctx, org); w <= 0 {
		t.Fatal("third lease let through with the budget spoken for")
	}
	st := fake.RequestStats().ByEndpoint["GET /rate_limit"]
	if st.Uncounted != 1 || st.Counted != 0 {
		t.Errorf("GET /rate_limit: %+v, want one free request", st)
	}
	// A registration is sent: its room is used, and one more fits.
	if _, err := c.GenerateJITConfig(ctx, org, "r-1", []string{"gpu"}); err != nil {
		t.Fatal(err)
	}
	if w := c.RegistrationWait(ctx, org); w != 0 {
		t.Fatalf("after a registration (4 left, one of 2 spoken for): waits %v", w)
	}
	if w := c.RegistrationWait(ctx, org); w <= 0 {
		t.Fatal("let through with the budget spoken for")
	}
}

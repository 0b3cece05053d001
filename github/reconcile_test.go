package github_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// pollOnce makes the runner of jit poll the fake once, so that it takes
// the oldest queued job it can serve.
func pollOnce(t *testing.T, fake *githubtest.Server, jit *provisioner.JITConfig) {
	t.Helper()
	outer, _ := base64.StdEncoding.DecodeString(jit.Encoded)
	var files map[string]string
	json.Unmarshal(outer, &files)
	credsJSON, _ := base64.StdEncoding.DecodeString(files[".credentials"])
	var creds struct{ Data struct{ Token string } }
	json.Unmarshal(credsJSON, &creds)
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/_fake/runner/%d/poll", fake.URL(), jit.RunnerID), strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+creds.Data.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func jobIDs(evs []provisioner.JobEvent) []int64 {
	var ids []int64
	for _, ev := range evs {
		ids = append(ids, ev.JobID)
	}
	return ids
}

func TestQueuedJobsInARepository(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			fake, c, rec := m.setup(t)
			ctx := ctxFor(t)
			id := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"self-hosted", "gpu"}, Name: "train", WorkflowName: "GPU"})
			fake.QueueJob(githubtest.JobSpec{Repo: "acme/other", Org: "acme", Labels: []string{"gpu"}})

			evs, err := c.QueuedJobs(ctx, provisioner.Scope{Repo: "acme/app"})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 {
				t.Fatalf("QueuedJobs = %+v", evs)
			}
			j, _ := fake.Job(id)
			want := provisioner.JobEvent{Action: "queued", Status: "queued", JobID: id, RunID: j.RunID, RunAttempt: 1,
				Name: "train", Workflow: "GPU", Labels: []string{"self-hosted", "gpu"}, Repo: "acme/app",
				Visibility: "private"} // from the runs' repository object (private: true)
			if m.name == "app" {
				want.InstallationID = 11
			}
			if got := evs[0]; fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
				t.Errorf("event\n got %+v\nwant %+v", got, want)
			}
			for req, n := range map[string]int{
				"GET /repos/acme/app/actions/runs":                               2, // queued and in_progress
				fmt.Sprintf("GET /repos/acme/app/actions/runs/%d/jobs", j.RunID): 1,
				"GET /repos/acme/other/actions/runs":                             0,
				"GET /installation/repositories":                                 0,
				"GET /orgs/acme/repos":                                           0,
			} {
				if got := rec.count(req); got != n {
					t.Errorf("%s sent %d times, want %d", req, got, n)
				}
			}

			// A repository GitHub does not know is an error in a
			// repository scope.
			if _, err := c.QueuedJobs(ctx, provisioner.Scope{Repo: "acme/gone", InstallationID: 11}); err == nil || !strings.Contains(err.Error(), "404") {
				t.Errorf("QueuedJobs in an unknown repository: %v", err)
			}
		})
	}
}

func TestQueuedJobsInAnOrg(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			fake, c, rec := m.setup(t)
			ctx := ctxFor(t)
			fake.AddRepos("acme/idle", "acme/app", "acme/data")

			// A two-job run: build is taken by a runner, train still queued.
			run := fake.QueueRun(
				githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"cpu"}, Name: "build", WorkflowName: "Train"},
				githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}, Name: "train", WorkflowName: "Train"},
			)
			jit, err := c.GenerateJITConfig(ctx, provisioner.Scope{Org: "acme"}, "cpu-1", []string{"cpu"})
			if err != nil {
				t.Fatal(err)
			}
			pollOnce(t, fake, jit)
			if j, _ := fake.Job(run[0]); j.Status != githubtest.StatusInProgress {
				t.Fatalf("build = %+v", j)
			}
			data := fake.QueueJob(githubtest.JobSpec{Repo: "acme/data", Org: "acme", Labels: []string{"gpu"}})
			cancelled := fake.QueueJob(githubtest.JobSpec{Repo: "acme/data", Org: "acme", Labels: []string{"gpu"}})
			if err := fake.CancelJob(cancelled); err != nil {
				t.Fatal(err)
			}
			// Not the org's: never listed.
			fake.QueueJob(githubtest.JobSpec{Repo: "bob/tool", Labels: []string{"gpu"}})

			evs, err := c.QueuedJobs(ctx, provisioner.Scope{Org: "acme"})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := jobIDs(evs), []int64{run[1], data}; !slices.Equal(got, want) {
				t.Fatalf("QueuedJobs = %v, want %v (%+v)", got, want, evs)
			}
			train, _ := fake.Job(run[1])
			if ev := evs[0]; ev.Org != "acme" || ev.Repo != "acme/app" || ev.RunID != train.RunID || ev.Name != "train" ||
				ev.Workflow != "Train" || !slices.Equal(ev.Labels, []string{"gpu"}) || ev.DeliveryID != "" || ev.Action != "queued" {
				t.Errorf("train event = %+v", ev)
			}
			wantInst := int64(0)
			if m.name == "app" {
				wantInst = 11
			}
			for _, ev := range evs {
				if ev.InstallationID != wantInst {
					t.Errorf("installation id %d, want %d", ev.InstallationID, wantInst)
				}
			}

			// App mode lists what the installation sees, token mode the
			// org's repositories; every repository gets two run listings.
			installRepos, orgRepos := 1, 0
			if m.name == "token" {
				installRepos, orgRepos = 0, 1
			}
			for req, n := range map[string]int{
				"GET /installation/repositories":    installRepos,
				"GET /orgs/acme/repos":              orgRepos,
				"GET /repos/acme/idle/actions/runs": 2,
				"GET /repos/acme/app/actions/runs":  2,
				"GET /repos/acme/data/actions/runs": 2,
				"GET /repos/bob/tool/actions/runs":  0,
			} {
				if got := rec.count(req); got != n {
					t.Errorf("%s sent %d times, want %d", req, got, n)
				}
			}

			// Once train is taken too, nothing is queued.
			jit2, err := c.GenerateJITConfig(ctx, provisioner.Scope{Org: "acme"}, "gpu-1", []string{"gpu"})
			if err != nil {
				t.Fatal(err)
			}
			pollOnce(t, fake, jit2)
			evs, err = c.QueuedJobs(ctx, provisioner.Scope{Org: "acme"})
			if err != nil || !slices.Equal(jobIDs(evs), []int64{data}) {
				t.Errorf("after train started: %v, %v", jobIDs(evs), err)
			}
		})
	}
}

func TestQueuedJobsPaging(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			fake, c, rec := m.setup(t)
			ctx := ctxFor(t)
			var repos []string
			for i := range 150 {
				repos = append(repos, fmt.Sprintf("acme/r%03d", i))
			}
			fake.AddRepos(repos...)
			// 120 runs of one job each, and one run of 130 jobs.
			var want []int64
			for range 120 {
				want = append(want, fake.QueueJob(githubtest.JobSpec{Repo: "acme/many", Org: "acme", Labels: []string{"gpu"}}))
			}
			specs := make([]githubtest.JobSpec, 130)
			for i := range specs {
				specs[i] = githubtest.JobSpec{Repo: "acme/big", Org: "acme", Labels: []string{"gpu"}, Name: fmt.Sprintf("shard-%d", i)}
			}
			want = append(want, fake.QueueRun(specs...)...)

			evs, err := c.QueuedJobs(ctx, provisioner.Scope{Org: "acme"})
			if err != nil {
				t.Fatal(err)
			}
			if got := jobIDs(evs); !slices.Equal(got, want) {
				t.Fatalf("QueuedJobs found %d jobs, want %d", len(got), len(want))
			}
			big, _ := fake.Job(want[len(want)-1])
			listing := "GET /installation/repositories"
			if m.name == "token" {
				listing = "GET /orgs/acme/repos"
			}
			for req, n := range map[string]int{
				listing:                             2, // 152 repositories
				"GET /repos/acme/many/actions/runs": 3, // 2 pages queued, 1 in_progress
				"GET /repos/acme/big/actions/runs":  2,
				"GET /repos/acme/r000/actions/runs": 2,
				fmt.Sprintf("GET /repos/acme/big/actions/runs/%d/jobs", big.RunID): 2,
			} {
				if got := rec.count(req); got != n {
					t.Errorf("%s sent %d times, want %d", req, got, n)
				}
			}
		})
	}
}

// limiter answers the nth request to a path containing match with a rate
// limit error: primary (remaining 0) or secondary (Retry-After).
type limiter struct {
	recorder
	match     string
	secondary bool
	n, seen   atomic.Int64
}

func (l *limiter) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.Path, l.match) && l.seen.Add(1) == l.n.Load() {
		l.recorder.mu.Lock()
		l.requests = append(l.requests, "LIMITED "+req.URL.Path)
		l.recorder.mu.Unlock()
		h := http.Header{"Content-Type": {"application/json"}}
		body := `{"message":"API rate limit exceeded for installation.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}`
		if l.secondary {
			h.Set("Retry-After", "60")
			body = `{"message":"You have exceeded a secondary rate limit.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}`
		} else {
			h.Set("X-RateLimit-Limit", "5000")
			h.Set("X-RateLimit-Remaining", "0")
			h.Set("X-RateLimit-Reset", fmt.Sprint(time.Now().Add(time.Hour).Unix()))
		}
		return &http.Response{StatusCode: http.StatusForbidden, Status: "403 Forbidden", Header: h,
			Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
	}
	return l.recorder.RoundTrip(req)
}

func TestQueuedJobsStopsAtRateLimits(t *testing.T) {
	for _, secondary := range []bool{false, true} {
		t.Run(fmt.Sprint("secondary=", secondary), func(t *testing.T) {
			fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}, Logf: t.Logf})
			t.Cleanup(fake.Close)
			fake.AddRepos("acme/a", "acme/b", "acme/c")
			lim := &limiter{match: "/actions/runs", secondary: secondary}
			lim.n.Store(3) // the first listing of acme/b
			c, err := github.New(github.Config{APIURL: fake.URL(), Token: testToken, HTTPClient: &http.Client{Transport: lim}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxFor(t)
			_, err = c.QueuedJobs(ctx, provisioner.Scope{Org: "acme"})
			until, ok := provisioner.RetryAt(err)
			switch {
			case err == nil:
				t.Fatal("QueuedJobs ignored a rate limit")
			case !errors.Is(err, provisioner.ErrRateLimited) || !ok:
				t.Fatalf("error %v is not a *provisioner.BudgetError", err)
			case !secondary && until.Before(time.Now().Add(59*time.Minute)):
				t.Fatalf("error %v: until %v, want the reset in an hour", err, until)
			case secondary && (until.Before(time.Now().Add(59*time.Second)) || until.After(time.Now().Add(61*time.Second))):
				t.Fatalf("error %v: until %v, want retry-after's minute", err, until)
			}
			if !strings.Contains(err.Error(), "acme/b") {
				t.Errorf("error %q does not say where", err)
			}
			if got := lim.count("GET /repos/acme/c/actions/runs"); got != 0 {
				t.Errorf("went on to acme/c after the rate limit (%d requests)", got)
			}
			if secondary {
				return
			}
			// The budget remembers the primary limit until its reset: the
			// next walk is refused without a request, with a typed error
			// that says until when.
			before := lim.seen.Load()
			_, err = c.QueuedJobs(ctx, provisioner.Scope{Org: "acme"})
			until, ok = provisioner.RetryAt(err)
			if !errors.Is(err, provisioner.ErrRateLimited) || !ok || until.Before(time.Now().Add(59*time.Minute)) || lim.seen.Load() != before {
				t.Errorf("second walk: %v (until %v) after %d more run requests", err, until, lim.seen.Load()-before)
			}
		})
	}
}

func TestQueuedJobsSkipsAVanishedRepository(t *testing.T) {
	fake, c, _ := modes[0].setup(t)
	ctx := ctxFor(t)
	// acme/gone is listed by a proxy in front of the fake but unknown to
	// it: a repository deleted between the listing and its runs.
	id := fake.QueueJob(githubtest.JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	proxy := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/orgs/acme/repos" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `[{"name":"gone","full_name":"acme/gone","owner":{"login":"acme"}},`+
				`{"name":"old","full_name":"acme/old","owner":{"login":"acme"},"archived":true},`+
				`{"name":"app","full_name":"acme/app","owner":{"login":"acme"}}]`)
			return
		}
		req, _ := http.NewRequest(r.Method, fake.URL()+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	rec := &recorder{}
	c, err := github.New(github.Config{APIURL: proxy.URL, Token: testToken, HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := c.QueuedJobs(ctx, provisioner.Scope{Org: "acme"})
	if err != nil || !slices.Equal(jobIDs(evs), []int64{id}) {
		t.Errorf("QueuedJobs = %v, %v", jobIDs(evs), err)
	}
	if rec.count("GET /repos/acme/old/actions/runs") != 0 {
		t.Error("an archived repository was searched")
	}
}

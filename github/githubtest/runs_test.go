package githubtest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"
)

type runsPage struct {
	TotalCount   int `json:"total_count"`
	WorkflowRuns []struct {
		ID         int64
		Name       string
		Status     string
		Conclusion *string
		RunAttempt int64  `json:"run_attempt"`
		HeadSHA    string `json:"head_sha"`
		JobsURL    string `json:"jobs_url"`
		Repository struct {
			FullName string `json:"full_name"`
		}
	} `json:"workflow_runs"`
}

func listRuns(t *testing.T, s *Server, repo, status string) runsPage {
	t.Helper()
	r := call(t, "GET", s.URL()+"/repos/"+repo+"/actions/runs?status="+status, "Bearer "+testToken, nil)
	if r.status != 200 {
		t.Fatalf("list %s runs of %s: %d %s", status, repo, r.status, r.body)
	}
	var p runsPage
	r.json(t, &p)
	return p
}

func TestRunStatusFollowsItsJobs(t *testing.T) {
	s := newTestServer(t, Options{})
	ctx := ctxFor(t)
	ids := s.QueueRun(
		JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"cpu"}, Name: "build", WorkflowName: "Train"},
		JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}, Name: "train", WorkflowName: "Train"},
	)
	other := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	a, _ := s.Job(ids[0])
	b, _ := s.Job(ids[1])
	o, _ := s.Job(other)
	if a.RunID == 0 || a.RunID != b.RunID || o.RunID == a.RunID || a.HeadSHA != b.HeadSHA {
		t.Fatalf("runs: %d %d %d", a.RunID, b.RunID, o.RunID)
	}

	p := listRuns(t, s, "acme/app", "queued")
	if p.TotalCount != 2 || len(p.WorkflowRuns) != 2 || p.WorkflowRuns[0].ID != o.RunID || p.WorkflowRuns[1].ID != a.RunID {
		t.Fatalf("queued runs (newest first) = %+v", p)
	}
	if w := p.WorkflowRuns[1]; w.Name != "Train" || w.RunAttempt != 1 || w.Conclusion != nil ||
		w.Repository.FullName != "acme/app" || !strings.HasSuffix(w.JobsURL, fmt.Sprintf("/runs/%d/jobs", a.RunID)) {
		t.Errorf("run = %+v", w)
	}

	// One job of the run starts: the run is in progress, the other job
	// still queued.
	rn := register(t, s, "/orgs/acme", "cpu-1", "cpu")
	if _, ans := poll(t, s, rn); ans.JobID != ids[0] {
		t.Fatalf("the cpu runner took %+v", ans)
	}
	if p := listRuns(t, s, "acme/app", "in_progress"); len(p.WorkflowRuns) != 1 || p.WorkflowRuns[0].ID != a.RunID {
		t.Errorf("in-progress runs = %+v", p)
	}
	if p := listRuns(t, s, "acme/app", "queued"); len(p.WorkflowRuns) != 1 || p.WorkflowRuns[0].ID != o.RunID {
		t.Errorf("queued runs = %+v", p)
	}
	r := call(t, "GET", fmt.Sprintf("%s/repos/acme/app/actions/runs/%d/jobs?filter=latest", s.URL(), a.RunID), "Bearer "+testToken, nil)
	var jobs struct {
		TotalCount int `json:"total_count"`
		Jobs       []struct {
			ID     int64
			RunID  int64 `json:"run_id"`
			Status string
			Labels []string
		}
	}
	r.json(t, &jobs)
	if r.status != 200 || jobs.TotalCount != 2 || jobs.Jobs[0].ID != ids[0] || jobs.Jobs[0].Status != StatusInProgress ||
		jobs.Jobs[1].ID != ids[1] || jobs.Jobs[1].Status != StatusQueued || !slices.Equal(jobs.Jobs[1].Labels, []string{"gpu"}) {
		t.Errorf("jobs of the run: %d %+v", r.status, jobs)
	}

	// The first job completes: still in progress while the second waits.
	done(t, s, rn, ids[0], 0)
	if p := listRuns(t, s, "acme/app", "in_progress"); len(p.WorkflowRuns) != 1 {
		t.Errorf("a run with a completed and a queued job: %+v", p)
	}
	if err := s.CancelJob(ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitJob(ctx, ids[1], StatusCompleted); err != nil {
		t.Fatal(err)
	}
	p = listRuns(t, s, "acme/app", "completed")
	if len(p.WorkflowRuns) != 1 || p.WorkflowRuns[0].Conclusion == nil || *p.WorkflowRuns[0].Conclusion != "cancelled" {
		t.Errorf("completed runs = %+v", p)
	}
	if p := listRuns(t, s, "acme/app", "cancelled"); len(p.WorkflowRuns) != 1 {
		t.Errorf("the status filter also matches a conclusion: %+v", p)
	}
	if p := listRuns(t, s, "acme/app", ""); len(p.WorkflowRuns) != 2 {
		t.Errorf("all runs = %+v", p)
	}

	// Unknown repositories, runs and filters.
	for url, want := range map[string]int{
		"/repos/acme/nope/actions/runs":                                       404,
		"/repos/acme/app/actions/runs?status=bogus":                           422,
		"/repos/acme/app/actions/runs/1/jobs":                                 404,
		fmt.Sprintf("/repos/bob/app/actions/runs/%d/jobs", a.RunID):           404,
		fmt.Sprintf("/repos/acme/app/actions/runs/%d/jobs?filter=x", a.RunID): 422,
	} {
		if r := call(t, "GET", s.URL()+url, "Bearer "+testToken, nil); r.status != want {
			t.Errorf("GET %s: %d, want %d", url, r.status, want)
		}
	}
	if r := call(t, "GET", s.URL()+"/repos/acme/app/actions/runs", "", nil); r.status != 401 {
		t.Errorf("without credentials: %d", r.status)
	}
}

func TestJobSpecRunID(t *testing.T) {
	s := newTestServer(t, Options{})
	first := s.QueueJob(JobSpec{Repo: "acme/app", Labels: []string{"x"}})
	j, _ := s.Job(first)
	second := s.QueueJob(JobSpec{Repo: "acme/app", Labels: []string{"x"}, RunID: j.RunID})
	if k, _ := s.Job(second); k.RunID != j.RunID {
		t.Errorf("RunID %d, want %d", k.RunID, j.RunID)
	}
	// A run id chosen by the test is never handed out again.
	chosen := s.QueueJob(JobSpec{Repo: "acme/app", Labels: []string{"x"}, RunID: j.RunID + 50})
	fresh := s.QueueJob(JobSpec{Repo: "acme/app", Labels: []string{"x"}})
	c, _ := s.Job(chosen)
	f, _ := s.Job(fresh)
	if c.RunID != j.RunID+50 || f.RunID <= c.RunID {
		t.Errorf("chosen run %d, fresh run %d", c.RunID, f.RunID)
	}

	mustPanic := func(name string, fn func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		fn()
	}
	mustPanic("a run of another repository", func() {
		s.QueueJob(JobSpec{Repo: "acme/other", Labels: []string{"x"}, RunID: j.RunID})
	})
	mustPanic("QueueRun across repositories", func() {
		s.QueueRun(JobSpec{Repo: "acme/a", Labels: []string{"x"}}, JobSpec{Repo: "acme/b", Labels: []string{"x"}})
	})
	mustPanic("an empty QueueRun", func() { s.QueueRun() })
	// The server still works after a test's mistake.
	s.QueueJob(JobSpec{Repo: "acme/app", Labels: []string{"x"}})
}

type repoItem struct {
	ID       int64
	Name     string
	FullName string `json:"full_name"`
	Owner    struct{ Login, Type string }
}

func TestRepositoryListings(t *testing.T) {
	key, _ := testKeys(t)
	s := newTestServer(t, Options{
		AppID:         42,
		AppPublicKey:  &key.PublicKey,
		Installations: map[string]int64{"acme": 7, "bob/tool": 8},
	})
	var names []string
	for i := range 120 {
		names = append(names, fmt.Sprintf("acme/r%03d", i))
	}
	s.AddRepos(names...)
	s.AddRepos("Acme/r000", "carol/x") // known already; another owner
	s.QueueJob(JobSpec{Repo: "acme/zeta", Org: "acme", Labels: []string{"x"}})

	// GET /orgs/{org}/repos, paged with Link headers.
	var all []repoItem
	url := s.URL() + "/orgs/acme/repos?per_page=100"
	for url != "" {
		r := call(t, "GET", url, "Bearer "+testToken, nil)
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", url, r.status, r.body)
		}
		var page []repoItem
		r.json(t, &page)
		all = append(all, page...)
		url = nextLink(r.header.Get("Link"))
	}
	if len(all) != 121 || all[0].FullName != "acme/r000" || all[120].FullName != "acme/zeta" ||
		all[0].Owner.Login != "acme" || all[0].Owner.Type != "Organization" || all[0].ID == 0 {
		t.Errorf("org repos: %d, first %+v", len(all), all[0])
	}
	if r := call(t, "GET", s.URL()+"/orgs/nobody/repos", "Bearer "+testToken, nil); r.status != 404 {
		t.Errorf("repos of an unknown org: %d", r.status)
	}

	// GET /installation/repositories: installation tokens only.
	now := time.Now()
	jwtTok := signJWT(t, key, jwt.SigningMethodRS256, "42", now.Add(-30*time.Second), now.Add(2*time.Minute))
	tokenFor := func(id int64) string {
		r := call(t, "POST", fmt.Sprintf("%s/app/installations/%d/access_tokens", s.URL(), id), "Bearer "+jwtTok, nil)
		var out struct{ Token string }
		r.json(t, &out)
		return out.Token
	}
	var inst struct {
		TotalCount   int        `json:"total_count"`
		Repositories []repoItem `json:"repositories"`
	}
	r := call(t, "GET", s.URL()+"/installation/repositories?per_page=100&page=2", "token "+tokenFor(7), nil)
	r.json(t, &inst)
	if r.status != 200 || inst.TotalCount != 121 || len(inst.Repositories) != 21 || !strings.Contains(r.header.Get("Link"), `rel="first"`) {
		t.Errorf("installation 7, page 2: %d total %d, %d repos", r.status, inst.TotalCount, len(inst.Repositories))
	}
	r = call(t, "GET", s.URL()+"/installation/repositories", "token "+tokenFor(8), nil)
	r.json(t, &inst)
	if r.status != 200 || inst.TotalCount != 1 || inst.Repositories[0].FullName != "bob/tool" || inst.Repositories[0].Owner.Type != "User" {
		t.Errorf("installation 8: %d %+v", r.status, inst)
	}
	for auth, want := range map[string]int{"Bearer " + testToken: 403, "Bearer " + jwtTok: 401, "": 401, "token ghs_nope": 401} {
		if r := call(t, "GET", s.URL()+"/installation/repositories", auth, nil); r.status != want {
			t.Errorf("installation repositories with %.12q: %d, want %d", auth, r.status, want)
		}
	}

	// GET /app/installations: one per installation, App JWT only.
	r = call(t, "GET", s.URL()+"/app/installations", "Bearer "+jwtTok, nil)
	var insts []struct {
		ID      int64
		Account struct{ Login, Type string }
	}
	r.json(t, &insts)
	if r.status != 200 || len(insts) != 2 || insts[0].ID != 7 || insts[0].Account.Login != "acme" || insts[0].Account.Type != "Organization" ||
		insts[1].ID != 8 || insts[1].Account.Login != "bob" || insts[1].Account.Type != "User" {
		t.Errorf("installations: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", s.URL()+"/app/installations", "Bearer "+testToken, nil); r.status != 401 {
		t.Errorf("installations with a token: %d", r.status)
	}
}

// nextLink returns the rel="next" URL of a Link header, or "".
func nextLink(link string) string {
	for _, part := range strings.Split(link, ",") {
		u, rel, ok := strings.Cut(strings.TrimSpace(part), ";")
		if ok && strings.TrimSpace(rel) == `rel="next"` {
			return strings.Trim(u, "<>")
		}
	}
	return ""
}

func TestAddReposRefusesBadNames(t *testing.T) {
	s := newTestServer(t, Options{})
	defer func() {
		if recover() == nil {
			t.Error("AddRepos(\"noslash\") did not panic")
		}
	}()
	s.AddRepos("noslash")
}

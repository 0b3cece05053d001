package githubtest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// registerIn creates a JIT runner in a runner group.
func registerIn(t *testing.T, s *Server, prefix string, group int64, name string, labels ...string) registered {
	t.Helper()
	r := call(t, "POST", s.URL()+prefix+"/actions/runners/generate-jitconfig", "Bearer "+testToken,
		map[string]any{"name": name, "runner_group_id": group, "labels": labels})
	if r.status != http.StatusCreated {
		t.Fatalf("generate-jitconfig %s: %d %s", name, r.status, r.body)
	}
	var out struct {
		Runner struct{ ID int64 }
	}
	r.json(t, &out)
	files := decodeJIT(t, mustEncoded(t, r))
	var creds struct{ Data struct{ Token string } }
	if err := json.Unmarshal(files[".credentials"], &creds); err != nil {
		t.Fatal(err)
	}
	return registered{ID: out.Runner.ID, Name: name, Token: creds.Data.Token}
}

func mustEncoded(t *testing.T, r response) string {
	var out struct {
		Encoded string `json:"encoded_jit_config"`
	}
	r.json(t, &out)
	return out.Encoded
}

// The assignment rule: a runner whose group cannot serve the job's
// repository never gets the job, whatever its labels.
func TestRunnerGroupsDecideAssignment(t *testing.T) {
	groups := []RunnerGroup{
		{ID: 1, Name: "Default", Default: true},
		{ID: 2, Name: "public-ok", AllowsPublicRepositories: true},
		{ID: 3, Name: "selected", Visibility: GroupVisibilitySelected, SelectedRepositories: []string{"acme/app"}},
		{ID: 4, Name: "private-only", Visibility: GroupVisibilityPrivate, AllowsPublicRepositories: true},
		{ID: 5, Name: "one-workflow", RestrictedToWorkflows: true,
			SelectedWorkflows: []string{"acme/app/.github/workflows/gpu.yml@main"}},
		{ID: 6, Name: "other-org", Org: "other"},
	}
	tests := []struct {
		name     string
		group    int64
		repo     string
		vis      string
		workflow string
		takes    bool
	}{
		{"default group, private repo", 1, "acme/app", RepoPrivate, "", true},
		{"default group, public repo", 1, "acme/site", RepoPublic, "", false},
		{"public allowed, public repo", 2, "acme/site", RepoPublic, "", true},
		{"selected group, selected repo", 3, "acme/app", RepoPrivate, "", true},
		{"selected group, other repo", 3, "acme/web", RepoPrivate, "", false},
		{"selected group, selected repo made public", 3, "acme/app", RepoPublic, "", false},
		{"private group, private repo", 4, "acme/app", RepoPrivate, "", true},
		{"private group, internal repo", 4, "acme/app", RepoInternal, "", false},
		{"private group, public repo", 4, "acme/site", RepoPublic, "", false},
		{"workflow group, its workflow", 5, "acme/app", RepoPrivate, ".github/workflows/gpu.yml", true},
		{"workflow group, another workflow", 5, "acme/app", RepoPrivate, ".github/workflows/ci.yml", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Options{Groups: groups})
			s.SetRepoVisibility(tt.repo, tt.vis)
			rn := registerIn(t, s, "/orgs/acme", tt.group, "r", "gpu")
			id := s.QueueJob(JobSpec{Repo: tt.repo, Org: "acme", Labels: []string{"gpu"}, WorkflowPath: tt.workflow})
			_, a := poll(t, s, rn)
			if got := a.Action == "job" && a.JobID == id; got != tt.takes {
				t.Errorf("runner took the job: %v, want %v (%+v)", got, tt.takes, a)
			}
			if j, _ := s.Job(id); !tt.takes && (j.Status != StatusQueued || j.RunnerID != 0) {
				t.Errorf("job = %+v, want still queued", j)
			}
		})
	}

	// A group of another org does not exist in acme: 404, as the OpenAPI
	// documents for generate-jitconfig.
	s := newTestServer(t, Options{Groups: groups})
	r := call(t, "POST", s.URL()+"/orgs/acme/actions/runners/generate-jitconfig", "Bearer "+testToken,
		map[string]any{"name": "x", "runner_group_id": 6, "labels": []string{"gpu"}})
	if r.status != http.StatusNotFound {
		t.Errorf("generate-jitconfig in another org's group: %d %s", r.status, r.body)
	}
	r = call(t, "POST", s.URL()+"/orgs/acme/actions/runners/generate-jitconfig", "Bearer "+testToken,
		map[string]any{"name": "x", "runner_group_id": 99, "labels": []string{"gpu"}})
	if r.status != http.StatusNotFound {
		t.Errorf("generate-jitconfig in a group that does not exist: %d %s", r.status, r.body)
	}
}

// A group changed to allow the repository serves its queued job at the
// runner's next poll; repo runners are not held to org groups.
func TestRunnerGroupChangeAndRepoRunners(t *testing.T) {
	s := newTestServer(t, Options{RepoVisibility: map[string]string{"acme/site": RepoPublic}})
	rn := register(t, s, "/orgs/acme", "org-runner", "gpu")
	id := s.QueueJob(JobSpec{Repo: "acme/site", Org: "acme", Labels: []string{"gpu"}})
	if _, a := poll(t, s, rn); a.Action != "idle" {
		t.Fatalf("public repo job went to the Default group's runner: %+v", a)
	}
	s.SetRunnerGroup(RunnerGroup{ID: 1, Name: "Default", Default: true, AllowsPublicRepositories: true})
	if _, a := poll(t, s, rn); a.Action != "job" || a.JobID != id {
		t.Fatalf("after allowing public repositories: %+v", a)
	}
	if j, _ := s.Job(id); j.RunnerGroupName != "Default" || j.RunnerGroupID != 1 {
		t.Errorf("job = %+v", j)
	}

	// A repository runner of a public repository takes its jobs: runner
	// groups are an organization feature.
	repoRunner := register(t, s, "/repos/acme/site", "repo-runner", "gpu")
	id2 := s.QueueJob(JobSpec{Repo: "acme/site", Org: "acme", Labels: []string{"gpu"}})
	if _, a := poll(t, s, repoRunner); a.Action != "job" || a.JobID != id2 {
		t.Fatalf("repo runner: %+v", a)
	}

	// A deleted group's runners take nothing.
	idle := register(t, s, "/orgs/acme", "idle-runner", "gpu")
	s.RemoveRunnerGroup("", 1)
	s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	if _, a := poll(t, s, idle); a.Action == "job" {
		t.Errorf("runner of a deleted group took a job: %+v", a)
	}
}

// JIT runners get the read-only default labels, so a plain
// `runs-on: [self-hosted, linux]` job goes to a GPU runner; with
// NoJITDefaultLabels (the other reading) it does not.
func TestJITDefaultLabels(t *testing.T) {
	for _, tc := range []struct {
		opts  Options
		arch  string
		takes bool
	}{{Options{}, "X64", true}, {Options{NoJITDefaultLabels: true}, "", false}} {
		s := newTestServer(t, tc.opts)
		rn := register(t, s, "/orgs/acme", "gpu-1", "crabbox-lease-1", "a100")
		id := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"self-hosted", "linux", "x64"}})
		_, a := poll(t, s, rn)
		if got := a.Action == "job" && a.JobID == id; got != tc.takes {
			t.Errorf("%+v: plain self-hosted job taken: %v, want %v", tc.opts, got, tc.takes)
		}
		rs := s.Runners()
		if tc.arch != "" && strings.Join(rs[0].DefaultLabels, ",") != "self-hosted,Linux,"+tc.arch {
			t.Errorf("default labels = %v", rs[0].DefaultLabels)
		}
	}
	s := newTestServer(t, Options{})
	register(t, s, "/orgs/acme", "gh200", "crabbox", "ARM64")
	if rs := s.Runners(); strings.Join(rs[0].DefaultLabels, ",") != "self-hosted,Linux,ARM64" {
		t.Errorf("arm64 runner's default labels = %v", rs[0].DefaultLabels)
	}
}

// The REST shapes: list (with visible_to_repository and paging), get,
// selected repositories; repository visibility in listings and webhooks.
func TestRunnerGroupEndpoints(t *testing.T) {
	var groups []RunnerGroup
	groups = append(groups, RunnerGroup{ID: 1, Name: "Default", Default: true})
	groups = append(groups, RunnerGroup{ID: 2, Name: "gpu", Visibility: GroupVisibilitySelected, AllowsPublicRepositories: true,
		SelectedRepositories: []string{"acme/site", "acme/app"}})
	groups = append(groups, RunnerGroup{ID: 3, Name: "odd", OmitFields: []string{"allows_public_repositories"}, RawVisibility: "everyone"})
	s := newTestServer(t, Options{Groups: groups, RepoVisibility: map[string]string{"acme/site": RepoPublic}})
	auth := "Bearer " + testToken

	var list struct {
		TotalCount   int              `json:"total_count"`
		RunnerGroups []map[string]any `json:"runner_groups"`
	}
	r := call(t, "GET", s.URL()+"/orgs/acme/actions/runner-groups?per_page=2", auth, nil)
	r.json(t, &list)
	if r.status != 200 || list.TotalCount != 3 || len(list.RunnerGroups) != 2 || !strings.Contains(r.header.Get("Link"), `rel="next"`) {
		t.Fatalf("list: %d %s link %q", r.status, r.body, r.header.Get("Link"))
	}
	def := list.RunnerGroups[0]
	for _, f := range []string{"id", "name", "visibility", "default", "runners_url", "inherited", "allows_public_repositories"} {
		if _, ok := def[f]; !ok {
			t.Errorf("group lacks required field %s: %v", f, def)
		}
	}
	if _, ok := def["selected_repositories_url"]; ok {
		t.Errorf("an 'all' group has selected_repositories_url: %v", def)
	}
	if def["visibility"] != "all" || def["allows_public_repositories"] != false {
		t.Errorf("default group = %v", def)
	}

	// visible_to_repository takes the bare name: the public site is
	// visible to group 2 only (the odd group has an unknown visibility).
	r = call(t, "GET", s.URL()+"/orgs/acme/actions/runner-groups?visible_to_repository=site", auth, nil)
	r.json(t, &list)
	if list.TotalCount != 1 || list.RunnerGroups[0]["id"] != float64(2) {
		t.Errorf("visible to site: %s", r.body)
	}
	r = call(t, "GET", s.URL()+"/orgs/acme/actions/runner-groups?visible_to_repository=web", auth, nil)
	r.json(t, &list)
	if list.TotalCount != 1 || list.RunnerGroups[0]["id"] != float64(1) {
		t.Errorf("visible to web: %s", r.body)
	}

	var g map[string]any
	r = call(t, "GET", s.URL()+"/orgs/acme/actions/runner-groups/2", auth, nil)
	r.json(t, &g)
	if r.status != 200 || g["visibility"] != "selected" || !strings.HasSuffix(g["selected_repositories_url"].(string), "/orgs/acme/actions/runner-groups/2/repositories") {
		t.Errorf("get group 2: %d %s", r.status, r.body)
	}
	r = call(t, "GET", s.URL()+"/orgs/acme/actions/runner-groups/3", auth, nil)
	g = nil
	r.json(t, &g)
	if _, ok := g["allows_public_repositories"]; ok || g["visibility"] != "everyone" {
		t.Errorf("odd group: %s", r.body)
	}
	// An org's own group shadows the every-org group of the same id.
	s.SetRunnerGroup(RunnerGroup{ID: 1, Org: "beta", Name: "Beta default", Visibility: GroupVisibilityPrivate})
	for org, want := range map[string]string{"acme": "all", "beta": "private"} {
		g = nil
		call(t, "GET", s.URL()+"/orgs/"+org+"/actions/runner-groups/1", auth, nil).json(t, &g)
		if g["visibility"] != want {
			t.Errorf("group 1 of %s: %v, want visibility %s", org, g, want)
		}
	}
	if r := call(t, "GET", s.URL()+"/orgs/acme/actions/runner-groups/9", auth, nil); r.status != 404 {
		t.Errorf("get missing group: %d", r.status)
	}
	if r := call(t, "GET", s.URL()+"/orgs/acme/actions/runner-groups/1", "", nil); r.status != 401 {
		t.Errorf("get group without credentials: %d", r.status)
	}

	var repos struct {
		TotalCount   int              `json:"total_count"`
		Repositories []map[string]any `json:"repositories"`
	}
	r = call(t, "GET", s.URL()+"/orgs/acme/actions/runner-groups/2/repositories?per_page=1&page=2", auth, nil)
	r.json(t, &repos)
	if repos.TotalCount != 2 || len(repos.Repositories) != 1 || repos.Repositories[0]["full_name"] != "acme/site" ||
		repos.Repositories[0]["private"] != false || repos.Repositories[0]["visibility"] != "public" {
		t.Errorf("group 2 repositories page 2: %s", r.body)
	}

	// Listings and webhooks carry the visibility: private unless set.
	r = call(t, "GET", s.URL()+"/orgs/acme/repos", auth, nil)
	var orgRepos []map[string]any
	r.json(t, &orgRepos)
	seen := map[string]any{}
	for _, rp := range orgRepos {
		seen[rp["full_name"].(string)] = rp["visibility"]
	}
	if seen["acme/site"] != "public" {
		t.Errorf("org repos: %s", r.body)
	}
	h := newHook(t)
	s.SetWebhook(h.URL, []byte("secret"))
	s.QueueJob(JobSpec{Repo: "acme/site", Org: "acme", Labels: []string{"gpu"}})
	s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	ds, err := s.WaitDeliveries(ctxFor(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		private bool
		vis     string
	}{{false, "public"}, {true, "private"}} {
		var p struct {
			Repository struct {
				Private    *bool  `json:"private"`
				Visibility string `json:"visibility"`
			} `json:"repository"`
		}
		if err := json.Unmarshal(ds[i].Body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Repository.Private == nil || *p.Repository.Private != want.private || p.Repository.Visibility != want.vis {
			t.Errorf("webhook %d repository = %+v", i, p.Repository)
		}
	}
}

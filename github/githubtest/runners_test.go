package githubtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestAuthentication(t *testing.T) {
	s := newTestServer(t, Options{})
	url := s.URL() + "/orgs/acme/actions/runners"
	tests := []struct {
		name, auth string
		want       int
		message    string
	}{
		{"no header", "", 401, "Requires authentication"},
		{"unknown token", "Bearer ghp_wrong", 401, "Bad credentials"},
		{"basic auth", "Basic " + testToken, 401, "Requires authentication"},
		{"bearer", "Bearer " + testToken, 200, ""},
		{"token scheme", "token " + testToken, 200, ""},
		{"scheme in other case", "BEARER " + testToken, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, "GET", url, tt.auth, nil)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d (%s)", r.status, tt.want, r.body)
			}
			if tt.message != "" && r.message(t) != tt.message {
				t.Errorf("message %q, want %q", r.message(t), tt.message)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestGenerateJITConfigValidation(t *testing.T) {
	s := newTestServer(t, Options{})
	register(t, s, "/orgs/acme", "taken", "gpu")

	labels := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprint("l", i)
		}
		return out
	}
	tests := []struct {
		name   string
		prefix string
		body   any
		want   int
		msg    string // part of the message
	}{
		{"valid org", "/orgs/acme", map[string]any{"name": "a", "runner_group_id": 1, "labels": []string{"gpu"}}, 201, ""},
		{"valid repo", "/repos/acme/app", map[string]any{"name": "a", "runner_group_id": 1, "labels": []string{"gpu"}, "work_folder": "w"}, 201, ""},
		{"100 labels", "/orgs/acme", map[string]any{"name": "b", "runner_group_id": 1, "labels": labels(100)}, 201, ""},
		{"not JSON", "/orgs/acme", "{", 400, "Problems parsing JSON"},
		{"JSON array", "/orgs/acme", "[]", 400, "Problems parsing JSON"},
		{"no name", "/orgs/acme", map[string]any{"runner_group_id": 1, "labels": []string{"gpu"}}, 422, `"name" wasn't supplied`},
		{"empty name", "/orgs/acme", map[string]any{"name": " ", "runner_group_id": 1, "labels": []string{"gpu"}}, 422, "Name"},
		{"name not a string", "/orgs/acme", map[string]any{"name": 5, "runner_group_id": 1, "labels": []string{"gpu"}}, 422, "properties/name"},
		{"no group", "/orgs/acme", map[string]any{"name": "c", "labels": []string{"gpu"}}, 422, `"runner_group_id" wasn't supplied`},
		{"group as string", "/orgs/acme", map[string]any{"name": "c", "runner_group_id": "1", "labels": []string{"gpu"}}, 422, "properties/runner_group_id"},
		{"unknown group", "/orgs/acme", map[string]any{"name": "c", "runner_group_id": 7, "labels": []string{"gpu"}}, 404, "Not Found"},
		{"no labels", "/orgs/acme", map[string]any{"name": "c", "runner_group_id": 1}, 422, `"labels" wasn't supplied`},
		{"zero labels", "/orgs/acme", map[string]any{"name": "c", "runner_group_id": 1, "labels": []string{}}, 422, "at least 1"},
		{"101 labels", "/orgs/acme", map[string]any{"name": "c", "runner_group_id": 1, "labels": labels(101)}, 422, "maximum of 100"},
		{"labels not strings", "/orgs/acme", map[string]any{"name": "c", "runner_group_id": 1, "labels": []int{1}}, 422, "properties/labels"},
		{"empty label", "/orgs/acme", map[string]any{"name": "c", "runner_group_id": 1, "labels": []string{""}}, 422, "Label"},
		{"work_folder not a string", "/orgs/acme", map[string]any{"name": "c", "runner_group_id": 1, "labels": []string{"x"}, "work_folder": 1}, 422, "properties/work_folder"},
		{"name taken", "/orgs/acme", map[string]any{"name": "taken", "runner_group_id": 1, "labels": []string{"gpu"}}, 409,
			"Already exists - A runner with the name taken already exists."},
		{"name taken, other case", "/orgs/ACME", map[string]any{"name": "TAKEN", "runner_group_id": 1, "labels": []string{"gpu"}}, 409, "Already exists"},
		{"same name in another org", "/orgs/other", map[string]any{"name": "taken", "runner_group_id": 1, "labels": []string{"gpu"}}, 201, ""},
		{"same name in a repo", "/repos/acme/app", map[string]any{"name": "taken", "runner_group_id": 1, "labels": []string{"gpu"}}, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, "POST", s.URL()+tt.prefix+"/actions/runners/generate-jitconfig", "Bearer "+testToken, tt.body)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
			if tt.msg != "" && !strings.Contains(r.message(t), tt.msg) {
				t.Errorf("message %q lacks %q", r.message(t), tt.msg)
			}
		})
	}
}

func TestJITConfigContents(t *testing.T) {
	s := newTestServer(t, Options{})
	r := call(t, "POST", s.URL()+"/repos/acme/app/actions/runners/generate-jitconfig", "token "+testToken,
		map[string]any{"name": "gpu-1", "runner_group_id": 1, "labels": []string{"self-hosted", "A100"}})
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var resp struct {
		Runner           runnerJSON `json:"runner"`
		EncodedJITConfig string     `json:"encoded_jit_config"`
	}
	r.json(t, &resp)
	rn := resp.Runner
	if rn.ID == 0 || rn.Name != "gpu-1" || rn.OS != "unknown" || rn.Status != "offline" || rn.Busy || !rn.Ephemeral || rn.RunnerGroupID != 1 {
		t.Errorf("runner = %+v", rn)
	}
	// The read-only defaults first (self-hosted asked for as well is not
	// listed twice), then the custom labels.
	want := []labelJSON{{Name: "self-hosted", Type: "read-only"}, {Name: "Linux", Type: "read-only"},
		{Name: "X64", Type: "read-only"}, {Name: "A100", Type: "custom"}}
	if len(rn.Labels) != len(want) {
		t.Fatalf("labels = %+v, want %+v", rn.Labels, want)
	}
	for i, l := range rn.Labels {
		if l.Name != want[i].Name || l.Type != want[i].Type || l.ID == 0 {
			t.Errorf("labels = %+v, want %+v", rn.Labels, want)
		}
	}

	files := decodeJIT(t, resp.EncodedJITConfig)
	for _, name := range []string{".runner", ".credentials", ".credentials_rsaparams"} {
		if len(files[name]) == 0 {
			t.Errorf("JIT config lacks %s", name)
		}
	}
	var dot struct {
		AgentID    int64  `json:"agentId"`
		AgentName  string `json:"agentName"`
		PoolID     int64  `json:"poolId"`
		ServerURL  string `json:"serverUrl"`
		GitHubURL  string `json:"gitHubUrl"`
		WorkFolder string `json:"workFolder"`
		Ephemeral  bool   `json:"ephemeral"`
	}
	if err := json.Unmarshal(files[".runner"], &dot); err != nil {
		t.Fatal(err)
	}
	if dot.AgentID != rn.ID || dot.AgentName != "gpu-1" || dot.PoolID != 1 || dot.ServerURL != s.URL() ||
		dot.GitHubURL != s.URL()+"/acme/app" || dot.WorkFolder != "_work" || !dot.Ephemeral {
		t.Errorf(".runner = %+v", dot)
	}
	var creds struct {
		Scheme string
		Data   struct{ Token string }
	}
	if err := json.Unmarshal(files[".credentials"], &creds); err != nil {
		t.Fatal(err)
	}
	if creds.Scheme != "OAuth" || len(creds.Data.Token) < 32 {
		t.Errorf(".credentials = %+v", creds)
	}
	if strings.Contains(string(files[".runner"]), "\n") {
		t.Error(".runner must be one line for the fake run.sh to read it")
	}
}

func TestListRunnersPagination(t *testing.T) {
	// 252 registrations in a moment are over GitHub's secondary limit
	// (900 points a minute, 5 a POST); this test is about pages.
	s := newTestServer(t, Options{RateLimits: RateLimits{PointsPerMinute: 5000}})
	for i := range 250 {
		register(t, s, "/orgs/acme", fmt.Sprintf("r-%03d", i), "gpu")
	}
	register(t, s, "/orgs/other", "elsewhere", "gpu")
	register(t, s, "/repos/acme/app", "repo-runner", "gpu")

	list := func(query string) (runnersPage, response) {
		r := call(t, "GET", s.URL()+"/orgs/acme/actions/runners"+query, "Bearer "+testToken, nil)
		if r.status != 200 {
			t.Fatalf("list %s: %d %s", query, r.status, r.body)
		}
		var p runnersPage
		r.json(t, &p)
		return p, r
	}

	tests := []struct {
		query     string
		wantCount int
		wantFirst string
		wantNext  bool
	}{
		{"", 30, "r-000", true},
		{"?per_page=100", 100, "r-000", true},
		{"?per_page=100&page=2", 100, "r-100", true},
		{"?per_page=100&page=3", 50, "r-200", false},
		{"?per_page=100&page=4", 0, "", false},
		{"?per_page=500", 100, "r-000", true},
		{"?name=r-042", 1, "r-042", false},
		{"?name=nope", 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			p, r := list(tt.query)
			wantTotal := 250
			if strings.Contains(tt.query, "name=") {
				wantTotal = tt.wantCount
			}
			if p.TotalCount != wantTotal || len(p.Runners) != tt.wantCount {
				t.Fatalf("total_count %d, %d runners; want %d, %d", p.TotalCount, len(p.Runners), wantTotal, tt.wantCount)
			}
			if tt.wantCount > 0 && p.Runners[0].Name != tt.wantFirst {
				t.Errorf("first runner %q, want %q", p.Runners[0].Name, tt.wantFirst)
			}
			link := r.header.Get("Link")
			if got := strings.Contains(link, `rel="next"`); got != tt.wantNext {
				t.Errorf("Link %q: next=%v, want %v", link, got, tt.wantNext)
			}
		})
	}

	_, r := list("?per_page=100&page=2")
	link := r.header.Get("Link")
	for _, want := range []string{
		"<" + s.URL() + "/orgs/acme/actions/runners?page=3&per_page=100>; rel=\"next\"",
		"page=3&per_page=100>; rel=\"last\"",
		"page=1&per_page=100>; rel=\"prev\"",
		"page=1&per_page=100>; rel=\"first\"",
	} {
		if !strings.Contains(link, want) {
			t.Errorf("Link %q lacks %q", link, want)
		}
	}

	r = call(t, "GET", s.URL()+"/repos/acme/app/actions/runners", "Bearer "+testToken, nil)
	var p runnersPage
	r.json(t, &p)
	if p.TotalCount != 1 || p.Runners[0].Name != "repo-runner" {
		t.Errorf("repo runners = %+v", p)
	}
}

type runnersPage struct {
	TotalCount int          `json:"total_count"`
	Runners    []runnerJSON `json:"runners"`
}

func TestGetAndDeleteRunner(t *testing.T) {
	s := newTestServer(t, Options{})
	rn := register(t, s, "/orgs/acme", "one", "gpu")
	busy := register(t, s, "/repos/acme/app", "busy", "gpu")
	base := s.URL() + "/orgs/acme/actions/runners/"
	auth := "Bearer " + testToken

	if r := call(t, "GET", base+itoa(rn.ID), auth, nil); r.status != 200 {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	for _, path := range []string{"/orgs/acme/actions/runners/999", "/orgs/other/actions/runners/" + itoa(rn.ID),
		"/repos/acme/app/actions/runners/" + itoa(rn.ID), "/orgs/acme/actions/runners/x"} {
		if r := call(t, "GET", s.URL()+path, auth, nil); r.status != 404 || r.message(t) != "Not Found" {
			t.Errorf("GET %s: %d %s, want 404", path, r.status, r.body)
		}
	}

	// A runner running a job cannot be deleted.
	s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	if _, a := poll(t, s, busy); a.Action != "job" {
		t.Fatalf("poll = %+v, want a job", a)
	}
	r := call(t, "DELETE", s.URL()+"/repos/acme/app/actions/runners/"+itoa(busy.ID), auth, nil)
	if r.status != 422 || !strings.Contains(r.message(t), "still running a job") {
		t.Errorf("delete busy: %d %s", r.status, r.body)
	}

	if r := call(t, "DELETE", base+itoa(rn.ID), auth, nil); r.status != 204 || len(r.body) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := call(t, "DELETE", base+itoa(rn.ID), auth, nil); r.status != 404 {
		t.Errorf("delete again: %d, want 404", r.status)
	}
	if r := call(t, "GET", base+itoa(rn.ID), auth, nil); r.status != 404 {
		t.Errorf("get deleted: %d, want 404", r.status)
	}
	// The deleted runner's next poll tells it to go.
	if code, _ := poll(t, s, rn); code != 404 {
		t.Errorf("poll of deleted runner: %d, want 404", code)
	}
}

func TestUnknownPathsAnswerJSON404(t *testing.T) {
	s := newTestServer(t, Options{})
	r := call(t, "GET", s.URL()+"/nope", "Bearer "+testToken, nil)
	if r.status != 404 || r.message(t) != "Not Found" {
		t.Errorf("%d %s", r.status, r.body)
	}
}

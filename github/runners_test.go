package github_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func fmtV(v any) string { return fmt.Sprintf("%v %+v", v, v) }

func TestRunnerLifecycle(t *testing.T) {
	scopes := []provisioner.Scope{
		{Org: "acme"},
		{Repo: "acme/app"},
		{Repo: "bob/tool"},
	}
	for _, m := range modes {
		for _, scope := range scopes {
			t.Run(m.name+"/"+scope.Key(), func(t *testing.T) {
				fake, c, _ := m.setup(t)
				ctx := ctxFor(t)
				labels := []string{"self-hosted", "linux", "x64", "crabbox", "a100"}

				jit, err := c.GenerateJITConfig(ctx, scope, "lease-1", labels)
				if err != nil {
					t.Fatal(err)
				}
				if jit.RunnerID == 0 || jit.RunnerName != "lease-1" || jit.Encoded == "" {
					t.Fatalf("jit = %s (id %d)", jit, jit.RunnerID)
				}
				rs := fake.Runners()
				if len(rs) != 1 || rs[0].ID != jit.RunnerID || !slices.Equal(rs[0].Labels, labels) || rs[0].GroupID != 1 ||
					rs[0].Org != scope.Org || rs[0].Repo != scope.Repo {
					t.Fatalf("fake runners = %+v", rs)
				}

				r, err := c.Runner(ctx, scope, jit.RunnerID)
				if err != nil {
					t.Fatal(err)
				}
				// The fake adds GitHub's read-only default labels (Linux,
				// X64) in their own spelling; every label asked for is there.
				if r.Name != "lease-1" || r.Status != "offline" || r.Online() || r.Busy || !coversLabels(r.Labels, labels) {
					t.Errorf("Runner = %+v", r)
				}
				byName, err := c.RunnerByName(ctx, scope, "lease-1")
				if err != nil || byName.ID != jit.RunnerID {
					t.Errorf("RunnerByName = %+v, %v", byName, err)
				}
				if _, err := c.RunnerByName(ctx, scope, "lease-2"); !errors.Is(err, provisioner.ErrNotFound) {
					t.Errorf("RunnerByName(unknown): %v, want ErrNotFound", err)
				}
				all, err := c.ListRunners(ctx, scope)
				if err != nil || len(all) != 1 || all[0].ID != jit.RunnerID {
					t.Errorf("ListRunners = %+v, %v", all, err)
				}

				if err := c.RemoveRunner(ctx, scope, jit.RunnerID); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Runner(ctx, scope, jit.RunnerID); !errors.Is(err, provisioner.ErrNotFound) {
					t.Errorf("Runner after removal: %v, want ErrNotFound", err)
				}
				if err := c.RemoveRunner(ctx, scope, jit.RunnerID); err != nil {
					t.Errorf("removing a removed runner: %v, want nil", err)
				}
				if all, err := c.ListRunners(ctx, scope); err != nil || len(all) != 0 {
					t.Errorf("ListRunners after removal = %+v, %v", all, err)
				}
			})
		}
	}
}

func TestJITRequestFields(t *testing.T) {
	var body map[string]any
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}})
	t.Cleanup(fake.Close)
	// A proxy in front of the fake that keeps the JIT request body.
	proxy := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		if strings.HasSuffix(r.URL.Path, "/generate-jitconfig") {
			json.Unmarshal(data, &body)
		}
		req, _ := http.NewRequest(r.Method, fake.URL()+r.URL.RequestURI(), strings.NewReader(string(data)))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			w.WriteHeader(502)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	c, err := github.New(github.Config{APIURL: proxy.URL, Token: testToken, RunnerGroupID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateJITConfig(ctxFor(t), provisioner.Scope{Org: "acme"}, "n", []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if body["name"] != "n" || body["runner_group_id"] != 1.0 || body["work_folder"] != "_work" || fmt.Sprint(body["labels"]) != "[a b]" {
		t.Errorf("request body = %v", body)
	}
}

func TestGenerateJITConfigReplacesALeftoverRunner(t *testing.T) {
	fake, c, rec := modes[0].setup(t)
	ctx := ctxFor(t)
	scope := provisioner.Scope{Org: "acme"}
	first, err := c.GenerateJITConfig(ctx, scope, "lease-x", []string{"gpu"})
	if err != nil {
		t.Fatal(err)
	}
	// The answer to the first attempt was "lost"; the retry hits 409.
	second, err := c.GenerateJITConfig(ctx, scope, "lease-x", []string{"gpu"})
	if err != nil {
		t.Fatal(err)
	}
	if second.RunnerID == first.RunnerID || second.Encoded == first.Encoded {
		t.Errorf("the retry must register a new runner: %d vs %d", first.RunnerID, second.RunnerID)
	}
	rs := fake.Runners()
	if len(rs) != 1 || rs[0].ID != second.RunnerID {
		t.Errorf("fake runners = %+v, want only %d", rs, second.RunnerID)
	}
	for req, want := range map[string]int{
		"POST /orgs/acme/actions/runners/generate-jitconfig":                         3,
		"GET /orgs/acme/actions/runners":                                             1,
		"DELETE /orgs/acme/actions/runners/" + strconv.FormatInt(first.RunnerID, 10): 1,
	} {
		if got := rec.count(req); got != want {
			t.Errorf("%s sent %d times, want %d", req, got, want)
		}
	}
}

// takeJob makes the runner of jit poll the fake with a job queued for it,
// so that it is busy.
func takeJob(t *testing.T, fake *githubtest.Server, jit *provisioner.JITConfig, repo string, labels []string) {
	t.Helper()
	outer, _ := base64.StdEncoding.DecodeString(jit.Encoded)
	var files map[string]string
	json.Unmarshal(outer, &files)
	credsJSON, _ := base64.StdEncoding.DecodeString(files[".credentials"])
	var creds struct{ Data struct{ Token string } }
	json.Unmarshal(credsJSON, &creds)

	owner, _, _ := strings.Cut(repo, "/")
	id := fake.QueueJob(githubtest.JobSpec{Repo: repo, Org: owner, Labels: labels})
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/_fake/runner/%d/poll", fake.URL(), jit.RunnerID), strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+creds.Data.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if j, _ := fake.Job(id); j.RunnerID != jit.RunnerID {
		t.Fatalf("runner %d did not take job %d: %+v", jit.RunnerID, id, j)
	}
}

func TestBusyRunners(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			fake, c, _ := m.setup(t)
			ctx := ctxFor(t)
			scope := provisioner.Scope{Repo: "acme/app"}
			jit, err := c.GenerateJITConfig(ctx, scope, "busy-1", []string{"gpu"})
			if err != nil {
				t.Fatal(err)
			}
			takeJob(t, fake, jit, "acme/app", []string{"gpu"})

			r, err := c.Runner(ctx, scope, jit.RunnerID)
			if err != nil || !r.Busy || !r.Online() {
				t.Errorf("Runner = %+v, %v; want online and busy", r, err)
			}
			err = c.RemoveRunner(ctx, scope, jit.RunnerID)
			if !errors.Is(err, github.ErrRunnerBusy) || !strings.Contains(err.Error(), "busy") {
				t.Errorf("RemoveRunner(busy) = %v, want ErrRunnerBusy", err)
			}
			// A busy runner holding the name cannot be replaced.
			_, err = c.GenerateJITConfig(ctx, scope, "busy-1", []string{"gpu"})
			if !errors.Is(err, github.ErrRunnerBusy) {
				t.Errorf("GenerateJITConfig over a busy runner = %v, want ErrRunnerBusy", err)
			}
		})
	}
}

func TestInvalidArguments(t *testing.T) {
	_, c, rec := modes[0].setup(t)
	ctx := ctxFor(t)
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprint("l", i)
	}
	tests := []struct {
		name   string
		scope  provisioner.Scope
		runner string
		labels []string
		want   string
	}{
		{"no name", provisioner.Scope{Org: "acme"}, "", []string{"x"}, "needs a name"},
		{"no labels", provisioner.Scope{Org: "acme"}, "n", nil, "1 to 100 labels"},
		{"101 labels", provisioner.Scope{Org: "acme"}, "n", many, "1 to 100 labels"},
		{"empty scope", provisioner.Scope{}, "n", []string{"x"}, "needs an org"},
		{"repo without owner", provisioner.Scope{Repo: "app"}, "n", []string{"x"}, "not owner/name"},
		{"repo with extra slash", provisioner.Scope{Repo: "a/b/c"}, "n", []string{"x"}, "not owner/name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.GenerateJITConfig(ctx, tt.scope, tt.runner, tt.labels)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.requests) != 0 {
		t.Errorf("invalid arguments must not reach GitHub: %v", rec.requests)
	}
}

func TestListRunnersFollowsEveryPage(t *testing.T) {
	// 251 registrations at once are over GitHub's secondary limit (900
	// points a minute, 5 a POST); this test is about pages.
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}, Logf: t.Logf, RateLimits: githubtest.RateLimits{PointsPerMinute: 5000}})
	t.Cleanup(fake.Close)
	rec := &recorder{}
	c, err := github.New(github.Config{APIURL: fake.URL(), Token: testToken, HTTPClient: &http.Client{Transport: rec}, JITPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	scope := provisioner.Scope{Org: "acme"}
	for i := range 250 {
		if _, err := c.GenerateJITConfig(ctx, scope, fmt.Sprintf("r-%03d", i), []string{"gpu"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.GenerateJITConfig(ctx, provisioner.Scope{Org: "other"}, "elsewhere", []string{"gpu"}); err != nil {
		t.Fatal(err)
	}
	all, err := c.ListRunners(ctx, scope)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, r := range all {
		seen[r.ID] = true
	}
	if len(all) != 250 || len(seen) != 250 {
		t.Errorf("ListRunners returned %d runners (%d distinct), want 250", len(all), len(seen))
	}
	if got := rec.count("GET /orgs/acme/actions/runners"); got != 3 {
		t.Errorf("%d list requests, want 3 pages of 100", got)
	}
	_ = fake
}

// authRecorder keeps every credential the client sends, to check that no
// error repeats one.
type authRecorder struct {
	recorder
	creds []string
}

func (a *authRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if h := req.Header.Get("Authorization"); h != "" {
		_, cred, _ := strings.Cut(h, " ")
		a.mu.Lock()
		a.creds = append(a.creds, cred)
		a.mu.Unlock()
	}
	return a.recorder.RoundTrip(req)
}

func TestErrorsNeverContainSecrets(t *testing.T) {
	key, pemBytes := testAppKey(t)
	fake := githubtest.New(githubtest.Options{
		Tokens:        []string{testToken},
		AppID:         appID,
		AppPublicKey:  &key.PublicKey,
		Installations: map[string]int64{"acme": 11},
	})
	t.Cleanup(fake.Close)
	ctx := ctxFor(t)
	org := provisioner.Scope{Org: "acme"}

	wrongToken := "ghp_wrongtoken_abcdefghijklmnop"
	ar := &authRecorder{}
	clients := map[string]github.Config{
		"right token":    {APIURL: fake.URL(), Token: testToken},
		"wrong token":    {APIURL: fake.URL(), Token: wrongToken},
		"app":            {APIURL: fake.URL(), AppID: appID, AppPrivateKey: pemBytes},
		"unknown app":    {APIURL: fake.URL(), AppID: appID + 1, AppPrivateKey: pemBytes},
		"bad group":      {APIURL: fake.URL(), Token: testToken, RunnerGroupID: 99},
		"server is gone": {APIURL: "http://127.0.0.1:1", Token: testToken},
	}
	var errs []error
	var secrets []string
	for name, cfg := range clients {
		cfg.HTTPClient = &http.Client{Transport: ar}
		c, err := github.New(cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		jit, err := c.GenerateJITConfig(ctx, org, "dup", []string{"gpu"})
		if jit != nil {
			secrets = append(secrets, jit.Encoded)
		}
		errs = append(errs, err)
		_, err = c.GenerateJITConfig(ctx, provisioner.Scope{Repo: "acme/app"}, "busy", []string{"gpu"})
		errs = append(errs, err)
		_, err = c.Runner(ctx, org, 987654)
		errs = append(errs, err)
		_, err = c.RunnerByName(ctx, org, "nope")
		errs = append(errs, err)
		_, err = c.ListRunners(ctx, provisioner.Scope{Org: "not-installed"})
		errs = append(errs, err)
		errs = append(errs, c.RemoveRunner(ctx, org, 987654))
	}
	// A busy runner, so that the 422 and 409 paths produce errors too.
	c, _ := github.New(github.Config{APIURL: fake.URL(), Token: testToken, HTTPClient: &http.Client{Transport: ar}})
	jit, err := c.GenerateJITConfig(ctx, provisioner.Scope{Repo: "acme/app"}, "busy-2", []string{"gpu"})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, jit.Encoded)
	takeJob(t, fake, jit, "acme/app", []string{"gpu"})
	_, err = c.GenerateJITConfig(ctx, provisioner.Scope{Repo: "acme/app"}, "busy-2", []string{"gpu"})
	errs = append(errs, err, c.RemoveRunner(ctx, provisioner.Scope{Repo: "acme/app"}, jit.RunnerID))

	ar.mu.Lock()
	secrets = append(secrets, ar.creds...)
	ar.mu.Unlock()
	secrets = append(secrets, testToken, wrongToken, string(pemBytes[30:90]))
	var n int
	for _, err := range errs {
		if err == nil {
			continue
		}
		n++
		t.Logf("error: %v", err)
		for _, s := range secrets {
			if s != "" && strings.Contains(err.Error(), s) {
				t.Errorf("error %q holds a secret", err)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d errors to check; the test lost its teeth", n)
	}
}

func TestUnknownRunnerGroup(t *testing.T) {
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}})
	t.Cleanup(fake.Close)
	c, err := github.New(github.Config{APIURL: fake.URL(), Token: testToken, RunnerGroupID: 99})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GenerateJITConfig(ctxFor(t), provisioner.Scope{Org: "acme"}, "n", []string{"gpu"})
	if err == nil || !strings.Contains(err.Error(), "runner group 99") || errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("GenerateJITConfig with an unknown group: %v", err)
	}
}

// Registrations beyond the pace wait their turn, and the wait is reported;
// none fails.
func TestJITRegistrationsArePaced(t *testing.T) {
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}})
	defer fake.Close()
	var mu sync.Mutex
	var waited []time.Duration
	// 600 a minute = 10 a second with a burst of 60.
	c, err := github.New(github.Config{APIURL: fake.URL(), Token: testToken, JITPerMinute: 600,
		OnLimitWait: func(limit string, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if limit == "github_jit" {
				waited = append(waited, d)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	for i := range 65 {
		if _, err := c.GenerateJITConfig(ctx, provisioner.Scope{Org: "acme"}, fmt.Sprintf("paced-%d", i), []string{"gpu"}); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waited) < 4 {
		t.Fatalf("%d registrations waited; the burst is 60 of 65", len(waited))
	}
}

// coversLabels reports whether have holds every label of want, ignoring
// case, as GitHub matches labels.
func coversLabels(have, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, w) }) {
			return false
		}
	}
	return true
}

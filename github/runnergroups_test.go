package github_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// fakeClock is a settable clock for the runner-group cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type groupsSetup struct {
	fake  *githubtest.Server
	c     *github.Client
	rec   *recorder
	clock *fakeClock
	log   *syncBuffer
}

func newGroupsSetup(t *testing.T, groupID int64, opts githubtest.Options) groupsSetup {
	t.Helper()
	opts.Tokens = []string{testToken}
	fake := githubtest.New(opts)
	t.Cleanup(fake.Close)
	rec := &recorder{}
	logs := &syncBuffer{}
	c, err := github.New(github.Config{APIURL: fake.URL(), Token: testToken, RunnerGroupID: groupID,
		HTTPClient: &http.Client{Transport: rec}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	github.SetClock(c, clock.now)
	return groupsSetup{fake, c, rec, clock, logs}
}

var acme = provisioner.Scope{Org: "acme"}

func TestGroupServesVerdicts(t *testing.T) {
	var selected []string
	for i := range 150 {
		selected = append(selected, fmt.Sprintf("acme/r%03d", i))
	}
	selected = append(selected, "acme/App")
	groups := []githubtest.RunnerGroup{
		{ID: 1, Name: "Default", Default: true},
		{ID: 2, Name: "open", AllowsPublicRepositories: true},
		{ID: 3, Name: "gpu", Visibility: githubtest.GroupVisibilitySelected, SelectedRepositories: selected},
		{ID: 4, Name: "priv", Visibility: githubtest.GroupVisibilityPrivate, AllowsPublicRepositories: true},
		{ID: 5, Name: "no-vis", OmitFields: []string{"visibility"}, AllowsPublicRepositories: true},
		{ID: 6, Name: "odd-vis", RawVisibility: "everyone", AllowsPublicRepositories: true},
		{ID: 7, Name: "no-public-field", OmitFields: []string{"allows_public_repositories"}},
	}
	tests := []struct {
		group     int64
		repo, vis string
		ok        bool
		reason    string // a part of the reason when not ok
	}{
		{1, "acme/app", "private", true, ""},
		{1, "acme/app", "internal", true, ""},
		{1, "acme/site", "public", false, "does not allow public repositories"},
		{1, "acme/site", "", false, "unknown visibility, taken as public"},
		{2, "acme/site", "public", true, ""},
		{3, "acme/app", "private", true, ""},  // selected names ignore case
		{3, "acme/r149", "private", true, ""}, // on the second page
		{3, "acme/web", "private", false, "limited to selected repositories and acme/web is not one of them"},
		{3, "acme/app", "public", false, "does not allow public repositories"},
		{4, "acme/app", "private", true, ""},
		{4, "acme/app", "internal", false, "serves private repositories only"},
		{5, "acme/app", "private", false, "has no visibility"},
		{6, "acme/app", "private", false, `visibility "everyone"`},
		{7, "acme/app", "private", true, ""},
		{7, "acme/site", "public", false, "does not say whether it allows public repositories"},
		{9, "acme/app", "private", false, "runner group 9 does not exist in org acme"},
		{1, "other/app", "private", false, "not in org acme"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("group%d/%s/%s", tt.group, tt.repo, tt.vis), func(t *testing.T) {
			s := newGroupsSetup(t, tt.group, githubtest.Options{Groups: groups})
			ok, reason, err := s.c.GroupServes(ctxFor(t), acme, tt.repo, tt.vis)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok || (!ok && !strings.Contains(reason, tt.reason)) || (ok && reason != "") {
				t.Errorf("GroupServes = %v, %q; want %v, …%q…", ok, reason, tt.ok, tt.reason)
			}
		})
	}
}

// One group record per TTL per org, whatever the number of questions; the
// selected list is read with it (100 a page) and only for a selected group.
func TestGroupServesIsCachedAndCheap(t *testing.T) {
	var selected []string
	for i := range 250 {
		selected = append(selected, fmt.Sprintf("acme/r%03d", i))
	}
	s := newGroupsSetup(t, 3, githubtest.Options{Groups: []githubtest.RunnerGroup{
		{ID: 3, Name: "gpu", Visibility: githubtest.GroupVisibilitySelected, SelectedRepositories: selected},
	}})
	ctx := ctxFor(t)
	const groupPath = "GET /orgs/acme/actions/runner-groups/3"
	const reposPath = "GET /orgs/acme/actions/runner-groups/3/repositories"

	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repo := fmt.Sprintf("acme/r%03d", i)
			ok, reason, err := s.c.GroupServes(ctx, acme, repo, "private")
			if err != nil || ok != (i < 250) {
				t.Errorf("%s: %v %q %v", repo, ok, reason, err)
			}
		}()
	}
	wg.Wait()
	g, r := s.rec.count(groupPath), s.rec.count(reposPath)
	t.Logf("300 concurrent questions about 300 repositories, selected group of 250: %d group + %d repository-list requests", g, r)
	if g != 1 || r != 3 {
		t.Fatalf("300 questions cost %d group and %d repository-list requests, want 1 and 3", g, r)
	}

	// Within the TTL a change is not seen; after it, it is, for the same
	// small cost.
	s.fake.SetRunnerGroup(githubtest.RunnerGroup{ID: 3, Name: "gpu", Visibility: githubtest.GroupVisibilityAll})
	s.clock.add(github.DefaultRunnerGroupTTL - time.Second)
	if ok, _, _ := s.c.GroupServes(ctx, acme, "acme/new", "private"); ok {
		t.Error("a change was seen before the TTL ran out")
	}
	s.clock.add(2 * time.Second)
	if ok, reason, err := s.c.GroupServes(ctx, acme, "acme/new", "private"); !ok || err != nil {
		t.Errorf("after the group opened to all: %v %q %v", ok, reason, err)
	}
	if g, r := s.rec.count(groupPath), s.rec.count(reposPath); g != 2 || r != 3 {
		t.Errorf("after a refresh: %d group and %d list requests, want 2 and 3 (an 'all' group needs no list)", g, r)
	}

	// Repository runners serve their own repository: no request.
	before := len(s.rec.requests)
	if ok, _, err := s.c.GroupServes(ctx, provisioner.Scope{Repo: "acme/site"}, "acme/site", "public"); !ok || err != nil {
		t.Errorf("repo scope: %v %v", ok, err)
	}
	if len(s.rec.requests) != before {
		t.Error("a repo-scope question cost a request")
	}
}

// An odd answer is logged once, not on every refresh, and never gives ok.
func TestGroupServesOddAnswerLoggedOnce(t *testing.T) {
	s := newGroupsSetup(t, 5, githubtest.Options{Groups: []githubtest.RunnerGroup{
		{ID: 5, Name: "odd", RawVisibility: "everyone", OmitFields: []string{"allows_public_repositories"}},
	}})
	ctx := ctxFor(t)
	for range 3 {
		if ok, _, err := s.c.GroupServes(ctx, acme, "acme/app", "private"); ok || err != nil {
			t.Fatalf("odd group: ok=%v err=%v", ok, err)
		}
		s.clock.add(github.DefaultRunnerGroupTTL + time.Second)
	}
	out := s.log.String()
	if n := strings.Count(out, "runner group answer is odd"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(out, `unknown visibility \"everyone\"`) || !strings.Contains(out, "no allows_public_repositories field") {
		t.Errorf("log line does not say what is odd:\n%s", out)
	}
	if s.rec.count("GET /orgs/acme/actions/runner-groups/5") != 3 {
		t.Errorf("requests: %v", s.rec.requests)
	}
}

// When GitHub cannot answer the caller gets an error (it rents nothing),
// and the error is kept for a short while rather than retried at once.
func TestGroupServesErrors(t *testing.T) {
	fake := githubtest.New(githubtest.Options{Tokens: []string{testToken}})
	t.Cleanup(fake.Close)
	rec := &recorder{}
	c, err := github.New(github.Config{APIURL: fake.URL(), Token: "wrong-token", HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	github.SetClock(c, clock.now)
	ctx := ctxFor(t)
	ok, _, err := c.GroupServes(ctx, acme, "acme/app", "private")
	if ok || err == nil || strings.Contains(err.Error(), "wrong-token") {
		t.Fatalf("bad credentials: ok=%v err=%v", ok, err)
	}
	if ok, _, err2 := c.GroupServes(ctx, acme, "acme/app", "private"); ok || err2 == nil {
		t.Fatalf("second ask: %v %v", ok, err2)
	}
	if n := rec.count("GET /orgs/acme/actions/runner-groups/1"); n != 1 {
		t.Errorf("an error was retried at once: %d requests", n)
	}
	clock.add(31 * time.Second)
	c.GroupServes(ctx, acme, "acme/app", "private")
	if n := rec.count("GET /orgs/acme/actions/runner-groups/1"); n != 2 {
		t.Errorf("after 31s: %d requests, want 2", n)
	}
}

// With an App, the installation's token reads the group; an installation
// without organization_self_hosted_runners gets 403, which is an error
// (GitHub could not say), never ok.
func TestGroupServesAppMode(t *testing.T) {
	_, c := appClient(t, githubtest.Options{Installations: map[string]int64{"acme": 11, "beta": 12},
		RepoVisibility:          map[string]string{"acme/site": "public"},
		InstallationPermissions: map[int64]map[string]string{12: {"actions": "read"}}})
	ctx := ctxFor(t)
	if ok, reason, err := c.GroupServes(ctx, provisioner.Scope{Org: "acme", InstallationID: 11}, "acme/app", "private"); !ok || err != nil {
		t.Errorf("private repo: %v %q %v", ok, reason, err)
	}
	if ok, _, err := c.GroupServes(ctx, provisioner.Scope{Org: "acme"}, "acme/site", "public"); ok || err != nil {
		t.Errorf("public repo: %v %v", ok, err)
	}
	ok, _, err := c.GroupServes(ctx, provisioner.Scope{Org: "beta", InstallationID: 12}, "beta/app", "private")
	if ok || err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("installation without the permission: %v %v", ok, err)
	}
}

// A workflow restriction cannot be checked: the verdict stands on the rest,
// and one log line says so.
func TestGroupServesWorkflowRestriction(t *testing.T) {
	s := newGroupsSetup(t, 1, githubtest.Options{Groups: []githubtest.RunnerGroup{
		{ID: 1, Name: "Default", RestrictedToWorkflows: true, SelectedWorkflows: []string{"acme/app/.github/workflows/gpu.yml@main"}},
	}})
	ctx := ctxFor(t)
	for range 2 {
		if ok, reason, err := s.c.GroupServes(ctx, acme, "acme/app", "private"); !ok || err != nil {
			t.Fatalf("restricted group, private repo: %v %q %v", ok, reason, err)
		}
		s.clock.add(github.DefaultRunnerGroupTTL + time.Second)
	}
	out := s.log.String()
	if n := strings.Count(out, "limited to selected workflows"); n != 1 || strings.Contains(out, "answer is odd") {
		t.Errorf("log:\n%s", out)
	}
}

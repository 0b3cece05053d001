package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// Issue 13, through serve: who may spend (class policy), runner groups
// that cannot serve a repository, and jobs no runner gets (no lease loop).

// withPolicy sets startServe's knobs for one test.
func withPolicy(t *testing.T, idle, extra string, tune func(*provisioner.Config)) {
	t.Helper()
	if idle != "" {
		e2eIdleTimeout = idle
	}
	e2eExtraYAML, e2eTune = extra, tune
	t.Cleanup(func() { e2eIdleTimeout, e2eExtraYAML, e2eTune = "5m", "", nil })
}

// notServed runs `leases --not-served --output json`.
func (e *e2e) notServed() []notServedJSON {
	e.t.Helper()
	code, out, errs := runCLI(e.t, e.env, "leases", "--not-served", "--output", "json")
	if code != 0 {
		e.t.Fatalf("leases --not-served: %d %s", code, errs)
	}
	var jobs []notServedJSON
	if err := json.Unmarshal([]byte(out), &jobs); err != nil {
		e.t.Fatalf("leases --not-served: %v\n%s", err, out)
	}
	return jobs
}

func (e *e2e) notServedKind(id int64) string {
	for _, j := range e.notServed() {
		if j.JobID == id {
			return j.Kind
		}
	}
	return ""
}

// deliveryAnswers lists the status codes serve gave the job's deliveries.
func (e *e2e) deliveryAnswers(id int64) []int {
	var out []int
	for _, d := range e.gh.Deliveries() {
		if d.JobID == id && d.StatusCode != 0 {
			out = append(out, d.StatusCode)
		}
	}
	return out
}

func (e *e2e) queueIn(repo string, labels ...string) int64 {
	if len(labels) == 0 {
		labels = []string{"self-hosted", "crabbox", "A100"}
	}
	owner, _, _ := strings.Cut(repo, "/")
	return e.gh.QueueJob(githubtest.JobSpec{Repo: repo, Org: owner, Labels: labels, Name: "train", Script: `echo trained`})
}

func TestServePublicRepositoryRefusedThenAllowed(t *testing.T) {
	withPolicy(t, "", "", nil)
	e := startServe(t, "60s", nil)
	e.gh.SetRepoVisibility("acme/open", "public")
	id := e.queueIn("acme/open")
	e.waitFor("the delivery answered", 20*time.Second, func() bool { return len(e.deliveryAnswers(id)) > 0 })
	if got := e.deliveryAnswers(id); got[0] != 200 {
		t.Fatalf("a refused job is answered %v, want 200 (never 4xx: GitHub does not retry)", got)
	}
	e.waitFor("the refusal listed", 10*time.Second, func() bool { return e.notServedKind(id) == "public_repository" })
	time.Sleep(time.Second)
	if n := len(e.leases()); n != 0 {
		t.Fatalf("%d leases for a public repository's job", n)
	}
	page := e.get("/")
	if !strings.Contains(page, "Jobs not served") || !strings.Contains(page, "acme/open") || !strings.Contains(page, "public_repository") {
		t.Fatalf("status page does not show the refusal:\n%s", page)
	}
	if m := e.get("/metrics"); !strings.Contains(m, `crabbox_jobs_refused_total{class="a100",reason="public_repository"} 1`) {
		t.Fatalf("metric:\n%s", grepLines(m, "crabbox_jobs_refused_total"))
	}
	if n := strings.Count(e.logs.String(), `"msg":"job not served"`); n != 1 {
		t.Fatalf("%d log lines for the refusal, want 1", n)
	}

	// The class now allows public repositories, and so does the org's
	// runner group (GitHub's default is not to; without it the group check
	// would refuse the job next): at start, the job is judged again and
	// served.
	e.gh.SetRunnerGroup(githubtest.RunnerGroup{ID: 1, Name: "Default", Org: "acme", Default: true, AllowsPublicRepositories: true})
	e.stop()
	cfg := mustRead(t, e.cfgPath)
	writeFile(t, e.cfgPath, strings.Replace(cfg, "    max_lifetime: 30m\n", "    max_lifetime: 30m\n    public_repositories: true\n", 1))
	e.runServe(strings.TrimPrefix(e.url, "http://"), e.env)
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job: %+v", job)
	}
	if n := len(e.leases()); n != 1 {
		t.Fatalf("%d leases, want 1", n)
	}
	if k := e.notServedKind(id); k != "" {
		t.Fatalf("still listed as not served: %s", k)
	}
	e.waitClean()
}

func TestServeRepositoriesAndDefaultLabels(t *testing.T) {
	withPolicy(t, "", "    repositories: [ACME/vision]\n", nil)
	e := startServe(t, "60s", nil)
	// The default-label jobs are queued where no runner of ours registers:
	// GitHub routes by labels, and every runner has the default ones, so
	// in acme one of our runners could take them (as on GitHub).
	outside := e.queueIn("evil/ml")
	defaults := e.queueIn("solo/vision", "self-hosted")
	defaultsToo := e.queueIn("solo/vision", "self-hosted", "linux", "X64")
	ok := e.queueIn("acme/vision")
	if job := e.waitJob(ok); job.Conclusion != "success" {
		t.Fatalf("job of an allowed repository: %+v", job)
	}
	e.waitFor("refusals listed", 10*time.Second, func() bool { return len(e.notServed()) == 3 })
	t.Logf("not served: %+v", e.notServed())
	for id, want := range map[int64]string{outside: "repository_not_allowed", defaults: "default_labels_only", defaultsToo: "default_labels_only"} {
		if got := e.notServedKind(id); got != want {
			t.Errorf("job %d: %q, want %q", id, got, want)
		}
		for _, code := range e.deliveryAnswers(id) {
			if code != 200 {
				t.Errorf("job %d answered %d", id, code)
			}
		}
	}
	if n := len(e.leases()); n != 1 {
		t.Fatalf("%d leases, want 1 (the allowed job's)", n)
	}
	for _, id := range []int64{outside, defaults, defaultsToo} {
		if j, _ := e.gh.Job(id); j.Status != githubtest.StatusQueued {
			t.Errorf("refused job %d is %s on GitHub", id, j.Status)
		}
	}
	e.waitClean()
}

func TestServeBadRepositoryPatternIsAConfigError(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/c.yaml"
	writeFile(t, path, `deployment: e2e
runner: {version: "2.330.0", sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
classes:
  - name: a100
    labels: [self-hosted, a100]
    providers: [local]
    repositories: [acme/ml*]
`)
	code, _, errs := runCLI(t, map[string]string{"CRABBOX_CONFIG": path, "CRABBOX_WEBHOOK_SECRET": "0123456789abcdef", "CRABBOX_GITHUB_TOKEN": "t"},
		"serve", "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, "classes[0] (a100).repositories[0]") {
		t.Fatalf("serve with a bad pattern: exit %d, %s", code, errs)
	}
}

// groupsStub is a RunnerGroups whose answer the test sets, until part D's
// github implementation is wired in serve.
// TestServeRunnerGroupCannotServe runs serve's own GitHub client against the
// fake's runner groups: the org's default group is limited to selected
// repositories without acme/vision, so the job gets no lease and the reason
// is shown; once an admin opens the group, the next reconcile leases for it.
func TestServeRunnerGroupCannotServe(t *testing.T) {
	withPolicy(t, "", "reconcile: {interval: 2s}\n", nil)
	e := startServeWith(t, serveSetup{bootTimeout: "60s",
		tuneGitHub: func(c *github.Config) { c.RunnerGroupTTL = time.Second }})
	group := githubtest.RunnerGroup{ID: 1, Name: "Default", Org: "acme", Default: true,
		Visibility: "selected", SelectedRepositories: []string{"acme/other"}}
	e.gh.SetRunnerGroup(group)
	id := e.queue("train")
	e.waitFor("the reason listed", 20*time.Second, func() bool { return e.notServedKind(id) == "runner_group" })
	for _, j := range e.notServed() {
		if j.JobID == id && !strings.Contains(j.Reason, "acme/vision is not one of them") {
			t.Fatalf("reason %q", j.Reason)
		}
	}
	time.Sleep(3 * time.Second) // a reconcile pass goes by, the group asked again
	if n := len(e.leases()); n != 0 {
		t.Fatalf("%d leases for a job the runner group cannot serve", n)
	}
	if page := e.get("/"); !strings.Contains(page, "acme/vision is not one of them") {
		t.Fatal("status page does not show the runner group's reason")
	}
	// The admin adds the repository: the next reconcile leases, and the
	// fake, which holds runners to their group, gives our runner the job.
	group.SelectedRepositories = append(group.SelectedRepositories, "acme/vision")
	e.gh.SetRunnerGroup(group)
	if job := e.waitJob(id); job.Conclusion != "success" {
		t.Fatalf("job: %+v", job)
	}
	if n := len(e.leases()); n != 1 {
		t.Fatalf("%d leases, want 1", n)
	}
	e.waitClean()
}

func TestServeNoLeaseLoop(t *testing.T) {
	withPolicy(t, "2s", "reconcile: {unused_runner_backoff: 1s}\n", func(c *provisioner.Config) {
		c.Reconcile.DeadlineInterval = 200 * time.Millisecond
	})
	e := startServe(t, "60s", nil)
	start := time.Now()
	id := e.gh.QueueUnassignedJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"}})
	e.waitFor("marked never_assigned", 90*time.Second, func() bool { return e.notServedKind(id) == "never_assigned" })
	t.Logf("queued → never_assigned in %s", time.Since(start).Round(100*time.Millisecond))
	time.Sleep(4 * time.Second) // back-off, idle and deadline passes go by
	ls := e.leases()
	if len(ls) != 2 {
		t.Fatalf("%d leases for a job no runner gets, want 2", len(ls))
	}
	for _, l := range ls {
		t.Logf("lease %s: created +%s, idle since +%s, released +%s, reason %q", l.ID, l.CreatedAt.Sub(start).Round(100*time.Millisecond),
			l.IdleSince.Sub(start).Round(100*time.Millisecond), l.ReleasedAt.Sub(start).Round(100*time.Millisecond), l.ReleaseReason)
		if l.JobID != id || l.ReleaseReason != provisioner.ReasonUnusedRunner {
			t.Errorf("lease %s: job %d reason %q", l.ID, l.JobID, l.ReleaseReason)
		}
	}
	for _, j := range e.notServed() {
		if j.JobID == id && (j.UnusedLeases != 2 || !strings.Contains(j.Reason, "GitHub never assigned the job")) {
			t.Fatalf("listed as %+v", j)
		}
	}
	if j, _ := e.gh.Job(id); j.Status != githubtest.StatusQueued {
		t.Fatalf("job is %s on GitHub", j.Status)
	}
	m := e.get("/metrics")
	if !strings.Contains(m, `crabbox_jobs_refused_total{class="a100",reason="never_assigned"} 1`) ||
		!strings.Contains(m, `crabbox_jobs_refused_total{class="a100",reason="retry_backoff"} 1`) ||
		!strings.Contains(m, `crabbox_unused_runner_spent_dollars_total{class="a100",provider="local"}`) {
		t.Fatalf("metrics:\n%s", grepLines(m, "crabbox_"))
	}
	t.Logf("%s", grepLines(m, "crabbox_unused_runner_spent_dollars_total{"))
	page := e.get("/")
	if !strings.Contains(page, "never_assigned") || !strings.Contains(page, "never gave its job") {
		t.Fatal("status page does not show the job or the unused spend")
	}
	e.waitClean()
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

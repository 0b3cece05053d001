package githubtest

import (
	"encoding/base64"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestRunnerProtocol(t *testing.T) {
	var mu sync.Mutex
	var kinds []EventKind
	s := newTestServer(t, Options{OnEvent: func(e Event) {
		mu.Lock()
		kinds = append(kinds, e.Kind)
		mu.Unlock()
	}})
	ctx := ctxFor(t)
	rn := register(t, s, "/orgs/acme", "gpu-1", "self-hosted", "GPU")

	if got := s.Runners(); len(got) != 1 || got[0].Status != "offline" {
		t.Fatalf("before polling: %+v", got)
	}
	if code, a := poll(t, s, rn); code != 200 || a.Action != "idle" {
		t.Fatalf("first poll: %d %+v", code, a)
	}
	if got := s.Runners(); got[0].Status != "online" || got[0].Busy {
		t.Fatalf("after polling: %+v", got[0])
	}

	// Wrong credentials and unknown runners are refused.
	wrong := rn
	wrong.Token = "nope"
	if code, _ := poll(t, s, wrong); code != http.StatusUnauthorized {
		t.Errorf("poll with a wrong token: %d", code)
	}
	ghost := rn
	ghost.ID = 999
	if code, _ := poll(t, s, ghost); code != http.StatusNotFound {
		t.Errorf("poll of an unknown runner: %d", code)
	}

	id := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}, Script: "exit 3"})
	if j, _ := s.Job(id); j.Status != StatusQueued || j.RunAttempt != 1 || j.RunID == 0 || j.RunnerID != 0 {
		t.Fatalf("queued job = %+v", j)
	}
	code, a := poll(t, s, rn)
	if code != 200 || a.Action != "job" || a.JobID != id || a.Repository != "acme/app" {
		t.Fatalf("poll with a queued job: %d %+v", code, a)
	}
	if script, _ := base64.StdEncoding.DecodeString(a.Script); string(script) != "exit 3" {
		t.Errorf("script = %q", script)
	}
	j, err := s.WaitJob(ctx, id, StatusInProgress)
	if err != nil {
		t.Fatal(err)
	}
	if j.RunnerID != rn.ID || j.RunnerName != "gpu-1" || j.RunnerGroupID != 1 || j.RunnerGroupName != "Default" {
		t.Errorf("in-progress job = %+v", j)
	}
	if got := s.Runners(); !got[0].Busy || got[0].JobID != id {
		t.Errorf("runner with a job: %+v", got[0])
	}
	// A repeated poll gets the same job again (the answer may have been lost).
	if _, again := poll(t, s, rn); again.JobID != id {
		t.Errorf("second poll = %+v", again)
	}

	if code := done(t, s, rn, id+1, 0); code != http.StatusNotFound {
		t.Errorf("done for another job: %d", code)
	}
	if code := done(t, s, rn, id, 3); code != http.StatusNoContent {
		t.Fatalf("done: %d", code)
	}
	if code := done(t, s, rn, id, 3); code != http.StatusNoContent {
		t.Errorf("repeated done: %d", code)
	}
	j, _ = s.Job(id)
	if j.Status != StatusCompleted || j.Conclusion != "failure" || j.CompletedAt.IsZero() {
		t.Errorf("completed job = %+v", j)
	}
	if got := s.Runners(); len(got) != 0 {
		t.Errorf("a JIT runner is removed after its job: %+v", got)
	}
	if code, a := poll(t, s, rn); code != 200 || a.Action != "exit" {
		t.Errorf("poll after the job: %d %+v", code, a)
	}

	s.Close() // drains the events
	mu.Lock()
	defer mu.Unlock()
	want := []EventKind{EventRunnerRegistered, EventRunnerOnline, EventJobQueued, EventJobAssigned, EventJobCompleted, EventRunnerRemoved}
	var got []EventKind
	for _, k := range kinds {
		if k != EventWebhookDelivered {
			got = append(got, k)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestJobRouting(t *testing.T) {
	tests := []struct {
		name   string
		prefix string   // where the runner registers
		labels []string // the runner's
		job    JobSpec
		takes  bool
	}{
		{"org runner, org repo", "/orgs/acme", []string{"self-hosted", "gpu"}, JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}}, true},
		{"labels ignore case", "/orgs/acme", []string{"Self-Hosted", "GPU"}, JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"self-hosted", "gpu"}}, true},
		{"job needs a label the runner lacks", "/orgs/acme", []string{"self-hosted"}, JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"self-hosted", "gpu"}}, false},
		{"org runner, other org", "/orgs/acme", []string{"gpu"}, JobSpec{Repo: "other/app", Org: "other", Labels: []string{"gpu"}}, false},
		{"org runner, user repo", "/orgs/acme", []string{"gpu"}, JobSpec{Repo: "acme/app", Labels: []string{"gpu"}}, false},
		{"repo runner, its repo", "/repos/acme/app", []string{"gpu"}, JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}}, true},
		{"repo runner, user repo", "/repos/alice/app", []string{"gpu"}, JobSpec{Repo: "alice/app", Labels: []string{"gpu"}}, true},
		{"repo runner, sibling repo", "/repos/acme/app", []string{"gpu"}, JobSpec{Repo: "acme/web", Org: "acme", Labels: []string{"gpu"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Options{})
			rn := register(t, s, tt.prefix, "r", tt.labels...)
			id := s.QueueJob(tt.job)
			_, a := poll(t, s, rn)
			if got := a.Action == "job" && a.JobID == id; got != tt.takes {
				t.Errorf("runner took the job: %v, want %v (%+v)", got, tt.takes, a)
			}
		})
	}
}

func TestJobsGoOldestFirstOnePerRunner(t *testing.T) {
	s := newTestServer(t, Options{})
	first := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	second := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	a := register(t, s, "/orgs/acme", "a", "gpu")
	b := register(t, s, "/orgs/acme", "b", "gpu")
	if _, got := poll(t, s, a); got.JobID != first {
		t.Errorf("a got %+v, want job %d", got, first)
	}
	if _, got := poll(t, s, a); got.JobID != first {
		t.Errorf("a's second poll got %+v, want job %d again", got, first)
	}
	if _, got := poll(t, s, b); got.JobID != second {
		t.Errorf("b got %+v, want job %d", got, second)
	}
}

func TestCancelJob(t *testing.T) {
	s := newTestServer(t, Options{})
	h := newHook(t)
	s.SetWebhook(h.URL, []byte("secret"))
	ctx := ctxFor(t)

	id := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	if err := s.CancelJob(id); err != nil {
		t.Fatal(err)
	}
	j, _ := s.Job(id)
	if j.Status != StatusCompleted || j.Conclusion != "cancelled" || j.RunnerID != 0 {
		t.Errorf("cancelled job = %+v", j)
	}
	if err := s.CancelJob(id); err == nil {
		t.Error("cancelling a completed job should fail")
	}
	if err := s.CancelJob(424242); err == nil {
		t.Error("cancelling an unknown job should fail")
	}
	// No runner takes a cancelled job.
	rn := register(t, s, "/orgs/acme", "r", "gpu")
	if _, a := poll(t, s, rn); a.Action != "idle" {
		t.Errorf("poll = %+v, want idle", a)
	}

	ds, err := s.WaitDeliveries(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	ev := parseJobEvent(t, ds[1].Body)
	wj := ev.GetWorkflowJob()
	if ev.GetAction() != "completed" || wj.GetStatus() != "completed" || wj.GetConclusion() != "cancelled" {
		t.Errorf("completed webhook: action %s status %s conclusion %s", ev.GetAction(), wj.GetStatus(), wj.GetConclusion())
	}
	if wj.RunnerID != nil || wj.RunnerName != nil || wj.RunnerGroupID != nil || wj.RunnerGroupName != nil {
		t.Errorf("a job cancelled while queued has null runner fields: %s", ds[1].Body)
	}

	// A running job can be cancelled too; its runner is then retired.
	id2 := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	if _, a := poll(t, s, rn); a.JobID != id2 {
		t.Fatalf("poll = %+v", a)
	}
	if err := s.CancelJob(id2); err != nil {
		t.Fatal(err)
	}
	if _, a := poll(t, s, rn); a.Action != "exit" {
		t.Errorf("poll after cancel = %+v, want exit", a)
	}
	if j, _ := s.Job(id2); j.Conclusion != "cancelled" || j.RunnerName != "r" {
		t.Errorf("job = %+v", j)
	}
}

func TestGetJobREST(t *testing.T) {
	s := newTestServer(t, Options{})
	id := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}, Name: "train"})
	r := call(t, "GET", s.URL()+"/repos/acme/app/actions/jobs/"+itoa(id), "Bearer "+testToken, nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var j workflowJobJSON
	r.json(t, &j)
	if j.ID != id || j.Status != "queued" || j.Name != "train" || j.Conclusion != nil {
		t.Errorf("job = %+v", j)
	}
	if r := call(t, "GET", s.URL()+"/repos/acme/web/actions/jobs/"+itoa(id), "Bearer "+testToken, nil); r.status != 404 {
		t.Errorf("job in another repo: %d", r.status)
	}
}

func TestRunnerGoesOffline(t *testing.T) {
	s := newTestServer(t, Options{OnlineTimeout: 200 * time.Millisecond})
	ctx := ctxFor(t)
	rn := register(t, s, "/orgs/acme", "r", "gpu")
	poll(t, s, rn)
	if _, err := s.WaitRunners(ctx, func(rs []Runner) bool { return len(rs) == 1 && rs[0].Status == "offline" }); err != nil {
		t.Fatal(err)
	}
	r := call(t, "GET", s.URL()+"/orgs/acme/actions/runners/"+itoa(rn.ID), "Bearer "+testToken, nil)
	var got runnerJSON
	r.json(t, &got)
	if got.Status != "offline" || got.OS != "Linux" {
		t.Errorf("runner = %+v", got)
	}
}

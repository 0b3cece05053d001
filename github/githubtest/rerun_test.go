package githubtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func renew(t *testing.T, s *Server, rn registered, jobID int64) int {
	t.Helper()
	return call(t, "POST", s.URL()+"/_fake/runner/"+itoa(rn.ID)+"/jobs/"+itoa(jobID)+"/renew", "Bearer "+rn.Token, nil).status
}

// A runner that stops renewing its job (its host died) loses it: the job
// fails with GitHub's message after LostRunnerTimeout, with a completed
// webhook; a runner that renews keeps its job.
func TestJobOfLostRunnerFails(t *testing.T) {
	h := newHook(t)
	s := newTestServer(t, Options{LostRunnerTimeout: 400 * time.Millisecond})
	s.SetWebhook(h.URL, []byte("secret"))
	ctx := ctxFor(t)
	lost := register(t, s, "/orgs/acme", "gpu-lost", "gpu")
	alive := register(t, s, "/orgs/acme", "gpu-alive", "gpu")
	j1 := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	if _, a := poll(t, s, lost); a.JobID != j1 || a.RenewInterval != "0.1" {
		t.Fatalf("lost runner's poll: %+v (want the job and a renewal every 0.1 s)", a)
	}
	j2 := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}})
	if _, a := poll(t, s, alive); a.JobID != j2 {
		t.Fatalf("alive runner's poll: %+v", a)
	}
	stop := time.Now().Add(time.Second)
	for time.Now().Before(stop) {
		if code := renew(t, s, alive, j2); code != http.StatusOK {
			t.Fatalf("renewal: %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	j, err := s.WaitJob(ctx, j1, StatusCompleted)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(LostRunnerMessage, "gpu-lost")
	if j.Conclusion != "failure" || j.Annotation != want || !strings.HasPrefix(want, "The self-hosted runner: gpu-lost lost communication with the server.") {
		t.Fatalf("lost job: conclusion %q annotation %q", j.Conclusion, j.Annotation)
	}
	if j, _ := s.Job(j2); j.Status != StatusInProgress {
		t.Fatalf("renewed job: %s %s", j.Status, j.Conclusion)
	}
	// GitHub lets the lost runner go; its renewals now find no job.
	for _, r := range s.Runners() {
		if r.ID == lost.ID {
			t.Fatalf("lost runner still registered: %+v", r)
		}
	}
	if code := renew(t, s, lost, j1); code != http.StatusNotFound {
		t.Fatalf("renewal of a lost job: %d", code)
	}
	if done(t, s, alive, j2, 0) != http.StatusNoContent {
		t.Fatal("done")
	}
	waitHook(t, h, func(got []received) bool {
		for _, r := range got {
			var p struct {
				Action      string
				WorkflowJob struct {
					ID         int64
					Conclusion string
					RunnerName string `json:"runner_name"`
				} `json:"workflow_job"`
			}
			json.Unmarshal(r.body, &p)
			if p.Action == "completed" && p.WorkflowJob.ID == j1 && p.WorkflowJob.Conclusion == "failure" && p.WorkflowJob.RunnerName == "gpu-lost" {
				return true
			}
		}
		return false
	})
}

func waitHook(t *testing.T, h *hook, cond func([]received) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		got := append([]received(nil), h.got...)
		h.mu.Unlock()
		if cond(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook never came (%d received)", len(got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRerunJob(t *testing.T) {
	h := newHook(t)
	s := newTestServer(t, Options{})
	s.SetWebhook(h.URL, []byte("secret"))
	rn := register(t, s, "/orgs/acme", "gpu-1", "gpu")
	other := register(t, s, "/orgs/acme", "gpu-2", "gpu")
	ids := s.QueueRun(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}, Name: "train"},
		JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}, Name: "eval"})
	poll(t, s, rn)
	poll(t, s, other)
	if done(t, s, rn, ids[0], 1) != http.StatusNoContent {
		t.Fatal("done")
	}
	url := s.URL() + "/repos/acme/app/actions/jobs/" + itoa(ids[0]) + "/rerun"
	auth := "Bearer " + testToken

	// The run's other job still runs: refused, as GitHub does.
	r := call(t, "POST", url, auth, nil)
	if r.status != http.StatusForbidden || r.message(t) != MsgRunStillRunning {
		t.Fatalf("re-run while the run runs: %d %s", r.status, r.body)
	}
	done(t, s, other, ids[1], 0)

	if r := call(t, "POST", url, auth, "not json"); r.status != http.StatusBadRequest {
		t.Fatalf("bad body: %d %s", r.status, r.body)
	}
	if r := call(t, "POST", s.URL()+"/repos/acme/other/actions/jobs/"+itoa(ids[0])+"/rerun", auth, nil); r.status != http.StatusNotFound {
		t.Fatalf("another repository's job: %d", r.status)
	}
	r = call(t, "POST", url, auth, map[string]bool{"enable_debug_logging": false})
	if r.status != http.StatusCreated || strings.TrimSpace(string(r.body)) != "{}" {
		t.Fatalf("re-run: %d %s", r.status, r.body)
	}
	reruns := s.Reruns()
	if len(reruns) != 1 || reruns[0] != ids[0] {
		t.Fatalf("reruns %v", reruns)
	}
	var nid int64
	for _, id := range sortedKeysOf(s) {
		if j, _ := s.Job(id); j.RerunOf == ids[0] {
			nid = id
		}
	}
	n, _ := s.Job(nid)
	first, _ := s.Job(ids[0])
	if nid == 0 || nid == ids[0] || n.RunAttempt != 2 || n.RunID != first.RunID || n.Status != StatusQueued || n.Name != "train" {
		t.Fatalf("the re-run: %+v", n)
	}
	waitHook(t, h, func(got []received) bool {
		for _, r := range got {
			var p struct {
				Action      string
				WorkflowJob struct {
					ID         int64
					RunAttempt int64 `json:"run_attempt"`
				} `json:"workflow_job"`
			}
			json.Unmarshal(r.body, &p)
			if p.Action == "queued" && p.WorkflowJob.ID == nid && p.WorkflowJob.RunAttempt == 2 {
				return true
			}
		}
		return false
	})
	// The old attempt is no longer the run's latest; the run is running
	// again.
	if r := call(t, "POST", url, auth, nil); r.status != http.StatusForbidden || r.message(t) != MsgRunCannotRetry {
		t.Fatalf("re-run of a replaced attempt: %d %s", r.status, r.body)
	}
	if r := call(t, "POST", s.URL()+"/repos/acme/app/actions/jobs/"+itoa(ids[1])+"/rerun", auth, nil); r.status != http.StatusForbidden || r.message(t) != MsgRunStillRunning {
		t.Fatalf("re-run while the re-run runs: %d %s", r.status, r.body)
	}
}

func sortedKeysOf(s *Server) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedKeys(s.jobs)
}

// Re-running needs the installation's Actions write permission; read is
// not enough (GitHub's 403 names the permission).
func TestRerunNeedsActionsWrite(t *testing.T) {
	s := newTestServer(t, Options{
		Tokens: []string{}, AppID: 7, AppPublicKey: &appPublicKey(t).PublicKey,
		Installations:           map[string]int64{"acme": 11, "bob": 12},
		InstallationPermissions: map[int64]map[string]string{12: {"actions": "write", "organization_self_hosted_runners": "write"}},
	})
	ids := []int64{
		s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"gpu"}}),
		s.QueueJob(JobSpec{Repo: "bob/app", Org: "bob", Labels: []string{"gpu"}}),
	}
	for _, id := range ids {
		if err := s.CancelJob(id); err != nil {
			t.Fatal(err)
		}
	}
	r := call(t, "POST", s.URL()+"/repos/acme/app/actions/jobs/"+itoa(ids[0])+"/rerun", "Bearer "+instToken(t, s, 7, 11), nil)
	if r.status != http.StatusForbidden || r.message(t) != "Resource not accessible by integration" || r.header.Get("X-Accepted-GitHub-Permissions") != "actions=write" {
		t.Fatalf("re-run with actions: read: %d %s %v", r.status, r.body, r.header)
	}
	r = call(t, "POST", s.URL()+"/repos/bob/app/actions/jobs/"+itoa(ids[1])+"/rerun", "Bearer "+instToken(t, s, 7, 12), nil)
	if r.status != http.StatusCreated {
		t.Fatalf("re-run with actions: write: %d %s", r.status, r.body)
	}
}

// The fake run.sh renews its job while it runs: a job longer than
// LostRunnerTimeout succeeds; killed with everything it started (its host
// gone), the runner's job fails with GitHub's message.
func TestRunShRenewsItsJob(t *testing.T) {
	s := newTestServer(t, Options{LostRunnerTimeout: 3 * time.Second})
	ctx := ctxFor(t)
	start := func(label string) (registered, *runnerProcess) {
		rn := register(t, s, "/orgs/acme", "runsh-"+label, "self-hosted", label)
		p := startRunner(t, installRunner(t), []string{"RUNNER_ALLOW_RUNASROOT=1", "ACTIONS_RUNNER_INPUT_JITCONFIG=" + rn.Encoded})
		return rn, p
	}
	_, p := start("long")
	long := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"long"}, Script: "sleep 7; echo done"})
	j, err := s.WaitJob(ctx, long, StatusCompleted)
	if err != nil || j.Conclusion != "success" {
		t.Fatalf("a 7 s job with a 3 s lost-runner timeout: %+v %v\n%s", j, err, p.out.String())
	}
	p.wait(ctx, t)

	_, p = start("dies")
	dies := s.QueueJob(JobSpec{Repo: "acme/app", Org: "acme", Labels: []string{"dies"}, Script: "sleep 60"})
	if _, err := s.WaitJob(ctx, dies, StatusInProgress); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // past the timeout: renewed meanwhile
	if j, _ := s.Job(dies); j.Status != StatusInProgress {
		t.Fatalf("a renewing runner lost its job: %+v", j)
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	j, err = s.WaitJob(ctx, dies, StatusCompleted)
	if err != nil || j.Conclusion != "failure" || !strings.Contains(j.Annotation, "runsh-dies lost communication with the server") {
		t.Fatalf("job of a killed runner: %+v %v", j, err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// lostJobTimeout is the fake GitHub's lost-runner timeout in these tests
// (GitHub's is about ten minutes).
const lostJobTimeout = 3 * time.Second

// rerunServe runs serve with rerun_lost_jobs set (or not) on the class and
// keeps its provisioner, through which a test loses a host (part preempt's
// detection does that in production).
type rerunServe struct {
	*e2e
	mu   sync.Mutex
	prov *provisioner.Provisioner
	mark string // the jobs' shared counter file
}

func startRerunServe(t *testing.T, rerun bool, setup serveSetup) *rerunServe {
	t.Helper()
	r := &rerunServe{mark: filepath.Join(t.TempDir(), "attempts")}
	if rerun {
		setup.extraConfig += "    rerun_lost_jobs: true\n"
	}
	setup.bootTimeout = "60s"
	setup.ghOpts.LostRunnerTimeout = lostJobTimeout
	setup.provisioner = func(p *provisioner.Provisioner) {
		r.mu.Lock()
		r.prov = p
		r.mu.Unlock()
	}
	r.e2e = startServeWith(t, setup)
	return r
}

// queueLong queues a job that runs until its host goes away, counting its
// runs in r.mark.
func (r *rerunServe) queueLong() int64 {
	return r.gh.QueueJob(githubtest.JobSpec{Repo: "acme/vision", Org: "acme", Labels: []string{"self-hosted", "crabbox", "A100"},
		Name: "train", Script: `echo run >> ` + r.mark + `; sleep 600`})
}

// loseHostOf waits until job runs on a busy lease, then loses that lease's
// host, and returns the lease.
func (r *rerunServe) loseHostOf(job int64) *provisioner.Lease {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	j, err := r.gh.WaitJob(ctx, job, githubtest.StatusInProgress)
	if err != nil {
		r.t.Fatalf("job %d never ran: %v\n%s", job, err, tail(r.logs.String(), 40))
	}
	var l *provisioner.Lease
	r.waitFor("the job's lease busy", 30*time.Second, func() bool {
		for _, c := range r.leases() {
			if c.RunnerName == j.RunnerName && c.State == provisioner.StateBusy {
				l = c
				return true
			}
		}
		return false
	})
	r.mu.Lock()
	p := r.prov
	r.mu.Unlock()
	if err := p.MarkHostLost(ctx, l.ID, "preempted"); err != nil {
		r.t.Fatal(err)
	}
	return l
}

func (r *rerunServe) leaseNotes(id string) string {
	r.t.Helper()
	st, err := sqlite.Open(context.Background(), r.dbPath)
	if err != nil {
		r.t.Fatal(err)
	}
	defer st.Close()
	events, err := st.LeaseEvents(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		out = append(out, e.Reason)
	}
	return strings.Join(out, " | ")
}

// rerunOf returns the job that re-runs id, once the fake has one.
func (r *rerunServe) rerunOf(id int64) int64 {
	r.t.Helper()
	var n int64
	r.waitFor("the re-run", 60*time.Second, func() bool {
		for _, j := range r.gh.Jobs() {
			if j.RerunOf == id {
				n = j.ID
				return true
			}
		}
		return false
	})
	return n
}

// A host lost under its job: the job fails on GitHub once the runner stops
// answering, crabbox-runner re-runs it once, the re-run gets a new host;
// lost again, the re-run is not re-run.
func TestServeRerunsLostJobOnce(t *testing.T) {
	// When the fake failed the job and queued its re-run, for the figures
	// in docs/benchmarks.md.
	var mu sync.Mutex
	var failedAt, rerunAt time.Time
	onEvent := func(ev githubtest.Event) {
		t.Logf("github: %s", ev)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.Kind == githubtest.EventJobCompleted && failedAt.IsZero() && ev.Detail == "failure":
			failedAt = ev.At
		case ev.Kind == githubtest.EventJobQueued && rerunAt.IsZero() && strings.Contains(ev.Detail, "re-run of"):
			rerunAt = ev.At
		}
	}
	r := startRerunServe(t, true, serveSetup{ghOpts: githubtest.Options{OnEvent: onEvent}})
	id := r.queueLong()
	lost := r.loseHostOf(id)
	lostAt := time.Now()

	j := r.waitJob(id)
	if j.Conclusion != "failure" || !strings.Contains(j.Annotation, lost.RunnerName+" lost communication with the server") {
		t.Fatalf("the lost job: %s %q", j.Conclusion, j.Annotation)
	}
	again := r.rerunOf(id)
	mu.Lock()
	t.Logf("figures: host lost → job failed on the fake %s (its lost-runner timeout %s); job failed → re-run queued %s; host lost → re-run queued %s",
		failedAt.Sub(lostAt).Round(time.Millisecond), lostJobTimeout, rerunAt.Sub(failedAt).Round(time.Millisecond), rerunAt.Sub(lostAt).Round(time.Millisecond))
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	j2, err := r.gh.WaitJob(ctx, again, githubtest.StatusInProgress)
	if err != nil {
		t.Fatalf("the re-run never ran: %v\n%s", err, tail(r.logs.String(), 40))
	}
	if j2.RunAttempt != 2 || j2.RunnerName == lost.RunnerName {
		t.Fatalf("the re-run: attempt %d on %s (the lost runner was %s)", j2.RunAttempt, j2.RunnerName, lost.RunnerName)
	}
	r.waitFor("the lost lease says why", 10*time.Second, func() bool {
		return strings.Contains(r.leaseNotes(lost.ID), "job re-run (attempt 2): host lost: preempted")
	})
	for _, l := range r.leases() {
		if l.ID == lost.ID && (l.State != provisioner.StateReleased || l.LostReason != "preempted") {
			t.Fatalf("the lost lease: %s lost_reason %q", l.State, l.LostReason)
		}
	}
	// `leases` shows the job's re-run on the lost lease.
	code, out, errs := runCLI(t, r.env, "leases", "--all", "--output", "json")
	var rows []leaseJSON
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil {
		t.Fatalf("leases: %d %v %s", code, err, errs)
	}
	for _, row := range rows {
		if row.ID == lost.ID && (row.JobRerun != "host lost: preempted" || row.JobRerunAt.IsZero()) {
			t.Fatalf("leases shows the lost lease as %+v", row)
		}
	}
	if _, out, _ := runCLI(t, r.env, "leases", "--all"); !strings.Contains(out, "(job re-run)") {
		t.Fatalf("leases table lacks the re-run:\n%s", out)
	}
	if r.hosts.Created() != 2 {
		t.Fatalf("%d hosts created, want 2 (the lost one and the re-run's)", r.hosts.Created())
	}

	// The re-run loses its host too: it fails, and is not re-run.
	lost2 := r.loseHostOf(again)
	if j := r.waitJob(again); j.Conclusion != "failure" {
		t.Fatalf("the re-run's second loss: %s", j.Conclusion)
	}
	r.waitFor("the second lost lease says no re-run", 20*time.Second, func() bool {
		return strings.Contains(r.leaseNotes(lost2.ID), "not re-run")
	})
	if got := r.gh.Reruns(); len(got) != 1 || got[0] != id {
		t.Fatalf("re-runs %v, want only job %d", got, id)
	}
	r.waitClean()
	// One request to GitHub per re-run.
	if c := r.gh.RequestStats().ByEndpoint["POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun"]; c.Counted != 1 {
		t.Errorf("%d re-run requests, want 1", c.Counted)
	}
	metrics := r.get("/metrics")
	for _, want := range []string{
		`crabbox_jobs_rerun_total{class="a100",result="requested"} 1`,
		`crabbox_jobs_rerun_total{class="a100",result="not_again"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	logs := r.logs.String()
	for _, want := range []string{`"msg":"lost job re-run"`, `"msg":"job lost with its host again; it is a re-run already, so it is not re-run a second time"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
}

// Without rerun_lost_jobs a lost job stays failed.
func TestServeLostJobNotRerunWithoutTheSetting(t *testing.T) {
	r := startRerunServe(t, false, serveSetup{})
	id := r.queueLong()
	r.loseHostOf(id)
	if j := r.waitJob(id); j.Conclusion != "failure" {
		t.Fatalf("the lost job: %s", j.Conclusion)
	}
	r.waitClean()
	time.Sleep(time.Second)
	if got := r.gh.Reruns(); len(got) != 0 {
		t.Fatalf("re-ran %v", got)
	}
}

// An App installation without Actions write: GitHub refuses, serve logs a
// clear error and says so on the lease, and asks once.
func TestServeRerunWithoutActionsWrite(t *testing.T) {
	perms := map[string]string{"organization_self_hosted_runners": "write", "actions": "read", "metadata": "read"}
	r := startRerunServe(t, true, serveSetup{app: true, ghOpts: githubtest.Options{AppPermissions: perms}})
	id := r.queueLong()
	lost := r.loseHostOf(id)
	r.waitJob(id)
	r.waitFor("the lost lease says GitHub refused", 30*time.Second, func() bool {
		return strings.Contains(r.leaseNotes(lost.ID), "job not re-run (host lost: preempted)")
	})
	notes := r.leaseNotes(lost.ID)
	if !strings.Contains(notes, "Actions write permission") {
		t.Fatalf("the lease's note does not name the permission: %s", notes)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, `"msg":"lost job not re-run: GitHub refused"`) || !strings.Contains(logs, "actions=write") {
		t.Fatalf("logs lack a clear error:\n%s", tail(logs, 30))
	}
	if got := r.gh.Reruns(); len(got) != 0 {
		t.Fatalf("re-ran %v", got)
	}
	if !strings.Contains(r.get("/metrics"), `crabbox_jobs_rerun_total{class="a100",result="refused"} 1`) {
		t.Error("/metrics lacks the refused re-run")
	}
}

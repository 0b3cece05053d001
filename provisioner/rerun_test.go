package provisioner_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

func rerunHarness(t *testing.T, on bool) *harness {
	return newHarness(t, func(c *provisioner.Config) { c.Classes[0].RerunLostJobs = on })
}

// busyThenLost runs job (attempt) up to busy on a new lease, then loses its
// host; it returns the lease once released.
func (h *harness) busyThenLost(job, attempt int64, tag string) *provisioner.Lease {
	h.t.Helper()
	at := func(e *provisioner.JobEvent) { e.RunAttempt = attempt }
	h.event("queued", job, tag+"-q", at)
	var l *provisioner.Lease
	h.waitFor("idle lease", func() bool {
		for _, c := range h.leases(provisioner.StateIdle) {
			l = c
			return true
		}
		return false
	})
	h.event("in_progress", job, tag+"-p", at, func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName })
	if err := h.p.MarkHostLost(context.Background(), l.ID, "preempted"); err != nil {
		h.t.Fatal(err)
	}
	h.waitFor("lost lease released", func() bool {
		cur, err := h.store.Lease(context.Background(), l.ID)
		return err == nil && cur.State == provisioner.StateReleased
	})
	cur, _ := h.store.Lease(context.Background(), l.ID)
	if cur.LostReason != "preempted" || cur.BoundJobID != job {
		h.t.Fatalf("lost lease: lost_reason %q bound job %d", cur.LostReason, cur.BoundJobID)
	}
	return cur
}

func (h *harness) failed(job, attempt int64, guid string, l *provisioner.Lease) provisioner.Outcome {
	return h.event("completed", job, guid, func(e *provisioner.JobEvent) {
		e.RunAttempt, e.RunnerName, e.Conclusion = attempt, l.RunnerName, "failure"
	})
}

func (h *harness) reruns() []int64 {
	h.gh.mu.Lock()
	defer h.gh.mu.Unlock()
	return slices.Clone(h.gh.reruns)
}

func (h *harness) eventReasons(leaseID string) string {
	events, err := h.store.LeaseEvents(context.Background(), leaseID)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		out = append(out, e.Reason)
	}
	return strings.Join(out, " | ")
}

func TestRerunLostJobOnce(t *testing.T) {
	h := rerunHarness(t, true)
	l := h.busyThenLost(1, 1, "a")
	h.failed(1, 1, "a-c", l)
	h.waitFor("re-run asked", func() bool { return len(h.reruns()) == 1 })
	if got := h.reruns(); got[0] != 1 {
		t.Fatalf("re-ran %v, want job 1", got)
	}
	h.waitFor("lease says why", func() bool {
		return strings.Contains(h.eventReasons(l.ID), "job re-run (attempt 2): host lost: preempted")
	})
	j, err := h.store.Job(context.Background(), 1, 1)
	if err != nil || j.RerunAt.IsZero() || j.RerunReason != "host lost: preempted" {
		t.Fatalf("job %+v %v: want its re-run recorded", j, err)
	}

	// The completed event again (a redelivery under a new GUID, a second
	// hook): nothing more.
	if out := h.failed(1, 1, "a-c2", l); out != provisioner.Duplicate {
		t.Fatalf("second completed: %s", out)
	}

	// The re-run (attempt 2, a new job id as GitHub gives it) loses its
	// host too: it is not re-run a second time.
	l2 := h.busyThenLost(2, 2, "b")
	if l2.ID == l.ID {
		t.Fatal("the re-run got the lost lease")
	}
	h.failed(2, 2, "b-c", l2)
	h.waitFor("lease says not re-run", func() bool {
		return strings.Contains(h.eventReasons(l2.ID), "not re-run")
	})
	// The same job id for attempt 3 after a person's re-run: not ours to
	// re-run either (attempt 1 was re-run by us).
	l3 := h.busyThenLost(1, 3, "c")
	h.failed(1, 3, "c-c", l3)
	h.waitFor("lease says not re-run", func() bool { return strings.Contains(h.eventReasons(l3.ID), "not re-run") })
	if got := h.reruns(); len(got) != 1 {
		t.Fatalf("re-ran %v, want only job 1 once", got)
	}
}

func TestRerunOnlyLostFailedJobsOfClassesThatAsk(t *testing.T) {
	t.Run("class without rerun_lost_jobs", func(t *testing.T) {
		h := rerunHarness(t, false)
		l := h.busyThenLost(1, 1, "a")
		h.failed(1, 1, "a-c", l)
		assertNoRerun(h)
	})
	t.Run("job that succeeded", func(t *testing.T) {
		h := rerunHarness(t, true)
		l := h.busyThenLost(1, 1, "a")
		h.event("completed", 1, "a-c", func(e *provisioner.JobEvent) { e.RunnerName, e.Conclusion = l.RunnerName, "success" })
		assertNoRerun(h)
	})
	t.Run("host not lost", func(t *testing.T) {
		h := rerunHarness(t, true)
		h.event("queued", 1, "q")
		h.waitFor("idle lease", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
		l := h.leases()[0]
		h.event("in_progress", 1, "p", func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName })
		h.failed(1, 1, "c", l)
		assertNoRerun(h)
	})
}

func assertNoRerun(h *harness) {
	h.t.Helper()
	j, err := h.store.Job(context.Background(), 1, 1)
	if err != nil {
		h.t.Fatal(err)
	}
	if !j.RerunAt.IsZero() || len(h.reruns()) != 0 {
		h.t.Fatalf("re-run planned (%v) or asked (%v)", j.RerunAt, h.reruns())
	}
}

func TestRerunRefusedIsRecorded(t *testing.T) {
	h := rerunHarness(t, true)
	h.gh.mu.Lock()
	h.gh.rerunErr = fmt.Errorf("github: re-run of job 1: Resource not accessible by integration: the credential lacks the Actions write permission: %w", provisioner.ErrRerunRefused)
	h.gh.mu.Unlock()
	l := h.busyThenLost(1, 1, "a")
	h.failed(1, 1, "a-c", l)
	h.waitFor("lease says refused", func() bool {
		r := h.eventReasons(l.ID)
		return strings.Contains(r, "job not re-run (host lost: preempted)") && strings.Contains(r, "Actions write permission")
	})
	if got := h.reruns(); len(got) != 1 {
		t.Fatalf("asked %d times, want once (a refusal is final)", len(got))
	}
}

// The lost job's completed event never comes: reconcile asks GitHub for
// the job of a lease released as lost, and re-runs it once GitHub says it
// failed.
func TestReconcileCatchesLostJobWithoutItsWebhook(t *testing.T) {
	src := &memJobs{jobs: map[int64]provisioner.JobEvent{}, scopes: []provisioner.Scope{{Org: "acme"}}}
	h := newHarness(t, func(c *provisioner.Config) {
		c.Classes[0].RerunLostJobs = true
		c.Reconcile = provisioner.ReconcileConfig{Interval: -1, GCInterval: -1, Jobs: src, LostJobAfter: time.Millisecond}
	})
	ctx := context.Background()
	l := h.busyThenLost(1, 1, "a")
	running := jobEvent("in_progress", 1)
	running.RunnerName = l.RunnerName
	src.set(running)
	if _, err := h.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if len(h.reruns()) != 0 {
		t.Fatal("re-run before GitHub failed the job")
	}
	failed := jobEvent("completed", 1)
	failed.RunnerName, failed.Conclusion = l.RunnerName, "failure"
	src.set(failed)
	if _, err := h.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	h.waitFor("re-run asked", func() bool { return len(h.reruns()) == 1 })
	if _, err := h.p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.reruns(); len(got) != 1 {
		t.Fatalf("re-ran %v after a second pass", got)
	}
}

// GitHub re-runs a job only once its whole run completed: while the run's
// other jobs still run, the re-run is asked again later.
func TestRerunWaitsForTheRun(t *testing.T) {
	h := rerunHarness(t, true)
	h.gh.mu.Lock()
	h.gh.rerunErrs = []error{fmt.Errorf("github: re-run of job 1: The workflow run containing this job is already running: %w", provisioner.ErrRerunNotYet)}
	h.gh.mu.Unlock()
	l := h.busyThenLost(1, 1, "a")
	h.failed(1, 1, "a-c", l)
	h.waitFor("re-run asked again", func() bool { return len(h.reruns()) == 2 })
	h.waitFor("lease says re-run", func() bool {
		return strings.Contains(h.eventReasons(l.ID), "job re-run (attempt 2): host lost: preempted")
	})
	if r := h.eventReasons(l.ID); strings.Contains(r, "not re-run") {
		t.Fatalf("a refusal for now was taken as final: %s", r)
	}
}

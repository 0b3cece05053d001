package provisioner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// idleRunner queues job 1 and returns its lease once its runner is online.
func (h *harness) idleRunner() *provisioner.Lease {
	h.t.Helper()
	h.event("queued", 1, "q1")
	var l *provisioner.Lease
	h.waitFor("an idle lease", func() bool {
		idle := h.leases(provisioner.StateIdle)
		if len(idle) == 1 {
			l = idle[0]
		}
		return l != nil
	})
	return l
}

func (h *harness) lease(id string) *provisioner.Lease {
	h.t.Helper()
	l, err := h.store.Lease(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

// GitHub hands an idle runner its job just as the idle timeout releases
// it (the in_progress webhook still on its way): the removal is refused as
// busy, and the host stays for the job instead of being destroyed under it.
func TestReleaseTakenBackWhenTheRunnerTookAJob(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) { c.Classes[0].IdleTimeout = 500 * time.Millisecond })
	l := h.idleRunner()
	h.gh.setBusy(l.RunnerID)
	h.waitFor("the release taken back", func() bool {
		return strings.Contains(h.eventReasons(l.ID), "its runner took a job as it was released")
	})
	cur := h.lease(l.ID)
	if cur.State != provisioner.StateBusy || cur.ReleaseReason != "" {
		t.Fatalf("lease after the refused removal: %s, release reason %q; events: %s", cur.State, cur.ReleaseReason, h.eventReasons(l.ID))
	}
	if live, _, destroyed := h.prov.counts(); destroyed != 0 || live < 1 {
		t.Fatalf("the busy runner's host was destroyed (live %d, destroyed %d)", live, destroyed)
	}
	// The job's own events arrive and end the lease as any other. A job
	// runs for seconds at least: by then River has marked the release work
	// that was taken back completed, so the next release is new work (a
	// release asked for while that work still counts as running is a
	// duplicate, and reconcile enqueues it again a minute on).
	time.Sleep(time.Second)
	h.event("in_progress", 1, "p1", func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName })
	h.gh.dropRunner(l.RunnerID) // a JIT runner is removed by GitHub after its job
	h.event("completed", 1, "c1", func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName; e.Conclusion = "success" })
	h.waitFor("the lease released after its job", func() bool { return h.lease(l.ID).State == provisioner.StateReleased })
	if cur := h.lease(l.ID); cur.BoundJobID != 1 || cur.ReleaseReason != "job completed" {
		t.Fatalf("lease after its job: bound %d, reason %q", cur.BoundJobID, cur.ReleaseReason)
	}
	h.waitFor("no lease left", func() bool {
		return len(h.leases(provisioner.StateIdle, provisioner.StateBusy, provisioner.StateBooting)) == 0
	})
	if live, _, _ := h.prov.counts(); live != 0 {
		t.Fatalf("%d hosts left: %s", live, h.describe())
	}
}

// The lease made for job 1 is released as an unused runner (job 1 still
// queued at its idle timeout), and its runner takes another job just then:
// the release is taken back, and so is what it did to job 1. GitHub does
// route jobs to our runners, so job 1 is not left with a back-off (nor, at
// its second, an "unassigned" mark that only a new delivery or a policy
// change clears: a job stuck in the queue); it gets its next lease at once.
func TestUnusedRunnerTakenBackClearsItsJobsMark(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) {
		c.Classes[0].IdleTimeout = 500 * time.Millisecond
		c.UnusedRetryBackoff = time.Hour
	})
	l := h.idleRunner()
	h.gh.setBusy(l.RunnerID) // another job's: job 1 stays queued
	h.waitFor("the release taken back", func() bool {
		return strings.Contains(h.eventReasons(l.ID), "its runner took a job as it was released ("+provisioner.ReasonUnusedRunner)
	})
	job, err := h.store.Job(context.Background(), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != provisioner.JobQueued || job.UnusedLeases != 0 || job.Unservable.Kind != "" {
		t.Fatalf("job 1: %s, %d unused leases, mark %q (%s)", job.Status, job.UnusedLeases, job.Unservable.Kind, job.Unservable.Reason)
	}
	h.waitFor("a new lease for job 1", func() bool {
		for _, o := range h.leases() {
			if o.ID != l.ID && o.JobID == 1 {
				return true
			}
		}
		return false
	})
}

// A lease at its max lifetime goes whatever its runner runs: that limit is
// the bill's, and it is the user's.
func TestReleaseAtMaxLifetimeDestroysABusyRunner(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) { c.Classes[0].MaxLifetime = 1500 * time.Millisecond })
	l := h.idleRunner()
	h.event("in_progress", 1, "p1", func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName })
	h.gh.setBusy(l.RunnerID)
	h.waitFor("released at max lifetime", func() bool { return h.lease(l.ID).State == provisioner.StateReleased })
	if cur := h.lease(l.ID); cur.ReleaseReason != "max lifetime reached" {
		t.Fatalf("release reason %q", cur.ReleaseReason)
	}
	if _, _, destroyed := h.prov.counts(); destroyed != 1 {
		t.Fatalf("destroyed %d hosts, want 1", destroyed)
	}
}

// GitHub documents 422 for a runner's removal without saying it means busy:
// a 422 for a runner that is not busy does not keep its host.
func TestReleaseGoesOnWhenA422IsNotBusy(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) { c.Classes[0].IdleTimeout = 500 * time.Millisecond })
	h.gh.refuseRemoval = true
	l := h.idleRunner()
	h.waitFor("released", func() bool { return h.lease(l.ID).State == provisioner.StateReleased })
	if strings.Contains(h.eventReasons(l.ID), "took a job") {
		t.Fatalf("release taken back for a runner that is not busy: %s", h.eventReasons(l.ID))
	}
	if _, _, destroyed := h.prov.counts(); destroyed < 1 {
		t.Fatalf("host not destroyed")
	}
}

// A host that comes up after its lease's boot deadline gets no runner: the
// lease is on its way out, and a runner registered now could take a job on
// a host about to be destroyed.
func TestNoRunnerRegisteredAfterTheBootDeadline(t *testing.T) {
	h := newHarness(t, nil) // boot_timeout 2s
	h.boot.hold = make(chan struct{})
	h.event("queued", 1, "q1")
	h.waitFor("a bootstrapping lease", func() bool { return len(h.leases(provisioner.StateBootstrapping)) == 1 })
	l := h.leases(provisioner.StateBootstrapping)[0]
	h.waitFor("its release asked for at the boot deadline", func() bool { return h.lease(l.ID).ReleaseReason != "" })
	close(h.boot.hold)
	h.waitFor("the lease released", func() bool { return h.lease(l.ID).State == provisioner.StateReleased })
	h.gh.mu.Lock()
	jits := strings.Join(h.gh.jits, " ")
	h.gh.mu.Unlock()
	if strings.Contains(jits, l.RunnerName) {
		t.Fatalf("runner %s registered after the boot deadline (registered: %s)", l.RunnerName, jits)
	}
	if cur := h.lease(l.ID); !strings.Contains(cur.Error, "boot timeout") {
		t.Fatalf("lease error %q, want the boot timeout", cur.Error)
	}
}

// A lease asked to release after its runner was registered (here by hand;
// in a hedge race, the other host's runner online first) and whose runner
// then comes online is released at once, not left idle with the request
// unread until its idle timeout (seen in the benchmark: a race's loser
// kept 30 s of wall time, 5 minutes of a host in real terms).
func TestRunnerOnlineAfterAReleaseRequestIsReleased(t *testing.T) {
	h := newHarness(t, nil) // idle timeout 1h: only the request can end it
	start := make(chan struct{})
	registered := make(chan struct{}, 1)
	h.boot.mu.Lock()
	h.boot.registered = func(int64) <-chan struct{} { registered <- struct{}{}; return start }
	h.boot.mu.Unlock()
	h.event("queued", 1, "q1")
	select {
	case <-registered:
	case <-time.After(30 * time.Second):
		t.Fatalf("no runner registered: %s", h.describe())
	}
	l := h.leases(provisioner.StateBootstrapping)[0]
	if err := h.p.Release(context.Background(), l.ID, "operator"); err != nil {
		t.Fatal(err)
	}
	close(start)
	h.waitFor("the lease released", func() bool { return h.lease(l.ID).State == provisioner.StateReleased })
	if evs := h.eventReasons(l.ID); strings.Contains(evs, "runner online") || h.lease(l.ID).ReleaseReason != "operator" {
		t.Errorf("release reason %q; events: %s", h.lease(l.ID).ReleaseReason, evs)
	}
}

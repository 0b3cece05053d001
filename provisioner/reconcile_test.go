package provisioner_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// memJobs is GitHub's own view of the jobs, for reconciliation.
type memJobs struct {
	mu     sync.Mutex
	jobs   map[int64]provisioner.JobEvent
	scopes []provisioner.Scope
}

func (m *memJobs) set(ev provisioner.JobEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs[ev.JobID] = ev
}

func (m *memJobs) QueuedJobs(ctx context.Context, s provisioner.Scope) ([]provisioner.JobEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []provisioner.JobEvent
	for _, ev := range m.jobs {
		if ev.Action == "queued" && ev.Org == s.Org {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (m *memJobs) JobStatus(ctx context.Context, s provisioner.Scope, repo string, id int64) (*provisioner.JobEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ev, ok := m.jobs[id]
	if !ok {
		return nil, provisioner.ErrNotFound
	}
	return &ev, nil
}

func (m *memJobs) Scopes(ctx context.Context) ([]provisioner.Scope, error) { return m.scopes, nil }

func jobEvent(action string, id int64) provisioner.JobEvent {
	return provisioner.JobEvent{Action: action, Status: action, JobID: id, RunID: 1, RunAttempt: 1,
		Labels: []string{"self-hosted", "a100"}, Repo: "acme/ml", Org: "acme", Visibility: "private"}
}

func TestReconcileMakesUpForLostWebhooks(t *testing.T) {
	src := &memJobs{jobs: map[int64]provisioner.JobEvent{}, scopes: []provisioner.Scope{{Org: "acme"}}}
	h := newHarness(t, func(c *provisioner.Config) {
		c.Reconcile = provisioner.ReconcileConfig{Interval: -1, GCInterval: -1, Jobs: src}
	})
	ctx := context.Background()
	// Job 1's queued webhook was lost: GitHub knows it, we do not.
	src.set(jobEvent("queued", 1))
	rep, err := h.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.MissedJobs != 1 || len(h.leases()) != 1 {
		t.Fatalf("report %+v, %d leases", rep, len(h.leases()))
	}
	if rep, _ := h.p.Reconcile(ctx); rep.MissedJobs != 0 || len(h.leases()) != 1 {
		t.Fatalf("a second pass leased again: %+v", rep)
	}
	h.waitFor("idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })

	// Its completed webhook is lost too (cancelled while queued): GitHub says
	// completed, we still say queued. The lease must not wait for it.
	src.set(jobEvent("completed", 1))
	backdate(t, h, 1)
	rep, err = h.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.StaleJobs != 1 {
		t.Fatalf("report %+v", rep)
	}
	h.waitFor("released", func() bool { return len(h.leases(provisioner.StateReleased)) == 1 })
}

// backdate makes job id look last updated long ago (PutJob stamps now).
func backdate(t *testing.T, h *harness, id int64) {
	t.Helper()
	if _, err := h.store.DB().Exec(`UPDATE crabbox_job SET updated_at = 1 WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}
}

func TestReconcileEnforcesLostDeadlines(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) {
		c.Classes[0].IdleTimeout = time.Hour
		c.Reconcile = provisioner.ReconcileConfig{Interval: -1, GCInterval: -1}
	})
	h.event("queued", 1, "g1")
	h.waitFor("idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	l := h.leases()[0]
	// The idle deadline job is lost and the clock moved on: only the
	// reconcile pass can see that the runner idled too long.
	if _, err := h.store.DB().Exec(`DELETE FROM river_job WHERE kind = 'deadline'`); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.DB().Exec(`UPDATE crabbox_lease SET idle_since = ? WHERE id = ?`, time.Now().Add(-2*time.Hour).UnixMicro(), l.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.waitFor("idle lease released", func() bool {
		got, _ := h.store.Lease(context.Background(), l.ID)
		return got.State == provisioner.StateReleased
	})
}

// The completed webhook is lost after the runner ran its job: GitHub has
// removed the runner, and the reconcile pass releases the lease.
func TestReconcileReleasesLeaseWhoseRunnerIsGone(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) {
		c.Reconcile = provisioner.ReconcileConfig{Interval: -1, GCInterval: -1}
	})
	ctx := context.Background()
	h.event("queued", 1, "g1")
	h.waitFor("idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	l := h.leases()[0]
	h.event("in_progress", 1, "g2", func(e *provisioner.JobEvent) { e.RunnerName = l.RunnerName })
	h.gh.RemoveRunner(ctx, l.Scope, l.RunnerID) // the job ended; GitHub dropped the JIT runner
	// Settled longer than the grace.
	if _, err := h.store.DB().Exec(`UPDATE crabbox_lease SET state_changed_at = ? WHERE id = ?`, time.Now().Add(-time.Minute).UnixMicro(), l.ID); err != nil {
		t.Fatal(err)
	}
	rep, err := h.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RunnerGone != 1 {
		t.Fatalf("report %+v", rep)
	}
	h.waitFor("released", func() bool {
		got, _ := h.store.Lease(ctx, l.ID)
		return got.State == provisioner.StateReleased
	})
}

// A booting lease whose work was lost (no job for it) gets boot work again
// from the reconcile pass, and its runner comes online.
func TestReconcileRequeuesLostBootWork(t *testing.T) {
	h := newHarness(t, func(c *provisioner.Config) { c.KeySecret = []byte("key secret") })
	ctx := context.Background()
	l := h.bootingLease("llost")
	if _, err := h.store.DB().Exec(`UPDATE crabbox_lease SET state_changed_at = ? WHERE id = ?`, time.Now().Add(-2*time.Minute).UnixMicro(), l.ID); err != nil {
		t.Fatal(err)
	}
	rep, err := h.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requeued != 1 {
		t.Fatalf("requeued %d, want 1", rep.Requeued)
	}
	var kind string
	if err := h.store.DB().QueryRow(`SELECT kind FROM river_job WHERE json_extract(args, '$.lease_id') = ?`, l.ID).Scan(&kind); err != nil {
		t.Fatal(err)
	}
	if kind != "boot" {
		t.Fatalf("requeued work is %q, want boot", kind)
	}
	h.waitFor("runner online", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
}

// A job recorded without an attempt (a record from before decoders read a
// missing run_attempt as 1) is the same attempt GitHub reports as 1: its
// lost completed must still release the lease, not be skipped forever.
func TestReconcileReadsAMissingAttemptAsTheFirst(t *testing.T) {
	src := &memJobs{jobs: map[int64]provisioner.JobEvent{}, scopes: []provisioner.Scope{{Org: "acme"}}}
	h := newHarness(t, func(c *provisioner.Config) {
		c.Reconcile = provisioner.ReconcileConfig{Interval: -1, GCInterval: -1, Jobs: src}
	})
	ctx := context.Background()
	queued := jobEvent("queued", 1)
	queued.RunAttempt = 0
	if _, err := h.p.HandleJobEvent(ctx, queued); err != nil {
		t.Fatal(err)
	}
	h.waitFor("idle", func() bool { return len(h.leases(provisioner.StateIdle)) == 1 })
	src.set(jobEvent("completed", 1)) // RunAttempt 1
	backdate(t, h, 1)
	rep, err := h.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.StaleJobs != 1 {
		t.Fatalf("report %+v: the completed job was skipped", rep)
	}
	h.waitFor("released", func() bool { return len(h.leases(provisioner.StateReleased)) == 1 })
}

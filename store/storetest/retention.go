package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// testPruneEvents: deliveries and job events past the retention go, in
// batches of the given size, oldest first; a job event stays whatever its
// age while its job is not completed or a lease not released was made for
// that job.
func testPruneEvents(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	old, recent := t0.Add(-40*day), t0.Add(-day)
	job := func(id int64, st provisioner.JobStatus) *provisioner.Job {
		return &provisioner.Job{ID: id, RunAttempt: 1, Scope: provisioner.Scope{Org: "acme"}, Class: "a100", Status: st,
			Name: "train", Repo: "acme/ml", CreatedAt: old, UpdatedAt: old}
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		for i, at := range []time.Time{old.Add(-3 * time.Hour), old.Add(-2 * time.Hour), old.Add(-time.Hour), recent} {
			if _, err := tx.RecordDelivery(ctx, []string{"d1", "d2", "d3", "d4"}[i], "workflow_job", "queued", at); err != nil {
				return err
			}
		}
		for _, j := range []*provisioner.Job{job(1, provisioner.JobQueued), job(2, provisioner.JobCompleted),
			job(42, provisioner.JobCompleted), job(5, provisioner.JobCompleted)} {
			if err := tx.PutJob(ctx, j); err != nil {
				return err
			}
		}
		// sampleLease is made for job 42 and is pending: not released.
		if err := tx.InsertLease(ctx, sampleLease("l1")); err != nil {
			return err
		}
		for _, e := range []struct {
			job    int64
			action string
			at     time.Time
		}{
			{1, "queued", old},                   // job still queued: kept
			{2, "queued", old.Add(-time.Minute)}, // completed job: pruned
			{2, "completed", old},                // completed job: pruned
			{42, "in_progress", old},             // live lease for the job: kept
			{4, "queued", old.Add(time.Minute)},  // no job row (did not match a class): pruned
			{5, "completed", recent},             // recent: kept
		} {
			if _, err := tx.RecordJobEvent(ctx, e.job, 1, e.action, "", e.at); err != nil {
				return err
			}
		}
		return nil
	})
	prune := func() int {
		t.Helper()
		var n int
		inTx(t, s, func(tx provisioner.Tx) error {
			pr, ok := tx.(provisioner.EventPruner)
			if !ok {
				t.Fatalf("%T does not prune", tx)
			}
			var err error
			n, err = pr.PruneEvents(ctx, t0.Add(-30*day), 2)
			return err
		})
		return n
	}
	// Batches of 2 per table: d1, d2 and two job events, then d3 and the
	// last prunable event, then nothing.
	for i, want := range []int{4, 2, 0} {
		if n := prune(); n != want {
			t.Fatalf("pass %d pruned %d rows, want %d", i, n, want)
		}
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		for guid, gone := range map[string]bool{"d1": true, "d2": true, "d3": true, "d4": false} {
			fresh, err := tx.RecordDelivery(ctx, guid, "workflow_job", "queued", t0)
			if err != nil || fresh != gone {
				t.Errorf("delivery %s: recorded anew %v (err %v), want %v", guid, fresh, err, gone)
			}
		}
		for _, e := range []struct {
			job    int64
			action string
			gone   bool
		}{{1, "queued", false}, {2, "queued", true}, {2, "completed", true}, {42, "in_progress", false}, {4, "queued", true}, {5, "completed", false}} {
			fresh, err := tx.RecordJobEvent(ctx, e.job, 1, e.action, "", t0)
			if err != nil || fresh != e.gone {
				t.Errorf("job event %d %s: recorded anew %v (err %v), want %v", e.job, e.action, fresh, err, e.gone)
			}
		}
		return nil
	})
}

// testPruneHistory: released leases (with their events) and completed jobs
// past the history retention go, in batches, oldest first; a job stays
// while a lease that is not released was made for it or is bound to it.
func testPruneHistory(t *testing.T, s provisioner.Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	old, recent := t0.Add(-100*day), t0.Add(-day)
	lease := func(id string, job, bound int64) *provisioner.Lease {
		l := sampleLease(id)
		l.RunnerName, l.JobID, l.BoundJobID = "crabbox-h-"+id, job, bound
		return l
	}
	job := func(id int64, st provisioner.JobStatus, at time.Time) *provisioner.Job {
		return &provisioner.Job{ID: id, RunAttempt: 1, Scope: provisioner.Scope{Org: "acme"}, Class: "a100", Status: st,
			Name: "train", Repo: "acme/ml", CreatedAt: at, UpdatedAt: at}
	}
	release := func(tx provisioner.Tx, id string, at time.Time) error {
		if _, err := tx.Transition(ctx, id, provisioner.StateReleasing, "job done", nil); err != nil {
			return err
		}
		_, err := tx.Transition(ctx, id, provisioner.StateReleased, "destroyed", func(l *provisioner.Lease) { l.ReleasedAt = at })
		return err
	}
	inTx(t, s, func(tx provisioner.Tx) error {
		for _, l := range []*provisioner.Lease{lease("old1", 1, 0), lease("old2", 2, 0), lease("old3", 3, 0),
			lease("new", 4, 0), lease("busy", 7, 0), lease("bound", 0, 8)} {
			if err := tx.InsertLease(ctx, l); err != nil {
				return err
			}
		}
		for id, at := range map[string]time.Time{"old1": old.Add(-2 * time.Hour), "old2": old.Add(-time.Hour), "old3": old, "new": recent} {
			if err := release(tx, id, at); err != nil {
				return err
			}
		}
		for _, j := range []*provisioner.Job{
			job(1, provisioner.JobCompleted, old),     // its lease released long ago: pruned
			job(7, provisioner.JobCompleted, old),     // lease "busy" was made for it: kept
			job(8, provisioner.JobCompleted, old),     // lease "bound" is bound to it: kept
			job(9, provisioner.JobQueued, old),        // still queued: kept
			job(10, provisioner.JobCompleted, recent), // no lease: pruned once old
		} {
			if err := tx.PutJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	prune := func(before time.Time) int {
		t.Helper()
		var n int
		inTx(t, s, func(tx provisioner.Tx) error {
			pr, ok := tx.(provisioner.HistoryPruner)
			if !ok {
				t.Fatalf("%T does not prune history", tx)
			}
			var err error
			n, err = pr.PruneHistory(ctx, before, 2)
			return err
		})
		return n
	}
	// Batches of 2 per table: old1 and old2, then old3, then nothing. The
	// jobs were all written now (the store stamps updated_at), so none is
	// old enough yet.
	for i, want := range []int{2, 1, 0} {
		if n := prune(t0.Add(-90 * day)); n != want {
			t.Fatalf("pass %d pruned %d rows, want %d", i, n, want)
		}
	}
	if _, err := s.Lease(ctx, "new"); err != nil {
		t.Fatalf("lease released a day ago pruned: %v", err)
	}
	// With a cut past their last write: lease "new", jobs 1 and 10.
	for i, want := range []int{3, 0} {
		if n := prune(time.Now().Add(time.Hour)); n != want {
			t.Fatalf("later pass %d pruned %d rows, want %d", i, n, want)
		}
	}
	for id, gone := range map[string]bool{"old1": true, "old2": true, "old3": true, "new": true, "busy": false, "bound": false} {
		_, err := s.Lease(ctx, id)
		if gotGone := errors.Is(err, provisioner.ErrNotFound); gotGone != gone || (err != nil && !gotGone) {
			t.Errorf("lease %s: gone %v (err %v), want gone %v", id, gotGone, err, gone)
		}
		evs, err := s.LeaseEvents(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if gone && len(evs) > 0 {
			t.Errorf("lease %s pruned but %d of its events remain", id, len(evs))
		}
	}
	for id, gone := range map[int64]bool{1: true, 7: false, 8: false, 9: false, 10: true} {
		_, err := s.Job(ctx, id, 1)
		if gotGone := errors.Is(err, provisioner.ErrNotFound); gotGone != gone || (err != nil && !gotGone) {
			t.Errorf("job %d: gone %v (err %v), want gone %v", id, gotGone, err, gone)
		}
	}
}

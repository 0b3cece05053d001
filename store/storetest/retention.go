package storetest

import (
	"context"
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

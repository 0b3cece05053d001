package sqlstore

import (
	"context"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// PruneEvents deletes at most limit deliveries and at most limit job
// events received before the given time, oldest first, and returns how many
// rows went. A job event is kept whatever its age while its job is not
// completed or a lease not yet released was made for that job: they are
// what makes a late redelivery of that job's queued or in_progress a no-op.
// The batches keep each transaction short (on SQLite every write of the
// server waits for it); the next pass takes the next batch.
func (t *Tx) PruneEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	cut := Micros(before)
	d, err := t.q.Exec(ctx, `DELETE FROM crabbox_delivery WHERE guid IN (
		SELECT guid FROM crabbox_delivery WHERE received_at < $1 ORDER BY received_at LIMIT $2)`, cut, limit)
	if err != nil {
		return 0, t.d.errorf("prune deliveries: %w", err)
	}
	e, err := t.q.Exec(ctx, `DELETE FROM crabbox_job_event WHERE (job_id, run_attempt, action) IN (
		SELECT e.job_id, e.run_attempt, e.action FROM crabbox_job_event e
		WHERE e.received_at < $1
		AND NOT EXISTS (SELECT 1 FROM crabbox_job j
			WHERE j.id = e.job_id AND j.run_attempt = e.run_attempt AND j.status <> $3)
		AND NOT EXISTS (SELECT 1 FROM crabbox_lease l
			WHERE l.job_id = e.job_id AND l.run_attempt = e.run_attempt AND l.state <> $4)
		ORDER BY e.received_at LIMIT $2)`,
		cut, limit, string(provisioner.JobCompleted), string(provisioner.StateReleased))
	if err != nil {
		return int(d), t.d.errorf("prune job events: %w", err)
	}
	return int(d + e), nil
}

// PruneHistory deletes at most limit released leases (with their lease
// events) released before the given time, and at most limit completed jobs
// last updated before it for which no lease that is not released was made,
// oldest first, and returns how many leases and jobs went. A released
// lease's host is gone or, should a destroy have failed, still carries its
// marker: gc destroys an instance whose lease the store no longer has, so
// forgetting a lease never leaves a host running.
func (t *Tx) PruneHistory(ctx context.Context, before time.Time, limit int) (int, error) {
	cut := Micros(before)
	released := string(provisioner.StateReleased)
	// Events first: they are found through the leases about to go.
	if _, err := t.q.Exec(ctx, `DELETE FROM crabbox_lease_event WHERE lease_id IN (
		SELECT id FROM crabbox_lease WHERE state = $1 AND released_at > 0 AND released_at < $2
		ORDER BY released_at LIMIT $3)`, released, cut, limit); err != nil {
		return 0, t.d.errorf("prune lease events: %w", err)
	}
	l, err := t.q.Exec(ctx, `DELETE FROM crabbox_lease WHERE id IN (
		SELECT id FROM crabbox_lease WHERE state = $1 AND released_at > 0 AND released_at < $2
		ORDER BY released_at LIMIT $3)`, released, cut, limit)
	if err != nil {
		return 0, t.d.errorf("prune leases: %w", err)
	}
	j, err := t.q.Exec(ctx, `DELETE FROM crabbox_job WHERE (id, run_attempt) IN (
		SELECT j.id, j.run_attempt FROM crabbox_job j
		WHERE j.status = $1 AND j.updated_at < $2
		AND NOT EXISTS (SELECT 1 FROM crabbox_lease l
			WHERE ((l.job_id = j.id AND l.run_attempt = j.run_attempt) OR l.bound_job_id = j.id)
			AND l.state <> $3)
		ORDER BY j.updated_at LIMIT $4)`,
		string(provisioner.JobCompleted), cut, released, limit)
	if err != nil {
		return int(l), t.d.errorf("prune jobs: %w", err)
	}
	return int(l + j), nil
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type tx struct {
	q     querier
	sqlTx *sql.Tx
	river *river.Client[*sql.Tx]
	now   func() time.Time
}

var _ provisioner.Tx = (*tx)(nil)

func (t *tx) RecordDelivery(ctx context.Context, guid, event, action string, at time.Time) (bool, error) {
	res, err := t.q.ExecContext(ctx, `INSERT INTO crabbox_delivery (guid, event, action, received_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (guid) DO NOTHING`, guid, event, action, micros(at))
	if err != nil {
		return false, fmt.Errorf("sqlite: record delivery: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t *tx) RecordJobEvent(ctx context.Context, jobID, runAttempt int64, action, guid string, at time.Time) (bool, error) {
	res, err := t.q.ExecContext(ctx, `INSERT INTO crabbox_job_event (job_id, run_attempt, action, guid, received_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, run_attempt, action) DO NOTHING`,
		jobID, runAttempt, action, guid, micros(at))
	if err != nil {
		return false, fmt.Errorf("sqlite: record job event: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t *tx) Job(ctx context.Context, id, runAttempt int64) (*provisioner.Job, error) {
	return getJob(ctx, t.q, id, runAttempt)
}

const jobColumns = `id, run_attempt, run_id, name, workflow_name, repo, scope_key, scope_org, scope_repo,
	installation_id, class, labels, status, conclusion, runner_name, lease_id, created_at, updated_at`

func (t *tx) PutJob(ctx context.Context, j *provisioner.Job) error {
	now := t.now()
	if j.CreatedAt.IsZero() {
		j.CreatedAt = now
	}
	j.UpdatedAt = now
	_, err := t.q.ExecContext(ctx, `INSERT INTO crabbox_job (`+jobColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id, run_attempt) DO UPDATE SET
			run_id = excluded.run_id, name = excluded.name, workflow_name = excluded.workflow_name,
			repo = excluded.repo, scope_key = excluded.scope_key, scope_org = excluded.scope_org,
			scope_repo = excluded.scope_repo, installation_id = excluded.installation_id,
			class = excluded.class, labels = excluded.labels, status = excluded.status,
			conclusion = excluded.conclusion, runner_name = excluded.runner_name,
			lease_id = excluded.lease_id, updated_at = excluded.updated_at`,
		j.ID, j.RunAttempt, j.RunID, j.Name, j.WorkflowName, j.Repo, j.Scope.Key(), j.Scope.Org, j.Scope.Repo,
		j.Scope.InstallationID, j.Class, strings.Join(j.Labels, "\n"), string(j.Status), j.Conclusion,
		j.RunnerName, j.LeaseID, micros(j.CreatedAt), micros(j.UpdatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: put job %d: %w", j.ID, err)
	}
	return nil
}

func getJob(ctx context.Context, q querier, id, runAttempt int64) (*provisioner.Job, error) {
	var j provisioner.Job
	var scopeKey, labels, status string
	var created, updated int64
	err := q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM crabbox_job WHERE id = ? AND run_attempt = ?`, id, runAttempt).
		Scan(&j.ID, &j.RunAttempt, &j.RunID, &j.Name, &j.WorkflowName, &j.Repo, &scopeKey, &j.Scope.Org, &j.Scope.Repo,
			&j.Scope.InstallationID, &j.Class, &labels, &status, &j.Conclusion, &j.RunnerName, &j.LeaseID, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %d attempt %d: %w", id, runAttempt, provisioner.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get job %d: %w", id, err)
	}
	if labels != "" {
		j.Labels = strings.Split(labels, "\n")
	}
	j.Status = provisioner.JobStatus(status)
	j.CreatedAt, j.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &j, nil
}

func (t *tx) Demand(ctx context.Context, class, scopeKey string) (queued, available int, err error) {
	err = t.q.QueryRowContext(ctx, `SELECT count(*) FROM crabbox_job WHERE class = ? AND scope_key = ? AND status = ?`,
		class, scopeKey, string(provisioner.JobQueued)).Scan(&queued)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: demand: %w", err)
	}
	var states []any
	var marks []string
	for _, s := range provisioner.AllStates {
		if s.Available() {
			states = append(states, string(s))
			marks = append(marks, "?")
		}
	}
	args := append([]any{class, scopeKey}, states...)
	err = t.q.QueryRowContext(ctx, `SELECT count(*) FROM crabbox_lease WHERE class = ? AND scope_key = ?
		AND release_reason = '' AND state IN (`+strings.Join(marks, ",")+`)`, args...).Scan(&available)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: demand: %w", err)
	}
	return queued, available, nil
}

func (t *tx) Enqueue(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) error {
	if t.river == nil {
		return provisioner.ErrQueueNotStarted
	}
	if _, err := t.river.InsertTx(ctx, t.sqlTx, args, opts); err != nil {
		return fmt.Errorf("sqlite: enqueue %s: %w", args.Kind(), err)
	}
	return nil
}

// QueuedJobs lists queued jobs last updated before the given time.
func (s *Store) QueuedJobs(ctx context.Context, updatedBefore time.Time) ([]*provisioner.Job, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, run_attempt FROM crabbox_job WHERE status = ? AND updated_at < ?
		ORDER BY updated_at LIMIT 1000`, string(provisioner.JobQueued), micros(updatedBefore))
	if err != nil {
		return nil, fmt.Errorf("sqlite: queued jobs: %w", err)
	}
	type key struct{ id, attempt int64 }
	var keys []key
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.id, &k.attempt); err != nil {
			rows.Close()
			return nil, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*provisioner.Job, 0, len(keys))
	for _, k := range keys {
		j, err := getJob(ctx, s.db, k.id, k.attempt)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// ClassScopes lists the class and scope pairs with queued jobs or
// available leases.
func (s *Store) ClassScopes(ctx context.Context) ([]provisioner.ClassScope, error) {
	var states []any
	var marks []string
	for _, st := range provisioner.AllStates {
		if st.Available() {
			states = append(states, string(st))
			marks = append(marks, "?")
		}
	}
	args := append([]any{string(provisioner.JobQueued)}, states...)
	rows, err := s.db.QueryContext(ctx, `
		SELECT class, scope_org, scope_repo, installation_id FROM crabbox_job WHERE status = ?
		UNION
		SELECT class, scope_org, scope_repo, installation_id FROM crabbox_lease WHERE state IN (`+strings.Join(marks, ",")+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: class scopes: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	var out []provisioner.ClassScope
	for rows.Next() {
		var cs provisioner.ClassScope
		if err := rows.Scan(&cs.Class, &cs.Scope.Org, &cs.Scope.Repo, &cs.Scope.InstallationID); err != nil {
			return nil, err
		}
		if k := cs.Class + "\x00" + cs.Scope.Key(); !seen[k] {
			seen[k] = true
			out = append(out, cs)
		}
	}
	return out, rows.Err()
}

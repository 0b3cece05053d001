package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/schema"
)

// Reader is the part of provisioner.Store that reads outside a
// transaction. The stores embed it.
type Reader struct {
	q Querier
	d *Dialect
}

// NewReader reads through q, a handle on the whole database (a pool).
func NewReader(q Querier, d *Dialect) Reader { return Reader{q: q, d: d} }

// Ping checks the database answers a query.
func (r Reader) Ping(ctx context.Context) error {
	var one int
	return r.q.QueryRow(ctx, `SELECT 1`).Scan(&one)
}

// Lease reads one lease.
func (r Reader) Lease(ctx context.Context, id string) (*provisioner.Lease, error) {
	return getLease(ctx, r.q, r.d, "id = $1", "", id)
}

// Leases lists leases.
func (r Reader) Leases(ctx context.Context, f provisioner.LeaseFilter) ([]*provisioner.Lease, error) {
	return listLeases(ctx, r.q, r.d, f)
}

// Job reads one workflow job.
func (r Reader) Job(ctx context.Context, id, runAttempt int64) (*provisioner.Job, error) {
	return getJob(ctx, r.q, r.d, id, runAttempt)
}

// LatestJob reads the latest attempt of a workflow job, for a job known
// only by its id (a lease's bound job).
func (r Reader) LatestJob(ctx context.Context, id int64) (*provisioner.Job, error) {
	j, err := scanJob(r.q.QueryRow(ctx, `SELECT `+jobColumns+` FROM crabbox_job WHERE id = $1
		ORDER BY run_attempt DESC LIMIT 1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %d: %w", id, provisioner.ErrNotFound)
	}
	if err != nil {
		return nil, r.d.errorf("get job %d: %w", id, err)
	}
	return j, nil
}

// NewestJob reads the job of the class that arrived last, of any status
// and scope: where the class's warm hosts register (provisioner/warm.go).
func (r Reader) NewestJob(ctx context.Context, class string) (*provisioner.Job, error) {
	return newestJob(ctx, r.q, r.d, class)
}

// NewestJob is Reader.NewestJob in the transaction.
func (t *Tx) NewestJob(ctx context.Context, class string) (*provisioner.Job, error) {
	return newestJob(ctx, t.q, t.d, class)
}

func newestJob(ctx context.Context, q Querier, d *Dialect, class string) (*provisioner.Job, error) {
	j, err := scanJob(q.QueryRow(ctx, `SELECT `+jobColumns+` FROM crabbox_job WHERE class = $1
		ORDER BY created_at DESC, id DESC LIMIT 1`, class))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("newest job of class %s: %w", class, provisioner.ErrNotFound)
	}
	if err != nil {
		return nil, d.errorf("newest job of class %s: %w", class, err)
	}
	return j, nil
}

// LeaseEvents returns a lease's history, oldest first.
func (r Reader) LeaseEvents(ctx context.Context, leaseID string) ([]provisioner.Event, error) {
	var out []provisioner.Event
	err := r.scanEvents(ctx, `SELECT lease_id, at, from_state, to_state, reason
		FROM crabbox_lease_event WHERE lease_id = $1 ORDER BY at, `+r.d.EventOrder, []any{leaseID},
		func(e provisioner.Event) { out = append(out, e) })
	return out, err
}

// eventsBatch is how many leases one query of LeaseEventsOf names: well
// under SQLite's and PostgreSQL's limits on bound parameters, and a
// bounded answer.
const eventsBatch = 500

// LeaseEventsOf returns the histories of many leases, each oldest first,
// by lease id, reading eventsBatch leases per query.
func (r Reader) LeaseEventsOf(ctx context.Context, ids []string) (map[string][]provisioner.Event, error) {
	out := make(map[string][]provisioner.Event, len(ids))
	for len(ids) > 0 {
		batch := ids[:min(len(ids), eventsBatch)]
		ids = ids[len(batch):]
		args := make([]any, len(batch))
		for i, id := range batch {
			args[i] = id
		}
		err := r.scanEvents(ctx, `SELECT lease_id, at, from_state, to_state, reason
			FROM crabbox_lease_event WHERE lease_id IN (`+marks(1, len(batch))+`) ORDER BY lease_id, at, `+r.d.EventOrder, args,
			func(e provisioner.Event) { out[e.LeaseID] = append(out[e.LeaseID], e) })
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r Reader) scanEvents(ctx context.Context, query string, args []any, add func(provisioner.Event)) error {
	rows, err := r.q.Query(ctx, query, args...)
	if err != nil {
		return r.d.errorf("lease events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e provisioner.Event
		var at int64
		var from, to string
		if err := rows.Scan(&e.LeaseID, &at, &from, &to, &e.Reason); err != nil {
			return r.d.errorf("lease events: %w", err)
		}
		e.At, e.From, e.To = FromMicros(at), provisioner.State(from), provisioner.State(to)
		add(e)
	}
	return rows.Err()
}

// QueuedJobs lists the queued jobs last updated before the given time,
// oldest first, at most 1000.
func (r Reader) QueuedJobs(ctx context.Context, updatedBefore time.Time) ([]*provisioner.Job, error) {
	// Jobs refused by policy are left out: they are not ours to follow,
	// and asking GitHub about them would spend its budget for nothing.
	rows, err := r.q.Query(ctx, `SELECT `+jobColumns+` FROM crabbox_job WHERE status = $1 AND updated_at < $2
		AND unservable_kind NOT IN ($3, $4, $5)
		ORDER BY updated_at, id, run_attempt LIMIT 1000`, string(provisioner.JobQueued), Micros(updatedBefore),
		string(provisioner.RefusedDefaultLabels), string(provisioner.RefusedRepository), string(provisioner.RefusedPublic))
	if err != nil {
		return nil, r.d.errorf("queued jobs: %w", err)
	}
	out, err := scanJobs(rows)
	if err != nil {
		return nil, r.d.errorf("queued jobs: %w", err)
	}
	return out, nil
}

// UnservableJobs lists the queued jobs marked unservable, most recently
// marked first.
func (r Reader) UnservableJobs(ctx context.Context, f provisioner.UnservableFilter) ([]*provisioner.Job, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	q := `SELECT ` + jobColumns + ` FROM crabbox_job WHERE unservable_kind <> '' AND status = $1 AND unservable_at >= $2`
	args := []any{string(provisioner.JobQueued), Micros(f.Since)}
	if len(f.Kinds) > 0 {
		q += ` AND unservable_kind IN (` + marks(3, len(f.Kinds)) + `)`
		for _, k := range f.Kinds {
			args = append(args, string(k))
		}
	}
	q += fmt.Sprintf(` ORDER BY unservable_at DESC, id LIMIT %d`, limit)
	rows, err := r.q.Query(ctx, q, args...)
	if err != nil {
		return nil, r.d.errorf("unservable jobs: %w", err)
	}
	out, err := scanJobs(rows)
	if err != nil {
		return nil, r.d.errorf("unservable jobs: %w", err)
	}
	return out, nil
}

// scanJobs reads every row of rows as a job, and closes rows.
func scanJobs(rows Rows) ([]*provisioner.Job, error) {
	defer rows.Close()
	var out []*provisioner.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// ClassScopes lists the class and scope pairs with queued jobs or
// available leases.
func (r Reader) ClassScopes(ctx context.Context) ([]provisioner.ClassScope, error) {
	states := availableStates()
	rows, err := r.q.Query(ctx, `
		SELECT class, scope_org, scope_repo, installation_id FROM crabbox_job WHERE status = $1 AND unservable_kind = ''
		UNION
		SELECT class, scope_org, scope_repo, installation_id FROM crabbox_lease WHERE state IN (`+marks(2, len(states))+`)`,
		append([]any{string(provisioner.JobQueued)}, states...)...)
	if err != nil {
		return nil, r.d.errorf("class scopes: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	var out []provisioner.ClassScope
	for rows.Next() {
		var cs provisioner.ClassScope
		if err := rows.Scan(&cs.Class, &cs.Scope.Org, &cs.Scope.Repo, &cs.Scope.InstallationID); err != nil {
			return nil, r.d.errorf("class scopes: %w", err)
		}
		// Rows differing only in the installation are one scope.
		if k := cs.Class + "\x00" + cs.Scope.Key(); !seen[k] {
			seen[k] = true
			out = append(out, cs)
		}
	}
	return out, rows.Err()
}

// AppliedMigrations reads crabbox_migration: each applied version and when,
// with the schema dialect the versions are of (for doctor).
func (r Reader) AppliedMigrations(ctx context.Context) (map[int]time.Time, schema.Dialect, error) {
	rows, err := r.q.Query(ctx, `SELECT version, applied_at FROM crabbox_migration`)
	if err != nil {
		return nil, r.d.Schema, r.d.errorf("reading crabbox_migration: %w", err)
	}
	defer rows.Close()
	out := map[int]time.Time{}
	for rows.Next() {
		var v int
		var at int64
		if err := rows.Scan(&v, &at); err != nil {
			return nil, r.d.Schema, r.d.errorf("reading crabbox_migration: %w", err)
		}
		out[v] = time.UnixMicro(at)
	}
	return out, r.d.Schema, rows.Err()
}
